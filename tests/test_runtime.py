"""Tests of runtime.py in one process: checkpoints never hold a non-finite weight and round-trip
exactly, the stop codes, the partial state of a teacher. (Processes, signals and resumption
through train.py: tests/test_train.py.)

    python -m pytest -q tests/test_runtime.py
"""
import math
import os
import platform
import signal
import subprocess
import sys

import pytest
import torch

import runtime
from distill import Distiller, build_optimizer, freeze_teacher
from fastvqa import FastVQA, FastVQAConfig
from model import VideoViT, ViTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny():
    return ViTConfig(embed_dim=32, depth=2, num_heads=2, pool_heads=2, pool_dim=16, num_frames=2,
                     img_size=28)


def checkpoints(out, partial=False):
    torch.manual_seed(0)
    teacher = freeze_teacher(VideoViT(tiny()))
    student = FastVQA(FastVQAConfig(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                    head_hidden=8))  # int buffers too
    d = Distiller(teacher, student)
    opt = build_optimizer([student, teacher], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    ckpts = runtime.Checkpoints(str(out), dict(teacher=teacher, student=student), opt, sched,
                                scaler, torch.device("cpu"), partial, config={}, world=1)
    x, y = (torch.randn(2, 3, 2, 28, 28), torch.randn(2, 3, 4, 32, 32)), torch.rand(2)
    d.train()
    d(x, y)["loss"].backward()
    opt.step()
    return ckpts, teacher, student


@pytest.mark.parametrize("where", ["student", "teacher"])
def test_a_save_never_writes_a_non_finite_weight(tmp_path, where):
    """A NaN in a weight (the student's, or the teacher's trainable part): save returns False and
    the last good last.pt stays byte for byte; no temporary file is left."""
    ckpts, teacher, student = checkpoints(tmp_path)
    loop = dict(step=1, best=None, history=[])
    assert ckpts.save("last.pt", loop)
    good = (tmp_path / "last.pt").read_bytes()
    with torch.no_grad():
        if where == "student":
            student.vqa_head.fc_last.weight[0, 0] = math.nan
        else:
            teacher.head.weight[0, 0] = math.inf
    assert not ckpts.save("last.pt", dict(loop, step=2))
    assert not ckpts.save("best.pt", dict(loop, step=2))
    assert (tmp_path / "last.pt").read_bytes() == good and not (tmp_path / "best.pt").exists()
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_a_checkpoint_holds_exactly_what_trains_of_a_partial_teacher(tmp_path):
    ckpts, teacher, student = checkpoints(tmp_path, partial=True)
    assert ckpts.save("last.pt", dict(step=1, best=None, history=[]))
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    trains = {n for n, p in teacher.named_parameters() if p.requires_grad}
    assert set(ckpt["teacher"]) == trains and trains and "blocks.0.attn.qkv.weight" not in trains
    assert set(ckpt["student"]) == set(student.state_dict())  # buffers included
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in ckpt["teacher"].items())
    assert ckpt["step"] == 1 and ckpt["teacher_partial"] and ckpt["world"] == 1
    assert torch.equal(ckpt["rng"][0]["torch"], torch.get_rng_state())


def test_stop_codes():
    stopper = runtime.Stopper(torch.device("cpu"))
    try:
        assert stopper.check(torch.tensor(True)) == 0
        assert stopper.check(torch.tensor(False)) == 3
        stopper._note(signal.SIGTERM, None)
        assert stopper.check(torch.tensor(True)) == 1 and stopper.check(torch.tensor(False)) == 3
        stopper._note(signal.SIGINT, None)  # then Ctrl-C: the larger code
        assert stopper.check(torch.tensor(True)) == 2
    finally:
        stopper.close()


RESIDENT = """
import os, sys
import torch
import runtime
if sys.argv[1] == "kept":
    assert runtime.keep_freed_memory()
def resident():  # MiB this process holds in memory now
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
def step():  # a step's activations: allocated, touched, freed
    xs = [torch.ones(2 << 20) for _ in range(8)]  # 8 x 8 MiB
    del xs
before = resident()
step()
after_one = resident()
for _ in range(4):
    step()
print(after_one - before, resident() - after_one)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's allocator")
def test_freed_memory_stays_for_the_next_step(tmp_path):
    """64 MiB of activations a step: by default handed back to the system when freed (so the next
    step maps, and faults in, fresh pages: bench.py --sections 5 counts the faults); kept, they
    stay in the process and the next steps reuse them, so it grows by no more than one step's
    worth. Each in a fresh process (the setting lasts as long as the process)."""
    script = tmp_path / "resident.py"
    script.write_text(RESIDENT)
    env = dict(os.environ, PYTHONPATH=ROOT)
    grown = {mode: [float(v) for v in subprocess.run(
        [sys.executable, str(script), mode], env=env, text=True, capture_output=True, check=True,
        timeout=120).stdout.split()] for mode in ("default", "kept")}
    assert grown["default"][0] < 16, grown  # freed memory went back at once
    assert grown["kept"][0] > 60 and abs(grown["kept"][1]) < 32, grown  # kept, and reused

"""Tests of train.py and predict.py at tiny sizes on the tiny toy set: every path (toy, csv, resume,
eval-only, torchrun with 2 CPU processes, predict, spawned workers, fragments, --deterministic),
exact resumption (across an epoch, with gradient accumulation, after SIGTERM and Ctrl-C), what a
resume refuses, official-layout checkpoint files, DDP against one process, the stop protocol (a NaN
loss or gradient, SIGTERM, Ctrl-C, on one process or all, with DataLoader workers), gradient
clipping per model, the lr rule, and the one-line errors.

Runs happen in this process (train.main, on one thread) unless they need a process of their own:
those are children started by run() (unbuffered, one thread, their own process group, a timeout
that kills all of them); faults at an exact optimizer step come from tests/run_patched.py, so no
test waits for a delay or races a signal against training.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_train.py
"""
import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import data
import distill
import predict
import runtime
import toy as toy_set
import train
from model import CONFIGS, VideoViT
from runtime import load_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCHED = os.path.join(ROOT, "tests", "run_patched.py")
# 24 training videos: 12 steps an epoch
TINY = ["--student", "tiny", "--teacher", "tiny", "--toy-variant", "tiny", "--frames", "2",
        "--size", "28", "--stride", "1", "--test-clips", "2", "--batch-size", "2", "--workers", "0",
        "--log-every", "1", "--epochs", "2", "--pretrain", "0", "--device", "cpu",
        "--dtype", "fp32"]  # whatever this CPU's rule (tests/test_dtype.py) would choose


# FAST-VQA-B's own view at the smallest size its window allows (4 frames of 32 x 32 fragments)
FASTVQA = ["--student", "fastvqa", "--fastvqa-frames", "4", "--fastvqa-size", "32",
           "--fastvqa-stride", "1"]


# -----------------------------------------------------------------------------------------------
# Running train.py and predict.py: in this process, or as children that can neither hang nor race


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(n, script="train.py"):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), script]


def tagged(tag):
    """The pids of every process whose environment holds TEST_RUN=tag (torchrun starts each rank in
    a session of its own, so a process group does not hold them all)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"TEST_RUN={tag}".encode() in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def kill_all(proc, tag):
    """SIGKILL the child's process group and every process started under its tag."""
    for kill, pid in [(os.killpg, proc.pid)] + [(os.kill, p) for p in tagged(tag)]:
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run(args, script="train.py", check=True, timeout=180, env=None):
    """A child, `python SCRIPT ARGS` (or the command `script`, a list, with ARGS): unbuffered, on
    one thread, in its own process group, its result once it exits. Past `timeout` seconds every
    process it started is killed and the test fails; in any case none outlives the call."""
    cmd = ([sys.executable, script] if isinstance(script, str) else script) + args
    tag = uuid.uuid4().hex
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TEST_RUN": tag,
           **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all(proc, tag)
        out, err = proc.communicate()
        raise AssertionError(f"killed after {timeout} s: {' '.join(cmd)}\n"
                             f"{out[-3000:]}\n{err[-3000:]}") from None
    finally:
        kill_all(proc, tag)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {' '.join(cmd)}\n"
                             f"{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextlib.contextmanager
def here():
    """A run in this process as a child would make it: one thread, its output captured, and
    afterwards the signal handlers and the thread count as they were. Yields the result to fill."""
    result = subprocess.CompletedProcess([], None, "", "")
    threads, handlers = (torch.get_num_threads(),
                         {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)})
    out, err = io.StringIO(), io.StringIO()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                yield result
            except SystemExit as e:  # a message, as the interpreter would print it, and exit 1
                result.returncode = e.code if isinstance(e.code, int) or e.code is None else 1
                if not isinstance(e.code, int) and e.code is not None:
                    print(e.code, file=sys.stderr)
    finally:
        torch.set_num_threads(threads)
        for s, handler in handlers.items():
            signal.signal(s, handler)
        result.stdout, result.stderr = out.getvalue(), err.getvalue()


def main(argv, check=True):
    """train.main(argv) in this process: a CompletedProcess of its exit code and output."""
    with here() as result:
        result.returncode = train.main(argv)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {' '.join(argv)}\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def predict_here(argv):
    """predict.py's main in this process, in fp32 unless argv says (as TINY's runs): a
    CompletedProcess of its exit code and output."""
    saved = sys.argv
    sys.argv = ["predict.py", *argv, *([] if "--dtype" in argv else ["--dtype", "fp32"])]
    try:
        with here() as result:
            predict.main()
    finally:
        sys.argv = saved
    return result


def state(path, key="student"):
    return torch.load(path, weights_only=True)[key]


def equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The tiny toy set, built here (a few seconds), so that every test stands alone."""
    root = tmp_path_factory.mktemp("toy") / "toy"
    toy_set.make_toy_dataset(root, tiny=True, log=None)
    return str(root)


def toy_rows(toy, split=None):
    with open(os.path.join(toy, "toy.csv")) as f:
        return [dict(r, path=os.path.join(toy, r["path"])) for r in csv.DictReader(f)
                if split in (None, r["split"])]


def listing(path, rows):
    """A CSV list with absolute paths: path,mos,source."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "mos", "source"])
        w.writerows([r["path"], r["mos"], r["source"]] for r in rows)
    return str(path)


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    """Two steps and an evaluation, through the command line."""
    out = str(tmp_path_factory.mktemp("run") / "out")
    proc = run(TINY + ["--data-root", toy, "--out", out, "--max-steps", "2"])
    return out, proc.stdout


# -----------------------------------------------------------------------------------------------
# Paths through train.py


def test_toy_run_end_to_end(trained):
    out, stdout = trained
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("profile: quick")
    assert "randomly initialised" in stdout
    assert any(line.startswith("epoch 1/2 step 2/") for line in lines)
    assert "PLCC" in stdout and "SRCC" in stdout and "KRCC" in stdout and "RMSE" in stdout
    assert lines[-1].startswith("best: student srcc=") and " teacher srcc=" in lines[-1]
    for name in ("last.pt", "best.pt", "predictions.csv"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    with open(os.path.join(out, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "mos", "teacher", "student"] and len(rows) >= 4
    assert all(os.path.exists(r["path"]) and float(r["student"]) == float(r["student"])
               for r in rows)
    ckpt = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert (ckpt["step"] == 2
            and {"student", "teacher", "optimizer", "scheduler", "config", "rng"} <= set(ckpt))


def test_csv_data_and_student_alone(toy, tmp_path):
    proc = main(TINY + ["--data", "csv", "--labels", listing(tmp_path / "list.csv", toy_rows(toy)),
                        "--split", "random", "--teacher", "none", "--out", str(tmp_path / "out"),
                        "--max-steps", "2", "--dtype", "fp32"])
    assert proc.stdout.strip().splitlines()[-1].startswith("best: student srcc=")
    assert " teacher n/a |" in proc.stdout.strip().splitlines()[-1]
    assert "profile: paper" in proc.stdout


def test_fragments_through_train(toy, tmp_path, monkeypatch):
    """--fragments 2 at --size 28: every clip is 2 x 2 native fragments of 14 px (one per token),
    none a crop."""
    calls = {"fragments": [], "crops": 0}
    real_fragments, real_crop = data.fragment_clip, data.crop_clip

    def fragments(clip, size, rng=None, grid=7):
        calls["fragments"].append((size, grid))
        return real_fragments(clip, size, rng, grid)

    def crop(*args, **kwargs):
        calls["crops"] += 1
        return real_crop(*args, **kwargs)

    monkeypatch.setattr(data, "fragment_clip", fragments)
    monkeypatch.setattr(data, "crop_clip", crop)
    out = tmp_path / "out"
    proc = main(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1",
                        "--fragments", "2"])
    assert " fragments=2 " in proc.stdout.splitlines()[0]
    assert torch.load(out / "last.pt", weights_only=True)["config"]["fragments"] == 2
    # a training batch, every test clip
    assert calls["crops"] == 0 and len(calls["fragments"]) >= 2 + 8 * 2
    assert set(calls["fragments"]) == {(28, 2)}


def test_deterministic_runs_on_the_cpu(toy, tmp_path, monkeypatch):
    seen = []
    forward = distill.Distiller.forward

    def watched(self, x, y):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return forward(self, x, y)

    monkeypatch.setattr(distill.Distiller, "forward", watched)
    was = torch.are_deterministic_algorithms_enabled()
    try:
        main(TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--max-steps", "1",
                     "--deterministic"])
    finally:
        torch.use_deterministic_algorithms(was)
    assert seen == [True]
    assert torch.load(tmp_path / "o" / "last.pt", weights_only=True)["step"] == 1


def test_a_bf16_frozen_teacher_trains_and_evaluates_without_autocast(toy, tmp_path):
    """The teacher wholly frozen (its term off) and stored in bf16, the run in fp32 without
    autocast: the first evaluation once crashed where the bf16 stream met the fp32 pooling."""
    out = tmp_path / "o"
    main(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1",
                 "--teacher-dtype", "bf16", "--dtype", "fp32", "--w-teacher", "0"])
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and all(math.isfinite(float(r["teacher"]))
                                  and math.isfinite(float(r["student"])) for r in rows)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


def test_spawned_workers(toy, tmp_path):
    """DataLoader workers started by spawn (macOS's and Windows' way): the dataset and the
    worker set-up must pickle."""
    spawn = [sys.executable, "-c", "import sys, torch.multiprocessing as mp, train; "
             "mp.set_start_method('spawn'); sys.exit(train.main(sys.argv[1:]))"]
    run(TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--max-steps", "1",
                "--workers", "1"], script=spawn)
    assert torch.load(tmp_path / "o" / "last.pt", weights_only=True)["step"] == 1


def test_toy_sources_make_a_training_set_of_your_own_videos(tmp_path):
    import imageio_ffmpeg
    sources = tmp_path / "mine"
    sources.mkdir()
    for i, graph in enumerate(["testsrc2=s=128x96", "mandelbrot=s=128x96", "life=s=128x96:seed=3",
                               "rgbtestsrc=s=96x128"]):
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-f", "lavfi",
                        "-i", f"{graph}:r=24", "-frames:v", "20", "-pix_fmt", "yuv420p",
                        str(sources / f"clip{i}.mp4")], check=True, timeout=60)
    out = tmp_path / "out"
    proc = main(TINY + ["--toy-sources", str(sources), "--data-root", str(tmp_path / "set"),
                        "--out", str(out), "--max-steps", "1"])
    assert "split=random" in proc.stdout.splitlines()[0]
    with open(tmp_path / "set" / "toy.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["source"] for r in rows} == {f"clip{i}" for i in range(4)}
    with open(out / "predictions.csv") as f:  # one whole content held out: its 5 codecs x 4 levels
        scored = {p["path"] for p in csv.DictReader(f)}
    held_out = [r["source"] for r in rows
                if os.path.join(str(tmp_path / "set"), r["path"]) in scored]
    assert len(held_out) == len(scored) == 20 and len(set(held_out)) == 1
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


# -----------------------------------------------------------------------------------------------
# Resuming: bit-exact, and never from a run it would not continue

COMMON = TINY + ["--seed", "3", "--drop-path", "0.2"]  # drop-path: the RNG is used in every step


@pytest.fixture(scope="module")
def straight(toy, tmp_path_factory):
    """last.pt of a run that went straight to step 4."""
    out = tmp_path_factory.mktemp("straight") / "out"
    main(COMMON + ["--data-root", toy, "--out", str(out), "--max-steps", "4"])
    return torch.load(out / "last.pt", weights_only=True)


def same_run(a, b):
    """Two step-4 checkpoints hold the same weights and optimizer state."""
    assert a["step"] == b["step"] == 4
    for key in ("student", "teacher"):
        assert equal_states(a[key], b[key]), key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(equal_states(sa[i], sb[i]) for i in sa)


def test_resume_continues_bit_exactly(toy, straight, tmp_path):
    """Steps 1-2, then --resume to 4, equal a straight run to 4; the same resume from a checkpoint
    with one weight nudged by 1e-3 does not (the resumed run really starts from what last.pt
    holds)."""
    common = COMMON + ["--data-root", toy]
    main(common + ["--out", str(tmp_path / "b"), "--max-steps", "2"])
    shutil.copytree(tmp_path / "b", tmp_path / "nudged")
    ckpt = torch.load(tmp_path / "nudged" / "last.pt", weights_only=True)
    assert ckpt["step"] == 2
    ckpt["student"]["blocks.0.mlp.fc1.weight"][0, 0] += 1e-3
    torch.save(ckpt, tmp_path / "nudged" / "last.pt")
    for out in ("b", "nudged"):
        proc = main(common + ["--out", str(tmp_path / out), "--max-steps", "4", "--resume"])
        assert f"resumed from {tmp_path / out}/last.pt at step 2/24" in proc.stdout
    same_run(torch.load(tmp_path / "b" / "last.pt", weights_only=True), straight)
    nudged = state(tmp_path / "nudged" / "last.pt")
    assert not torch.equal(nudged["blocks.0.mlp.fc1.weight"],
                           straight["student"]["blocks.0.mlp.fc1.weight"])
    bad = main(common + ["--out", str(tmp_path / "b"), "--lr", "0.5", "--resume"], check=False)
    assert bad.returncode == 1 and "--lr 0.0003 -> 0.5" in bad.stderr


@pytest.mark.parametrize("sig, code, name", [("TERM", 143, "SIGTERM"), ("INT", 130, "Ctrl-C")])
def test_a_signal_saves_and_resume_finishes(toy, straight, tmp_path, sig, code, name):
    """SIGTERM or Ctrl-C arriving during step 3: the step is not applied, last.pt holds step 2 (and
    the RNG as step 3 found it), the exit code says which signal, and --resume to 4 equals a
    straight run."""
    out = tmp_path / "out"
    args = COMMON + ["--data-root", toy, "--out", str(out)]
    proc = run(["--signal-at", "3", sig, "--"] + args, script=PATCHED, check=False)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert f"{name}: saved {out}/last.pt at step 2; continue with --resume" in proc.stdout
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    main(args + ["--resume", "--max-steps", "4"])
    same_run(torch.load(out / "last.pt", weights_only=True), straight)


def resume_is_exact(args, tmp_path, steps, stop_at):
    """A run of `steps` optimizer steps into tmp_path/a, and one stopped at `stop_at` and resumed
    into tmp_path/b: the same student and teacher, tensor for tensor."""
    main(args + ["--out", str(tmp_path / "a"), "--max-steps", str(steps)])
    main(args + ["--out", str(tmp_path / "b"), "--max-steps", str(stop_at)])
    main(args + ["--out", str(tmp_path / "b"), "--max-steps", str(steps), "--resume"])
    for key in ("student", "teacher"):
        assert equal_states(state(tmp_path / "a" / "last.pt", key),
                            state(tmp_path / "b" / "last.pt", key)), key


def test_resume_across_an_epoch_with_grad_accum(toy, tmp_path):
    # 6 steps/epoch
    common = TINY + ["--data-root", toy, "--seed", "1", "--drop-path", "0.1", "--grad-accum", "2"]
    resume_is_exact(common, tmp_path, steps=8, stop_at=4)


def test_resume_refuses_a_checkpoint_with_other_keys(toy, trained, tmp_path):
    out, _ = trained
    ckpt = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    del ckpt["student"]["blocks.0.ls1.gamma"]
    ckpt["student"]["blocks.99.x"] = torch.zeros(1)
    os.makedirs(tmp_path / "out")
    torch.save(ckpt, tmp_path / "out" / "last.pt")
    proc = main(TINY + ["--data-root", toy, "--out", str(tmp_path / "out"), "--max-steps", "3",
                        "--resume"], check=False)
    assert (proc.returncode == 1 and "blocks.0.ls1.gamma" in proc.stderr
            and "blocks.99.x" in proc.stderr)


def test_save_every_writes_last_inside_an_epoch(toy, tmp_path):
    """Killed (SIGKILL) at step 5 with --save-every 2: only what --save-every wrote is there, step
    4."""
    out = tmp_path / "out"
    proc = run(["--kill-at", "5", "--"] + TINY +
               ["--data-root", toy, "--out", str(out), "--save-every", "2"],
               script=PATCHED, check=False)
    assert proc.returncode == -signal.SIGKILL
    # mid-epoch (12 steps an epoch)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4


# -----------------------------------------------------------------------------------------------
# The stop protocol: a non-finite step is never applied, and nothing after the last good save is
# written


def recording_saves(monkeypatch):
    """[(name, step, returned, the file's bytes after the call)] of every Checkpoints.save."""
    saves, save = [], runtime.Checkpoints.save

    def recorded(self, name, loop, rng=None):
        ok = save(self, name, loop, rng)
        saves.append((name, loop["step"], ok, open(os.path.join(self.out, name), "rb").read()))
        return ok

    monkeypatch.setattr(runtime.Checkpoints, "save", recorded)
    return saves


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_a_nan_stops_the_run_at_its_step(toy, tmp_path, monkeypatch, where):
    """From the third step on, a NaN added to the loss (its gradients stay finite), or a NaN
    gradient of the student's head (its loss stays finite): the run stops at step 3 with exit code 1
    and last.pt stays, byte for byte, what the step-2 save wrote."""
    calls, forward = [], distill.Distiller.forward

    def faulty(self, x, y):
        calls.append(1)
        out = forward(self, x, y)
        if where == "loss" and len(calls) >= 3:
            out["loss"] = out["loss"] + torch.tensor(float("nan"))
        if where == "gradient" and len(calls) == 3:
            self.student.head.weight.register_hook(lambda g: torch.full_like(g, float("nan")))
        return out

    monkeypatch.setattr(distill.Distiller, "forward", faulty)
    saves = recording_saves(monkeypatch)
    out = tmp_path / "out"
    proc = main(TINY + ["--data-root", toy, "--out", str(out), "--save-every", "1"], check=False)
    assert proc.returncode == 1
    assert "STOP: the loss, a gradient or the weights are not finite at step 3 (" in proc.stdout
    assert [s[:3] for s in saves] == [("last.pt", 1, True), ("last.pt", 2, True)]
    assert (out / "last.pt").read_bytes() == saves[-1][3]


def test_weights_gone_non_finite_stop_before_anything_is_saved(toy, tmp_path):
    # one step an epoch; lr 1e30 makes the weights overflow at the first step
    out = tmp_path / "out"
    proc = main(TINY + ["--data-root", toy, "--out", str(out), "--batch-size", "24",
                        "--lr", "1e30", "--epochs", "3"],
                check=False)
    assert (proc.returncode == 1
            and "STOP: the loss, a gradient or the weights are not finite" in proc.stdout), (
        proc.stderr)
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def test_dataloader_workers_leave_signals_to_the_main_process(toy, tmp_path):
    """SIGTERM to the whole process group of a run with a worker (as a terminal or a scheduler sends
    it): the worker ignores it, the main process saves and exits 143, no worker dies with a
    traceback."""
    out, rec = tmp_path / "out", tmp_path / "rec"
    rec.mkdir()
    proc = run(["--signal-at", "3", "TERM", "--group", "--record", str(rec), "--"] + TINY +
               ["--data-root", toy, "--out", str(out), "--workers", "1"],
               script=PATCHED, check=False)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert f"SIGTERM: saved {out}/last.pt at step 2" in proc.stdout
    assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    # Whether a worker would have died of it is a race with the end of the step; what it does with
    # the signal is not: the worker (one, of the training loader) ignores SIGTERM and Ctrl-C.
    workers = next(r["workers"] for r in records(rec, 0) if "workers" in r)
    assert len(workers) == 1 and workers[0]["ignores"] == ["TERM", "INT"], workers


def test_a_nan_evaluation_never_locks_best(toy, tmp_path, monkeypatch):
    """Constant predictions (finite, so the run goes on) make the first evaluation's SRCC NaN:
    the second, finite one must become the best."""
    real, calls = train.predict_scores, []

    def constant_first(*args, **kwargs):
        scores = real(*args, **kwargs)
        calls.append(1)
        return {k: [50.0] * len(v) for k, v in scores.items()} if len(calls) == 1 else scores
    monkeypatch.setattr(train, "predict_scores", constant_first)
    # 2 epochs of 2
    main(TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--batch-size", "12"])
    ckpt = torch.load(tmp_path / "o" / "best.pt", weights_only=True)
    assert len(calls) == 2 and ckpt["step"] == 4
    assert (math.isnan(ckpt["history"][0]["student"]["srcc"])
            and ckpt["history"][1] == dict(step=4, **ckpt["best"]))


# -----------------------------------------------------------------------------------------------
# Optimisation: the lr rule, clipping


def test_lr_follows_the_effective_batch(toy, tmp_path):
    """The paper profile's lr is 1e-3 x effective batch / 256 in the optimizer itself: every group's
    initial lr (and the scheduler's base lr) is that times the group's layer-decay scale."""
    proc = main(TINY + ["--data", "csv", "--labels", listing(tmp_path / "list.csv", toy_rows(toy)),
                        "--split", "random", "--out", str(tmp_path / "o"), "--max-steps", "1",
                        "--grad-accum", "3", "--dtype", "fp32"])
    lr = 1e-3 * 2 * 3 / 256
    ckpt = torch.load(tmp_path / "o" / "last.pt", weights_only=True)
    assert ckpt["config"]["lr"] == lr and "(1e-3 x 2 x 3 x 1 / 256)" in proc.stdout.splitlines()[0]
    groups = ckpt["optimizer"]["param_groups"]
    # layer decay 0.75, depth 2
    assert {round(g["lr_scale"], 6) for g in groups} >= {1.0, 0.75, round(0.75 ** 3, 6)}
    for g in groups:
        assert g["initial_lr"] == pytest.approx(lr * g["lr_scale"], rel=1e-12), g["names"][:3]
    assert ckpt["scheduler"]["base_lrs"] == pytest.approx([lr * g["lr_scale"] for g in groups],
                                                          rel=1e-12)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_clip_grad_clips_each_model_after_unscaling(toy, tmp_path, monkeypatch, dtype):
    """--clip-grad 0.01: at every optimizer step each model's gradient norm is 0.01 (its raw norm,
    the backward's gradient over the loss scale, is larger). Clipping the models together would
    leave each below 0.01; with fp16 the loss is scaled, and clipping before unscaling would leave
    them ~1e-7."""
    parts, scalers, raw, at_step = [], [], [], []
    build_optimizer, scale, backward, step = (train.build_optimizer, torch.amp.GradScaler.scale,
                                              torch.Tensor.backward, torch.optim.AdamW.step)

    def norms():
        return [torch.linalg.vector_norm(torch.stack([q.grad.double().norm() for q in m.parameters()
                                                      if q.grad is not None])).item()
                for m in parts[0] if any(q.grad is not None for q in m.parameters())]

    def grab_parts(modules, *args, **kwargs):
        parts.append(modules)
        return build_optimizer(modules, *args, **kwargs)

    def grab_scaler(self, outputs):
        scalers.append(self)
        return scale(self, outputs)

    def after_backward(self, *args, **kwargs):
        backward(self, *args, **kwargs)
        s = scalers[-1].get_scale() if scalers[-1].is_enabled() else 1.0
        raw.append([n / s for n in norms()])

    def at_optimizer_step(self, *args, **kwargs):
        at_step.append(norms())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(train, "build_optimizer", grab_parts)
    monkeypatch.setattr(torch.amp.GradScaler, "scale", grab_scaler)
    monkeypatch.setattr(torch.Tensor, "backward", after_backward)
    monkeypatch.setattr(torch.optim.AdamW, "step", at_optimizer_step)
    main(TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--max-steps", "2",
                 "--clip-grad", "0.01", "--dtype", dtype])
    assert (scalers[-1].is_enabled() == (dtype == "fp16")
            and (dtype == "fp32" or scalers[-1].get_scale() > 1000))
    # student and teacher
    assert len(raw) == len(at_step) == 2 and all(len(n) == 2 for n in at_step)
    for before, after in zip(raw, at_step):
        assert min(before) > 0.05, before
        assert after == pytest.approx([0.01, 0.01], rel=0.01), (before, after)


# -----------------------------------------------------------------------------------------------
# Checkpoint files: official layouts, partial teachers


def official_file(path, cfg, wrap):
    """An official-layout file of a size at 8 x 224 with a 710-class head, random weights."""
    m = VideoViT(replace(cfg, num_outputs=710))
    sd = {("vision_encoder." if wrap else "") + k: v for k, v in m.state_dict().items()}
    if wrap:  # the stage-2 layout: nested under `module`, with decoder keys to drop
        sd = {"module": {**sd, "clip_decoder.0.weight": torch.zeros(3)}}
    torch.save(sd, path)
    return m.state_dict()


def test_official_files_as_teacher_and_student(toy, tmp_path):
    """Official files as both models; the teacher trains only its last block, pooling, fc_norm and
    head by default, and is saved as exactly those keys."""
    teacher = official_file(tmp_path / "1B_like.pt", CONFIGS["tiny"], wrap=True)
    student = official_file(tmp_path / "S14_ft_k710_f8.pth", CONFIGS["tiny"], wrap=False)
    out = tmp_path / "out"
    proc = main(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1", "--lr", "1e-12",
                        "--teacher-ckpt", str(tmp_path / "1B_like.pt"),
                        "--student-ckpt", str(tmp_path / "S14_ft_k710_f8.pth")])
    assert proc.stdout.count("left at init (trained from scratch): head.weight, head.bias") == 2
    assert ("resized pos_embed (1, 2049, 64) on a 8 x 16 x 16 grid -> (1, 9, 64)" in proc.stdout
            and "dropped 1 keys" in proc.stdout)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    mos = [float(r["mos"]) for r in toy_rows(toy, "train")]
    for key, original in (("student", student), ("teacher", teacher)):
        got = ckpt[key]
        # a fresh head starts at the mean
        assert abs(got["head.bias"].item() - sum(mos) / len(mos) / 100) < 1e-6
        torch.testing.assert_close(got["blocks.1.attn.qkv.weight"],
                                   original["blocks.1.attn.qkv.weight"])
    trains = {k for k in teacher
              if k.startswith(("blocks.1.", "clip_projector.", "fc_norm.", "head."))}
    assert ckpt["teacher_partial"] and set(ckpt["teacher"]) == trains
    # a teacher trained whole from the file is saved whole, and loads again
    alone = tmp_path / "alone"
    main(TINY + ["--data-root", toy, "--out", str(alone), "--max-steps", "1", "--student", "none",
                 "--teacher-ckpt", str(tmp_path / "1B_like.pt"), "--teacher-trainable", "all"])
    assert not torch.load(alone / "last.pt", weights_only=True)["teacher_partial"]
    load_weights(VideoViT(replace(CONFIGS["tiny"], num_frames=2, img_size=28)),
                 str(alone / "last.pt"), "teacher")


# -----------------------------------------------------------------------------------------------
# predict.py


def test_eval_only_and_predict(toy, trained):
    out, _ = trained
    best = os.path.join(out, "best.pt")
    proc = main(TINY + ["--data-root", toy, "--out", out + "-eval", "--eval-only",
                        "--student-ckpt", best, "--teacher", "none"])
    assert proc.stdout.strip().splitlines()[-1].startswith("best: student srcc=")
    with open(os.path.join(out, "predictions.csv")) as f:
        videos = [r["path"] for r in csv.DictReader(f)][:2]
    proc = run(["--ckpt", best, videos[0], "missing.mp4", videos[1], "--dtype", "fp32"],
               script="predict.py", check=False)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "path,score" and [line.split(",")[0] for line in lines[1:]] == videos
    assert all(0 <= float(line.split(",")[1]) <= 150 for line in lines[1:])
    assert "missing.mp4" in proc.stderr
    again = predict_here(["--ckpt", best, videos[0]])
    assert again.returncode == 0 and again.stdout.splitlines()[1] == lines[1]  # deterministic


def scores_of(stdout):
    rows = list(csv.DictReader(io.StringIO(stdout)))
    return {r["path"]: float(r["score"]) for r in rows}


def test_predict_reproduces_the_evaluation(trained, tmp_path):
    """predict.py on the run's checkpoint, its test videos given by --csv, scores what the
    evaluation wrote to predictions.csv (the student, and with --which teacher the teacher), with
    the saved clip geometry and number of test clips; --label-range maps the outputs to another
    scale."""
    out, _ = trained
    with open(os.path.join(out, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    videos = listing(tmp_path / "videos.csv", [dict(r, source="x") for r in rows])
    ckpt = os.path.join(out, "last.pt")
    student = predict_here(["--ckpt", ckpt, "--csv", videos])
    assert student.returncode == 0, student.stderr
    assert scores_of(student.stdout) == pytest.approx(
        {r["path"]: float(r["student"]) for r in rows}, rel=1e-6)
    teacher = predict_here(["--ckpt", ckpt, "--csv", videos, "--which", "teacher",
                            "--label-range", "10", "20"])
    assert teacher.returncode == 0, teacher.stderr
    # the toy labels' range: 0..100
    want = {r["path"]: 10 + 10 * float(r["teacher"]) / 100 for r in rows}
    assert scores_of(teacher.stdout) == pytest.approx(want, rel=1e-6)


def test_a_fastvqa_student_trains_resumes_and_predicts(toy, tmp_path):
    """train.py --student fastvqa beside a teacher: two views (the teacher's clips, FAST-VQA's
    fragments of the same moment); a resumed run ends with the uninterrupted run's weights, and
    predict.py scores the checkpoint on FAST-VQA's own view as its evaluation did."""
    resume_is_exact(TINY + FASTVQA + ["--data-root", toy, "--epochs", "1"], tmp_path, steps=4,
                    stop_at=2)
    with open(tmp_path / "a" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    proc = predict_here(["--ckpt", str(tmp_path / "a" / "last.pt"), *(r["path"] for r in rows)])
    assert proc.returncode == 0, proc.stderr
    assert scores_of(proc.stdout) == pytest.approx({r["path"]: float(r["student"]) for r in rows},
                                                   rel=1e-6)


def test_checkpoints_of_the_other_family_are_one_line_errors(toy, tmp_path):
    torch.manual_seed(0)
    from fastvqa import FASTVQA_CONFIGS, FastVQA
    sd = FastVQA(FASTVQA_CONFIGS["b"]).state_dict()
    torch.save({"state_dict": {f"fragments_backbone.{k}" if not k.startswith("vqa_head.") else k:
                               v for k, v in ((k.removeprefix("fragments_backbone."), v)
                                              for k, v in sd.items())}}, tmp_path / "fast.pth")
    torch.save(VideoViT(CONFIGS["tiny"]).state_dict(), tmp_path / "vit.pth")
    base = TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--teacher", "none"]
    for argv, says in ((["--student-ckpt", str(tmp_path / "fast.pth")],
                        "fast.pth: is a FAST-VQA checkpoint, not an InternVideo2 one"),
                       (FASTVQA + ["--student-ckpt", str(tmp_path / "vit.pth")],
                        "vit.pth: ")):
        proc = main(base + argv, check=False)
        assert proc.returncode == 1 and says in proc.stderr and "Traceback" not in proc.stderr, \
            proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_predict_scores_an_official_fastvqa_file_raw_and_on_its_scale(toy, tmp_path):
    """An official FAST-VQA-B file: FAST-VQA's own test clips (4 clips of 32 frames at stride 2,
    7 x 7 native fragments of 32 px), its raw score and the official 0..1 mapping, by hand."""
    from fastvqa import FASTVQA_CONFIGS, FastVQA
    torch.manual_seed(0)
    model = FastVQA(FASTVQA_CONFIGS["b"]).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "FAST_VQA_B_1_4.pth")
    args = argparse.Namespace(frames=None, size=None, trust_ckpt=False, ckpt_frames=None,
                              fastvqa_scale=None)
    *_, geometry, _, official = predict.load_model(str(tmp_path / "FAST_VQA_B_1_4.pth"),
                                                   "student", args)
    assert official == "FAST-VQA" and geometry == dict(frames=32, size=224, stride=2, clips=4,
                                                       fragments=7, resize=False)
    video = toy_rows(toy, "test")[0]["path"]
    proc = predict_here(["--ckpt", str(tmp_path / "FAST_VQA_B_1_4.pth"), "--frames", "4",
                         "--size", "64", "--clips", "2", video])  # a small view of the same kind
    assert proc.returncode == 0, proc.stderr
    (row,) = csv.DictReader(io.StringIO(proc.stdout))
    clips = data.VideoDataset([dict(path=video, mos=0.0)], train=False, frames=4, size=64,
                              stride=2, clips=2, fragments=2, resize=False)[0][0]
    with torch.no_grad():
        raw = model(data.normalise(clips)).mean().item()
    assert float(row["raw"]) == pytest.approx(raw, rel=1e-6)
    assert float(row["quality_0_1"]) == pytest.approx(
        1 / (1 + math.exp(-(raw + 0.110198185) / 0.04178565)), rel=1e-6)
    assert "sigmoid((raw + 0.110198) / 0.0417857)" in proc.stderr


def test_predict_loads_official_files_through_the_one_loading_path(toy, tmp_path):
    video = toy_rows(toy, "test")[0]["path"]
    regressor = VideoViT(CONFIGS["tiny"]).state_dict()  # 8 x 224, a 1-output head
    torch.save({"module": {f"backbone.{k}": v for k, v in regressor.items()}}, tmp_path / "reg.pth")
    proc = predict_here(["--ckpt", str(tmp_path / "reg.pth"), "--frames", "2", "--size", "28",
                         video])
    assert proc.returncode == 0 and proc.stdout.splitlines()[1].startswith(f"{video},")
    torch.save(VideoViT(replace(CONFIGS["tiny"], num_outputs=710)).state_dict(),
               tmp_path / "k710.pth")
    proc = predict_here(["--ckpt", str(tmp_path / "k710.pth"), video])
    assert proc.returncode == 1 and "backbone, not a quality model" in proc.stderr
    del regressor["blocks.1.norm2.weight"]
    torch.save(regressor, tmp_path / "broken.pth")
    proc = predict_here(["--ckpt", str(tmp_path / "broken.pth"), video])
    assert (proc.returncode == 1 and "missing: blocks.1.norm2.weight" in proc.stderr
            and "broken.pth" in proc.stderr)


def test_predict_never_guesses_the_grid_of_a_bare_position_table(toy, tmp_path):
    """A bare regressor state dict of 2 frames at 84 px: its 72 patch rows read as 2 x 6 x 6 or
    8 x 3 x 3. predict.py refuses it naming --ckpt-frames; with --ckpt-frames 2 it scores what a
    model with the table resized by hand (2 x 6 x 6 -> 2 x 2 x 2: bicubic per frame) scores."""
    video = toy_rows(toy, "test")[0]["path"]
    torch.manual_seed(0)
    source = VideoViT(replace(CONFIGS["tiny"], num_frames=2, img_size=84))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    sd = source.state_dict()
    torch.save(sd, tmp_path / "bare.pth")
    args = ["--ckpt", str(tmp_path / "bare.pth"), "--frames", "2", "--size", "28", video]
    refused = predict_here(args)
    assert (refused.returncode == 1 and "--ckpt-frames" in refused.stderr
            and "2 x 6 x 6" in refused.stderr)
    proc = predict_here(args + ["--ckpt-frames", "2"])
    assert proc.returncode == 0, proc.stderr
    target = VideoViT(replace(CONFIGS["tiny"], num_frames=2, img_size=28)).eval()
    grid = sd["pos_embed"][0, 1:].reshape(2, 6, 6, 64).permute(0, 3, 1, 2)  # (frames, D, 6, 6)
    table = F.interpolate(grid, size=(2, 2), mode="bicubic",
                          align_corners=False).permute(0, 2, 3, 1).reshape(1, 8, 64)
    target.load_state_dict(dict(sd, pos_embed=torch.cat([sd["pos_embed"][:, :1], table], 1)))
    # the authors' test clips at 2 x 28 (predict.AUTHORS)
    clips = data.VideoDataset([dict(path=video, mos=0.0)], train=False, frames=2, size=28, stride=4,
                              clips=4, label_range=(0, 1))[0][0]
    with torch.no_grad():
        want = target(data.normalise(clips)).mean().item()
    assert scores_of(proc.stdout)[video] == pytest.approx(want, rel=1e-6)


def test_train_reads_a_bare_position_table_by_its_ckpt_frames(toy, tmp_path):
    """train.py --student-ckpt with a bare table of 72 patch rows (2 x 6 x 6 or 8 x 3 x 3): refused
    naming --ckpt-frames; with --ckpt-frames 2 it is read as 2 x 6 x 6 and resized to the run's
    8 x 3 x 3 (linear in time, then bicubic per frame), which the saved student holds after a step
    at lr 0 (reading it as the run's 8 frames would load it unresized)."""
    torch.manual_seed(0)
    sd = VideoViT(replace(CONFIGS["tiny"], num_frames=2, img_size=84)).state_dict()
    sd["pos_embed"] = torch.randn_like(sd["pos_embed"])
    torch.save(sd, tmp_path / "bare.pth")
    args = TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--teacher", "none",
                   "--student-ckpt", str(tmp_path / "bare.pth"), "--frames", "8", "--size", "42",
                   "--max-steps", "1", "--lr", "0", "--dtype", "fp32"]
    refused = main(args, check=False)
    assert refused.returncode == 1 and "--ckpt-frames" in refused.stderr, refused.stderr
    main(args + ["--ckpt-frames", "2"])
    grid = sd["pos_embed"][0, 1:].reshape(2, 36, 64).permute(1, 2, 0)  # (36, D, frames)
    grid = F.interpolate(grid, size=8, mode="linear", align_corners=False)  # (36, D, 8)
    grid = grid.permute(2, 1, 0).reshape(8, 64, 6, 6)
    table = F.interpolate(grid, size=(3, 3), mode="bicubic", align_corners=False)
    table = table.permute(0, 2, 3, 1).reshape(1, 72, 64)
    want = torch.cat([sd["pos_embed"][:, :1], table], 1)
    torch.testing.assert_close(state(tmp_path / "o" / "last.pt")["pos_embed"], want)


# -----------------------------------------------------------------------------------------------
# torchrun: 2 CPU processes


@pytest.fixture(scope="module")
def ddp_run(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "out"
    proc = run(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "2"],
               script=torchrun(2))
    return out, proc.stdout


def test_torchrun_two_cpu_processes(toy, ddp_run, tmp_path):
    """Two processes of 2 clips take the same optimizer steps as one process of 4 (the same clips:
    rank r takes order[r::2]), and every test video is scored exactly once."""
    ddp, stdout = ddp_run
    assert stdout.strip().splitlines()[-1].startswith("best: student srcc=") and "x2" in stdout
    one = tmp_path / "one"
    main(TINY + ["--data-root", toy, "--out", str(one), "--max-steps", "2", "--batch-size", "4"])
    a, b = state(ddp / "last.pt"), state(one / "last.pt")
    close = sum((torch.isclose(a[k], b[k], rtol=1e-4, atol=1e-6)).sum().item() for k in a)
    # Adam's first steps flip only near-zero grads
    assert close / sum(v.numel() for v in a.values()) > 0.99
    with open(ddp / "predictions.csv") as f:
        assert (sorted(r["path"] for r in csv.DictReader(f))
                == sorted(r["path"] for r in toy_rows(toy, "test")))


def test_resume_refuses_another_process_count(toy, ddp_run):
    ddp, _ = ddp_run
    before = (ddp / "last.pt").read_bytes()
    proc = main(TINY + ["--data-root", toy, "--out", str(ddp), "--max-steps", "3", "--resume"],
                check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("--resume with other settings than the saved run would not "
                                   "continue it: processes 2 -> 1")
    assert (ddp / "last.pt").read_bytes() == before


def test_ddp_with_a_loss_term_switched_off(toy, tmp_path):
    proc = run(TINY + ["--data-root", toy, "--out", str(tmp_path / "ddp"), "--max-steps", "1",
                       "--w-student", "0"],
               script=torchrun(2))
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["step"] == 1, proc.stdout


def records(folder, rank):
    with open(os.path.join(folder, f"rank{rank}.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_sigterm_to_one_rank_stops_every_rank_and_rank0_saves(toy, tmp_path):
    """SIGTERM reaches rank 1 alone, during step 3: both ranks stop there (one all_reduce), none
    hangs in a collective, and rank 0 saves step 2."""
    out, rec = tmp_path / "out", tmp_path / "rec"
    rec.mkdir()
    proc = run(["--rank", "1", "--signal-at", "3", "TERM", "--record", str(rec), "--"] + TINY +
               ["--data-root", toy, "--out", str(out)], script=torchrun(2, PATCHED), check=False,
               timeout=120)
    assert proc.returncode != 0  # the ranks exit 143
    for rank in (0, 1):
        assert [r["code"] for r in records(rec, rank) if "check" in r] == [0, 0, 1], rank
    assert f"SIGTERM: saved {out}/last.pt at step 2; continue with --resume" in proc.stdout
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2


def test_a_nan_on_one_process_stops_every_process(toy, tmp_path):
    """A NaN loss on rank 1 alone from step 3 on, --save-every 1: every rank stops at step 3, and
    last.pt is what the step-2 save wrote; no save after it."""
    out, rec = tmp_path / "out", tmp_path / "rec"
    rec.mkdir()
    proc = run(["--rank", "1", "--nan-loss-from", "3", "--record", str(rec), "--"] + TINY +
               ["--data-root", toy, "--out", str(out), "--save-every", "1"],
               script=torchrun(2, PATCHED), check=False, timeout=120)
    assert proc.returncode != 0  # the ranks exit 1
    assert "STOP: the loss, a gradient or the weights are not finite at step 3 (" in proc.stdout
    for rank in (0, 1):
        got = records(rec, rank)
        assert [r["code"] for r in got if "check" in r] == [0, 0, 3], rank
        assert [(r["save"], r["step"], r["ok"]) for r in got if "save" in r] == [
            ("last.pt", 1, True), ("last.pt", 2, True)]
    assert (hashlib.sha256((out / "last.pt").read_bytes()).hexdigest()
            == records(rec, 0)[-2]["sha256"])


@pytest.fixture(scope="module")
def fastvqa_ddp(toy, tmp_path_factory):
    """FAST-VQA (its own view of each clip) distilled under 2 processes, with every rank's models
    dumped at every save and as every evaluation starts: saves at step 2 (--save-every), then at
    step 3 best.pt and last.pt."""
    root = tmp_path_factory.mktemp("fastvqa")
    dumps = root / "dumps"
    dumps.mkdir()
    run(["--dump-on-save", str(dumps), "--dump-on-eval", str(dumps), "--"] + TINY + FASTVQA +
        ["--data-root", toy, "--out", str(root / "out"), "--max-steps", "3", "--save-every", "2"],
        script=torchrun(2, PATCHED), timeout=180)
    return dumps, root / "out"


def differing(dumps, name):
    a, b = (torch.load(dumps / f"rank{r}-{name}.pt", weights_only=True) for r in (0, 1))
    assert a.keys() == b.keys() and {"student", "teacher"} <= a.keys()
    return [f"{m}.{k}" for m in a for k in a[m] if not torch.equal(a[m][k], b[m][k])]


def test_fastvqa_under_ddp_is_one_model_on_every_rank(fastvqa_ddp):
    """Every save and evaluation sees the same weights on both ranks, and last.pt holds the
    student under FAST-VQA's official names (tests/fixtures/fastvqa_official.json)."""
    dumps, out = fastvqa_ddp
    assert sorted(p.name for p in dumps.iterdir()) == [
        f"rank{r}-{n}.pt" for r in (0, 1) for n in ("1", "2", "3", "eval1")]
    for dump in ("1", "2", "3", "eval1"):
        assert differing(dumps, dump) == [], dump
    with open(os.path.join(ROOT, "tests", "fixtures", "fastvqa_official.json")) as f:
        official = json.load(f)["official_keys"]["b"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert {k: list(v.shape) for k, v in ckpt["student"].items()} == official
    assert ckpt["step"] == 3 and ckpt["student_config"]["depths"] == (2, 2, 6, 2)


# -----------------------------------------------------------------------------------------------
# One-line errors


def test_a_fastvqa_view_its_window_cannot_fit_is_a_one_line_error(capsys):
    for view in (["--fastvqa-frames", "2"], ["--fastvqa-size", "48"], ["--fastvqa-frames", "5"]):
        with pytest.raises(SystemExit) as stop:
            train.parse_args(FASTVQA + view + ["--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(err) == 1 and "must be a multiple of 32" in err[0]


def test_missing_dataset_flags_are_one_line_errors(capsys):
    for args, flags in ((["--data", "bvihd"], "--data-root, --labels, --yuv-fps, --yuv-bit-depth"),
                        (["--data", "bvihd", "--data-root", "x", "--labels", "y"],
                         "--yuv-fps, --yuv-bit-depth"),
                        (["--data", "waterloo4k"], "--data-root"), (["--data", "csv"], "--labels")):
        with pytest.raises(SystemExit) as stop:
            train.parse_args(args + ["--device", "cpu"])
        assert stop.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"train.py: error: --data {args[1]} needs {flags}"]


def test_unlabeled_batch_options_without_unlabeled_videos_are_one_line_errors(capsys):
    for extra, flags in ((["--unlabeled-batch-size", "8"], "--unlabeled-batch-size"),
                         (["--w-unlabeled", "0.5"], "--w-unlabeled"),
                         (["--w-unlabeled=2", "--unlabeled-batch-size", "4"],
                          "--unlabeled-batch-size and --w-unlabeled")):
        with pytest.raises(SystemExit) as stop:
            train.parse_args(TINY + extra)
        assert stop.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"train.py: error: {flags} set the unlabeled batch: they need --unlabeled or "
            f"--labelled-sources"]
    for extra in (["--labelled-sources", "2"], ["--unlabeled", "x.csv"]):  # with them: accepted
        args, _ = train.parse_args(TINY + extra + ["--unlabeled-batch-size", "8"])
        assert args.unlabeled_batch_size == 8


def test_the_frozen_teacher_runs_in_bf16_where_the_run_does(monkeypatch, capsys):
    """A GPU: the paper profile's bf16, the quick profile's fp32. A CPU trains in fp32 whatever
    its bf16 speed (runtime.default_dtype, faked here both ways, is predict.py's rule); the frozen
    teacher blocks follow the run's dtype unless --teacher-dtype says."""
    paper = ["--data", "csv", "--labels", "x.csv", "--split", "random"]
    for argv, message in ((paper, "the paper profile needs a GPU"),
                          (["--device", "cuda"], "--device cuda: ")):
        # no usable CUDA here: one line, not a 1B teacher on the CPU
        with pytest.raises(SystemExit) as stop:
            train.parse_args(argv)
        assert (stop.value.code == 2
                and capsys.readouterr().err.startswith(f"train.py: error: {message}"))
    assert train.parse_args(paper + ["--device", "cpu"])[0].device == "cpu"  # asked for explicitly
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.parse_args(paper)[0].device == "cuda"
    assert train.parse_args(paper + ["--device", "cuda"])[0].teacher_dtype == "bf16"
    for rule in ("fp32", "bf16"):
        monkeypatch.setattr(runtime, "default_dtype", lambda device: (rule, "a fixture"))
        args = train.parse_args(paper + ["--device", "cpu"])[0]
        assert (args.dtype, args.teacher_dtype) == ("fp32", "fp32")
        assert args.dtype_reason.startswith("a CPU trains in fp32")
    args = train.parse_args(paper + ["--device", "cpu", "--dtype", "bf16"])[0]
    assert (args.dtype, args.teacher_dtype) == ("bf16", "bf16")
    assert train.parse_args(paper + ["--device", "cpu", "--dtype", "fp16"])[0].teacher_dtype \
        == "fp32"
    assert train.parse_args(paper + ["--device", "cpu",
                                     "--teacher-dtype", "bf16"])[0].teacher_dtype == "bf16"
    assert train.parse_args(["--device", "cuda"])[0].teacher_dtype == "fp32"  # the quick profile


def test_bad_label_files_and_videos_are_errors_naming_the_file(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (tmp_path / "list.csv").write_text("path,mos,source\nbroken.mp4,50,a\ngone.mp4,40,b\n")
    args = ["--data", "csv", "--labels", str(tmp_path / "list.csv"), "--split", "random",
            "--device", "cpu", "--out", str(tmp_path)]
    proc = main(args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (proc.stderr.startswith("train.py: ") and "list.csv, line 3" in proc.stderr
            and "gone.mp4" in proc.stderr)
    (tmp_path / "list.csv").write_text("path,mos,source\n" +
                                       "".join(f"broken.mp4,{i},s{i}\n" for i in range(1)) +
                                       "".join(f"x{i}.mp4,{i},s{i}\n" for i in range(1, 9)))
    for i in range(1, 9):
        (tmp_path / f"x{i}.mp4").write_bytes(b"")
    proc = main(args + ["--test-fraction", "0.5"], check=False)
    assert (proc.returncode == 1 and "Traceback" not in proc.stderr
            and "cannot be read" in proc.stderr)
    assert "broken.mp4" in proc.stderr and "x1.mp4: empty file" in proc.stderr


def test_a_batch_larger_than_the_training_set_is_an_error(toy, tmp_path):
    proc = main(TINY + ["--data-root", toy, "--out", str(tmp_path), "--batch-size", "8",
                        "--grad-accum", "4"],
                check=False)
    assert (proc.returncode == 1
            and "24 training videos do not fill one optimizer step of 32 clips" in proc.stderr)

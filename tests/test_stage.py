"""Tests of the quick start's teacher stage (train.py --pretrain): the paper in miniature at tiny
scale, end to end; the stage is built once and reused, rebuilt when an input changes, and an
interrupted or failed stage leaves nothing behind. Children are unbuffered, time-limited and
killed with their whole process group.

    python -m pytest -q tests/test_stage.py
"""
import os
import signal
import subprocess
import sys

import pytest
import torch

import config
import datasets
import toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--student", "tiny", "--teacher", "tiny", "--toy-variant", "tiny", "--frames", "2",
        "--size", "28", "--stride", "1", "--test-clips", "1", "--batch-size", "2", "--workers", "0",
        "--log-every", "4", "--epochs", "1", "--pretrain", "3", "--dtype", "fp32"]


def start(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(args, cwd, timeout=240):
    proc = start(args, cwd)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill(proc)
    return proc.returncode, out


def teachers(data):
    return sorted(p for p in os.listdir(data) if p.startswith("teacher-"))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The tiny quick start, run once: toy set, corpus, teacher stage, distillation."""
    cwd = tmp_path_factory.mktemp("quick")
    code, out = run(TINY + ["--data-root", str(cwd / "data" / "toy"), "--out", str(cwd / "out")],
                    cwd)
    assert code == 0, out[-3000:]
    return cwd, out


def test_the_paper_in_miniature_end_to_end(quick):
    cwd, out = quick
    data = cwd / "data"
    assert (len(teachers(data)) == 1
            and set(os.listdir(data)) == {"corpus-3", "toy", teachers(data)[0]})
    stage = [line for line in out.splitlines() if line.startswith("  teacher stage | ")]
    assert any(" --student none " in line for line in out.splitlines()
               if line.startswith("teacher stage: python"))
    assert any("eval after epoch 1" in line for line in stage), (
        "the stage scores the toy set's test videos")
    teacher = data / teachers(data)[0] / "last.pt"
    # the student meets a trained teacher
    assert f"teacher: {teacher}" in out and "NO CHECKPOINT" not in out
    stage_ckpt = torch.load(teacher, weights_only=True)
    assert ("student" not in stage_ckpt
            and stage_ckpt["config"]["labels"].endswith("corpus-3/corpus.csv"))
    run_ckpt = torch.load(cwd / "out" / "last.pt", weights_only=True)
    assert run_ckpt["config"]["teacher_ckpt"] == str(teacher) and run_ckpt["teacher_partial"]
    # the frozen prefix is the stage's, exactly; what trained beside the student is saved
    assert set(run_ckpt["teacher"]) == {
        k for k in stage_ckpt["teacher"]
        if k.startswith(("blocks.1.", "clip_projector.", "fc_norm.", "head."))}
    assert out.strip().splitlines()[-1].startswith("best: student srcc=")


def test_a_second_run_reuses_the_stage_and_a_change_rebuilds_it(quick):
    cwd, _ = quick
    data = cwd / "data"
    (only,) = teachers(data)
    made = os.stat(data / only / "last.pt").st_mtime_ns
    args = TINY + ["--data-root", str(data / "toy"), "--max-steps", "1"]
    code, out = run(args + ["--out", str(cwd / "again")], cwd)
    assert code == 0 and "teacher stage: python" not in out, out[-3000:]
    assert teachers(data) == [only] and os.stat(data / only / "last.pt").st_mtime_ns == made
    code, out = run(args + ["--out", str(cwd / "other"), "--seed", "1"], cwd)  # another input
    assert code == 0 and "teacher stage: python" in out, out[-3000:]
    assert len(teachers(data)) == 2 and os.stat(data / only / "last.pt").st_mtime_ns == made


def test_a_corpus_changed_under_the_same_name_trains_another_teacher(quick, monkeypatch):
    """The stage's key holds the corpus's own marker: a corpus rebuilt in the same folder with other
    contents (here: a change to the families that draw them) must not reuse the old teacher."""
    cwd, _ = quick
    data = cwd / "data"
    args, _ = config.parse_args(TINY + ["--data-root", str(data / "toy"), "--device", "cpu"])
    test_items = [it for it in datasets.load_csv(data / "toy" / "toy.csv") if it["split"] == "test"]
    quiet, before = (lambda *_: None), teachers(data)
    first = toy.pretrained_teacher(args, test_items, log=quiet)  # the fixture's run trained it
    assert teachers(data) == before and os.path.basename(os.path.dirname(first)) in before
    marker = (data / "corpus-3" / toy.MARKER).read_text()
    draw = toy.draw_contents
    monkeypatch.setattr(toy, "draw_contents", lambda n, seed=0: draw(n, seed + 1))
    second = toy.pretrained_teacher(args, test_items, log=quiet)
    assert (data / "corpus-3" / toy.MARKER).read_text() != marker  # rebuilt under the same name
    assert second != first and os.path.exists(second) and len(teachers(data)) == len(before) + 1


def test_an_interrupted_stage_leaves_nothing(tmp_path):
    data = tmp_path / "data"
    toy.make_toy_dataset(data / "toy", tiny=True, log=None)
    proc = start(TINY + ["--data-root", str(data / "toy"), "--out", str(tmp_path / "out"),
                         "--pretrain", "4"],
                 tmp_path)
    try:
        for line in proc.stdout:  # the stage has started: its folder is being written
            if line.startswith("  teacher stage | "):
                break
        else:
            raise AssertionError("the stage never started")
        # the run only, as a scheduler would; the stage must stop too
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        kill(proc)
    assert proc.returncode == 143
    assert not teachers(data) and not [p for p in os.listdir(data) if ".building" in p]
    assert set(os.listdir(data)) == {"corpus-4", "toy"}


def test_a_failing_stage_is_one_error_and_leaves_nothing(tmp_path):
    data = tmp_path / "data"
    toy.make_toy_dataset(data / "toy", tiny=True, log=None)
    # LayerScale NaN: the stage's loss is not finite at its first step, so its train.py stops with 1
    bad = TINY + ["--data-root", str(data / "toy"), "--out", str(tmp_path / "out"),
                  "--init-values", "nan"]
    code, out = run(bad, tmp_path, timeout=120)
    assert (code == 1 and "the teacher stage failed" in out
            and "Traceback" not in out.split("teacher stage failed")[1])
    assert not teachers(data) and not [p for p in os.listdir(data) if ".building" in p]

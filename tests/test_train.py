"""Smoke tests of train.py and predict.py: two steps of every path at tiny sizes on the tiny toy
set (toy, csv, resume, eval-only, torchrun with 2 CPU processes, predict), exact resumption,
and the NaN and SIGTERM stops.

    python -m pytest -q tests/test_train.py
"""
import csv
import os
import signal
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--student", "small", "--teacher", "small", "--toy-variant", "tiny", "--frames", "2", "--size", "28",
        "--stride", "1", "--test-clips", "2", "--batch-size", "2", "--workers", "0", "--log-every", "1",
        "--epochs", "2"]


def run(args, script="train.py", check=True, timeout=180, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, script] if isinstance(script, str) else script
    proc = subprocess.run(cmd + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return str(root / "toy")


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "out")
    proc = run(TINY + ["--data-root", toy, "--out", out, "--max-steps", "2"])
    return out, proc.stdout


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
    assert all(os.path.exists(r["path"]) and float(r["student"]) == float(r["student"]) for r in rows)
    ckpt = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert ckpt["step"] == 2 and {"student", "teacher", "optimizer", "scheduler", "config", "rng"} <= set(ckpt)


def test_csv_data_and_student_alone(toy, trained, tmp_path):
    with open(os.path.join(toy, "toy.csv")) as f:
        rows = list(csv.DictReader(f))
    listing = tmp_path / "list.csv"
    with open(listing, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "mos", "source"])
        for r in rows:
            w.writerow([os.path.join(toy, r["path"]), r["mos"], r["source"]])
    proc = run(TINY + ["--data", "csv", "--labels", str(listing), "--split", "random", "--teacher", "none",
                       "--out", str(tmp_path / "out"), "--max-steps", "2"])
    assert proc.stdout.strip().splitlines()[-1].endswith("teacher n/a")
    assert "profile: paper" in proc.stdout


def state(path, key="student"):
    return torch.load(path, weights_only=True)[key]


def test_resume_ends_with_the_same_weights(toy, tmp_path):
    common = TINY + ["--data-root", toy, "--seed", "3", "--drop-path", "0.2"]
    run(common + ["--out", str(tmp_path / "a"), "--max-steps", "4"])
    run(common + ["--out", str(tmp_path / "b"), "--max-steps", "2"])
    proc = run(common + ["--out", str(tmp_path / "b"), "--max-steps", "4", "--resume"])
    assert "resumed from" in proc.stdout
    a, b = state(tmp_path / "a" / "last.pt"), state(tmp_path / "b" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ta, tb = state(tmp_path / "a" / "last.pt", "teacher"), state(tmp_path / "b" / "last.pt", "teacher")
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    bad = run(common + ["--out", str(tmp_path / "b"), "--lr", "0.5", "--resume"], check=False)
    assert bad.returncode != 0 and "--lr" in bad.stderr


def test_eval_only_and_predict(toy, trained):
    out, _ = trained
    best = os.path.join(out, "best.pt")
    proc = run(TINY + ["--data-root", toy, "--out", out + "-eval", "--eval-only", "--student-ckpt", best,
                       "--teacher", "none"])
    assert proc.stdout.strip().splitlines()[-1].startswith("best: student srcc=")
    with open(os.path.join(out, "predictions.csv")) as f:
        videos = [r["path"] for r in csv.DictReader(f)][:2]
    proc = run(["--ckpt", best, videos[0], "missing.mp4", videos[1]], script="predict.py", check=False)
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "path,score" and [line.split(",")[0] for line in lines[1:]] == videos
    assert all(0 <= float(line.split(",")[1]) <= 150 for line in lines[1:])
    assert "missing.mp4" in proc.stderr
    again = run(["--ckpt", best, videos[0]], script="predict.py")
    assert again.stdout.splitlines()[1] == lines[1]  # deterministic


def test_torchrun_two_cpu_processes(toy, tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    proc = run(TINY + ["--data-root", toy, "--out", str(tmp_path / "ddp"), "--max-steps", "2"] + ["--workers", "0"],
               script=launcher + ["train.py"])
    assert proc.stdout.strip().splitlines()[-1].startswith("best: student srcc=")
    assert "x2" in proc.stdout


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(toy, trained, tmp_path):
    out = tmp_path / "out"
    run(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1"])
    before = (out / "last.pt").read_bytes()
    proc = run(TINY + ["--data-root", toy, "--out", str(out), "--lr", "1e30", "--epochs", "50"], check=False)
    assert proc.returncode == 1 and "STOP: the loss is" in proc.stdout
    assert (out / "last.pt").read_bytes() == before


def test_sigterm_saves_and_resume_finishes(toy, tmp_path):
    out = tmp_path / "out"
    args = TINY + ["--data-root", toy, "--out", str(out), "--epochs", "200"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "train.py"] + args, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if line.startswith("epoch 1/200 step 3/"):
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 143
    assert "SIGTERM: saved" in rest
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert step >= 3
    proc = run(args + ["--resume", "--max-steps", str(step + 1)])
    assert f"resumed from {out}/last.pt at step {step}" in proc.stdout


def test_compare_runs_teacher_first_and_reuses_finished_runs(toy, trained, tmp_path):
    out = tmp_path / "compare"
    small = ["--toy-variant", "tiny", "--frames", "2", "--size", "28", "--stride", "1", "--test-clips", "1",
             "--batch-size", "2", "--workers", "0", "--max-steps", "1"]
    args = ["--rows", "conv+KD", "--seeds", "0", "--jobs", "1", "--out", str(out), "--data-root", toy, "--extra", *small]
    first = run(args, script="compare.py", timeout=300)
    launched = [line.split("]")[1].split(":")[0].strip() for line in first.stdout.splitlines() if line.startswith("[")]
    assert launched == ["teacher-s0", "conv+KD-s0", "teacher_on_VVC-s0", "conv+KD_on_VVC-s0"]
    assert f"teacher: {out}/teacher-s0/last.pt" in (out / "conv+KD-s0" / "log.txt").read_text()
    table = (out / "results.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:6]] == [
        "teacher", "teacher on VVC", "conv+KD", "conv+KD on VVC"]
    last_eval = [line for line in (out / "conv+KD-s0" / "log.txt").read_text().splitlines()
                 if line.strip().startswith("student ")][-1]
    srcc = float(last_eval.split("SRCC")[1].split()[0])
    assert table.splitlines()[4].split("|")[2].strip().startswith(f"{srcc:.3f}")  # the run's own final eval
    second = run(args, script="compare.py")
    assert not [line for line in second.stdout.splitlines() if line.startswith("[")]  # nothing ran again
    assert second.stdout.splitlines()[:6] == first.stdout.splitlines()[4:10]

"""bench.py end to end at tiny sizes: the one-shot GPU check's code paths on the CPU (--gpu --smoke)
and the clip-loader section (--sections 4 --smoke), both as subprocesses with timeouts, run side
by side (each spends part of its time waiting on ffmpeg or train.py). The speed figures are not
checked, a shared 2-core machine is too noisy for that; that every step runs and prints its
figures, and the exactness checks, are. Plus the guard of the GPU check and the atomic video maker.

    python -m pytest -q tests/test_bench.py
"""
import argparse
import csv
import os
import re
import subprocess
import sys

import pytest

import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = {"gpu": ["--gpu", "--smoke"], "loader": ["--sections", "4", "--smoke"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: (exit code, stdout + stderr, cache folder)} of the RUNS, started together."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    caches = {name: str(tmp_path_factory.mktemp(name)) for name in RUNS}
    procs = {name: subprocess.Popen([sys.executable, "bench.py", *args, "--cache", caches[name]], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, args in RUNS.items()}
    results = {}
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0] + "\n(killed at the test's timeout)"
        results[name] = (proc.returncode, out, caches[name])
    return results


def line(out, start):
    """The one output line that starts with `start`."""
    found = [s for s in out.splitlines() if s.startswith(start)]
    assert len(found) == 1, f"{len(found)} lines start with {start!r} in:\n{out[-3000:]}"
    return found[0]


def test_gpu_check_model_steps(runs):
    code, out, _ = runs["gpu"]
    assert out.startswith("GPU check (--smoke: tiny sizes on the CPU): ") and " torch " in out.splitlines()[0]
    assert "a. distill step FAILED" not in out and "b. fp32 vs bf16 FAILED" not in out, out[-3000:]
    assert re.search(r"[\d.]+ clips/s \(\d+ ms a step, 1 steps\); peak memory n/a on a CPU; ~[\d.]+ TFLOP/s = \d+% "
                     r"of bf16 matmul$", line(out, "student tiny "))
    rel = {}
    for pair in ("fp32 vs fp64", "bf16 autocast vs fp32", "bf16 weights vs fp32"):
        m = re.search(r"features max \|diff\| (\S+), relative (\S+); scores max \|diff\| (\S+), relative (\S+)$",
                      line(out, pair + " "))
        assert m, line(out, pair)
        rel[pair] = float(m[2])
    assert rel["fp32 vs fp64"] < 1e-5 and 1e-4 < rel["bf16 autocast vs fp32"] < 3e-2  # bf16 keeps 8 bits
    assert re.search(r"^GPU check took \d+ s; ", out, re.M)


def test_gpu_check_train_run(runs):
    code, out, cache = runs["gpu"]
    if line(out, "train.py ").endswith("skipped: its --help has no --cache yet"):
        pytest.skip("train.py has no --cache yet: bench.py --gpu skips its train.py run")
    assert code == 0 and out.rstrip().endswith("every step ran"), out[-3000:]
    assert re.search(r"finished in \d+ s; 2 log lines", line(out, "train.py "))
    assert re.search(r"^[\d.]+ [\d.]+; mean [\d.]+ \(up to step 2;", line(out, "clips/s per log line ")[45:])
    assert re.search(r"mean \d+% of the loop's time; per log line: \d+ \d+$", line(out, "waiting for data "))
    assert re.search(r" 1, \d+ s in all$", line(out, "evaluations "))  # one, after the 2 steps
    root = os.path.join(cache, "gpu_set_64p_6x2x2")
    with open(os.path.join(root, "list.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 2 * 2 and list(rows[0]) == ["path", "mos", "source"]
    assert len({r["source"] for r in rows}) == 6 and all(os.path.exists(os.path.join(root, r["path"])) for r in rows)


def test_loader_section(runs):
    code, out, cache = runs["loader"]
    assert code == 0, out[-3000:]
    for label in ("HEVC 432p", "H.264 216p", "raw YUV 216p"):
        uncached = line(out, f"{label}: uncached ")
        assert re.search(r"[\d.]+ clips/s = [\d.]+x the ffmpeg floor \([\d.]+ clips/s\); same frames as the floor",
                         uncached)
        if not label.startswith("raw"):  # the same frames through the same scaler: identical pixels
            assert uncached.endswith("same frames as the floor: yes")
        assert re.search(r"[\d.]+ clips/s \(\d+ runs\); first read [\d.]+ s .*same clip as uncached: yes$",
                         line(out, f"{label}: cached "))
    assert line(out, "H.264 216p: read_clip at native size ").endswith("same pixels: yes")
    summary = line(out, "SUMMARY: ")
    assert re.search(r"(PASS|FAIL) loader HEVC 432p cached [\d.]+ clips/s >= 10; uncached [\d.]+x the floor", summary)
    made = os.listdir(os.path.join(cache, "smoke"))
    assert len([f for f in made if f.startswith("testsrc2_")]) == 3 and not [f for f in made if ".part" in f], made


def test_gpu_check_goes_on_after_a_failure(monkeypatch, capsys):
    ran = []

    def fail(*a):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(bench, "gpu_distill", fail)
    monkeypatch.setattr(bench, "gpu_agreement", lambda *a: ran.append("b"))
    monkeypatch.setattr(bench, "gpu_train", lambda *a: ran.append("c"))
    assert bench.gpu_check(argparse.Namespace(smoke=True)) == 1
    out = capsys.readouterr().out
    assert ran == ["b", "c"]
    assert "a. distill step FAILED: RuntimeError: planted failure" in out
    assert out.rstrip().endswith("FAILED: a. distill step")


def test_make_video_leaves_nothing_behind_on_failure(tmp_path):
    path = str(tmp_path / "clip_64x48.mp4")
    with pytest.raises(RuntimeError, match="ffmpeg failed"):  # a source ffmpeg does not have
        bench.make_video(path, 5, "-f", "lavfi", "-i", "nosuchsource=s=64x48", "-f", "mp4")
    with pytest.raises(RuntimeError, match=r"\(5 frames, expected 6\)"):  # made, but not what was asked
        bench.make_video(path, 6, "-f", "lavfi", "-i", "testsrc2=s=64x48:r=5:d=1", *bench.x264(5), "-f", "mp4")
    assert os.listdir(tmp_path) == []
    made = bench.make_video(path, 5, "-f", "lavfi", "-i", "testsrc2=s=64x48:r=5:d=1", *bench.x264(5), "-f", "mp4")
    assert made == path
    assert os.listdir(tmp_path) == ["clip_64x48.mp4"]

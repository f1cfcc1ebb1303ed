"""tools/bench.py and tools/gpu_check.py end to end at tiny sizes, as subprocesses with timeouts
run side by side (each spends part of its time waiting on ffmpeg or train.py): the one-shot GPU
check's code paths on the CPU (gpu_check.py --smoke, as a script), the same as a module with
imageio-ffmpeg unimportable (step c must FAIL, naming why, and the check exit non-zero), and the
clip-loader section (bench.py --sections 4 --smoke). Speed figures are noisy on a shared machine,
so they are not held to targets; what is checked is that every step runs and prints its figures,
that each printed verdict agrees with the numbers beside it (the dtype rule's too), the exactness
checks, and the counts that must hold (log lines, evaluations, one cache entry per video file, a
teacher saved by its trainable part). Plus, in process: the matmul reference on a simulated fast
machine, the cache-entry check, the GPU check's guard, `bench.py --gpu` handing over to the GPU
check (and the GPU check importing nothing of bench.py), the timm rows without timm and their
verdicts on planted times, the FLOPs rows in both conventions, and the atomic video maker.

    python -m pytest -q tests/test_bench.py
"""
import argparse
import contextlib
import csv
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import runtime
from model import CONFIGS, flops_per_clip
from tools import _common, bench, gpu_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = {"gpu": ["tools/gpu_check.py", "--smoke"],  # the GPU check as a script, then as a module
        "no ffmpeg": ["-m", "tools.gpu_check", "--smoke"],
        "loader": ["tools/bench.py", "--sections", "4", "--smoke"]}
SHADOW = "imageio_ffmpeg shadowed by tests/test_bench.py"  # the planted import error


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: (exit code, stdout + stderr, cache folder)} of the RUNS, started together, each in a
    process group of its own (train.py and its DataLoader workers with it), killed at the end."""
    shadow = tmp_path_factory.mktemp("shadow")
    os.makedirs(shadow / "imageio_ffmpeg")
    (shadow / "imageio_ffmpeg" / "__init__.py").write_text(f"raise ImportError({SHADOW!r})\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    envs = {"no ffmpeg": {**env, "PYTHONPATH": os.pathsep.join(
        [str(shadow), *filter(None, [os.environ.get("PYTHONPATH")])])}}
    caches = {name: str(tmp_path_factory.mktemp(name.replace(" ", "_"))) for name in RUNS}
    procs, results = {}, {}
    try:
        for name, args in RUNS.items():
            procs[name] = subprocess.Popen(
                [sys.executable, *args, "--cache", caches[name]], cwd=ROOT,
                env=envs.get(name, env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, start_new_session=True)
        for name, proc in procs.items():
            try:
                out, _ = proc.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out = proc.communicate()[0] + "\n(killed at the test's timeout)"
            results[name] = (proc.returncode, out, caches[name])
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return results


def line(out, start):
    """The one output line that starts with `start`."""
    found = [s for s in out.splitlines() if s.startswith(start)]
    assert len(found) == 1, f"{len(found)} lines start with {start!r} in:\n{out[-3000:]}"
    return found[0]


def flops(value, unit):
    return float(value) * {"G": 1e9, "T": 1e12}[unit]


def matmul_line(out):
    """(FLOP/s, launch share in %) of the bf16 matmul line, checked against its own verdict."""
    m = re.search(r"^matmul bf16 \(\d+ x \d+\^3 a timing\) +([\d.]+) (G|T)FLOP/s; launching: "
                  r"under ([\d.]+)% of it( \(over 5%: the reference is launch-bound\))?$",
                  line(out, "matmul bf16 "))
    assert m, line(out, "matmul bf16 ")
    assert (float(m[3]) >= 5) == bool(m[4])  # the warning is there exactly when the share is high
    return flops(m[1], m[2]), float(m[3])


def test_gpu_check_model_steps(runs):
    code, out, _ = runs["gpu"]
    assert out.startswith("GPU check (--smoke: tiny sizes on the CPU): "), out[:3000]
    assert " torch " in out.splitlines()[0]
    assert "a. distill step FAILED" not in out and "b. fp32 vs bf16 FAILED" not in out, out[-3000:]
    reference, _ = matmul_line(out)
    m = re.search(r"[\d.]+ clips/s \(\d+ ms a step, 1 steps\); peak memory n/a on a CPU; "
                  r"~([\d.]+) (G|T)FLOP/s = (\d+)% of bf16 matmul$", line(out, "student tiny "))
    assert m, line(out, "student tiny ")
    share = 100 * flops(m[1], m[2]) / reference  # the printed share, from the printed rates
    assert abs(int(m[3]) - share) <= 0.5 + 0.01 * share, (line(out, "matmul bf16"), m[0])
    rel = {}
    for pair in ("fp32 vs fp64", "bf16 autocast vs fp32", "bf16 weights vs fp32"):
        m = re.search(r"features max \|diff\| (\S+), relative (\S+); scores max \|diff\| (\S+), "
                      r"relative (\S+)$", line(out, pair + " "))
        assert m, line(out, pair)
        rel[pair] = float(m[2])
    assert rel["fp32 vs fp64"] < 1e-5 and 1e-4 < rel["bf16 autocast vs fp32"] < 3e-2  # bf16: 8 bits
    assert re.search(r"^GPU check took \d+ s; ", out, re.M)


def test_gpu_check_train_run(runs):
    code, out, cache = runs["gpu"]
    assert code == 0 and out.rstrip().endswith("every step ran"), out[-3000:]
    teacher = os.path.join(cache, "random_tiny_official_layout.pth")
    made = line(out, "teacher file ")
    assert re.search(rf" {re.escape(teacher)}, [\d.]+ MB, written in \d+ s \(a one-time cost: "
                     rf"kept for later runs\)$", made), made
    assert f" --teacher tiny --teacher-ckpt {teacher} " in line(out, "command ")
    assert re.search(r"finished in \d+ s; 2 log lines", line(out, "train.py "))
    assert re.search(r"^[\d.]+ [\d.]+; mean [\d.]+ \(up to step 8;",
                     line(out, "clips/s per log line ")[45:])
    assert re.search(r"mean \d+% of the loop's time; per log line: \d+ \d+$",
                     line(out, "waiting for data "))
    assert re.search(r" 1, \d+ s in all$", line(out, "evaluations "))  # one, after the epoch
    m = re.search(r"(\d+) of (\d+) \(the trainable part", line(out, "teacher tensors in last.pt "))
    assert m and 0 < int(m[1]) < int(m[2]), line(out, "teacher tensors")  # not the whole teacher
    # one whole epoch and an evaluation read every video: one entry per file, none per other name
    assert re.search(r" 12 \([\d.]+ MB\) for 12 video files listed under 24 names; one entry per "
                     r"file: yes$", line(out, "cache entries "))
    root = os.path.join(cache, "gpu_set_64p_6x2x2")
    with open(os.path.join(root, "list.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 2 * 2 and list(rows[0]) == ["path", "mos", "source"]
    paths = [os.path.join(root, r["path"]) for r in rows]
    assert len({r["source"] for r in rows}) == 6 and all(map(os.path.exists, paths))
    assert len(set(map(os.path.realpath, paths))) == 6 * 2


def test_gpu_check_fails_when_train_py_cannot_start(runs):
    code, out, _ = runs["no ffmpeg"]
    assert code == 1, out[-3000:]
    assert "a. distill step FAILED" not in out and "b. fp32 vs bf16 FAILED" not in out, out[-3000:]
    assert f"c. train.py FAILED: RuntimeError: train.py cannot start: ImportError: {SHADOW}" in out
    assert out.rstrip().endswith("FAILED: c. train.py"), out[-3000:]


def test_loader_section(runs):
    code, out, cache = runs["loader"]
    assert code == 0, out[-3000:]
    labels = ("HEVC 432p", "H.264 216p", "raw YUV 216p")
    for label in labels:
        uncached = line(out, f"{label}: uncached ")
        assert re.search(r"[\d.]+ clips/s = [\d.]+x the ffmpeg floor \([\d.]+ clips/s\); same "
                         r"frames as the floor", uncached)
        if not label.startswith("raw"):  # the same frames through the same scaler: identical pixels
            assert uncached.endswith("same frames as the floor: yes")
        assert re.search(r"[\d.]+ clips/s \(\d+ runs\); first read [\d.]+ s .*same clip as "
                         r"uncached: yes$", line(out, f"{label}: cached "))
    assert line(out, "H.264 216p: read_clip at native size ").endswith("same pixels: yes")
    # each verdict of the summary agrees with the figure printed beside it
    parts = line(out, "SUMMARY: ")[len("SUMMARY: "):].split(" | ")
    assert len(parts) == 5, parts
    m = re.fullmatch(r"(PASS|FAIL) loader HEVC 432p cached ([\d.]+) clips/s >= 10; uncached "
                     r"[\d.]+x the floor", parts[0])
    assert m and (m[1] == "PASS") == (float(m[2]) >= 10), parts[0]
    assert f" {m[2]} clips/s (" in line(out, "HEVC 432p: cached ")
    for part, label in zip(parts[1:4], labels):
        m = re.fullmatch(rf"(PASS|FAIL) loader floor {label} ([\d.]+)x <= 1\.2x", part)
        assert m and (m[1] == "PASS") == (float(m[2]) <= 1.2), part
        assert f" = {m[2]}x the ffmpeg floor " in line(out, f"{label}: uncached ")
    m = re.fullmatch(r"(PASS|FAIL) native clip read ([\d.]+)x >= 4x, exact yes", parts[4])
    assert m and (m[1] == "PASS") == (float(m[2]) >= 4), parts[4]
    # the quick start's small videos: one run a batch, the same frames and probes
    for what in ("8 clips of 2 frames", "16 probes"):
        small = line(out, f"176x144 H.264: {what} ")
        assert re.search(r"in one ffmpeg run \((read_clips|probe_many)\) = [\d.]+x one run a", small)
        assert small.endswith(": yes"), small
    made = os.listdir(os.path.join(cache, "smoke"))
    assert len([f for f in made if f.startswith("testsrc2_")]) == 4, made
    assert not [f for f in made if ".part" in f], made


@pytest.mark.parametrize("peak, launch", [(2e9, 50e-6), (700e12, 50e-6)])  # a slow CPU, a fast GPU
def test_matmul_reference_is_not_launch_bound(monkeypatch, peak, launch):
    """On a simulated machine where every product costs `launch` seconds plus its FLOPs at `peak`,
    the reference comes within 5% of the peak and a batch takes about the time asked for."""
    def simulated(fn, warmup, repeats, device=None, max_s=30.0):
        products = fn()  # meta tensors: shapes only, no work
        return len(products) * (launch + 2 * products[0].shape[0] ** 3 / peak), repeats

    monkeypatch.setattr(_common, "timed", simulated)
    ref = _common.matmul_rate(torch.bfloat16, torch.device("meta"), seconds=0.25, cap=16384)
    assert ref["rate"] > 0.95 * peak and ref["launch"] < 0.05, ref
    assert 0.2 < ref["count"] * (launch + 2 * ref["n"] ** 3 / peak) < 0.5, ref


def test_cache_check_fails_on_an_entry_per_name(tmp_path, capsys):
    (tmp_path / "a.mp4").write_bytes(b"")
    os.symlink("a.mp4", tmp_path / "a_copy1.mp4")
    (tmp_path / "list.csv").write_text("path,mos,source\na.mp4,50,a\na_copy1.mp4,50,a\n")
    cache = tmp_path / "cache"
    os.makedirs(cache)
    for name in ("a", "a_copy1"):  # what data.cached_frames names an entry: stem, key hash, .npy
        (cache / f"{name}.0123456789abcdef.npy").write_bytes(b"x")
    with pytest.raises(RuntimeError, match="2 cache entries of 1 distinct files"):
        gpu_check.cache_figures(str(cache), str(tmp_path / "list.csv"))
    assert line(capsys.readouterr().out, "cache entries ").endswith("names; one entry per file: NO")
    os.remove(cache / "a_copy1.0123456789abcdef.npy")
    gpu_check.cache_figures(str(cache), str(tmp_path / "list.csv"))
    assert line(capsys.readouterr().out, "cache entries ").endswith(
        "1 (0.00 MB) for 1 video files listed under 2 names; one entry per file: yes")


def test_gpu_check_goes_on_after_a_failure(monkeypatch, capsys):
    ran = []

    def fail(*a):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(gpu_check, "gpu_distill", fail)
    monkeypatch.setattr(gpu_check, "gpu_agreement", lambda *a: ran.append("b"))
    monkeypatch.setattr(gpu_check, "gpu_train", lambda *a: ran.append("c"))
    assert gpu_check.check(argparse.Namespace(smoke=True)) == 1
    out = capsys.readouterr().out
    assert ran == ["b", "c"]
    assert "a. distill step FAILED: RuntimeError: planted failure" in out
    assert out.rstrip().endswith("FAILED: a. distill step")


def test_bench_gpu_hands_over_to_the_gpu_check(monkeypatch, tmp_path):
    """`python tools/bench.py --gpu [--smoke]`, the README's command, runs tools/gpu_check.py."""
    calls = []
    monkeypatch.setattr(gpu_check, "main", lambda argv: calls.append(argv) or 3)
    for extra in ([], ["--smoke"]):
        monkeypatch.setattr(sys, "argv", ["bench.py", "--gpu", *extra, "--cache", str(tmp_path)])
        with pytest.raises(SystemExit) as exit_:
            bench.main()
        assert exit_.value.code == 3
    assert calls == [["--cache", str(tmp_path)], ["--cache", str(tmp_path), "--smoke"]]


def test_the_dtype_rule_line_agrees_with_its_ratio(runs):
    code, out, _ = runs["loader"]
    assert re.search(r"^machine: .+ \((amx_bf16|avx512_bf16|bf16|no bf16 instructions)[^)]*\), \d+ "
                     r"cores; ", out, re.M), out[:1000]
    m = re.fullmatch(r"dtype rule on this CPU \(runtime\.cpu_dtype: predict\.py without "
                     r"--dtype; train\.py trains in fp32 on a CPU\): (bf16|fp32) "
                     r"\(this CPU: bf16 matmul ([\d.e-]+)x fp32"
                     r"(, no fast bf16)?\)", line(out, "dtype rule on this CPU "))
    assert m, line(out, "dtype rule on this CPU ")
    assert (m[1] == "bf16") == (float(m[2]) >= runtime.FAST_BF16) == (not m[3])


def test_the_timm_row_says_when_timm_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    bench.timm_row(argparse.Namespace(warmup=0, repeats=1), torch.device("cpu"), None, None)
    assert line(capsys.readouterr().out, "forward timm ViT-S").endswith(
        "skipped: timm is not installed (pip install timm to compare)")


def test_the_timm_rows_give_verdicts_on_their_own_figures(monkeypatch, capsys):
    """Planted times (nothing is timed): ours 2.0 s then 0.9 s against timm's 2.1 s and 1.0 s
    are 0.95x and 0.90x at 1 and 2 threads, each best of its runs; a ratio over 1 fails."""
    ours = argparse.Namespace(cfg=CONFIGS["tiny"])
    monkeypatch.setitem(sys.modules, "timm", argparse.Namespace(__version__="planted"))
    monkeypatch.setattr(bench, "same_math_timm", lambda cfg: torch.nn.Identity())
    monkeypatch.setattr(bench, "THREADS", [1, 2])
    for planted, verdicts in (([2.2, 2.1, 2.0, 2.3, 0.9, 1.0, 1.1, 1.2], [0.95, 0.90]),
                              ([2.0, 1.0, 1.5, 1.5], [2.0, 1.0])):
        times = iter(planted)
        monkeypatch.setattr(bench, "timed", lambda fn, *a: (next(times), 1))
        targets = []
        repeats = len(planted) // 4
        bench.timm_row(argparse.Namespace(warmup=0, repeats=repeats), torch.device("cpu"), ours,
                       None, targets)
        out = capsys.readouterr().out
        for n, ratio, (what, measured, ok) in zip((1, 2), verdicts, targets):
            label = f"forward timm ViT-S, same math, batch 1 fp32, {n} thread{'s' * (n > 1)} "
            assert f" = {ratio:.2f}x timm's time (best of {repeats} in turns" in line(out, label)
            assert what == f"same-math timm ratio, {n} threads" and ok == (ratio <= 1.0), measured


def test_flops_rows_count_a_multiply_add_as_two_and_as_one(capsys):
    bench.flops_section()
    out = capsys.readouterr().out
    for name in ("small at 8x224x224", "base at 8x224x224", "fastvqa-b at 32x224x224"):
        m = re.search(r" ([\d.]+) GFLOPs = +([\d.]+) G in fvcore's count: (\d+)% of the cap, "
                      r"(within|OVER)$", line(out, name + " "))
        assert m, line(out, name)
        assert abs(float(m[1]) / 2 - float(m[2])) <= 0.1, m[0]
        assert (m[4] == "within") == (float(m[2]) <= 120), m[0]
    assert f" {flops_per_clip(CONFIGS['small']) / 1e9:.1f} GFLOPs " in line(out, "small at ")


def test_the_gpu_check_imports_nothing_of_bench():
    """tools/ has no import circle: gpu_check.py takes its helpers from tools/_common.py."""
    code = "import sys, tools.gpu_check; sys.exit('tools.bench' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_make_video_leaves_nothing_behind_on_failure(tmp_path):
    path = str(tmp_path / "clip_64x48.mp4")
    with pytest.raises(RuntimeError, match="ffmpeg failed"):  # a source ffmpeg does not have
        bench.make_video(path, 5, "-f", "lavfi", "-i", "nosuchsource=s=64x48", "-f", "mp4")
    source = ["-f", "lavfi", "-i", "testsrc2=s=64x48:r=5:d=1", *bench.x264(5), "-f", "mp4"]
    with pytest.raises(RuntimeError, match=r"\(5 frames, expected 6\)"):  # made, not what was asked
        bench.make_video(path, 6, *source)
    assert os.listdir(tmp_path) == []
    assert bench.make_video(path, 5, *source) == path
    assert os.listdir(tmp_path) == ["clip_64x48.mp4"]

"""Tests of the dtype rule (runtime.cpu_dtype, default_dtype, cpu_features) and of predict.py's
--dtype: the rule decides from the measured fp32 and bf16 matmul rates (replaced here by fixtures,
so the tests do not depend on this machine's CPU), near its threshold too, and measures once per
process; predict.py runs the dtype the rule or --dtype names, says so on stderr, and scores a
tiny random checkpoint in bf16 within a stated tolerance of its fp32 scores. Nothing is timed.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_dtype.py
"""
import contextlib
import csv
import io
import math
import subprocess
import sys
from dataclasses import asdict, replace

import pytest
import torch

import data
import predict
import runtime
from model import CONFIGS, VideoViT

GEOMETRY = dict(frames=2, size=28, stride=1, test_clips=2, fragments=0, resize=False)
# bf16 keeps 8 bits: autocast rounds each matmul's inputs by up to 2^-9 relative. The tiny model's
# scores below (about 1.5, spread 0.09) move by at most 3.3e-3 (measured); 1e-2 allows three times
# that and is still a ninth of the spread between the videos.
BF16_TOLERANCE = 1e-2


@pytest.fixture
def rule():
    """The rule with no answer cached, before and after (the process's real answer is measured
    again by whoever asks next)."""
    runtime.cpu_dtype.cache_clear()
    yield runtime.cpu_dtype
    runtime.cpu_dtype.cache_clear()


def rates(fp32, bf16):
    """A fixture for the timing: measure() -> these two rates, counting its calls."""
    def measure():
        measure.calls += 1
        return fp32, bf16
    measure.calls = 0
    return measure


# -----------------------------------------------------------------------------------------------
# The rule


@pytest.mark.parametrize("fp32, bf16, name, reason", [
    (100e9, 660e9, "bf16", "this CPU: bf16 matmul 6.6x fp32"),  # AMX
    (100e9, 200e9, "bf16", "this CPU: bf16 matmul 2x fp32"),  # avx512_bf16
    (100e9, 151e9, "bf16", "this CPU: bf16 matmul 1.51x fp32"),
    (100e9, 150e9, "bf16", "this CPU: bf16 matmul 1.5x fp32"),  # the threshold itself
    (100e9, 149e9, "fp32", "this CPU: bf16 matmul 1.49x fp32, no fast bf16"),
    (100e9, 100e9, "fp32", "this CPU: bf16 matmul 1x fp32, no fast bf16"),
    (100e9, 40e9, "fp32", "this CPU: bf16 matmul 0.4x fp32, no fast bf16"),
    (110e9, 1.6e9, "fp32", "this CPU: bf16 matmul 0.0145x fp32, no fast bf16"),  # a Zen 3
])
def test_the_rule_picks_what_the_measured_rates_say(rule, fp32, bf16, name, reason):
    assert rule(rates(fp32, bf16)) == (name, reason)


def test_the_rule_measures_once_per_process(rule, monkeypatch):
    measure = rates(100e9, 240e9)
    assert rule(measure) == rule(measure) and measure.calls == 1
    machine = rates(100e9, 40e9)  # what cpu_dtype() times unless given a fixture
    monkeypatch.setattr(runtime, "matmul_rates", machine)
    answers = {rule(), rule(), runtime.default_dtype("cpu"), runtime.default_dtype(
        torch.device("cpu"))}
    assert answers == {("fp32", "this CPU: bf16 matmul 0.4x fp32, no fast bf16")}
    assert machine.calls == 1


def test_a_gpu_keeps_bf16_without_measuring_the_cpu(rule, monkeypatch):
    machine = rates(100e9, 40e9)
    monkeypatch.setattr(runtime, "matmul_rates", machine)
    assert runtime.default_dtype("cuda") == ("bf16", "a GPU: the paper's bf16")
    assert runtime.default_dtype(torch.device("cuda:1"))[0] == "bf16" and machine.calls == 0


def test_matmul_rates_are_rates_and_leave_the_thread_count_alone():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fp32, bf16 = runtime.matmul_rates(n=64, rounds=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert all(math.isfinite(r) and r > 0 for r in (fp32, bf16))


CPUINFO = {  # two processors each, as /proc/cpuinfo lists them
    "xeon": "processor\t: {i}\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu "
            "avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n",
    "zen3": "processor\t: {i}\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu "
            "avx2 fma\n\n",
    "arm": "processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve i8mm bf16\n"
           "CPU implementer\t: 0x41\n\n",
}


@pytest.mark.parametrize("cpu, name, features", [
    ("xeon", "Intel(R) Xeon(R) Platinum 8480+", "(amx_bf16, avx512_bf16)"),
    ("zen3", "AMD EPYC 7B13 64-Core Processor", "(no bf16 instructions)"),
    ("arm", None, "(bf16)"),  # no model name: the platform's processor name
    (None, None, "(no bf16 instructions)"),  # no /proc/cpuinfo
])
def test_cpu_features_names_the_cpu_and_its_bf16_instructions(tmp_path, cpu, name, features):
    path = tmp_path / "cpuinfo"
    if cpu:
        path.write_text("".join(CPUINFO[cpu].format(i=i) for i in range(2)))
    text = runtime.cpu_features(str(path))
    if name:
        assert text == f"{name} {features}"
    else:  # the platform's name, whatever it is here
        assert text.endswith(f" {features}") and len(text) > len(features) + 1, text


# -----------------------------------------------------------------------------------------------
# predict.py


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny random checkpoint of this project (a training checkpoint's fields that predict.py
    reads), three short videos of different content and quality, and the model itself."""
    import imageio_ffmpeg
    root = tmp_path_factory.mktemp("dtype")
    videos = []
    for i, crf in enumerate((18, 35, 51)):
        path = str(root / f"v{i}.mp4")
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                        f"testsrc2=s=64x48:r=10:d=1,hue=h={70 * i}", "-c:v", "libx264",
                        "-crf", str(crf), "-pix_fmt", "yuv420p", path], check=True, timeout=60)
        videos.append(path)
    torch.manual_seed(0)
    model = VideoViT(replace(CONFIGS["tiny"], num_frames=2, img_size=28, init_values=0.5)).eval()
    with torch.no_grad():  # weights of order one, so that the videos' scores differ
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ckpt = str(root / "best.pt")
    torch.save(dict(student=model.state_dict(), student_config=asdict(model.cfg), teacher=None,
                    config=dict(GEOMETRY, dtype="fp32"), label_range=[0.0, 1.0]), ckpt)
    return ckpt, videos, model


def reference(model, videos, dtype):
    """Each video's score as predict.py should compute it: the mean over its test clips of the
    model's output under autocast in `dtype` (None: float32)."""
    g = GEOMETRY
    scores = {}
    for path in videos:
        ds = data.VideoDataset([dict(path=path, mos=0.0)], train=False, frames=g["frames"],
                               size=g["size"], stride=g["stride"], clips=g["test_clips"],
                               fragments=g["fragments"], resize=g["resize"], label_range=(0, 1))
        with torch.no_grad(), torch.autocast("cpu", dtype, enabled=dtype is not None):
            scores[path] = model(data.normalise(ds[0][0])).float().mean().item()
    return scores


def run_predict(argv):
    """(exit code, {path: score}, stderr) of predict.py's main in this process."""
    out, err = io.StringIO(), io.StringIO()
    saved, sys.argv = sys.argv, ["predict.py", *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with pytest.raises(SystemExit) as exit_:
                predict.main()
    finally:
        sys.argv = saved
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    return exit_.value.code, {r["path"]: float(r["score"]) for r in rows}, err.getvalue()


@pytest.mark.parametrize("fp32, bf16, flag, want, why", [
    (100e9, 240e9, [], "bf16", "this CPU: bf16 matmul 2.4x fp32"),
    (100e9, 40e9, [], "fp32", "this CPU: bf16 matmul 0.4x fp32, no fast bf16"),
    (100e9, 240e9, ["--dtype", "fp32"], "fp32", "--dtype"),  # the flag overrides the rule
    (100e9, 40e9, ["--dtype", "bf16"], "bf16", "--dtype"),
])
def test_predict_runs_the_dtype_the_rule_or_the_flag_names(scored, rule, monkeypatch, fp32, bf16,
                                                           flag, want, why):
    ckpt, videos, model = scored
    monkeypatch.setattr(runtime, "matmul_rates", rates(fp32, bf16))  # this "CPU"
    code, scores, err = run_predict(["--ckpt", ckpt, "--device", "cpu", *flag, *videos])
    assert code == 0 and err.splitlines()[0] == f"dtype {want} ({why})", err
    expected = reference(model, videos, runtime.DTYPES[want])
    assert scores == pytest.approx(expected, rel=1e-6, abs=1e-7)  # 9 digits printed


def test_bf16_predictions_are_fp32_ones_within_the_tolerance(scored):
    ckpt, videos, _ = scored
    runs = {d: run_predict(["--ckpt", ckpt, "--dtype", d, *videos]) for d in ("fp32", "bf16")}
    assert all(code == 0 for code, _, _ in runs.values())
    fp32, bf16 = (runs[d][1] for d in ("fp32", "bf16"))
    diffs = [abs(bf16[v] - fp32[v]) for v in videos]
    spread = max(fp32.values()) - min(fp32.values())
    assert spread > 5 * BF16_TOLERANCE, fp32  # the videos' scores differ: the test can tell
    assert 0 < max(diffs) <= BF16_TOLERANCE, diffs  # bf16 really ran, and stayed close


def test_on_a_gpu_the_checkpoint_s_dtype_unless_given():
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert predict.choose_dtype(None, "fp32", gpu) == ("fp32", "the checkpoint's on a GPU")
    assert predict.choose_dtype(None, "bf16", gpu) == ("bf16", "the checkpoint's on a GPU")
    assert predict.choose_dtype("fp16", "bf16", gpu) == ("fp16", "--dtype")
    assert predict.choose_dtype(None, "bf16", cpu) == runtime.cpu_dtype()

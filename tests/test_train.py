"""Tests of train.py and predict.py at tiny sizes on the tiny toy set: every path (toy, csv, resume,
eval-only, torchrun with 2 CPU processes, predict, spawned workers), exact resumption (across an epoch
and with gradient accumulation), official-layout checkpoint files, DDP against one process, the NaN,
SIGTERM and SIGKILL cases, and the one-line errors for missing dataset flags.

    python -m pytest -q tests/test_train.py
"""
import csv
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

import metrics
from model import CONFIGS, VideoViT
from runtime import load_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--student", "tiny", "--teacher", "tiny", "--toy-variant", "tiny", "--frames", "2", "--size", "28",
        "--stride", "1", "--test-clips", "2", "--batch-size", "2", "--workers", "0", "--log-every", "1",
        "--epochs", "2", "--pretrain", "0", "--device", "cpu"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(n):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), "train.py"]


def rank_pid(launcher, rank, timeout=30):
    """The pid of the worker process with RANK=rank among the launcher's descendants."""
    end = time.time() + timeout
    while time.time() < end:
        for pid in os.listdir("/proc"):
            try:
                env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
                stat = open(f"/proc/{pid}/stat").read()
            except (OSError, ValueError):
                continue
            if "TORCHELASTIC_RUN_ID".encode() in b"".join(env) and f"RANK={rank}".encode() in env and \
                    int(stat.rsplit(")", 1)[1].split()[1]) == launcher:
                return int(pid)
        time.sleep(0.2)
    raise AssertionError(f"no rank {rank} under {launcher}")


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
                       "--out", str(tmp_path / "out"), "--max-steps", "2", "--dtype", "fp32"])
    assert proc.stdout.strip().splitlines()[-1].startswith("best: student srcc=")
    assert " teacher n/a |" in proc.stdout.strip().splitlines()[-1]
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
    """Two processes of 2 clips take the same optimizer steps as one process of 4 (the same clips:
    rank r takes order[r::2]), and every test video is scored exactly once."""
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    proc = run(TINY + ["--data-root", toy, "--out", str(ddp), "--max-steps", "2"], script=torchrun(2))
    assert proc.stdout.strip().splitlines()[-1].startswith("best: student srcc=") and "x2" in proc.stdout
    run(TINY + ["--data-root", toy, "--out", str(one), "--max-steps", "2", "--batch-size", "4"])
    a, b = state(ddp / "last.pt"), state(one / "last.pt")
    close = sum((torch.isclose(a[k], b[k], rtol=1e-4, atol=1e-6)).sum().item() for k in a)
    assert close / sum(v.numel() for v in a.values()) > 0.99  # Adam's first steps flip only near-zero grads
    with open(toy + "/toy.csv") as f:
        test_videos = sorted(os.path.join(toy, r["path"]) for r in csv.DictReader(f) if r["split"] == "test")
    with open(ddp / "predictions.csv") as f:
        assert sorted(r["path"] for r in csv.DictReader(f)) == test_videos


def test_ddp_with_a_loss_term_switched_off(toy, tmp_path):
    proc = run(TINY + ["--data-root", toy, "--out", str(tmp_path / "ddp"), "--max-steps", "1", "--w-student", "0"],
               script=torchrun(2))
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["step"] == 1, proc.stdout


def test_sigterm_to_one_rank_stops_every_rank_and_rank0_saves(toy, tmp_path):
    out = tmp_path / "out"
    cmd = torchrun(2) + TINY + ["--data-root", toy, "--out", str(out), "--epochs", "200"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for line in proc.stdout:
            if line.startswith("epoch 1/200 step 3/"):
                break
        os.kill(rank_pid(proc.pid, 1), signal.SIGTERM)  # rank 1 only; rank 0 must learn it and save
        proc.stdout.read()
        proc.wait(timeout=90)  # none hangs in a collective
    finally:
        proc.kill()
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert step >= 3


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(toy, trained, tmp_path):
    out = tmp_path / "out"
    run(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1"])
    before = (out / "last.pt").read_bytes()
    proc = run(TINY + ["--data-root", toy, "--out", str(out), "--lr", "1e30", "--epochs", "50"], check=False)
    assert proc.returncode == 1 and "STOP: the loss, a gradient or the weights are not finite" in proc.stdout
    assert (out / "last.pt").read_bytes() == before


def test_sigterm_saves_and_resume_finishes(toy, tmp_path):
    out = tmp_path / "out"
    common = TINY + ["--data-root", toy, "--epochs", "200", "--drop-path", "0.3"]  # drop-path: RNG in every step
    args = common + ["--out", str(out)]
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
    proc = run(args + ["--resume", "--max-steps", str(step + 2)])
    assert f"resumed from {out}/last.pt at step {step}" in proc.stdout
    run(common + ["--out", str(tmp_path / "straight"), "--max-steps", str(step + 2)])  # never stopped
    a, b = state(out / "last.pt"), state(tmp_path / "straight" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the stopped step's forward left no trace in the RNG


def test_resume_across_an_epoch_with_grad_accum(toy, tmp_path):
    common = TINY + ["--data-root", toy, "--seed", "1", "--drop-path", "0.1", "--grad-accum", "2"]  # 6 steps/epoch
    run(common + ["--out", str(tmp_path / "a"), "--max-steps", "8"])
    run(common + ["--out", str(tmp_path / "b"), "--max-steps", "4"])
    run(common + ["--out", str(tmp_path / "b"), "--max-steps", "8", "--resume"])
    for key in ("student", "teacher"):
        a, b = state(tmp_path / "a" / "last.pt", key), state(tmp_path / "b" / "last.pt", key)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_checkpoint_with_other_keys(toy, trained, tmp_path):
    out, _ = trained
    ckpt = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    del ckpt["student"]["blocks.0.ls1.gamma"]
    ckpt["student"]["blocks.99.x"] = torch.zeros(1)
    os.makedirs(tmp_path / "out")
    torch.save(ckpt, tmp_path / "out" / "last.pt")
    proc = run(TINY + ["--data-root", toy, "--out", str(tmp_path / "out"), "--max-steps", "3", "--resume"], check=False)
    assert proc.returncode == 1 and "blocks.0.ls1.gamma" in proc.stderr and "blocks.99.x" in proc.stderr


def official_file(path, cfg, wrap):
    """An official-layout file of the small size at 8 x 224 with a 710-class head, random weights."""
    m = VideoViT(replace(cfg, num_outputs=710))
    sd = {("vision_encoder." if wrap else "") + k: v for k, v in m.state_dict().items()}
    if wrap:  # the stage-2 layout: nested under `module`, with decoder keys to drop
        sd = {"module": {**sd, "clip_decoder.0.weight": torch.zeros(3)}}
    torch.save(sd, path)
    return m.state_dict()


def test_official_files_as_teacher_and_student(toy, tmp_path):
    teacher = official_file(tmp_path / "1B_like.pt", CONFIGS["small"], wrap=True)
    student = official_file(tmp_path / "S14_ft_k710_f8.pth", CONFIGS["small"], wrap=False)
    out = tmp_path / "out"
    proc = run(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1", "--lr", "1e-12",
                       "--student", "small", "--teacher", "small",
                       "--teacher-ckpt", str(tmp_path / "1B_like.pt"), "--student-ckpt", str(tmp_path / "S14_ft_k710_f8.pth")])
    assert proc.stdout.count("left at init (trained from scratch): head.weight, head.bias") == 2
    assert "resized pos_embed (1, 2049, 384) on a 8 x 16 x 16 grid -> (1, 9, 384)" in proc.stdout and "dropped 1 keys" in proc.stdout
    ckpt = torch.load(out / "last.pt", weights_only=True)
    with open(toy + "/toy.csv") as f:
        mos = [float(r["mos"]) for r in csv.DictReader(f) if r["split"] == "train"]
    for key, original in (("student", student), ("teacher", teacher)):
        got = ckpt[key]
        assert abs(got["head.bias"].item() - sum(mos) / len(mos) / 100) < 1e-6  # a fresh head starts at the mean
        torch.testing.assert_close(got["blocks.11.attn.qkv.weight"], original["blocks.11.attn.qkv.weight"])
    assert ckpt["teacher_partial"] and "blocks.0.attn.qkv.weight" not in ckpt["teacher"]
    alone = tmp_path / "alone"  # a teacher trained whole from the file is saved whole, and loads again
    run(TINY + ["--data-root", toy, "--out", str(alone), "--max-steps", "1", "--student", "none", "--teacher", "small",
                "--teacher-ckpt", str(tmp_path / "1B_like.pt")])
    assert not torch.load(alone / "last.pt", weights_only=True)["teacher_partial"]
    load_weights(VideoViT(replace(CONFIGS["small"], num_frames=2, img_size=28)), str(alone / "last.pt"), "teacher")


def test_missing_dataset_flags_are_one_line_errors(tmp_path):
    for args, flags in ((["--data", "bvihd"], "--data-root, --labels, --yuv-fps, --yuv-bit-depth"),
                        (["--data", "bvihd", "--data-root", "x", "--labels", "y"], "--yuv-fps, --yuv-bit-depth"),
                        (["--data", "waterloo4k"], "--data-root"), (["--data", "csv"], "--labels")):
        proc = run(args + ["--out", str(tmp_path)], check=False, timeout=60)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"train.py: error: --data {args[1]} needs {flags}"]


def test_lr_follows_the_effective_batch(toy, tmp_path):
    listing = tmp_path / "list.csv"
    with open(toy + "/toy.csv") as f, open(listing, "w") as g:
        g.write("path,mos,source\n" + "".join(f"{os.path.join(toy, r['path'])},{r['mos']},{r['source']}\n"
                                               for r in csv.DictReader(f)))
    proc = run(TINY + ["--data", "csv", "--labels", str(listing), "--split", "random", "--out", str(tmp_path / "o"),
                       "--max-steps", "1", "--grad-accum", "3", "--dtype", "fp32"])
    assert torch.load(tmp_path / "o" / "last.pt", weights_only=True)["config"]["lr"] == 1e-3 * 2 * 3 / 256
    assert "(1e-3 x 2 x 3 x 1 / 256)" in proc.stdout.splitlines()[0]


def test_spawned_workers(toy, tmp_path):
    run(TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--max-steps", "1", "--workers", "1",
                "--worker-start", "spawn"])
    assert torch.load(tmp_path / "o" / "last.pt", weights_only=True)["step"] == 1


def test_save_every_writes_last_inside_an_epoch(toy, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "train.py"] + TINY + ["--data-root", toy, "--out", str(out), "--save-every", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for line in proc.stdout:
            if line.startswith("epoch 1/2 step 5/"):
                break
        proc.kill()  # no chance to save: only what --save-every wrote is there
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4  # mid-epoch (12 steps an epoch)


def test_a_nan_evaluation_never_locks_best(toy, tmp_path, monkeypatch):
    """Constant predictions (finite, so the run goes on) make the first evaluation's SRCC NaN:
    the second, finite one must become the best."""
    import train
    real, calls = train.evaluate, []

    def constant_first(*args, **kwargs):
        scores = real(*args, **kwargs)
        calls.append(1)
        return {k: [50.0] * len(v) for k, v in scores.items()} if len(calls) == 1 else scores
    monkeypatch.setattr(train, "evaluate", constant_first)
    code = train.main(TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--batch-size", "12"])  # 2 epochs of 2
    ckpt = torch.load(tmp_path / "o" / "best.pt", weights_only=True)
    assert code == 0 and len(calls) == 2 and ckpt["step"] == 4
    assert math.isnan(ckpt["history"][0]["student"]["srcc"]) and ckpt["history"][1] == dict(step=4, **ckpt["best"])


def test_predict_loads_official_files_through_the_one_loading_path(trained, tmp_path):
    out, _ = trained
    with open(os.path.join(out, "predictions.csv")) as f:
        video = next(csv.DictReader(f))["path"]
    regressor = VideoViT(CONFIGS["tiny"]).state_dict()  # 8 x 224, a 1-output head
    torch.save({"module": {f"backbone.{k}": v for k, v in regressor.items()}}, tmp_path / "reg.pth")
    proc = run(["--ckpt", str(tmp_path / "reg.pth"), "--frames", "2", "--size", "28", video], script="predict.py")
    assert proc.stdout.splitlines()[1].startswith(f"{video},")
    torch.save(VideoViT(replace(CONFIGS["tiny"], num_outputs=710)).state_dict(), tmp_path / "k710.pth")
    proc = run(["--ckpt", str(tmp_path / "k710.pth"), video], script="predict.py", check=False)
    assert proc.returncode == 1 and "backbone, not a quality model" in proc.stderr
    del regressor["blocks.1.norm2.weight"]
    torch.save(regressor, tmp_path / "broken.pth")
    proc = run(["--ckpt", str(tmp_path / "broken.pth"), video], script="predict.py", check=False)
    assert proc.returncode == 1 and "missing: blocks.1.norm2.weight" in proc.stderr and "broken.pth" in proc.stderr


def test_paper_profile_runs_the_frozen_teacher_in_bf16_on_a_gpu_only(monkeypatch, capsys):
    import train
    paper = ["--data", "csv", "--labels", "x.csv", "--split", "random"]
    for argv, message in ((paper, "the paper profile needs a GPU"), (["--device", "cuda"], "--device cuda: ")):
        with pytest.raises(SystemExit) as stop:  # no usable CUDA here: one line, not a 1B teacher on the CPU
            train.parse_args(argv)
        assert stop.value.code == 2 and capsys.readouterr().err.startswith(f"train.py: error: {message}")
    assert train.parse_args(paper + ["--device", "cpu"])[0].device == "cpu"  # asked for explicitly
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.parse_args(paper)[0].device == "cuda"
    assert train.parse_args(paper + ["--device", "cuda"])[0].teacher_dtype == "bf16"
    assert train.parse_args(paper + ["--device", "cpu"])[0].teacher_dtype == "fp32"
    assert train.parse_args(paper + ["--device", "cpu", "--teacher-dtype", "bf16"])[0].teacher_dtype == "bf16"
    assert train.parse_args(["--device", "cuda"])[0].teacher_dtype == "fp32"  # the quick profile


def test_toy_sources_make_a_training_set_of_your_own_videos(tmp_path):
    import imageio_ffmpeg
    sources = tmp_path / "mine"
    sources.mkdir()
    for i, graph in enumerate(["testsrc2=s=128x96", "mandelbrot=s=128x96", "life=s=128x96:seed=3", "rgbtestsrc=s=96x128"]):
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"{graph}:r=24",
                        "-frames:v", "20", "-pix_fmt", "yuv420p", str(sources / f"clip{i}.mp4")], check=True, timeout=60)
    out = tmp_path / "out"
    proc = run(TINY + ["--toy-sources", str(sources), "--data-root", str(tmp_path / "set"), "--out", str(out),
                       "--max-steps", "1"], timeout=300)
    assert "split=random" in proc.stdout.splitlines()[0]
    with open(tmp_path / "set" / "toy.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["source"] for r in rows} == {f"clip{i}" for i in range(4)}
    with open(out / "predictions.csv") as f:  # one whole content held out: its 5 codecs x 4 levels
        scored = {p["path"] for p in csv.DictReader(f)}
    held_out = [r["source"] for r in rows if os.path.join(str(tmp_path / "set"), r["path"]) in scored]
    assert len(held_out) == len(scored) == 20 and len(set(held_out)) == 1
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


def test_bad_label_files_and_videos_are_errors_naming_the_file(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (tmp_path / "list.csv").write_text("path,mos,source\nbroken.mp4,50,a\ngone.mp4,40,b\n")
    proc = run(["--data", "csv", "--labels", str(tmp_path / "list.csv"), "--split", "random", "--device", "cpu",
                "--out", str(tmp_path)],
               check=False, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("train.py: ") and "list.csv, line 3" in proc.stderr and "gone.mp4" in proc.stderr
    (tmp_path / "list.csv").write_text("path,mos,source\n" + "".join(f"broken.mp4,{i},s{i}\n" for i in range(1)) +
                                       "".join(f"x{i}.mp4,{i},s{i}\n" for i in range(1, 9)))
    for i in range(1, 9):
        (tmp_path / f"x{i}.mp4").write_bytes(b"")
    proc = run(["--data", "csv", "--labels", str(tmp_path / "list.csv"), "--split", "random", "--test-fraction", "0.5",
                "--device", "cpu",
                "--out", str(tmp_path)], check=False, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "cannot be read" in proc.stderr
    assert "broken.mp4" in proc.stderr and "x1.mp4: empty file" in proc.stderr


def test_weights_gone_non_finite_stop_before_anything_is_saved(toy, tmp_path):
    out = tmp_path / "out"  # one step an epoch; lr 1e30 makes the weights overflow at the first step
    proc = run(TINY + ["--data-root", toy, "--out", str(out), "--batch-size", "24", "--lr", "1e30", "--epochs", "3"],
               check=False)
    assert proc.returncode == 1 and "STOP: the loss, a gradient or the weights are not finite" in proc.stdout, proc.stderr
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def test_a_batch_larger_than_the_training_set_is_an_error(toy, tmp_path):
    proc = run(TINY + ["--data-root", toy, "--out", str(tmp_path), "--batch-size", "8", "--grad-accum", "4"],
               check=False, timeout=120)
    assert proc.returncode == 1 and "24 training videos do not fill one optimizer step of 32 clips" in proc.stderr

"""The one-shot GPU check, to run first on a lent GPU machine, before any paper-scale run.

A tool beside the method, like bench.py (both use tools/_common.py). Run it from the
repository root; it puts the root on sys.path itself and runs the root's train.py by path.

    python tools/gpu_check.py             # under 8 minutes on one H200
    python tools/gpu_check.py --smoke     # the same code at tiny sizes on a CPU (the tests)
    python -m tools.gpu_check --help      # the same tool, as a module
    python tools/bench.py --gpu [--smoke] # the same, through bench.py

It prints the date, GPU and torch version first and the total time last. Each step is guarded,
so a failure prints its error and the rest runs; any failure, including a step that cannot run,
makes the check exit 1:
a. the paper's distill step: 1b teacher (random weights, freeze_teacher "last", frozen prefix
   in bf16) with a small, a base and a FAST-VQA-B student (its own view: 32 x 224 x 224
   fragments beside the teacher's clips), 8x224, batch 8, AdamW, bf16 autocast, backward
   outside it: clips/s, peak memory, and FLOP/s (~3x forward for what trains + 1x for the frozen
   teacher) as a share of the same run's bf16 matmul rate (_common.matmul_rate);
b. fp32 against bf16 (autocast, and weights in bf16) on the small model's forward, with fp32
   against fp64 beside it for scale;
c. 200 steps of train.py's paper profile (student small, a subprocess with a timeout), as a
   paper run costs: the teacher comes from a file in the official layout (--teacher-ckpt; here
   a random 1b written once into --cache, about 4 GB), so train.py saves only its trainable part;
   the data is a generated set of 2 s 1080p H.264 videos, 16 contents x 3 levels, each file listed
   8 times under other names (symbolic links, so that an epoch is 42 steps; kept in --cache),
   read with --cache and min(16, cores) workers. Printed: clips/s and the share of wall time the
   loop waited for data (the `wait NN%` field of train.py's log lines), per log line and their
   mean; the cache entries written, which must be one per video file however many names list it;
   the checkpoint sizes and how many teacher tensors last.pt holds.
--smoke runs the same code at tiny sizes (model "tiny" for teacher and student, 2 frames of 28
px, one epoch of 8 steps, tiny videos), so that the tests exercise it end to end.
"""
import os
import sys

# As bench.py: the project's modules come from the repository root, run as a script or a module.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse
import contextlib
import csv
import gc
import re
import signal
import statistics
import subprocess
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import torch

import fastvqa
from distill import Distiller, build_optimizer, freeze_teacher
from fastvqa import FASTVQA_CONFIGS, FastVQA
from model import CONFIGS, VideoViT, flops_per_clip
from tools._common import (gb, machine, make_video, matmul_rate, rate_text, show, show_matmul,
                          timed, train_flops, x264)

# data.py and toy.py import imageio-ffmpeg: only train.py (step c) and the video maker need them,
# so that steps a and b also run on a machine that lacks it.

TRAIN_PY = os.path.join(ROOT, "train.py")

# copies: each video is listed that many times (symbolic links), so that an epoch is long (train.py
# evaluates and writes last.pt after every epoch); the first epoch builds every cache entry.
# train_steps: the smoke's is one whole epoch (16 training names, batch 2), so that every video of
# the set has been read and the cache's entry count is exact.
GPU = dict(teacher="1b", students=("small", "base", "fastvqa"), fastvqa=(32, 224), frames=8,
           size=224, batch=8, warmup=2,
           steps=10, matmul_s=0.25, train_student="small", train_steps=200, log_every=None,
           contents=16, levels=3, copies=8, video=(1920, 1080), seconds=2, train_timeout=330)
SMOKE = dict(teacher="tiny", students=("tiny", "fastvqa"), fastvqa=(4, 32), frames=2, size=28,
             batch=2, warmup=1, steps=1,
             matmul_s=0.02, train_student="tiny", train_steps=8, log_every=4, contents=6, levels=2,
             copies=2, video=(96, 64), seconds=1, train_timeout=150)


# -----------------------------------------------------------------------------------------------
# Helpers: train.py as a subprocess, the generated set, the teacher file, what train.py wrote


def size_text(nbytes):
    """A file size in GB, or in MB below 1 GB."""
    return gb(nbytes) if nbytes >= 1e9 else f"{nbytes / 1e6:.2f} MB"


def run_logged(cmd, timeout, log_path):
    """Run cmd in its own process group, stdout and stderr into log_path; on timeout the whole
    group (DataLoader workers too) is stopped. Returns (exit code or None on timeout, the log)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # train.py saves and stops on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code = None
    with open(log_path) as f:
        return code, f.read()


def train_py_starts():
    """Raise, with train.py's own last words, unless `train.py --help` runs and lists the options
    step c passes (a GPU image often lacks a package, imageio-ffmpeg for one)."""
    try:
        usage = subprocess.run([sys.executable, TRAIN_PY, "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise RuntimeError("train.py --help did not finish within 120 s") from None
    if usage.returncode:
        last = (usage.stderr.strip().splitlines() or [f"exit {usage.returncode}, no message"])[-1]
        raise RuntimeError(f"train.py cannot start: {last}")
    missing = [o for o in ("--cache", "--teacher-ckpt", "--max-steps") if o not in usage.stdout]
    if missing:
        raise RuntimeError(f"train.py --help lists no {', '.join(missing)}")


def make_gpu_set(root, P):
    """contents x levels short H.264 videos (x264 at CRF 20 upwards: MOS 80 downwards; the labels
    only have to vary), each also under copies - 1 other names (symbolic links), and list.csv,
    `path,mos,source`, that lists every name; kept in root, the CSV written last."""
    labels = os.path.join(root, "list.csv")
    if os.path.exists(labels):
        return labels
    os.makedirs(root, exist_ok=True)
    (w, h), sec, fps = P["video"], P["seconds"], 25
    jobs = []
    for c in range(P["contents"]):
        graph = [f"testsrc2=s={w}x{h}:r={fps}:d={sec},hue=h={c * 37}",
                 f"zoneplate=s={w}x{h}:r={fps}:d={sec}:ku={20 + 9 * c}:kv={30 + 7 * c}"
                 f":kt={1 + c % 4}",
                 f"gradients=s={w}x{h}:r={fps}:d={sec}:seed={c}:speed=0.05"][c % 3]
        for level in range(P["levels"]):
            crf = 20 + 24 * level // max(1, P["levels"] - 1)
            mos = 80 - 60 * level / max(1, P["levels"] - 1) + c % 5
            jobs.append((f"c{c:02d}_crf{crf}.mp4", f"c{c:02d}", mos,
                         ["-f", "lavfi", "-i", graph, *x264(2 * fps, crf), "-f", "mp4"]))
    with ThreadPoolExecutor(max(1, (os.cpu_count() or 2) // 2)) as pool:
        list(pool.map(lambda j: make_video(os.path.join(root, j[0]), fps * sec, *j[3]), jobs))
    rows = []
    for name, source, mos, _ in jobs:
        for k in range(P["copies"]):
            link = name if k == 0 else name.replace(".mp4", f"_copy{k}.mp4")
            if k and not os.path.lexists(os.path.join(root, link)):
                os.symlink(name, os.path.join(root, link))
            rows.append((link, f"{mos:.1f}", source))
    tmp = f"{labels}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "mos", "source"])
        writer.writerows(rows)
    os.replace(tmp, labels)
    return labels


def official_teacher(P, folder, device):
    """A random P['teacher'] in the layout of the official InternVideo2 files: the model's own state
    dict, whose keys are the checkpoints' (docs/reference.md, section 2), at their 8 x 224 geometry.
    Written once into folder (atomically) and kept: a paper run always loads such a file."""
    path = os.path.join(folder, f"random_{P['teacher']}_official_layout.pth")
    if os.path.exists(path):
        show("teacher file", f"{path}, {size_text(os.path.getsize(path))} (made earlier, kept)")
        return path
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = VideoViT(CONFIGS[P["teacher"]])
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    del model
    tmp = f"{path}.part{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)
    show("teacher file", f"{path}, {size_text(os.path.getsize(path))}, written in "
                         f"{time.perf_counter() - t0:.0f} s (a one-time cost: kept for later runs)")
    return path


def cache_figures(cache, labels):
    """Show the cache entries train.py wrote into `cache` against the video files and the names the
    set lists; raise unless there is at most one entry per file. An entry's name ends in a hash of
    the file it holds (data.cached_frames), so two entries of one file share that hash."""
    with open(labels) as f:
        names = [os.path.join(os.path.dirname(labels), r["path"]) for r in csv.DictReader(f)]
    files = {os.path.realpath(p) for p in names}
    entries = [e for e in os.listdir(cache) if e.endswith(".npy")] if os.path.isdir(cache) else []
    size = sum(os.path.getsize(os.path.join(cache, e)) for e in entries)
    keys = {e.rsplit(".", 2)[-2] for e in entries}
    ok = len(keys) == len(entries) <= len(files)
    show("cache entries", f"{len(entries)} ({size_text(size)}) for {len(files)} video files listed "
                          f"under {len(names)} names; one entry per file: {'yes' if ok else 'NO'}")
    if not ok:
        raise RuntimeError(f"{len(entries)} cache entries of {len(keys)} distinct files: a video "
                           f"listed under several names is cached once per name")


def checkpoint_figures(out, teacher_file, teacher):
    """Show the sizes of the checkpoints train.py wrote and the teacher tensors last.pt holds;
    raise if it holds the whole teacher (a paper run saves its trainable part) or cannot be read."""
    written = [n for n in ("last.pt", "best.pt") if os.path.exists(os.path.join(out, n))]
    sizes = [f"{n} {size_text(os.path.getsize(os.path.join(out, n)))}" for n in written]
    show("checkpoints", f"{', '.join(sizes) or 'none written'} (the teacher file: "
                        f"{size_text(os.path.getsize(teacher_file))})")
    with torch.device("meta"):
        total = len(VideoViT(CONFIGS[teacher]).state_dict())
    try:
        saved = len(torch.load(os.path.join(out, "last.pt"), map_location="cpu", mmap=True,
                               weights_only=True)["teacher"])
    except (OSError, KeyError, TypeError, RuntimeError) as e:
        raise RuntimeError(f"cannot count the teacher tensors of {out}/last.pt: "
                           f"{type(e).__name__}: {e}") from None
    show("teacher tensors in last.pt", f"{saved} of {total} (the trainable part; the rest is in "
                                       f"the teacher file)")
    if saved >= total:
        raise RuntimeError(f"last.pt holds the whole teacher ({saved} tensors), not its "
                           f"trainable part")


# -----------------------------------------------------------------------------------------------
# The steps


def distill_steps(teacher, student, x, y, warmup, steps, device):
    """(seconds a step, steps timed, peak bytes on CUDA or None) of the paper's distill step: frozen
    teacher prefix in bf16, AdamW, bf16 autocast around the forward and the backward outside it."""
    distiller = Distiller(teacher, student, teacher_dtype=torch.bfloat16).train()
    opt = build_optimizer([student, teacher, distiller.align], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = distiller(x, y)["loss"]
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t, runs = timed(step, warmup, steps, device)
    return t, runs, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def gpu_distill(P, device):
    print(f"\na. distill step: teacher {P['teacher']} (random weights, freeze_teacher 'last', "
          f"frozen prefix in bf16), students {' and '.join(P['students'])}, "
          f"{P['frames']}x{P['size']}, batch {P['batch']}, AdamW, bf16 autocast")
    geometry = {"num_frames": P["frames"], "img_size": P["size"]}
    ref = matmul_rate(torch.bfloat16, device, P["matmul_s"])
    show_matmul("bf16", ref)
    torch.manual_seed(0)
    tcfg = replace(CONFIGS[P["teacher"]], **geometry)
    t0 = time.perf_counter()
    with torch.device(device):
        teacher = freeze_teacher(VideoViT(tcfg), "last")
    show(f"build {P['teacher']} on {device.type} (not timed below)",
         f"{time.perf_counter() - t0:8.1f} s")
    x = torch.randn(P["batch"], 3, P["frames"], P["size"], P["size"], device=device)
    y = torch.rand(P["batch"], device=device)
    frames, size = P["fastvqa"]  # FAST-VQA's own view: fragments of the same moment
    x_fast = torch.randn(P["batch"], 3, frames, size, size, device=device)
    for name in P["students"]:
        with torch.device(device):
            if name == "fastvqa":
                student = FastVQA(FASTVQA_CONFIGS["b"])
                cost = fastvqa.flops_per_clip(student.cfg, frames, size)
                views = (x, x_fast)
            else:
                student = VideoViT(replace(CONFIGS[name], **geometry))
                cost, views = flops_per_clip(student.cfg), x
        t, runs, peak = distill_steps(teacher, student, views, y, P["warmup"], P["steps"], device)
        flops = P["batch"] * train_flops(cost, tcfg)
        show(f"student {name}", f"{P['batch'] / t:8.1f} clips/s ({t * 1e3:.0f} ms a step, "
                                f"{runs} steps); peak memory "
                                f"{gb(peak) if peak else 'n/a on a CPU'}; "
                                f"~{rate_text(flops / t)} = {flops / t / ref['rate']:.0%} of bf16 "
                                f"matmul")
        student = None
        gc.collect()


def gpu_agreement(P, device):
    print(f"\nb. fp32 vs bf16: the small model's forward, random weights, batch 2, "
          f"{P['frames']}x{P['size']}")
    torch.manual_seed(0)
    with torch.device(device):
        cfg = replace(CONFIGS["small"], num_frames=P["frames"], img_size=P["size"])
        model = VideoViT(cfg).eval()
        x = torch.randn(2, 3, P["frames"], P["size"], P["size"])

    def run(dtype, autocast=False):
        model.to(dtype)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            feat = model.forward_features(x.to(dtype))
            return feat.double(), model.forward_head(feat).double()

    # bf16 weights last: that cast rounds the weights
    out = {"fp64": run(torch.float64), "fp32": run(torch.float32),
           "bf16 autocast": run(torch.float32, autocast=True), "bf16 weights": run(torch.bfloat16)}
    for a, b in (("fp32", "fp64"), ("bf16 autocast", "fp32"), ("bf16 weights", "fp32")):
        parts = []
        for what, u, v in zip(("features", "scores"), out[a], out[b]):
            rel = ((u - v).norm() / v.norm()).item()
            parts.append(f"{what} max |diff| {(u - v).abs().max().item():.2e}, relative {rel:.2e}")
        show(f"{a} vs {b}", "; ".join(parts))


def gpu_train(P, args, device):
    workers = min(16, os.cpu_count() or 1) if not args.smoke else 1
    print(f"\nc. train.py, paper profile: student {P['train_student']}, teacher {P['teacher']} "
          f"from an official-layout file, batch {P['batch']}, {P['train_steps']} steps, --cache, "
          f"{workers} workers; {P['contents']} contents x {P['levels']} levels of "
          f"{P['video'][1]}p H.264, {P['seconds']} s each, each listed {P['copies']} times")
    train_py_starts()
    t0 = time.perf_counter()
    name = f"gpu_set_{P['video'][1]}p_{P['contents']}x{P['levels']}x{P['copies']}"
    labels = make_gpu_set(os.path.join(args.cache, name), P)
    show("video set", f"{time.perf_counter() - t0:8.1f} s ({labels}; made once, then kept)")
    teacher_file = official_teacher(P, args.cache, device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the teacher was built there: train.py needs the memory
    out = tempfile.mkdtemp(prefix="gpu_train_", dir=args.cache)
    cache = os.path.join(out, "cache")
    cmd = [sys.executable, TRAIN_PY, "--data", "csv", "--labels", labels, "--split", "random",
           "--test-fraction", str(2 / P["contents"]),  # 2 contents held out: short evaluations
           "--student", P["train_student"], "--teacher", P["teacher"],
           "--teacher-ckpt", teacher_file,
           "--cache", cache, "--workers", str(workers), "--max-steps", str(P["train_steps"]),
           "--epochs", str(P["train_steps"]),  # enough epochs for --max-steps to be reached
           "--batch-size", str(P["batch"]), "--device", device.type, "--out", out]
    if args.smoke:
        cmd += ["--frames", str(P["frames"]), "--size", str(P["size"]), "--stride", "1",
                "--test-clips", "1", "--log-every", str(P["log_every"])]
    show("command", " ".join(cmd[1:]))
    t0 = time.perf_counter()
    code, log = run_logged(cmd, P["train_timeout"], os.path.join(out, "train.log"))
    wall = time.perf_counter() - t0
    steps = [line for line in log.splitlines() if re.search(r" step \d+/\d+ ", line)]
    stopped = f"stopped at the {P['train_timeout']} s timeout"
    status = {0: "finished", None: stopped}.get(code, f"exit {code}")
    show("train.py", f"{status} in {wall:.0f} s; {len(steps)} log lines; log {out}/train.log")
    if code != 0 or not steps:
        print("  " + "\n  ".join(log.strip().splitlines()[-15:]))
    if not steps:
        raise RuntimeError(f"train.py logged no step ({status})")
    for text in re.findall(r"^cache: .*$", log, re.M):
        show("train.py's cache", text[len("cache: "):])
    # each log line: throughput, and the share of wall time spent waiting for the DataLoader since
    # the last one
    rates = [float(m[1]) for m in (re.search(r"([\d.]+) clips/s", s) for s in steps) if m]
    waits = [int(m[1]) for m in (re.search(r"wait (\d+)%", s) for s in steps) if m]
    if len(rates) != len(steps) or len(waits) != len(steps):
        raise RuntimeError(f"of {len(steps)} log lines, {len(rates)} have `X clips/s` and "
                           f"{len(waits)} `wait NN%`: train.py's log format changed")
    last = re.search(r" step (\d+)/", steps[-1])[1]
    show("clips/s per log line", f"{' '.join(f'{r:.1f}' for r in rates)}; mean "
                                 f"{statistics.mean(rates):.1f} (up to step {last}; the first "
                                 f"epoch builds the cache)")
    show("waiting for data (wait NN%)", f"mean {statistics.mean(waits):.0f}% of the loop's time; "
                                        f"per log line: {' '.join(map(str, waits))}")
    evals = [int(s) for s in re.findall(r"^eval after epoch \d+ \(.*?(\d+)s\)$", log, re.M)]
    show("evaluations (not in the figures above)", f"{len(evals)}, {sum(evals)} s in all")
    problems = [] if code == 0 else [f"train.py {status}"]
    for figures in (lambda: checkpoint_figures(out, teacher_file, P["teacher"]),
                    lambda: cache_figures(cache, labels)):
        try:  # every figure is shown before the step fails
            figures()
        except RuntimeError as e:
            problems.append(str(e))
    if problems:
        raise RuntimeError("; ".join(problems))


def check(args):
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("the GPU check needs CUDA; --smoke runs the same code on a CPU")
    P = SMOKE if args.smoke else GPU
    smoke = " (--smoke: tiny sizes on the CPU)" if args.smoke else ""
    print(f"GPU check{smoke}: {machine(device)}")
    if os.path.isdir("/dev/shm"):  # DataLoader workers hand batches over through it
        shm = os.statvfs("/dev/shm")
        print(f"/dev/shm: {shm.f_bavail * shm.f_frsize / 1e9:.1f} GB free")
    t_all, failed = time.perf_counter(), []
    steps = (("a. distill step", lambda: gpu_distill(P, device)),
             ("b. fp32 vs bf16", lambda: gpu_agreement(P, device)),
             ("c. train.py", lambda: gpu_train(P, args, device)))
    for name, step in steps:
        t0 = time.perf_counter()
        try:
            step()
        except Exception as e:  # one failure must not cost the rest of a short lease
            failed.append(name)
            print(f"{name} FAILED: {type(e).__name__}: {e}")
            traceback.print_exc(limit=-3, file=sys.stdout)
        show(f"({name} took)", f"{time.perf_counter() - t0:8.1f} s")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\nGPU check took {time.perf_counter() - t_all:.0f} s; "
          + (f"FAILED: {', '.join(failed)}" if failed else "every step ran"))
    return 1 if failed else 0


# -----------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes on the CPU: the same code paths, for the tests")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "internvqa_bench"),
                   help="the generated video set and the teacher file are kept here")
    args = p.parse_args(argv)
    os.makedirs(args.cache, exist_ok=True)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())

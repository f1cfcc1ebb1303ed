"""Speed and memory of InternVQA on this machine, each figure beside the ratio that gives it meaning.

    python bench.py                   # CPU, or CUDA when present
    python bench.py --quick           # the short run: under 5 minutes on a 2-core CPU
    python bench.py --device cpu --dtypes fp32 --sections 14

Every ratio is taken within one run, so it holds on a noisy machine (issue 8). The figures:
1. Forward at the paper's geometry (8x224x224, 2049 tokens): clips/s and FLOP/s (model.flops_per_clip)
   of small and base at batch 1 and 4 (--quick: base at batch 1 only) and one forward of 1b, in
   fp32 and bf16 (bf16: the weights cast to bf16, as Distiller(teacher_dtype=...) runs the frozen
   teacher), each beside a dense n x n x n matmul in that dtype timed just before
   (n = 2048 on a CPU, 8192 on a GPU; smaller where one would take over half a second):
   efficiency = achieved / matmul.                  Target: small, batch 1, fp32 >= 80%.
2. Students over the teacher: clips/s of small and base over 1b, beside their parameter ratios.
3. A distill step (Distiller, freeze_teacher "last") against a student-only step: time and
   saved-for-backward bytes; peak memory on CUDA. A 1b training step takes minutes on a CPU, so the
   CPU default teacher is base at 4x112x112, batch 4; on CUDA the paper's 1b at 8x224x224, batch 8.
   Target: distill bytes <= 1.1 x (student step + teacher tail).
4. Clip loading: data.read_clip of 8 frames at stride 4 from the middle of a 10 s 1080p H.264 file
   (25 fps, 2 s GOP; testsrc2, made once with the bundled ffmpeg and cached) against decoding every
   frame (imageio_ffmpeg.read_frames); then 100 frames of raw 8-bit 4:2:0 YUV: 8 frames against
   converting all of them.       Targets: >= 4x for each, and the YUV clip faster than the H.264 clip.
5. Training throughput of train.py's quick-start profile: student small, teacher small, 2x84x84,
   batch 8, AdamW, fp32 and bf16 autocast (as train.py --dtype bf16 runs).

Timing: warm-up runs, then the median of several. A run predicted (its FLOPs over the matmul rate just
measured) to take longer than --budget seconds is skipped and its line says so: on a CPU without
native bf16 that is every bf16 model run.
"""
import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import datetime

import imageio_ffmpeg
import torch
import torch.nn.functional as F

import data
from distill import Distiller, build_optimizer, freeze_teacher, frozen_prefix, saved_tensor_bytes, teacher_features
from model import CONFIGS, VideoViT, count_params, flops_per_clip

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--quick", action="store_true", help="fewer repeats, no base at batch 4: under 5 minutes on 2 CPU cores")
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated, from fp32 and bf16")
p.add_argument("--budget", type=float, default=None,
               help="skip a run predicted to take longer than this many seconds (default 90, --quick 75)")
p.add_argument("--sections", default="12345", help="which figures to measure, e.g. 14")
p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "internvqa_bench"), help="test videos go here")
args = p.parse_args()

device = torch.device(args.device)
cuda = device.type == "cuda"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
dtypes = args.dtypes.split(",")
if not set(dtypes) <= set(DTYPES):
    p.error(f"--dtypes takes {list(DTYPES)}, got {args.dtypes}")
budget = args.budget or (75.0 if args.quick else 90.0)
WARMUP, REPEATS = (1, 3) if args.quick else (2, 5)
targets = []  # (what, measured, passed) for the summary line


def show(label, text):
    print(f"{label:<44} {text}", flush=True)


def sync():
    if cuda:
        torch.cuda.synchronize(device)


def timed(fn, warmup=WARMUP, repeats=REPEATS, max_s=30.0):
    """(median seconds of fn(), runs timed): `warmup` untimed runs, then up to `repeats` timed
    ones, stopping early (after at least one) once max_s have passed."""
    times, start = [], time.perf_counter()
    for i in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - start > max_s:
                break
    return statistics.median(times), len(times)


def matmul_rate(dtype):
    """(FLOP/s, n) of an n x n by n x n matmul in dtype, n = 2048 on a CPU and 8192 on a GPU, halved
    until one takes at most half a second (bf16 without hardware support is ~300x slower)."""
    n = 8192 if cuda else 2048
    a = torch.randn(256, 256, device=device, dtype=dtype)
    t256, _ = timed(lambda: a @ a, 1, 3)
    while n > 256 and t256 * (n / 256) ** 3 > 0.5:
        n //= 2
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    t, _ = timed(lambda: a @ b, 1, 5)
    return 2 * n ** 3 / t, n


def gb(nbytes):
    return f"{nbytes / 1e9:.2f} GB"


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if cuda else ""
    return (f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"device {device}; {datetime.now():%Y-%m-%d %H:%M}")


print(f"machine: {machine()}")
print(f"mode: {'--quick' if args.quick else 'full'}; timings are medians after {WARMUP} warm-up runs; "
      f"runs predicted over {budget:.0f} s are skipped")
t_bench = time.perf_counter()

# -----------------------------------------------------------------------------------------------
# 1 and 2. Forward at 8x224x224; the students over the 1b teacher

clips_per_s = {}  # (model, dtype) -> clips/s at batch 1
if "1" in args.sections or "2" in args.sections:
    print("\n1. forward at 8x224x224 (2049 tokens), random weights, torch.inference_mode")
    for name, batches in [("small", [1, 4]), ("base", [1] if args.quick else [1, 4]), ("1b", [1])]:
        model = None  # built on first use, so skipped runs cost nothing
        for dname in dtypes:
            dtype = DTYPES[dname]
            rate, n = matmul_rate(dtype)
            show(f"matmul {dname} ({n}^3)", f"{rate / 1e9:8.1f} GFLOP/s")
            for batch in batches:
                label, flops = f"forward {name} batch {batch} {dname}", flops_per_clip(CONFIGS[name]) * batch
                predicted = flops / rate
                if predicted > budget:
                    show(label, f"skipped: ~{predicted:.0f} s per forward at this matmul rate (--budget {budget:.0f})")
                    continue
                if model is None:
                    torch.manual_seed(0)
                    t0 = time.perf_counter()
                    with torch.device(device):
                        model = VideoViT(CONFIGS[name]).eval()
                    if name == "1b":
                        show("build 1b (not timed below)", f"{time.perf_counter() - t0:8.1f} s")
                model.to(dtype)
                x = torch.randn(batch, 3, 8, 224, 224, device=device)
                slow = predicted > 10  # the 1b on a CPU: a single run, no warm-up
                with torch.inference_mode():
                    t, runs = timed(lambda: model(x), *((0, 1) if slow else (WARMUP, REPEATS)))
                if batch == 1:
                    clips_per_s[name, dname] = 1 / t
                eff = flops / t / rate
                show(label, f"{batch / t:8.3f} clips/s {flops / t / 1e9:7.1f} GFLOP/s = {eff:4.0%} of matmul"
                            f" ({runs} run{'s' if runs > 1 else ''}{', slow on a CPU' if slow and not cuda else ''})")
                if (name, batch, dname) == ("small", 1, "fp32"):
                    targets.append(("small fp32 efficiency", f"{eff:.0%} >= 80%", eff >= 0.8))
        del model

    print("\n2. students over the 1b teacher (batch 1)")
    for dname in dtypes:
        for name in ("small", "base"):
            label = f"{name} over 1b, {dname}"
            if (name, dname) not in clips_per_s or ("1b", dname) not in clips_per_s:
                show(label, "n/a: not both measured above")
                continue
            speedup = clips_per_s[name, dname] / clips_per_s["1b", dname]
            params = count_params(CONFIGS["1b"]) / count_params(CONFIGS[name])
            show(label, f"{speedup:8.1f}x the clips/s, with {params:.1f}x fewer parameters")

# -----------------------------------------------------------------------------------------------
# 3. A distill step against a student-only step

if "3" in args.sections:
    tname, frames, size, batch = ("1b", 8, 224, 8) if cuda else ("base", 4, 112, 4)
    print(f"\n3. distill step (teacher {tname}, freeze_teacher 'last'; student small; {frames}x{size}x{size}, "
          f"batch {batch}, fp32) vs student-only step")
    torch.manual_seed(0)
    with torch.device(device):
        teacher = freeze_teacher(VideoViT(replace(CONFIGS[tname], num_frames=frames, img_size=size)), "last")
        student = VideoViT(replace(CONFIGS["small"], num_frames=frames, img_size=size))
    distiller = Distiller(teacher, student).train()
    x = torch.randn(batch, 3, frames, size, size, device=device)
    y = torch.rand(batch, device=device)
    n_frozen = frozen_prefix(teacher)
    with torch.no_grad():
        h = teacher.run_blocks(teacher.embed(x), teacher.blocks[:n_frozen])

    losses = {  # what each step backpropagates
        "student": lambda: F.mse_loss(student(x), y),
        "teacher tail": lambda: F.mse_loss(teacher.forward_head(teacher.pool(teacher.run_blocks(h, teacher.blocks[n_frozen:]))), y),
        "distill": lambda: distiller(x, y)["loss"],
    }
    saved = {k: saved_tensor_bytes(fn)[1] for k, fn in losses.items()}

    def step(loss_fn):
        def run():
            distiller.zero_grad(set_to_none=True)
            loss_fn().backward()
        return run

    t_student, _ = timed(step(losses["student"]))
    t_distill, runs = timed(step(losses["distill"]))
    with torch.no_grad():
        t_teacher, _ = timed(lambda: teacher_features(teacher, x))
    show("distill step", f"{t_distill:8.2f} s = {t_distill / t_student:.2f}x the student step ({t_student:.2f} s); "
                         f"teacher forward alone {t_teacher:.2f} s ({runs} runs)")
    ratio = saved["distill"] / (saved["student"] + saved["teacher tail"])
    show("saved for backward", f"{gb(saved['distill'])} = {ratio:.3f}x (student {gb(saved['student'])} "
                               f"+ teacher tail {gb(saved['teacher tail'])})")
    targets.append(("distill saved bytes", f"{ratio:.3f}x <= 1.1x", ratio <= 1.1))
    if cuda:
        peaks = {}
        for k in ("student", "distill"):
            torch.cuda.reset_peak_memory_stats(device)
            step(losses[k])()
            peaks[k] = torch.cuda.max_memory_allocated(device)
        show("peak memory (CUDA max allocated)", f"distill {gb(peaks['distill'])}, student {gb(peaks['student'])}")
    else:
        show("peak memory", "not measured on a CPU (torch tracks it on CUDA only)")
    del teacher, student, distiller, h

# -----------------------------------------------------------------------------------------------
# 4. Clip loading


def ffmpeg_to(out, *ffmpeg_args):
    """Run the bundled ffmpeg into out + '.part', check the result, then rename it into place, so an
    interrupted run never leaves a file that looks cached (a failed encode can still exit 0)."""
    part = out + ".part"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *ffmpeg_args, part]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode or not os.path.getsize(part):
        raise RuntimeError(f"ffmpeg failed making {out}: {run.stderr.strip()[-500:]}")
    os.replace(part, out)


if "4" in args.sections:
    os.makedirs(args.cache, exist_ok=True)
    mp4 = os.path.join(args.cache, "testsrc2_1920x1080_25fps_10s_gop50.mp4")
    yuv = os.path.join(args.cache, "testsrc2_1920x1080_100frames.yuv")  # read_clip takes WxH from the name
    print(f"\n4. clip loading (files in {args.cache})")
    if not os.path.exists(mp4):
        t0 = time.perf_counter()
        ffmpeg_to(mp4, "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25:duration=10", "-c:v", "libx264",
                  "-preset", "veryfast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
                  "-f", "mp4")
        show("made the H.264 file (once)", f"{time.perf_counter() - t0:8.1f} s")
    if not os.path.exists(yuv):
        ffmpeg_to(yuv, "-i", mp4, "-frames:v", "100", "-pix_fmt", "yuv420p", "-f", "rawvideo")
    info = data.probe(mp4)
    if info["frames"] != 250:
        raise RuntimeError(f"{mp4}: expected 250 frames, probe says {info['frames']}; delete it to remake it")
    idx = [info["frames"] // 2 - 14 + 4 * i for i in range(8)]  # 8 frames at stride 4 around the middle

    def decode_all(path, keep):
        kept = {}
        for i, frame in enumerate(imageio_ffmpeg.read_frames(path)):  # first item: the metadata
            if i - 1 in keep:
                kept[i - 1] = frame
        return kept

    t_probe, _ = timed(lambda: data.probe(mp4))
    t_clip, runs = timed(lambda: data.read_clip(mp4, idx, info=info))
    t_all, _ = timed(lambda: decode_all(mp4, idx), 0, 3)  # the page cache is warm from the clip reads
    clip, ref = data.read_clip(mp4, idx, info=info), decode_all(mp4, idx)
    same = all(bytes(clip[j]) == ref[i] for j, i in enumerate(idx))
    show("H.264 1080p: read_clip, 8 frames at stride 4", f"{t_clip:8.3f} s = {t_all / t_clip:.1f}x faster than decoding "
                                                         f"all {info['frames']} frames ({t_all:.2f} s); same pixels: "
                                                         f"{'yes' if same else 'NO'}; probe {t_probe:.3f} s once per file")
    targets.append(("H.264 clip read", f"{t_all / t_clip:.1f}x >= 4x", t_all / t_clip >= 4 and same))

    n_yuv = data.probe(yuv)["frames"]
    yidx = [n_yuv // 2 - 14 + 4 * i for i in range(8)]
    t_yclip, _ = timed(lambda: data.read_clip(yuv, yidx))
    t_yall, _ = timed(lambda: [data.read_clip(yuv, range(i, min(i + 10, n_yuv))) for i in range(0, n_yuv, 10)],
                      0, 1 if args.quick else 3)  # ten frames at a time, to bound the memory
    show("raw YUV 1080p: read_clip, 8 frames", f"{t_yclip:8.3f} s = {t_yall / t_yclip:.1f}x faster than converting all "
                                               f"{n_yuv} frames ({t_yall:.2f} s); {t_clip / t_yclip:.1f}x faster than "
                                               f"the H.264 clip")
    targets.append(("YUV clip read", f"{t_yall / t_yclip:.1f}x >= 4x, {t_clip / t_yclip:.1f}x the H.264 clip",
                    t_yall / t_yclip >= 4 and t_yclip < t_clip))

# -----------------------------------------------------------------------------------------------
# 5. Training throughput of the quick-start profile

if "5" in args.sections:
    print("\n5. training, quick-start profile (student small, teacher small, 2x84x84, batch 8, AdamW)")
    cfg = replace(CONFIGS["small"], num_frames=2, img_size=84, init_values=0.1, patch_init="dct")  # train.py's QUICK
    batch, frames, size = 8, 2, 84
    flops = batch * 4 * flops_per_clip(cfg)  # about: student forward + backward (3x) and teacher forward (1x)
    for dname in dtypes:
        dtype = DTYPES[dname]
        rate, n = matmul_rate(dtype)
        show(f"matmul {dname} ({n}^3)", f"{rate / 1e9:8.1f} GFLOP/s")
        label = f"train step {dname}{' autocast' if dname != 'fp32' else ''}"
        if flops / rate > budget:
            show(label, f"skipped: ~{flops / rate:.0f} s per step at this matmul rate (--budget {budget:.0f})")
            continue
        torch.manual_seed(0)
        with torch.device(device):
            teacher, student = freeze_teacher(VideoViT(cfg), "last"), VideoViT(cfg)
            x, y = torch.randn(batch, 3, frames, size, size), torch.rand(batch)
        distiller = Distiller(teacher, student).train()
        opt = build_optimizer([student, teacher], lr=1e-3)

        def train_step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = distiller(x, y)["loss"]
            loss.backward()
            opt.step()

        t, runs = timed(train_step)
        show(label, f"{batch / t:8.2f} clips/s ({t:.2f} s a step, {runs} runs); ~{flops / t / 1e9:.0f} GFLOP/s "
                    f"= ~{flops / t / rate:.0%} of matmul")

# -----------------------------------------------------------------------------------------------
# Summary

print(f"\nbench took {time.perf_counter() - t_bench:.0f} s")
print("SUMMARY: " + " | ".join(f"{'PASS' if ok else 'FAIL'} {what} {measured}" for what, measured, ok in targets))

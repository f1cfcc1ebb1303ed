"""Helpers that bench.py and gpu_check.py share: printing, timing, the matmul reference, the FLOPs
of a distill step, the machine line and the test-video maker. Neither tool imports the other.

    from tools._common import matmul_rate, show, timed
"""
import math
import os
import statistics
import time
from dataclasses import replace
from datetime import datetime

import torch

import runtime
from model import flops_per_clip


def show(label, text):
    print(f"{label:<44} {text}", flush=True)


def gb(nbytes):
    return f"{nbytes / 1e9:.2f} GB"


def rate_text(flops_per_s):
    """FLOP/s with three or more significant digits, in GFLOP/s below 1 TFLOP/s."""
    tera = flops_per_s >= 1e12
    value, unit = (flops_per_s / 1e12, "TFLOP/s") if tera else (flops_per_s / 1e9, "GFLOP/s")
    return f"{value:.1f} {unit}" if value >= 100 else f"{value:.3g} {unit}"


def sync(device):
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, warmup, repeats, device=None, max_s=30.0):
    """(median seconds of fn(), runs timed): `warmup` untimed runs, then up to `repeats` timed
    ones, stopping early (after at least one) once max_s have passed."""
    times, start = [], time.perf_counter()
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - start > max_s:
                break
    return statistics.median(times), len(times)


def matmul_rate(dtype, device, seconds=0.25, cap=None):
    """dict(rate, n, count, launch) of dense n x n by n x n products in dtype.

    Each timing runs `count` products back to back between two synchronisations. n doubles from
    128 (up to cap: 16384 on a GPU, 4096 on a CPU) while the next size would still fit a timing in
    `seconds`; then count grows until one timing takes about `seconds`. So the reference does not
    depend on launch and sync overhead, which a single small product mostly measures (a 256^3
    product is well under a microsecond of work on a GPU, less than launching it). launch: the
    time of `count` 8 x 8 products (nothing but their launch) over that of the batch, the
    overhead's share; under 5% at these sizes. The rate of bf16 differs by orders of magnitude
    between CPUs with and without native support: n adapts, so that measuring takes about
    5 x `seconds` on any machine."""
    cap = cap or (16384 if device.type == "cuda" else 4096)

    def batch(a, b, count):
        return lambda: [a @ b for _ in range(count)]

    n, count = 128, 8
    while True:
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        t, _ = timed(batch(a, b, count), 1, 1, device)
        if 8 * t > seconds or n == cap:  # twice the size would take eight times as long
            break
        n *= 2
    count = max(count, math.ceil(count * seconds / t))
    t, _ = timed(batch(a, b, count), 1, 3, device)
    small = torch.randn(8, 8, device=device, dtype=dtype)
    t_small, _ = timed(batch(small, small, count), 1, 3, device)
    return dict(rate=count * 2 * n ** 3 / t, n=n, count=count, launch=t_small / t)


def show_matmul(dname, ref):
    note = "" if ref["launch"] < 0.05 else " (over 5%: the reference is launch-bound)"
    show(f"matmul {dname} ({ref['count']} x {ref['n']}^3 a timing)",
         f"{rate_text(ref['rate'])}; launching: under {ref['launch']:.1%} of it{note}")


def train_flops(student_flops, teacher_cfg):
    """FLOPs of one distill step per clip: forward + backward (~3x forward) of what trains, the
    student (its forward FLOPs given) and the teacher's last block, and a forward (1x) of the
    frozen teacher prefix."""
    block = (flops_per_clip(replace(teacher_cfg, depth=1))
             - flops_per_clip(replace(teacher_cfg, depth=0)))
    return 3 * student_flops + flops_per_clip(teacher_cfg) + 2 * block


def machine(device):
    """The CPU (and its bf16 instructions), the GPU, torch, threads, device and time, one line."""
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"{runtime.cpu_features()}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; device {device}; {datetime.now():%Y-%m-%d %H:%M}")


def make_video(path, frames, *ffmpeg_args):
    """The bundled ffmpeg writes `path` (format from its extension) unless it exists: into a .part
    name first, which must then probe to `frames` frames before the rename, so an interrupted or
    failed run never leaves a file that looks made (a failed encode can still exit 0:
    docs/reference.md, section 8). toy.py and video.py need imageio-ffmpeg: imported here."""
    import toy
    import video
    if os.path.exists(path):
        return path
    stem, ext = os.path.splitext(path)
    part = f"{stem}.part{os.getpid()}{ext}"  # keeps the extension (and a raw file's WxH) for probe
    ok, message = toy.run_ffmpeg([*ffmpeg_args, part])
    try:
        n = video.probe(part)["frames"] if ok else None
    except (OSError, ValueError) as e:
        n, message = None, str(e)
    if n != frames:
        if os.path.exists(part):
            os.remove(part)
        raise RuntimeError(f"ffmpeg failed making {path} ({n} frames, expected {frames}): "
                           f"{message}")
    os.replace(part, path)
    return path


def x264(gop, crf=23):
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-g", str(gop),
            "-keyint_min", str(gop), "-sc_threshold", "0", "-pix_fmt", "yuv420p"]

"""Speed and memory of InternVQA on this machine, each figure beside a ratio that gives it meaning.

A tool beside the method, not part of it. Run it from the repository root, as a script or as a
module; it puts the root on sys.path itself. Its helpers shared with gpu_check.py are in
tools/_common.py (neither tool imports the other, but for --gpu, which hands over).

    python tools/bench.py                 # every section; CPU, or CUDA when present
    python tools/bench.py --quick         # the short run: about 5 minutes on a 2-core CPU
    python tools/bench.py --sections 4    # the clip loader alone (add --smoke for tiny sizes)
    python tools/bench.py --profile       # where the time goes: torch.profiler's top operators
    python tools/bench.py --gpu           # the one-shot GPU check: python tools/gpu_check.py
    python -m tools.bench --help          # the same tool, as a module

Every ratio is taken within one run, so it holds on a shared or noisy machine, where absolute
figures drift from run to run. Efficiencies are taken against matmul_rate(): the FLOP/s of
dense n x n products in the same dtype, in batches grown until one takes 0.25 s, so that
launching them is a small share of the time (its line says how small). First the machine, with
its CPU's bf16 instructions, and the dtype runtime.cpu_dtype picks on it (predict.py's default;
train.py trains in fp32 on a CPU). The sections:
0. FLOPs a clip of each student at its paper view, in this project's count (2 a multiply-add)
   and in fvcore's (1 a multiply-add), against NTIRE 2025's 120 G cap (fvcore's count).
1. Forward at the paper's geometry (8x224x224, 2049 tokens): clips/s and FLOP/s
   (model.flops_per_clip) of small and base at batch 1 and 4 (--quick: base at batch 1 only)
   and one forward of 1b; FAST-VQA-B at its 32x224x224 (fastvqa.flops_per_clip); in fp32 and
   bf16 (the weights cast, as Distiller(teacher_dtype=...) runs the frozen teacher), each
   against the matmul rate in that dtype. Beside small's fp32 row, where timm imports, timm's
   ViT doing the same math on the same tokens, in turns at 1 and 2 threads: our best time over
   its best.   Targets: small, batch 1, fp32 >= 80% of matmul; the timm ratios <= 1.00.
2. Students over the teacher: clips/s of small, base and FAST-VQA-B over 1b, beside their
   parameter ratios.
3. A distill step (Distiller, freeze_teacher "last") against a student-only step: time and
   saved-for-backward bytes; peak memory on CUDA. The CPU default teacher is base at 4x112x112,
   batch 4 (a 1b step takes minutes there); on CUDA the paper's 1b at 8x224x224, batch 8.
   Target: distill bytes <= 1.1 x (student step + teacher tail).
4. Clip loading at the paper's geometry: 8 frames at stride 4, short side resized to 224, a 224
   crop, from 6 s of 2160p HEVC, 10 s of 1080p H.264 and 100 frames of 1080p raw YUV (testsrc2,
   made once with the bundled ffmpeg into --cache). For each, clips/s in one process: uncached
   (data.VideoDataset(resize=True)) beside the floor (ffmpeg alone decoding and scaling the
   same frames into a pipe); cached (VideoDataset(cache=DIR)) and the first read that builds the
   entry. At native size on the H.264 file, video.read_clip against decoding every frame.
   The quick start's small videos (176 x 144, 2-frame clips): 8 clips in one ffmpeg run
   (read_clips) against one run a clip, 16 probes in one run (probe_many) against one each.
   Targets: >= 10 clips/s from the 2160p source once cached; uncached within 1.2x the floor;
   read_clip exact and >= 4x faster.
5. The quick start's training step (train.py's QUICK profile: students small, teacher small,
   2x84x84, batch 8, AdamW, clipping) at 1 and 2 threads, fp32 and bf16 autocast: clips/s, and
   its matmul FLOPs a second as a share of the matmul rate, and the page faults a step (freed
   memory kept for reuse as in train.py; --system-malloc: glibc's default, to compare).
A target's verdict is taken on the figure as printed, so the line always agrees with itself.

Timing: warm-up runs, then the median of several (the timm rows: the best). A run predicted
(its FLOPs over the matmul rate) to take longer than --budget seconds is skipped and its line
says so: on a CPU without native bf16 that is every bf16 model run.
"""
import os
import sys

# The tools live in tools/ but import the project's modules from the repository root, whether run
# as `python tools/bench.py` (sys.path[0] is tools/) or as `python -m tools.bench`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

import runtime
from distill import Distiller, build_optimizer, freeze_teacher, frozen_prefix, teacher_features
from fastvqa import FASTVQA_CONFIGS, FastVQA
from fastvqa import flops_per_clip as fastvqa_flops
from model import CONFIGS, VideoViT, flops_per_clip
from tools._common import (gb, machine, make_video, matmul_rate, rate_text, show, show_matmul,
                           timed, train_flops, x264)

# video.py, data.py and toy.py import imageio-ffmpeg: they are imported in the functions that read
# or make video, so that the model sections (and gpu_check.py's model steps) run without it.

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
THREADS = sorted({1, min(2, os.cpu_count() or 1)})  # the thread counts of the timm and train rows
NTIRE_CAP = 120e9  # NTIRE 2025's cap per clip, counted as fvcore counts: a multiply-add is 1 FLOP

# -----------------------------------------------------------------------------------------------
# Helpers: counting, test videos


def count_params(build):
    """Parameters of the model build() makes, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def saved_tensor_bytes(fn):
    """(fn(), bytes of the distinct storages autograd saves for backward while fn runs): views of
    one storage count once, as they cost memory once."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr(), t.device] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, sum(storages.values())


def x265(gop):
    return ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-x265-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error"]


# -----------------------------------------------------------------------------------------------
# 0. FLOPs a clip in both conventions, against NTIRE 2025's cap


def flops_section():
    """Each student at its paper view, in this project's count (model.flops_per_clip and
    fastvqa.flops_per_clip: 2 FLOPs a multiply-add) and in fvcore's, which NTIRE's cap uses (1 a
    multiply-add); both count every matmul and convolution, attention's included."""
    print(f"\n0. FLOPs a clip, ours (2 a multiply-add) and as fvcore counts (1 a multiply-add), "
          f"against NTIRE 2025's {NTIRE_CAP / 1e9:.0f} G cap (fvcore's count)")
    for name, _, flops, shape, _ in [r for r in forward_models(quick=True) if r[0] != "1b"]:
        macs = flops / 2
        show(f"{name} at {'x'.join(map(str, shape[1:]))}",
             f"{flops / 1e9:7.1f} GFLOPs = {macs / 1e9:6.1f} G in fvcore's count: "
             f"{macs / NTIRE_CAP:.0%} of the cap, {'within' if macs <= NTIRE_CAP else 'OVER'}")


# -----------------------------------------------------------------------------------------------
# 1 and 2. Forward at the paper's geometry; the students over the 1b teacher


def forward_models(quick):
    """(name, build, FLOPs a clip, clip shape, batches) of section 1's rows: the ViTs at the
    paper's 8x224x224 (2049 tokens), FAST-VQA-B at its own 32x224x224 (7 x 7 fragments)."""
    vits = [("small", [1, 4]), ("base", [1] if quick else [1, 4]), ("1b", [1])]
    fast = FASTVQA_CONFIGS["b"]
    rows = [(name, partial(VideoViT, CONFIGS[name]), flops_per_clip(CONFIGS[name]),
             (3, 8, 224, 224), batches) for name, batches in vits]
    return rows + [("fastvqa-b", partial(FastVQA, fast), fastvqa_flops(fast, 32, 224),
                    (3, 32, 224, 224), [1])]


def same_math_timm(cfg):
    """timm's VisionTransformer doing our ViT's math: RMSNorm, tanh GELU, q/k norm, LayerScale, no
    qkv bias, the same width, depth and heads on the same 2049 tokens (the 8 frames of 16 x 16
    patches as one 224 x 1792 image). What differs: timm normalises q and k per head (ours over
    the full width, the same cost) and ends in a norm and a class-token head where ours pools with
    attention (under 1% of the forward)."""
    from timm.layers import GELUTanh, RmsNorm
    from timm.models.vision_transformer import VisionTransformer
    return VisionTransformer(
        img_size=(cfg.img_size, cfg.num_frames * cfg.img_size), patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
        qkv_bias=False, qk_norm=True, init_values=cfg.init_values, norm_layer=RmsNorm,
        act_layer=GELUTanh, num_classes=1)


def timm_row(args, device, ours, x, targets=None):
    """Our fp32 small model (`ours`, on its batch-1 clip x) against same_math_timm at 1 and 2
    threads, timed in turns so that a load that comes and goes on a shared machine slows both
    alike: the best time of ours over the best of timm's. timm is not a dependency."""
    label = "forward timm ViT-S, same math, batch 1 fp32"
    try:
        import timm
        with torch.device(device):
            theirs = same_math_timm(ours.cfg).eval()
    except ImportError as e:
        show(label, "skipped: timm is not installed (pip install timm to compare)"
             if e.name == "timm" else f"skipped: timm does not import ({e})")
        return
    image = torch.randn(1, 3, ours.cfg.img_size, ours.cfg.num_frames * ours.cfg.img_size,
                        device=device)
    threads = torch.get_num_threads()
    for n in THREADS if device.type == "cpu" else [threads]:
        torch.set_num_threads(n)
        times = {"ours": [], "timm": []}
        with torch.inference_mode():
            for i in range(args.warmup + args.repeats):
                for name, fn in (("ours", lambda: ours(x)), ("timm", lambda: theirs(image))):
                    t, _ = timed(fn, 0, 1, device)
                    if i >= args.warmup:
                        times[name].append(t)
        ratio = round(min(times["ours"]) / min(times["timm"]), 2)  # the verdict: on the figure
        show(f"{label}, {n} thread{'s' if n > 1 else ''}",
             f"timm {min(times['timm']):.2f} s, ours {min(times['ours']):.2f} s = {ratio:.2f}x "
             f"timm's time (best of {args.repeats} in turns; timm {timm.__version__})")
        if targets is not None:
            targets.append((f"same-math timm ratio, {n} threads", f"{ratio:.2f}x <= 1.00x",
                            ratio <= 1.0))
    torch.set_num_threads(threads)


def forward_section(args, device, targets):
    clips_per_s = {}  # (model, dtype) -> clips/s at batch 1
    params = {}  # model -> parameters
    print("\n1. forward, random weights, torch.inference_mode: the ViTs at 8x224x224 (2049 "
          "tokens), FAST-VQA-B at 32x224x224")
    for name, build, flops_clip, shape, batches in forward_models(args.quick):
        params[name] = count_params(build)
        model = None  # built on first use, so skipped runs cost nothing
        for dname in args.dtypes:
            dtype = DTYPES[dname]
            ref = matmul_rate(dtype, device)
            show_matmul(dname, ref)
            for batch in batches:
                label = f"forward {name} batch {batch} {dname}"
                flops = flops_clip * batch
                predicted = flops / ref["rate"]
                if predicted > args.budget:
                    show(label, f"skipped: ~{predicted:.0f} s per forward at this matmul rate "
                                f"(--budget {args.budget:.0f})")
                    continue
                if model is None:
                    torch.manual_seed(0)
                    t0 = time.perf_counter()
                    with torch.device(device):
                        model = build().eval()
                    if name == "1b":
                        show("build 1b (not timed below)", f"{time.perf_counter() - t0:8.1f} s")
                model.to(dtype)
                x = torch.randn(batch, *shape, device=device, dtype=dtype)
                slow = predicted > 10  # the 1b on a CPU: a single run, no warm-up
                reps = (0, 1) if slow else (args.warmup, args.repeats)
                with torch.inference_mode():
                    t, runs = timed(lambda: model(x), *reps, device)
                if batch == 1:
                    clips_per_s[name, dname] = 1 / t
                eff = round(flops / t / ref["rate"], 2)  # the verdict is on the printed figure
                note = ", slow on a CPU" if slow and device.type == "cpu" else ""
                show(label, f"{batch / t:8.3f} clips/s {rate_text(flops / t)} = {eff:4.0%} of "
                            f"matmul ({runs} run{'s' if runs > 1 else ''}{note})")
                if (name, batch, dname) == ("small", 1, "fp32"):
                    targets.append(("small fp32 efficiency", f"{eff:.0%} >= 80%", eff >= 0.8))
                    timm_row(args, device, model, x, targets)

    print("\n2. students over the 1b teacher (batch 1; FAST-VQA-B on its own clips)")
    for dname in args.dtypes:
        for name in ("small", "base", "fastvqa-b"):
            label = f"{name} over 1b, {dname}"
            if (name, dname) not in clips_per_s or ("1b", dname) not in clips_per_s:
                show(label, "n/a: not both measured above")
                continue
            speedup = clips_per_s[name, dname] / clips_per_s["1b", dname]
            show(label, f"{speedup:8.1f}x the clips/s, with {params['1b'] / params[name]:.1f}x "
                        f"fewer parameters")


# -----------------------------------------------------------------------------------------------
# --profile: where the time goes


def profile_section(args, device, top=12):
    """torch.profiler's top operators by CPU self time (on a GPU: the time to launch them): one
    forward of small (fp32, 8x224x224, batch 1) and one quick-start step, at each of THREADS."""
    from torch.profiler import ProfilerActivity, profile
    torch.manual_seed(0)
    with torch.device(device):
        model = VideoViT(CONFIGS["small"]).eval()
        x = torch.randn(1, 3, 8, 224, 224)
    step = quick_start_step(device, torch.float32)[0]
    threads = torch.get_num_threads()
    for n in THREADS if device.type == "cpu" else [threads]:
        torch.set_num_threads(n)
        for what, fn in (("forward small 8x224x224 batch 1 fp32", lambda: model(x)),
                         ("quick-start train step fp32", step)):
            with torch.inference_mode(what.startswith("forward")):
                fn()  # warm-up
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    fn()
            ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in ops) / 1e3
            print(f"\nprofile: {what}, {n} thread{'s' if n > 1 else ''}: {total:.0f} ms of CPU "
                  f"self time; the top {top} operators")
            for e in ops[:top]:
                ms = e.self_cpu_time_total / 1e3
                show(f"  {e.key[:40]}", f"{ms:8.1f} ms {ms / total:6.1%}  {e.count:5d} calls")
    torch.set_num_threads(threads)


# -----------------------------------------------------------------------------------------------
# 3. A distill step against a student-only step


def distill_section(args, device, targets):
    cuda = device.type == "cuda"
    tname, frames, size, batch = ("1b", 8, 224, 8) if cuda else ("base", 4, 112, 4)
    print(f"\n3. distill step (teacher {tname}, freeze_teacher 'last'; student small; "
          f"{frames}x{size}x{size}, batch {batch}, fp32) vs student-only step")
    torch.manual_seed(0)
    geometry = dict(num_frames=frames, img_size=size)
    with torch.device(device):
        teacher = freeze_teacher(VideoViT(replace(CONFIGS[tname], **geometry)), "last")
        student = VideoViT(replace(CONFIGS["small"], **geometry))
    distiller = Distiller(teacher, student).train()
    x = torch.randn(batch, 3, frames, size, size, device=device)
    y = torch.rand(batch, device=device)
    n_frozen = frozen_prefix(teacher)
    with torch.no_grad():
        h = teacher.run_blocks(teacher.embed(x), teacher.blocks[:n_frozen])

    def tail_loss():
        feat = teacher.pool(teacher.run_blocks(h, teacher.blocks[n_frozen:]))
        return F.mse_loss(teacher.forward_head(feat), y)

    losses = {  # what each step backpropagates
        "student": lambda: F.mse_loss(student(x), y),
        "teacher tail": tail_loss,
        "distill": lambda: distiller(x, y)["loss"],
    }
    saved = {k: saved_tensor_bytes(fn)[1] for k, fn in losses.items()}

    def step(loss_fn):
        def run():
            distiller.zero_grad(set_to_none=True)
            loss_fn().backward()
        return run

    t_student, _ = timed(step(losses["student"]), args.warmup, args.repeats, device)
    t_distill, runs = timed(step(losses["distill"]), args.warmup, args.repeats, device)
    with torch.no_grad():
        t_teacher, _ = timed(lambda: teacher_features(teacher, x), args.warmup, args.repeats,
                             device)
    show("distill step", f"{t_distill:8.2f} s = {t_distill / t_student:.2f}x the student step "
                         f"({t_student:.2f} s); teacher forward alone {t_teacher:.2f} s "
                         f"({runs} runs)")
    ratio = round(saved["distill"] / (saved["student"] + saved["teacher tail"]), 3)
    show("saved for backward", f"{gb(saved['distill'])} = {ratio:.3f}x (student "
                               f"{gb(saved['student'])} + teacher tail "
                               f"{gb(saved['teacher tail'])})")
    targets.append(("distill saved bytes", f"{ratio:.3f}x <= 1.1x", ratio <= 1.1))
    if cuda:
        peaks = {}
        for k in ("student", "distill"):
            torch.cuda.reset_peak_memory_stats(device)
            step(losses[k])()
            peaks[k] = torch.cuda.max_memory_allocated(device)
        show("peak memory (CUDA max allocated)",
             f"distill {gb(peaks['distill'])}, student {gb(peaks['student'])}")
    else:
        show("peak memory", "not measured on a CPU (torch tracks it on CUDA only)")


# -----------------------------------------------------------------------------------------------
# 4. Clip loading at the paper's geometry


def loader_sources(folder, smoke):
    """(label, path) of the three test sources, made once (smoke: a fifth of the size, 2 s each)."""
    big, hd, long, seconds = ((768, 432), (384, 216), 2, 2) if smoke else \
        ((3840, 2160), (1920, 1080), 6, 10)
    w, h = big
    hevc = make_video(os.path.join(folder, f"testsrc2_{w}x{h}_25fps_{long}s_gop50_hevc.mp4"),
                      25 * long, "-f", "lavfi", "-i",
                      f"testsrc2=size={w}x{h}:rate=25:duration={long}", *x265(50), "-f", "mp4")
    w, h = hd
    avc = make_video(os.path.join(folder, f"testsrc2_{w}x{h}_25fps_{seconds}s_gop50.mp4"),
                     25 * seconds, "-f", "lavfi", "-i",
                     f"testsrc2=size={w}x{h}:rate=25:duration={seconds}", *x264(50), "-f", "mp4")
    n = min(100, 25 * seconds)
    # video.probe and read_clip take a raw file's WxH and fps from its name
    yuv = make_video(os.path.join(folder, f"testsrc2_{w}x{h}_25fps_{n}frames.yuv"), n,
                     "-i", avc, "-frames:v", str(n), "-pix_fmt", "yuv420p", "-f", "rawvideo")
    return [(f"HEVC {big[1]}p", hevc), (f"H.264 {hd[1]}p", avc), (f"raw YUV {hd[1]}p", yuv)]


def ffmpeg_floor(path, info, idx, short):
    """ffmpeg alone: decode the evenly spaced frames `idx`, scale the short side to `short` and
    write RGB into a pipe; the frames as uint8 (T, H, W, 3)."""
    import video
    fps = info["fps"] or 25.0
    h, w = video.resized_size(info["height"], info["width"], short)
    scale = f"scale={w}:{h}:flags={video.SWS}"  # the size and scaler read_clip uses
    raw = []  # a raw .yuv needs its format on the command line, and read_clip's colour matrix
    if path.lower().endswith(".yuv"):
        raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p",
               "-video_size", f"{info['width']}x{info['height']}", "-framerate", str(fps)]
        scale += f":in_range=tv:in_color_matrix={'bt709' if info['height'] >= 720 else 'bt601'}"
    step = int(idx[1] - idx[0]) if len(idx) > 1 else 1
    start = max(0.0, (idx[0] - 0.5) / fps)
    cmd = [video.FFMPEG, "-nostdin", "-v", "error", *raw, "-ss", f"{start:.6f}", "-i", path,
           "-map", "0:v:0", "-vf", f"select='not(mod(n\\,{step}))',{scale}",
           "-fps_mode", "passthrough", "-frames:v", str(len(idx)),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = subprocess.run(cmd, capture_output=True, timeout=300)
    if out.returncode:
        raise RuntimeError(f"ffmpeg floor on {path} failed: "
                           f"{out.stderr.decode(errors='replace')[-500:]}")
    return np.frombuffer(out.stdout, np.uint8).reshape(len(idx), h, w, 3)


def loader_section(args, targets):
    import data
    import video
    S, frames, stride, n_clips = (28, 8, 4, 2) if args.smoke else (224, 8, 4, 4)
    folder = os.path.join(args.cache, "smoke") if args.smoke else args.cache
    os.makedirs(folder, exist_ok=True)
    print(f"\n4. clip loading: {frames} frames at stride {stride}, short side resized to {S}, "
          f"crop {S} (files in {folder}; one process)")
    t0 = time.perf_counter()
    sources = loader_sources(folder, args.smoke)
    show("test files ready", f"{time.perf_counter() - t0:8.1f} s (made once, then kept)")
    reps = (1, 2) if args.quick or args.smoke else (1, 3)
    for label, path in sources:
        info = video.probe(path)
        item = dict(path=path, mos=50.0)
        # uncached: n_clips evenly spaced clips per item (eval mode), so the floor can read the
        # very same frames
        clips = data.eval_indices(info["frames"], frames, stride, n_clips)
        geometry = dict(frames=frames, size=S, stride=stride, resize=True)
        plain = data.VideoDataset([item], train=False, clips=n_clips, **geometry)
        t_plain, _ = timed(lambda: plain[0], *reps)
        t_floor, _ = timed(lambda: [ffmpeg_floor(path, info, idx, S) for idx in clips], *reps)
        mine = video.read_clip(path, clips[0], info=info, short_side=S)
        floor = ffmpeg_floor(path, info, clips[0], S)
        same = mine.shape == floor.shape and np.array_equal(mine, floor)
        if mine.shape == floor.shape:
            diff = np.abs(mine.astype(np.int16) - floor)
            diff = f"|diff| max {diff.max()}, mean {diff.mean():.3f}"
        else:
            diff = f"shapes {mine.shape} vs {floor.shape}"
        ratio = round(t_plain / t_floor, 2)  # the verdicts below are on the printed figures
        show(f"{label}: uncached", f"{n_clips / t_plain:8.2f} clips/s = {ratio:.2f}x the ffmpeg "
                                   f"floor ({n_clips / t_floor:.2f} clips/s); same frames as the "
                                   f"floor: {'yes' if same else 'no, ' + diff}")
        # cached: a fresh cache folder, so that the first read builds the entry
        cache_dir = tempfile.mkdtemp(prefix="cache-", dir=folder)
        try:
            ds = data.VideoDataset([item], train=True, cache=cache_dir, **geometry)
            t0 = time.perf_counter()
            first = ds[0][0]
            t_first = time.perf_counter() - t0
            epochs = iter(range(1, 1000))
            # milliseconds each: many runs, at most 5 s
            t_cached, runs = timed(lambda: (ds.set_epoch(next(epochs)), ds[0]), 2, 30, max_s=5)
            ds.set_epoch(0)
            again = ds[0][0]
            fresh = data.VideoDataset([item], train=True, **geometry)[0][0]  # uint8: exact
            agree = (first.dtype == torch.uint8 and torch.equal(first, again)
                     and torch.equal(first, fresh))
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        cached = round(1 / t_cached, 1)
        show(f"{label}: cached", f"{cached:8.1f} clips/s ({runs} runs); first read {t_first:.2f} s "
                                 f"(builds the entry, once per video); same clip as uncached: "
                                 f"{'yes' if agree else 'NO'}")
        if label.startswith("HEVC"):
            targets.append(("loader", f"{label} cached {cached:.1f} clips/s >= 10; uncached "
                                      f"{ratio:.2f}x the floor", cached >= 10))
        targets.append((f"loader floor {label}", f"{ratio:.2f}x <= 1.2x", ratio <= 1.2))

    # native size, the H.264 file: frame-exact against decoding every frame, and much faster
    import imageio_ffmpeg
    label, path = sources[1]
    info = video.probe(path)
    idx = [info["frames"] // 2 - 14 + 4 * i for i in range(8)]  # 8 frames at stride 4 mid-video

    def decode_all(keep):
        kept = {}
        for i, frame in enumerate(imageio_ffmpeg.read_frames(path)):  # first item: the metadata
            if i - 1 in keep:
                kept[i - 1] = frame
        return kept

    t_clip, _ = timed(lambda: video.read_clip(path, idx, info=info), *reps)
    t_all, _ = timed(lambda: decode_all(idx), 0, reps[1])
    clip, ref = video.read_clip(path, idx, info=info), decode_all(idx)
    same = all(bytes(clip[j]) == ref[i] for j, i in enumerate(idx))
    faster = round(t_all / t_clip, 1)
    show(f"{label}: read_clip at native size", f"{t_clip:8.3f} s = {faster:.1f}x faster than "
                                               f"decoding all {info['frames']} frames "
                                               f"({t_all:.2f} s); same pixels: "
                                               f"{'yes' if same else 'NO'}")
    targets.append(("native clip read", f"{faster:.1f}x >= 4x, exact {'yes' if same else 'NO'}",
                    faster >= 4 and same))
    small_videos(folder, reps)


def small_videos(folder, reps, n=8, probes=16):
    """The quick start's case: many 176 x 144 videos of 16 frames, 2-frame clips at stride 2, where
    starting ffmpeg (~10 ms) costs more than the work. A batch of n clips read by one ffmpeg run
    (video.read_clips, what VideoDataset.__getitems__ calls) against one run a clip (read_clip),
    and `probes` files listed by one run (probe_many) against probe() each; the same frames and
    probes either way."""
    import video
    path = make_video(os.path.join(folder, "testsrc2_176x144_24fps_16frames.mp4"), 16, "-f",
                      "lavfi", "-i", "testsrc2=size=176x144:rate=24", "-frames:v", "16", *x264(8),
                      "-f", "mp4")
    info = video.probe(path)
    requests = [dict(path=path, frame_indices=[i, i + 2], info=info) for i in range(n)]
    t_alone, _ = timed(lambda: [video.read_clip(**r) for r in requests], *reps)
    t_batch, _ = timed(lambda: video.read_clips(requests), *reps)
    same = all(np.array_equal(a, video.read_clip(**r))
               for r, a in zip(requests, video.read_clips(requests)))
    show(f"176x144 H.264: {n} clips of 2 frames", f"{n / t_batch:8.1f} clips/s in one ffmpeg run "
                                                  f"(read_clips) = {t_alone / t_batch:.1f}x one run "
                                                  f"a clip ({n / t_alone:.1f} clips/s); same "
                                                  f"frames: {'yes' if same else 'NO'}")
    paths = [path] * probes
    t_alone, _ = timed(lambda: [video.probe(p) for p in paths], *reps)
    t_batch, _ = timed(lambda: video.probe_many(paths), *reps)
    same = video.probe_many(paths) == {i: video.probe(p) for i, p in enumerate(paths)}
    show(f"176x144 H.264: {probes} probes", f"{t_batch * 1e3:8.0f} ms in one ffmpeg run "
                                            f"(probe_many) = {t_alone / t_batch:.1f}x one run a "
                                            f"file ({t_alone * 1e3:.0f} ms); same probes: "
                                            f"{'yes' if same else 'NO'}")


# -----------------------------------------------------------------------------------------------
# 5. Training throughput of the quick-start profile


def quick_start_step(device, dtype, batch=8, frames=2, size=84):
    """(step(), FLOPs a step) of train.py's quick start: students small and teacher small at
    2x84x84 (config.QUICK), the teacher frozen but for its last block, batch 8, AdamW (fused where
    the device has it, as train.py's); the step as train.py takes it (forward under autocast,
    backward, clip each model at --clip-grad 5, the finite check, optimizer step)."""
    cfg = replace(CONFIGS["small"], num_frames=frames, img_size=size, init_values=0.1,
                  patch_init="dct")
    torch.manual_seed(0)
    with torch.device(device):
        teacher, student = freeze_teacher(VideoViT(cfg), "last"), VideoViT(cfg)
        x, y = torch.randn(batch, 3, frames, size, size), torch.rand(batch)
    distiller = Distiller(teacher, student).train()
    opt = build_optimizer([student, teacher], lr=1e-4)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = distiller(x, y)["loss"]
        loss.backward()
        norms = [torch.nn.utils.clip_grad_norm_([q for q in m.parameters() if q.grad is not None],
                                                5.0) for m in (student, teacher)]
        if torch.isfinite(loss) & torch.isfinite(torch.stack(norms)).all():
            opt.step()
        opt.zero_grad(set_to_none=True)

    return step, batch * train_flops(flops_per_clip(cfg), cfg)


def train_section(args, device, targets):
    print("\n5. training, the quick start's step (small from small, 2x84x84, batch 8): clips/s, "
          "its matmul FLOPs a second (_common.train_flops) against the matmul rate")
    threads = torch.get_num_threads()
    for dname in args.dtypes:
        dtype = DTYPES[dname]
        for n in THREADS if device.type == "cpu" else [threads]:
            torch.set_num_threads(n)
            ref = matmul_rate(dtype, device)
            threads_text = f"{n} thread{'s' if n > 1 else ''}"
            show_matmul(f"{dname}, {threads_text}", ref)
            step, flops = quick_start_step(device, dtype)
            label = f"train step {dname}{' autocast' if dname != 'fp32' else ''}, {threads_text}"
            if flops / ref["rate"] > args.budget:
                show(label, f"skipped: ~{flops / ref['rate']:.0f} s per step at this matmul rate "
                            f"(--budget {args.budget:.0f})")
                continue
            step()  # the first step allocates the optimizer's state: not counted below
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t, runs = timed(step, args.warmup, args.repeats, device)
            faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (
                args.warmup + runs)
            show(label, f"{8 / t:8.2f} clips/s ({t:.2f} s a step, median of {runs}); "
                        f"{flops / 1e9:.0f} GFLOP a step at {rate_text(flops / t)} = "
                        f"{flops / t / ref['rate']:.0%} of matmul; {faults:,.0f} page faults "
                        f"a step")
    torch.set_num_threads(threads)


# -----------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats, no base at batch 4: ~5 minutes on 2 CPU cores")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated, from fp32 and bf16")
    p.add_argument("--budget", type=float, default=None,
                   help="skip a run predicted to take longer than this many seconds "
                        "(default 90, --quick 75)")
    p.add_argument("--sections", default="012345", help="which figures to measure, e.g. 14")
    p.add_argument("--profile", action="store_true",
                   help="instead: the top operators of a small forward and a quick-start step")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "internvqa_bench"),
                   help="generated test videos (and the --gpu check's teacher file) are kept here")
    p.add_argument("--gpu", action="store_true",
                   help="run tools/gpu_check.py, the one-shot GPU check, instead")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, to exercise section 4 (or --gpu) on a CPU")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc's default (freed blocks go back to the system at once), to "
                        "compare with runtime.keep_freed_memory, which train.py and predict.py use")
    args = p.parse_args()
    args.dtypes = args.dtypes.split(",")
    if not set(args.dtypes) <= set(DTYPES):
        p.error(f"--dtypes takes {list(DTYPES)}, got {','.join(args.dtypes)}")
    args.budget = args.budget or (75.0 if args.quick else 90.0)
    args.warmup, args.repeats = (1, 3) if args.quick else (2, 5)
    os.makedirs(args.cache, exist_ok=True)
    if args.gpu:  # the README's command for the GPU check, a tool of its own (it imports no bench)
        from tools import gpu_check
        sys.exit(gpu_check.main(["--cache", args.cache] + ["--smoke"] * args.smoke))

    device = torch.device(args.device)
    kept = not args.system_malloc and runtime.keep_freed_memory()  # as train.py and predict.py
    targets = []  # (what, measured, passed) for the summary line
    print(f"machine: {machine(device)}")
    rule, why = runtime.cpu_dtype()
    print(f"dtype rule on this CPU (runtime.cpu_dtype: predict.py without --dtype; train.py "
          f"trains in fp32 on a CPU): {rule} ({why})")
    print(f"mode: {'--quick' if args.quick else 'full'}; timings are medians after {args.warmup} "
          f"warm-up runs; runs predicted over {args.budget:.0f} s are skipped; freed memory "
          f"{'kept for reuse (runtime.keep_freed_memory)' if kept else 'returned to the system'}")
    t_bench = time.perf_counter()
    if args.profile:
        return profile_section(args, device)
    if "0" in args.sections:
        flops_section()
    if "1" in args.sections or "2" in args.sections:
        forward_section(args, device, targets)
    if "3" in args.sections:
        distill_section(args, device, targets)
    if "4" in args.sections:
        loader_section(args, targets)
    if "5" in args.sections:
        train_section(args, device, targets)
    print(f"\nbench took {time.perf_counter() - t_bench:.0f} s")
    print("SUMMARY: " + " | ".join(f"{'PASS' if ok else 'FAIL'} {what} {measured}"
                                   for what, measured, ok in targets))


if __name__ == "__main__":
    main()

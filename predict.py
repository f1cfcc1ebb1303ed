"""Score videos with a trained model: one `path,score` line per video on stdout.

    python predict.py --ckpt out/best.pt video1.mp4 video2.mkv
    python predict.py --ckpt out/best.pt --csv list.csv          # a CSV with a `path` column
    python predict.py --ckpt InternVQA_1b.pth --frames 8 clip.mp4  # an official regressor file
    python predict.py --ckpt FAST_VQA_B_1_4.pth video.mp4        # an official FAST-VQA file

The score of a video is the mean over deterministic test clips (evenly spaced; a centre crop, or
fragments at offsets fixed by a seed: the same video scores the same every time), on the scale of
the training labels (this project's checkpoints store it; for an official InternVideo2 file it is
the raw model output unless --label-range is given). An official FAST-VQA file prints
`path,raw,quality_0_1`: its raw score, which has no fixed scale, and the official vqa.py mapping
of it to 0..1. A video that cannot be read gets an `error:` line on stderr naming it; the others
are still scored, and the exit status is 1 at the end. Reads every file video.read_clip reads
(any ffmpeg container, raw .yuv).
The autocast dtype (--dtype; stderr's first line says which ran, and why): not given, on a GPU a
checkpoint of this project runs in the dtype it was trained with, as its evaluation did, and an
official file in bf16; on a CPU runtime.cpu_dtype decides (bf16 where this CPU multiplies bf16
clearly faster than fp32). Scores are float32 in any dtype (the heads run in float32).
"""
import argparse
import csv
import os
import sys

import torch

import data
import runtime
from fastvqa import FASTVQA_CONFIGS, OFFICIAL_SCORE_STATS, FastVQA, official_quality

AUTHORS = dict(frames=8, size=224, stride=4, clips=4, fragments=0, resize=True)  # their test clips
# FAST-VQA's own test clips (options/fast/fast-b.yml, fast-m.yml): 4 clips of native 32 px fragments
FASTVQA_TEST = {"b": dict(frames=32, size=224, stride=2, clips=4, fragments=7, resize=False),
                "m": dict(frames=16, size=128, stride=2, clips=4, fragments=4, resize=False)}


def load_model(path, which, args):
    """(model, label range, clip geometry, autocast dtype on a GPU, official FAST-VQA model name
    or None) of this project's checkpoint (the clips and dtype it was evaluated with), of an
    official InternVideo2 regressor file (the authors' test clips, bf16) or of an official
    FAST-VQA file (its own test clips), through the loading path train.py uses."""
    shape = {k: v for k, v in (("num_frames", args.frames), ("img_size", args.size)) if v}
    try:
        model, ckpt, report = runtime.read_model(path, which, args.trust_ckpt, args.ckpt_frames,
                                                 **shape)
    except ValueError as e:
        sys.exit(f"error: {e}")
    fast = isinstance(model, FastVQA)
    size = "m" if fast and model.cfg.window_size == FASTVQA_CONFIGS["m"].window_size else "b"
    geometry, dtype, label_range = dict(FASTVQA_TEST[size] if fast else AUTHORS), "bf16", (0, 1)
    official = None
    if runtime.is_ours(ckpt):
        c = ckpt["config"]
        geometry = dict(frames=c["frames"], size=c["size"], stride=c["stride"],
                        clips=c["test_clips"], fragments=c["fragments"], resize=c["resize"])
        if fast:  # the student's own view (train.py --student fastvqa)
            geometry.update(frames=c["fastvqa_frames"], size=c["fastvqa_size"], resize=False,
                            stride=c["fastvqa_stride"], fragments=c["fastvqa_size"] // 32)
        dtype, label_range = c["dtype"], tuple(ckpt["label_range"])
    elif report["left_at_init"]:
        sys.exit(f"{path}: has no regression head ({', '.join(report['left_at_init'])} missing or "
                 f"of another shape): it is a backbone, not a quality model")
    elif fast:
        official = args.fastvqa_scale or ("FAST-VQA-M" if size == "m" else "FAST-VQA")
    geometry.update({k: v for k, v in (("frames", args.frames), ("size", args.size)) if v})
    if fast and args.size:  # FAST-VQA's fragments are 32 px
        geometry["fragments"] = args.size // 32
    return model, label_range, geometry, dtype, official


def choose_dtype(given, trained, device):
    """(dtype name, why): --dtype when given; else on a GPU the checkpoint's (`trained`), on a
    CPU the project's rule (runtime.default_dtype)."""
    if given:
        return given, "--dtype"
    if device.type == "cuda":
        return trained, "the checkpoint's on a GPU"
    return runtime.default_dtype(device)


def main():
    p = argparse.ArgumentParser(description="Score videos with a trained InternVQA model.")
    p.add_argument("videos", nargs="*", help="video files")
    p.add_argument("--ckpt", required=True, help="out/best.pt, an official InternVideo2 "
                   "regressor file or an official FAST-VQA file (FAST_VQA_B_1_4.pth, ...)")
    p.add_argument("--csv", help="a CSV list with a `path` column (relative to the CSV's folder)")
    p.add_argument("--which", default="student", choices=["student", "teacher"],
                   help="model of a checkpoint")
    p.add_argument("--frames", type=int, help="override the clip length")
    p.add_argument("--size", type=int, help="override the crop size")
    p.add_argument("--stride", type=int, help="override the frame stride")
    p.add_argument("--clips", type=int, help="override the number of test clips")
    p.add_argument("--ckpt-frames", type=int,
                   help="frame count of a checkpoint whose position table is ambiguous")
    p.add_argument("--label-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="map outputs to this scale")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=list(runtime.DTYPES),
                   help="autocast dtype (not given: on a GPU the checkpoint's, on a CPU bf16 "
                        "where this CPU multiplies it fast, else fp32)")
    p.add_argument("--fastvqa-scale", choices=list(OFFICIAL_SCORE_STATS),
                   help="an official FAST-VQA file: whose score statistics map its raw score to "
                   "0..1 as the official vqa.py does (not given: FAST-VQA, or FAST-VQA-M for an M "
                   "file; FasterVQA's file holds B's network: pass FasterVQA)")
    p.add_argument("--trust-ckpt", action="store_true",
                   help="allow full unpickling of the checkpoint file")
    args = p.parse_args()

    model, (lo, hi), geo, trained, official = load_model(args.ckpt, args.which, args)
    lo, hi = args.label_range or (lo, hi)
    device = torch.device(args.device)
    name, why = choose_dtype(args.dtype, trained, device)
    print(f"dtype {name} ({why})", file=sys.stderr, flush=True)
    dtype = runtime.DTYPES[name]
    geo.update({k: v for k, v in (("stride", args.stride), ("clips", args.clips)) if v})
    model.to(device).eval()
    paths = list(args.videos)
    if args.csv:  # only a `path` column is needed; missing files get their error line below
        with open(args.csv, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's BOM
            rows = list(csv.DictReader(f))
        if rows and "path" not in rows[0]:
            sys.exit(f"{args.csv}: no `path` column (header: {', '.join(rows[0])})")
        paths += [os.path.join(os.path.dirname(os.path.abspath(args.csv)), r["path"]) for r in rows]
    if not paths:
        p.error("no videos: pass files or --csv")

    failed = 0
    if official:  # its raw scores have no scale (docs/reference.md, section 7)
        mean, std = OFFICIAL_SCORE_STATS[official]
        print(f"{official}: raw = the network's score (no fixed scale); quality_0_1 = the official "
              f"vqa.py mapping, sigmoid((raw {'-' if mean > 0 else '+'} {abs(mean):g}) / {std:g})",
              file=sys.stderr)
    print("path,raw,quality_0_1" if official else "path,score")
    for path in paths:
        try:
            item = dict(path=path, mos=0.0, source=path)
            ds = data.VideoDataset([item], train=False, frames=geo["frames"], size=geo["size"],
                                   stride=geo["stride"], clips=geo["clips"],
                                   fragments=geo["fragments"], resize=geo["resize"],
                                   label_range=(lo, hi))
            clips = data.normalise(ds[0][0].to(device))  # (clips, 3, T, S, S)
            with torch.no_grad(), torch.autocast(device.type, dtype, enabled=dtype is not None):
                score = model(clips).float().mean().item()
            if official:
                print(f"{path},{score:.9g},{official_quality(score, official):.9g}", flush=True)
            else:
                print(f"{path},{lo + (hi - lo) * score:.9g}", flush=True)
        except (OSError, ValueError, RuntimeError) as e:
            failed += 1
            print(f"error: {path}: {e}", file=sys.stderr, flush=True)
    if failed:
        print(f"{failed} of {len(paths)} videos could not be scored", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

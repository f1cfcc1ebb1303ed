"""Score videos with a trained model: one `path,score` line per video on stdout.

    python predict.py --ckpt out/best.pt video1.mp4 video2.mkv
    python predict.py --ckpt out/best.pt --csv list.csv          # a CSV with a `path` column
    python predict.py --ckpt InternVQA_1b.pth --frames 8 clip.mp4  # an official regressor file

The score of a video is the mean over deterministic test clips (evenly spaced, centre crop),
on the scale of the training labels (this project's checkpoints store it; for an official
file it is the raw model output unless --label-range is given). A video that cannot be read
gets an `error:` line on stderr naming it; the others are still scored, and the exit status
is 1 at the end. Reads every file video.read_clip reads (any ffmpeg container, raw .yuv).
On a GPU a checkpoint of this project runs in the autocast dtype it was trained with, as its
evaluation did; on a CPU in float32.
"""
import argparse
import csv
import os
import sys

import torch

import data
import runtime

AUTHORS = dict(frames=8, size=224, stride=4, clips=4, fragments=0, resize=True)  # their test clips


def load_model(path, which, args):
    """(model, label range, clip geometry, autocast dtype) of this project's checkpoint (the clips
    it was evaluated on) or of an official regressor file (the authors' test clips), through the
    loading path train.py uses (runtime.read_model)."""
    shape = {k: v for k, v in (("num_frames", args.frames), ("img_size", args.size)) if v}
    try:
        model, ckpt, report = runtime.read_model(path, which, args.trust_ckpt, args.ckpt_frames,
                                                 **shape)
    except ValueError as e:
        sys.exit(f"error: {e}")
    geometry, dtype, label_range = dict(AUTHORS), "bf16", (0.0, 1.0)
    if runtime.is_ours(ckpt):
        c = ckpt["config"]
        geometry = dict(frames=c["frames"], size=c["size"], stride=c["stride"],
                        clips=c["test_clips"], fragments=c["fragments"], resize=c["resize"])
        dtype, label_range = c["dtype"], tuple(ckpt["label_range"])
    elif report["left_at_init"]:
        sys.exit(f"{path}: has no regression head ({', '.join(report['left_at_init'])} missing or "
                 f"of another shape): it is a backbone, not a quality model")
    geometry.update({k: v for k, v in (("frames", args.frames), ("size", args.size)) if v})
    return model, label_range, geometry, dtype


def main():
    p = argparse.ArgumentParser(description="Score videos with a trained InternVQA model.")
    p.add_argument("videos", nargs="*", help="video files")
    p.add_argument("--ckpt", required=True,
                   help="out/best.pt, or an official InternVideo2 regressor file")
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
    p.add_argument("--trust-ckpt", action="store_true",
                   help="allow full unpickling of the checkpoint file")
    args = p.parse_args()

    model, (lo, hi), geo, dtype = load_model(args.ckpt, args.which, args)
    lo, hi = args.label_range or (lo, hi)
    device = torch.device(args.device)
    dtype = runtime.DTYPES[dtype] if device.type == "cuda" else None  # a CPU: float32
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
    print("path,score")
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
            print(f"{path},{lo + (hi - lo) * score:.9g}", flush=True)
        except (OSError, ValueError, RuntimeError) as e:
            failed += 1
            print(f"error: {path}: {e}", file=sys.stderr, flush=True)
    if failed:
        print(f"{failed} of {len(paths)} videos could not be scored", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

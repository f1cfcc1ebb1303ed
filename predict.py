"""Score videos with a trained model: one `path,score` line per video on stdout.

    python predict.py --ckpt out/best.pt video1.mp4 video2.mkv
    python predict.py --ckpt out/best.pt --csv list.csv          # a CSV with a `path` column
    python predict.py --ckpt InternVQA_1b.pth --frames 8 clip.mp4  # an official regressor file
    python predict.py --ckpt FAST_VQA_B_1_4.pth video.mp4        # an official FAST-VQA file
    python predict.py --ckpt out/best.pt --which teacher --csv unrated.csv --as-labels \
        > pseudo.csv      # pseudo-labels: train.py --data csv --labels pseudo.csv --test-labels T
    python predict.py --ckpt mp_rank_00_model_states.pt video.mp4  # the authors' KVQ weight
    python predict.py --ckpt out/best.pt --kvq KVQ/test_split_v4_revise66_compete.txt \
        > prediction.csv                                         # the NTIRE KVQ submission

The score of a video is the mean over deterministic test clips (evenly spaced; a centre crop, or
fragments at offsets fixed by a seed: the same video scores the same every time), on the scale of
the training labels (this project's checkpoints store it; for an official InternVideo2 file it is
the raw model output unless --label-range is given). An official FAST-VQA file prints
`path,raw,quality_0_1`: its raw score, which has no fixed scale, and the official vqa.py mapping
of it to 0..1. A video that cannot be read gets an `error:` line on stderr naming it; the others
are still scored, and the exit status is 1 at the end. Reads every file video.read_clip reads
(any ffmpeg container, raw .yuv).
The authors' KVQ weight (an official-layout file with tubelet 2) scores with their KVQ test clip
(KVQ: 8 frames at stride 8 from the first frame, one centre crop; --geometry kvq for any model)
on KVQ's 1..5 scale. --kvq writes the challenge's prediction.csv: `filename,score`, one row per
line of the split file, in its order, the filename as the file spells it.
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
import datasets
import runtime
import video
from fastvqa import FASTVQA_CONFIGS, OFFICIAL_SCORE_STATS, FastVQA, official_quality

AUTHORS = dict(frames=8, size=224, stride=4, clips=4, fragments=0, resize=True)  # their test clips
# The authors' KVQ test as their run_KVQ_test.py runs it (docs/reference.md, section 9): frames 0,
# 8, ..., 56, short side resized to 224, one centre crop; their outputs are on the label / 5 scale.
KVQ = dict(frames=8, size=224, stride=8, clips=1, fragments=0, resize=True, from_start=True)
KVQ_LABELS = (0.0, 5.0)
# FAST-VQA's own test clips (options/fast/fast-b.yml, fast-m.yml): 4 clips of native 32 px fragments
FASTVQA_TEST = {"b": dict(frames=32, size=224, stride=2, clips=4, fragments=7, resize=False),
                "m": dict(frames=16, size=128, stride=2, clips=4, fragments=4, resize=False)}


def load_model(path, which, args):
    """(model, label range, clip geometry, autocast dtype on a GPU, official FAST-VQA model name
    or None) of this project's checkpoint (the clips and dtype it was evaluated with), of an
    official InternVideo2 regressor file (the authors' test clips, bf16; their KVQ weight: their
    KVQ clip and 1..5 scale) or of an official FAST-VQA file (its own test clips), through the
    loading path train.py uses."""
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
    elif model.cfg.tubelet_size == 2:  # the authors' KVQ weight: no official file has tubelet 2
        geometry, label_range = dict(KVQ), KVQ_LABELS
    if getattr(args, "geometry", None) == "kvq":  # an older caller's args may lack it
        geometry = dict(KVQ)
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
    p.add_argument("--as-labels", action="store_true", help="write a label list that train.py "
                   "--data csv reads: path,mos,source,split (the score on the checkpoint's label "
                   "scale; a --csv list's source and split kept, else the file name and train): "
                   "pseudo-labels for training")
    p.add_argument("--kvq", metavar="SPLIT_FILE", help="write the KVQ challenge's prediction.csv "
                   "for this split file (e.g. test_split_v4_revise66_compete.txt): filename,score "
                   "in its order, the score on the model's label scale (KVQ's 1..5)")
    p.add_argument("--data-root", help="--kvq: the folder its filenames are relative to (not "
                   "given: the split file's)")
    p.add_argument("--geometry", choices=["kvq"], help="kvq: the authors' KVQ test clip (8 frames "
                   "at stride 8 from the first frame, one centre crop; the default for their "
                   "weight) (not given: the checkpoint's own)")
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
    runtime.keep_freed_memory()  # each clip reuses the memory the last one freed

    model, (lo, hi), geo, trained, official = load_model(args.ckpt, args.which, args)
    lo, hi = args.label_range or (lo, hi)
    device = torch.device(args.device)
    name, why = choose_dtype(args.dtype, trained, device)
    print(f"dtype {name} ({why})", file=sys.stderr, flush=True)
    dtype = runtime.DTYPES[name]
    geo.update({k: v for k, v in (("stride", args.stride), ("clips", args.clips)) if v})
    model.to(device).eval()
    paths, sources = list(args.videos), {}
    if args.csv:  # only a `path` column is needed; missing files get their error line below
        with open(args.csv, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's BOM
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or []):
                sys.exit(f"{args.csv}: no `path` column (header: {reader.fieldnames})")
            rows = [r for r in reader if not datasets.is_blank(r)]
        folder = os.path.dirname(os.path.abspath(args.csv))
        for r in rows:
            paths.append(os.path.join(folder, (r["path"] or "").strip()))
            sources[paths[-1]] = r  # its source, split and raw-YUV columns: kept by --as-labels
    names = {}  # --kvq: path -> the filename as the split file spells it
    if args.kvq:
        if paths:
            p.error("--kvq writes the challenge's file of its split: no other videos")
        try:
            items = datasets.read_kvq_split(args.kvq, args.data_root, labels=False)
        except (OSError, ValueError) as e:
            sys.exit(f"error: {e}")
        names = {it["path"]: it["name"] for it in items}
        paths = list(names)
    if not paths:
        p.error("no videos: pass files, --csv or --kvq")

    failed = 0
    if official:  # its raw scores have no scale (docs/reference.md, section 7)
        mean, std = OFFICIAL_SCORE_STATS[official]
        print(f"{official}: raw = the network's score (no fixed scale); quality_0_1 = the official "
              f"vqa.py mapping, sigmoid((raw {'-' if mean > 0 else '+'} {abs(mean):g}) / {std:g})",
              file=sys.stderr)
    if args.as_labels and (official or args.kvq):
        p.error("--as-labels writes scores on a label scale: an official FAST-VQA file has none, "
                "and --kvq writes the challenge's file")
    labels = csv.writer(sys.stdout, lineterminator="\n") if args.as_labels else None
    yuv_keys = [k for k in video.YUV_KEYS if any(r.get(k) for r in sources.values())]
    print(",".join(["path", "mos", "source", "split", *yuv_keys]) if labels else
          ("filename" if args.kvq else "path") + (",raw,quality_0_1" if official else ",score"))
    for path in paths:
        try:
            yuv = data.yuv_args(sources.get(path, {}))  # a raw .yuv's geometry from the list
            clips = data.normalise(video_clips(path, geo, **yuv).to(device))  # (clips, 3, T, S, S)
            with torch.no_grad(), torch.autocast(device.type, dtype, enabled=dtype is not None):
                score = model(clips).float().mean().item()
            name = names.get(path, path)
            if labels:  # absolute paths: the list reads the same from any folder
                row, stem = sources.get(path, {}), os.path.splitext(os.path.basename(path))[0]
                labels.writerow([os.path.abspath(path), f"{lo + (hi - lo) * score:.9g}",
                                 (row.get("source") or "").strip() or stem,
                                 (row.get("split") or "").strip() or "train",
                                 *(row.get(k) or "" for k in yuv_keys)])
                sys.stdout.flush()
            elif official:
                print(f"{name},{score:.9g},{official_quality(score, official):.9g}", flush=True)
            else:
                print(f"{name},{lo + (hi - lo) * score:.9g}", flush=True)
        except (OSError, ValueError, RuntimeError) as e:
            failed += 1
            print(f"error: {path}: {e}", file=sys.stderr, flush=True)
    if failed:
        print(f"{failed} of {len(paths)} videos could not be scored", file=sys.stderr)
    sys.exit(1 if failed else 0)


def video_clips(path, geo, **yuv):
    """uint8 (clips, 3, T, S, S) of a video at the geometry `geo`: VideoDataset's test clips, or
    with from_start the authors' KVQ clip (their kvq_datasets.py at test): frames 0, stride, 2
    stride, ... within the first frames x stride, the last one repeated in a shorter video; the
    short side resized, one centre crop. yuv: a raw .yuv's width, height, bit_depth, fps."""
    if not geo.get("from_start"):
        ds = data.VideoDataset([dict(path=path, mos=0.0, source=path, **yuv)], train=False,
                               frames=geo["frames"], size=geo["size"], stride=geo["stride"],
                               clips=geo["clips"], fragments=geo["fragments"],
                               resize=geo["resize"])
        return ds[0][0]
    info = video.probe(path, **yuv)
    index = list(range(0, min(geo["frames"] * geo["stride"], info["frames"]), geo["stride"]))
    index += index[-1:] * (geo["frames"] - len(index))
    frames = video.read_clip(path, index, info=info, short_side=geo["size"], **yuv)
    return data.to_tensor(data.crop_clip(frames, geo["size"]))[None]


if __name__ == "__main__":
    main()

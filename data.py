"""Video clips, dataset indexes and content-disjoint splits for compressed-video quality assessment.

Bottom-up: probe() and read_clip() read a few frames, frame-exact, from any container the bundled
ffmpeg opens (imageio-ffmpeg) or from raw 8/10-bit 4:2:0 .yuv (numpy memmap); train_indices() and
eval_indices() pick frames, crop_clip() and fragment_clip() pick pixels, normalise() makes the
tensor; load_csv(), waterloo4k_index() and bvihd_index() produce lists of item dicts
{path, mos, source, ...}; official_split() and split_by_source() split them by source content;
VideoDataset serves (clip, target, index) to a torch DataLoader; make_toy_dataset() builds the
default data: synthetic contents encoded by six codecs, labelled with VMAF (not human scores).

It follows InternVQA (arXiv 2502.19026) and its released inference code: 8 frames of 224 x 224,
random crops in training and a centre crop at test, ImageNet normalisation, targets = MOS scaled
to [0, 1]; fragments=True gives FAST-VQA's grid mini-patch sampling instead of crops
(fragments=n: an n x n grid).

    items = load_csv("data/list.csv")            # header path,mos[,source,...]
    train_items, test_items = split_by_source(items, test_fraction=0.25, seed=0)
    ds = VideoDataset(train_items, label_range=label_range("csv", train_items))
    clip, target, index = ds[0]                  # (3, 8, 224, 224) float32, scalar in [0, 1]
"""

import csv
import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import imageio_ffmpeg
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
YUV_KEYS = ("width", "height", "bit_depth", "fps")  # item columns passed on to probe / read_clip

# -----------------------------------------------------------------------------
# reading


def _is_yuv(path):
    return str(path).lower().endswith(".yuv")


def _yuv_format(path, width=None, height=None, bit_depth=None, fps=None):
    """(width, height, bit_depth, fps) of a raw .yuv: from the arguments, else from the file name."""
    name = os.path.basename(path)
    size = re.search(r"(\d+)x(\d+)", name)
    if width is None or height is None:
        if size is None:
            raise ValueError(f"{path}: cannot find WxH in the file name; pass width= and height=")
        width, height = width or size[1], height or size[2]
    if bit_depth is None:  # `..._10bit_...`, `..._10b.yuv`; 8-bit when the name says nothing
        bits = re.search(r"(?<!\d)(8|10|12|16)[-_]?b(?:its?)?(?![a-z0-9])", name, re.I)
        bit_depth = bits[1] if bits else 8
    if fps is None:
        rate = re.search(r"(\d+(?:\.\d+)?)[-_]?fps", name, re.I)
        fps = rate[1] if rate else 0.0  # 0.0 = unknown; reading raw frames does not need it
    width, height, bit_depth, fps = int(width), int(height), int(bit_depth), float(fps)
    if width < 1 or height < 1 or not 8 <= bit_depth <= 16:
        raise ValueError(f"{path}: bad raw format {width}x{height}, {bit_depth}-bit")
    return width, height, bit_depth, fps


def _yuv_frame_samples(width, height):
    return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)  # 4:2:0: Y, then U and V


def _ffmpeg_problem(stderr):
    """The last two distinct messages ffmpeg's demuxers and decoders logged, without prefixes."""
    lines = re.findall(r"^\[(?!out#)[^]]* @ 0x[0-9a-f]+\] (.+)$", stderr, re.M)
    lines = lines or stderr.strip().splitlines()[-1:]
    return "; ".join(dict.fromkeys(s.strip()[:200] for s in lines[-2:])) or "ffmpeg gave no message"


def _frame_grid(pts, num, den):
    """(start in seconds, exact fps) when the packet times (ticks of num/den s) form a regular grid."""
    pts = np.sort(np.array(pts, dtype=np.int64))
    if len(pts) < 2 or pts[0] == -2**63 or pts[-1] == pts[0]:  # -2**63: a packet without a time (AVI)
        return None
    span = int(pts[-1]) - int(pts[0])
    step = span / (len(pts) - 1)
    if np.abs(pts - pts[0] - step * np.arange(len(pts))).max() >= step / 4:  # variable frame rate
        return None
    return int(pts[0]) * num / den, (len(pts) - 1) * den / (span * num)


def probe(path, width=None, height=None, bit_depth=None, fps=None):
    """dict(frames, width, height, fps, start) of a video, without decoding it.

    Containers: one ffmpeg run copies the video packets to a per-packet listing (framecrc): the
    header gives the size, the packets the frame count and their presentation times. `start` is
    the time of frame 0 in seconds when those times lie on a regular grid (exact fps then), so
    read_clip can seek by time; None otherwise (AVI and raw streams keep no usable timestamps,
    or variable frame rate): read_clip then decodes from the first frame.
    Raw .yuv: from the file size; width/height/bit_depth/fps as in read_clip. fps 0.0 = unknown.
    A missing file raises FileNotFoundError; anything that cannot be read as video, ValueError.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{path}: empty file (0 bytes)")
    if _is_yuv(path):
        w, h, bits, rate = _yuv_format(path, width, height, bit_depth, fps)
        frame_bytes = _yuv_frame_samples(w, h) * (1 if bits == 8 else 2)
        if size % frame_bytes:
            raise ValueError(f"{path}: size {size} bytes is not a whole number of {w}x{h} "
                             f"{bits}-bit 4:2:0 frames of {frame_bytes} bytes")
        return dict(frames=size // frame_bytes, width=w, height=h, fps=rate, start=0.0)
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-copyts", "-i", path, "-map", "0:v:0", "-c", "copy",
           "-f", "framecrc", "-"]  # one line per packet: stream, dts, pts, duration, size, checksum
    out = subprocess.run(cmd, capture_output=True)
    err = out.stderr.decode(errors="replace")
    stream = re.search(r"Stream #0:\d+.*?: Video: (.*)", err)  # the input's stream line comes first
    if "matches no streams" in err:
        raise ValueError(f"{path}: no video stream")
    if stream is None or out.returncode:
        raise ValueError(f"{path}: cannot be opened as a video ({_ffmpeg_problem(err)})")
    if "partial file" in err:  # the index promises more data than the file holds
        raise ValueError(f"{path}: truncated file ({_ffmpeg_problem(err)})")
    dims = re.search(r"\b([1-9]\d*)x([1-9]\d*)\b", stream[1])  # skips codec tags such as 0x31637661
    listing = out.stdout.decode(errors="replace")
    pts = [int(line.split(",")[2]) for line in listing.splitlines() if line and not line.startswith("#")]
    if dims is None or not pts:
        raise ValueError(f"{path}: no readable video frames ({_ffmpeg_problem(err)})")
    num, den = map(int, re.search(r"^#tb 0: (\d+)/(\d+)", listing, re.M).groups())
    # raw streams (no duration) get made-up timestamps from the parser: never seek by those
    grid = None if "Duration: N/A" in err else _frame_grid(pts, num, den)
    rate = re.search(r"([\d.]+)(k?) fps", stream[1]) or re.search(r"([\d.]+)(k?) tbr", stream[1])
    fps = grid[1] if grid else float(rate[1]) * (1000 if rate[2] else 1) if rate else 0.0
    start = grid[0] if grid else None
    return dict(frames=len(pts), width=int(dims[1]), height=int(dims[2]), fps=fps, start=start)


def _yuv_to_rgb(y, u, v, bit_depth):
    """Limited-range Y'CbCr (T, H, W) luma and (T, ceil(H/2), ceil(W/2)) chroma -> RGB uint8
    (T, H, W, 3); BT.709 for HD and larger, else BT.601; nearest-neighbour chroma upsampling.

    One frame at a time, planar, so the float intermediates stay small: the chroma terms of R, G
    and B are computed at chroma resolution, upsampled and added to the luma, then interleaved."""
    s = 2 ** (bit_depth - 8)
    kr, kb = (0.2126, 0.0722) if y.shape[1] >= 720 else (0.299, 0.114)
    T, h, w = y.shape
    out = torch.empty(T, h, w, 3, dtype=torch.uint8)
    for t in range(T):
        luma = (torch.from_numpy(y[t]).float() - 16 * s) * (255 / (219 * s))
        cb = (torch.from_numpy(u[t]).float() - 128 * s) * (255 / (224 * s))
        cr = (torch.from_numpy(v[t]).float() - 128 * s) * (255 / (224 * s))
        g = -(2 * kr * (1 - kr) * cr + 2 * kb * (1 - kb) * cb) / (1 - kr - kb)
        chroma = torch.stack([2 * (1 - kr) * cr, g, 2 * (1 - kb) * cb])[None]  # (1, 3, h/2, w/2)
        rgb = F.interpolate(chroma, scale_factor=2, mode="nearest")[0, :, :h, :w].add_(luma)
        out[t] = rgb.add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
    return out.numpy()


def _read_yuv(path, idx, width, height, bit_depth):
    """Only the wanted frames of a raw 4:2:0 file are touched (memmap)."""
    w, h, cw, ch = width, height, (width + 1) // 2, (height + 1) // 2
    dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")  # >8-bit samples: 16-bit little-endian
    frames = np.memmap(path, dtype=dtype, mode="r").reshape(-1, _yuv_frame_samples(w, h))
    raw = np.ascontiguousarray(frames[idx]).astype(np.int16 if bit_depth > 8 else np.uint8)  # (T, samples)
    y = raw[:, : w * h].reshape(-1, h, w)
    u = raw[:, w * h : w * h + cw * ch].reshape(-1, ch, cw)
    v = raw[:, w * h + cw * ch :].reshape(-1, ch, cw)
    return _yuv_to_rgb(y, u, v, bit_depth)


def _decode(path, kept, info, seek=None):
    """RGB frames at `kept` (sorted, evenly spaced). With `seek` (seconds) ffmpeg jumps to the
    keyframe at or before it and a frame's index comes from its presentation time, so wherever
    the jump lands only wanted frames come out; without, it decodes from the start and counts."""
    if seek is None:
        index, start = "n", []
    else:
        index = f"round((t-{info['start']!r})*{info['fps']!r})"
        start = ["-copyts", "-seek_timestamp", "1", "-noaccurate_seek", "-ss", f"{seek:.6f}"]
    a, b = kept[0], kept[-1]
    step = kept[1] - a if len(kept) > 1 else 1
    pick = f"between({index}\\,{a}\\,{b})*not(mod({index}-{a}\\,{step}))"
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-noautorotate", *start, "-i", path, "-map", "0:v:0",
           "-vf", f"select='{pick}'", "-fps_mode", "passthrough", "-frames:v", str(len(kept)),  # then stop
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = subprocess.run(cmd, capture_output=True)
    frame_bytes = info["width"] * info["height"] * 3
    if out.returncode or len(out.stdout) % frame_bytes:
        raise ValueError(f"{path}: decoding {len(kept)} frames in {kept[0]}..{kept[-1]} failed "
                         f"({_ffmpeg_problem(out.stderr.decode(errors='replace'))})")
    return np.frombuffer(out.stdout, np.uint8).reshape(-1, info["height"], info["width"], 3)


def read_clip(path, frame_indices, width=None, height=None, bit_depth=None, fps=None, info=None):
    """Frames at 0-based `frame_indices` as RGB uint8 (T, H, W, 3) at native resolution.

    Indices past the end repeat the last frame. `info`: probe()'s result (probed when None).
    Containers: only the wanted frames are converted to RGB, after a seek to the keyframe before
    the first one where the timestamps allow (see _decode). Raw .yuv: width, height, bit_depth
    (default 8) from the arguments or the file name; BT.709 from 720 lines up, else BT.601.
    """
    path = str(path)
    idx = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < 0:
        raise ValueError(f"{path}: frame indices must be a non-empty list of ints >= 0, got {frame_indices}")
    info = info or probe(path, width, height, bit_depth, fps)
    idx = np.minimum(idx, info["frames"] - 1)
    if _is_yuv(path):
        w, h, bits, _ = _yuv_format(path, width, height, bit_depth, fps)
        return _read_yuv(path, idx, w, h, bits)
    kept = np.unique(idx)  # sorted; select emits each frame once, in order
    if len(set(np.diff(kept))) > 1:  # not evenly spaced (rare): keep the whole span, pick later
        kept = np.arange(kept[0], kept[-1] + 1)
    seeks = [None]  # None: decode from the start
    if info["start"] is not None:
        # Aim a quarter frame past the first frame: the jump goes to the keyframe at or before it,
        # whatever the rounding. One that lands late (MPEG-TS, open-GOP leading frames) misses
        # frames: then 5 s earlier, then from the start.
        first = info["start"] + (kept[0] + 0.25) / info["fps"]
        seeks = [first, first - 5, None] if kept[0] / info["fps"] > 5 else [first, None]
    for seek in seeks:
        frames = _decode(path, kept, info, seek)
        if len(frames) == len(kept):
            break
    if not len(frames):
        raise ValueError(f"{path}: no frames decoded in {kept[0]}..{kept[-1]}")
    # fewer frames than asked (a damaged tail): the last decoded one stands in for the rest
    return frames[np.minimum(np.searchsorted(kept, idx), len(frames) - 1)]


# -----------------------------------------------------------------------------
# sampling: which frames, which pixels


def _fit_stride(n_frames, frames, stride):
    """The requested stride, shrunk until `frames` frames fit; 0 when they do not fit even at 1."""
    if n_frames < 1 or frames < 1 or stride < 1:
        raise ValueError(f"need n_frames, frames, stride >= 1, got {n_frames}, {frames}, {stride}")
    return stride if frames == 1 else min(stride, (n_frames - 1) // (frames - 1))


def train_indices(n_frames, frames, stride, rng):
    """`frames` indices at `stride` from a random start (rng: numpy Generator)."""
    s = _fit_stride(n_frames, frames, stride)
    if s == 0:  # shorter than the clip: spread the video over it, repeating frames
        return np.arange(frames) * n_frames // frames
    return rng.integers(n_frames - (frames - 1) * s) + np.arange(frames) * s


def eval_indices(n_frames, frames, stride, clips=1):
    """(clips, frames) indices of `clips` clips centred in equal parts of the video; deterministic."""
    s = _fit_stride(n_frames, frames, stride)
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if s == 0:
        return np.tile(np.arange(frames) * n_frames // frames, (clips, 1))
    room = n_frames - (frames - 1) * s - 1  # the last possible start
    starts = np.round((np.arange(clips) + 0.5) / clips * room).astype(np.int64)
    return starts[:, None] + np.arange(frames) * s


def _upscale(clip, short):
    """Bilinear upscale (T, H, W, 3) uint8 so that both sides are >= `short`; a no-op when they are."""
    _, h, w, _ = clip.shape
    if min(h, w) >= short:
        return clip
    scale = short / min(h, w)
    size = (max(short, round(h * scale)), max(short, round(w * scale)))
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _offset(room, rng):
    return int(rng.integers(room + 1)) if rng is not None else room // 2


def crop_clip(clip, size, rng=None):
    """One size x size crop, the same on every frame: random with a numpy Generator, else centred."""
    clip = _upscale(clip, size)
    _, h, w, _ = clip.shape
    y, x = _offset(h - size, rng), _offset(w - size, rng)
    return clip[:, y : y + size, x : x + size]  # (T, S, S, 3)


def fragment_clip(clip, size, rng=None, grid=7):
    """FAST-VQA fragments: a native (size/grid)^2 patch from each cell of a grid x grid split,
    stitched into size x size. Offsets inside the cells are the same on every frame of the clip;
    random with a numpy Generator, else the cell centres (FAST-VQA itself is random at test time)."""
    if size % grid:
        raise ValueError(f"fragment size {size} is not a multiple of the grid {grid}")
    p = size // grid
    clip = _upscale(clip, size)  # every cell must hold a p x p patch
    t, h, w, _ = clip.shape
    ys, xs = [i * h // grid for i in range(grid + 1)], [j * w // grid for j in range(grid + 1)]
    out = np.empty((t, size, size, 3), np.uint8)
    for i in range(grid):
        for j in range(grid):
            y = ys[i] + _offset(ys[i + 1] - ys[i] - p, rng)
            x = xs[j] + _offset(xs[j + 1] - xs[j] - p, rng)
            out[:, i * p : (i + 1) * p, j * p : (j + 1) * p] = clip[:, y : y + p, x : x + p]
    return out


def normalise(clip):
    """uint8 (T, H, W, 3) -> float32 (3, T, H, W) in ImageNet units (REFERENCE section 2)."""
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return (x - mean[:, None, None, None]) / std[:, None, None, None]


# -----------------------------------------------------------------------------
# indexes: every source of labels becomes a list of dicts {path, mos, source, ...}


def _score(text, where):
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{where}: score {text!r} is not a finite number")
    return value


def load_csv(path):
    """Items of a CSV list with header `path,mos` and optional `source` plus any other columns.

    Relative paths resolve against the CSV's folder (stored absolute); mos becomes a float and the
    other columns stay strings (width, height, bit_depth, fps describe raw .yuv files). Without a
    `source` column every video is its own content (the file stem), so splits are then by video:
    give `source` for synthetic-distortion sets, where one content has many distorted versions.
    """
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet may write a BOM
        reader = csv.DictReader(f)
        missing = {"path", "mos"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}, line 1: header {reader.fieldnames} lacks {sorted(missing)}")
        items, seen = [], {}
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if None in row:
                raise ValueError(f"{where}: more fields than the header has columns")
            name = (row["path"] or "").strip()
            if not name:
                raise ValueError(f"{where}: empty path")
            video = os.path.normpath(os.path.join(folder, name))
            if video in seen:
                raise ValueError(f"{where}: duplicated path {name!r} (first on line {seen[video]})")
            seen[video] = reader.line_num
            mos = _score(row["mos"], where)
            if not os.path.isfile(video):
                raise FileNotFoundError(f"{where}: {video} does not exist")
            source = row.get("source") or os.path.splitext(os.path.basename(video))[0]
            extra = {k: v or "" for k, v in row.items() if k not in ("path", "mos", "source")}
            items.append(dict(path=video, mos=mos, source=source, **extra))
    if not items:
        raise ValueError(f"{path}: no videos listed")
    return items


def _yuv_args(item):
    return {k: item[k] for k in YUV_KEYS if item.get(k) not in (None, "")}


def check_videos(items, workers=8):
    """probe() every item (threads: the work is in ffmpeg processes); returns the probe dicts.

    Finds zero-byte, truncated and non-video files before training; raises one error that lists
    every bad file (FileNotFoundError when they are all missing, else ValueError)."""
    def safe_probe(item):
        try:
            return probe(item["path"], **_yuv_args(item))
        except (OSError, ValueError) as e:
            return e

    with ThreadPoolExecutor(workers) as pool:
        infos = list(pool.map(safe_probe, items))
    errors = [e for e in infos if isinstance(e, Exception)]
    if errors:
        kind = FileNotFoundError if all(isinstance(e, FileNotFoundError) for e in errors) else ValueError
        raise kind(f"{len(errors)} of {len(items)} videos cannot be read:\n" + "\n".join(map(str, errors)))
    return infos


def _rows(path):
    """(line number, fields) of a label file: comma, semicolon or whitespace separated; '#' comments."""
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            fields = [s for s in re.split(r"[,;\s]+", line.strip()) if s]
            if fields and not fields[0].startswith("#"):
                yield n, fields


def _is_number(text):
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def waterloo4k_index(root, labels=None):
    """Waterloo IVC 4K: `<root>/<Encoder>/<NN>/<W>x<H>_<level>.mp4` and `scores.txt`, five columns
    without header: encoder, video number, resolution (WxH or 540/1080/2160[p]), level, MOS (0-100,
    higher is better). source = video number; codec, level, resolution kept as columns."""
    root = os.path.abspath(root)
    labels = labels or os.path.join(root, "scores.txt")
    folders = {d.lower(): d for d in os.listdir(root)}  # encoder names in any case
    heights = {"540": "960x540", "1080": "1920x1080", "2160": "3840x2160"}
    items = []
    for n, fields in _rows(labels):
        where = f"{labels}, line {n}"
        if n == 1 and not _is_number(fields[-1]):
            continue  # tolerate a header
        if len(fields) != 5:
            raise ValueError(f"{where}: expected encoder, video, resolution, level, MOS; got {fields}")
        codec, video, res, level, mos = fields
        if not (video.isdigit() and level.isdigit()):
            raise ValueError(f"{where}: video number and level must be integers, got {video!r}, {level!r}")
        res = heights.get(res.lower().rstrip("p"), res.lower())
        folder = os.path.join(root, folders.get(codec.lower(), codec), f"{int(video):02d}")
        path = os.path.join(folder, f"{res}_{int(level)}.mp4")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{where}: {path} does not exist")
        items.append(dict(path=path, mos=_score(mos, where), source=str(int(video)), codec=codec,
                          level=str(int(level)), resolution=res))
    return items


def bvihd_index(root, labels, *, bit_depth, fps, width=1920, height=1080):
    """BVI-HD: raw 4:2:0 .yuv files anywhere under `root` plus a label file.

    The label file's layout is not fixed publicly, so it is read liberally: one video per line,
    fields split by commas, semicolons or spaces; the first non-numeric field is the file name
    (.yuv optional, folders ignored); the DMOS is the column a header line names `*dmos*`, else the
    last number on the line; '#' starts a comment. DMOS (lower is better) becomes mos = 100 - DMOS
    (the authors trained on DMOS / 100; correlations only change sign). source = the file name up
    to its first `_`. bit_depth and fps: from the dataset's instructions (REFERENCE section 4).
    """
    root = os.path.abspath(root)
    files = {}
    for folder, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            if _is_yuv(name):
                files.setdefault(name.lower(), os.path.join(folder, name))
    items, column = [], None
    for n, fields in _rows(labels):
        where = f"{labels}, line {n}"
        numbers = [s for s in fields if _is_number(s)]
        if not numbers and not items:  # a header: remember which column holds the DMOS
            column = next((i for i, s in enumerate(fields) if "dmos" in s.lower()), None)
            continue
        names = [s for s in fields if not _is_number(s)]
        if not names or not numbers:
            raise ValueError(f"{where}: expected a file name and a DMOS, got {fields}")
        name = os.path.basename(names[0])
        name = name if _is_yuv(name) else name + ".yuv"
        if name.lower() not in files:
            raise FileNotFoundError(f"{where}: no file {name} under {root}")
        dmos = fields[column] if column is not None and column < len(fields) else numbers[-1]
        items.append(dict(path=files[name.lower()], mos=100.0 - _score(dmos, where), source=name.split("_")[0],
                          dmos=dmos, width=str(width), height=str(height), bit_depth=str(bit_depth), fps=str(fps)))
    return items


NOMINAL_RANGE = {"bvihd": (0.0, 100.0), "waterloo4k": (0.0, 100.0), "toy": (0.0, 100.0)}


def label_range(dataset, items=None):
    """(lo, hi) of a dataset's labels: nominal for the known ones, else min and max of `items`
    (pass the training items). Training targets are (mos - lo) / (hi - lo)."""
    if dataset in NOMINAL_RANGE:
        return NOMINAL_RANGE[dataset]
    mos = [item["mos"] for item in items or []]
    if not mos or min(mos) == max(mos):
        raise ValueError(f"cannot infer a label range for {dataset!r} from {len(mos)} items with scores "
                         f"{sorted(set(mos))[:5]}")
    return (min(mos), max(mos))


# -----------------------------------------------------------------------------
# splits by source content: the same content never lands on both sides

OFFICIAL_TEST_SOURCES = {  # REFERENCE section 3
    "bvihd": ("BallUnderWater", "Bookcase", "BricksLeaves", "Music", "PlasmaSlowRandom", "TreeGrassFamily"),
    "waterloo4k": ("1", "2", "3", "4"),
}


def official_split(items, dataset):
    """(train_items, test_items) with the InternVQA authors' fixed test sources; for the toy set its
    own fixed `split` column (every 4th content, the ones also encoded with VVC in toy_vvc.csv)."""
    if dataset == "toy":
        bad = [it["path"] for it in items if it.get("split") not in ("train", "test")]
        if bad:
            raise ValueError(f"toy split: {len(bad)} items have no 'split' column of train/test, e.g. {bad[0]}")
        return [it for it in items if it["split"] == "train"], [it for it in items if it["split"] == "test"]
    if dataset not in OFFICIAL_TEST_SOURCES:
        raise ValueError(f"no official split for {dataset!r} (known: {sorted(OFFICIAL_TEST_SOURCES)}); "
                         f"use split_by_source")
    test = {s.lower() for s in OFFICIAL_TEST_SOURCES[dataset]}
    train_items = [it for it in items if str(it["source"]).lower() not in test]
    test_items = [it for it in items if str(it["source"]).lower() in test]
    if not train_items or not test_items:
        found = sorted({str(it["source"]) for it in items})
        raise ValueError(f"official {dataset} split gave {len(train_items)} train and {len(test_items)} test "
                         f"items; test sources {OFFICIAL_TEST_SOURCES[dataset]}, found sources {found[:12]}")
    return train_items, test_items


def split_by_source(items, test_fraction=0.25, seed=0):
    """(train_items, test_items): a seeded random `test_fraction` of the sources (at least one
    source on each side) goes to test; items keep their order."""
    sources = sorted({it["source"] for it in items})
    if len(sources) < 2:
        raise ValueError(f"a content split needs at least 2 sources, got {sources}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = min(len(sources) - 1, max(1, round(len(sources) * test_fraction)))
    test = set(np.random.default_rng(seed).permutation(sources)[:n_test].tolist())
    return [it for it in items if it["source"] not in test], [it for it in items if it["source"] in test]


# -----------------------------------------------------------------------------
# dataset


class VideoDataset(torch.utils.data.Dataset):
    """(clip, target, index) per item: clip float32 (3, T, S, S) when training, (clips, 3, T, S, S)
    at test; target = (mos - lo) / (hi - lo), a float32 scalar. Items may carry width, height,
    bit_depth, fps (strings are fine) for raw .yuv files.

    Test clips are deterministic: evenly spaced clips, centre crop or cell-centre fragments.
    Training draws from a numpy Generator seeded per item with (seed, epoch, index): the same
    crops whatever the number of workers or the order, so a resumed run repeats them exactly.
    Call set_epoch(e) every epoch so that the crops change between epochs.
    check=True probes every file up front (check_videos) instead of on first use.
    fragments: False (a crop), True (FAST-VQA's 7 x 7 grid) or a grid size n: with size = 14 n,
    each ViT token is one native-resolution mini-patch from its own cell of the frame.
    """

    def __init__(self, items, frames=8, size=224, stride=4, train=True, clips=1, label_range=(0, 100),
                 fragments=False, seed=0, check=False):
        lo, hi = label_range
        if not items or min(frames, size, stride, clips) < 1 or not hi > lo:
            raise ValueError(f"need items and frames, size, stride, clips >= 1 and hi > lo; got {len(items)} "
                             f"items, {frames}, {size}, {stride}, {clips}, label_range {label_range}")
        grid = 7 if fragments is True else int(fragments or 0)  # True: FAST-VQA's 7 x 7
        if grid and size % grid:
            raise ValueError(f"fragments on a {grid} x {grid} grid need a size that is a multiple of {grid}, got {size}")
        self.items, self.frames, self.size, self.stride = list(items), frames, size, stride
        self.train, self.clips, self.lo, self.hi = train, clips, float(lo), float(hi)
        self.grid, self.seed, self.epoch = grid, seed, 0
        self.info = {}  # path -> probe(); filled lazily, per worker process
        if check:
            self.info = {it["path"]: info for it, info in zip(self.items, check_videos(self.items))}

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.items)

    def _rng(self, index):
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index):
        item = self.items[index]
        path, yuv = item["path"], _yuv_args(item)
        if path not in self.info:
            self.info[path] = probe(path, **yuv)
        info = self.info[path]
        target = torch.tensor((item["mos"] - self.lo) / (self.hi - self.lo), dtype=torch.float32)
        pick = (lambda c, s, rng=None: fragment_clip(c, s, rng, self.grid)) if self.grid else crop_clip
        if self.train:
            rng = self._rng(index)
            idx = train_indices(info["frames"], self.frames, self.stride, rng)
            clip = normalise(pick(read_clip(path, idx, info=info, **yuv), self.size, rng))
        else:  # (clips, 3, T, S, S)
            clip = torch.stack([normalise(pick(read_clip(path, idx, info=info, **yuv), self.size))
                                for idx in eval_indices(info["frames"], self.frames, self.stride, self.clips)])
        return clip, target, index


# -----------------------------------------------------------------------------
# the toy set: make_toy_dataset(root), the default data of train.py and of the tests
#
# A built-in compressed-video quality set made from nothing but the bundled ffmpeg.
#
# What: synthetic contents from ffmpeg's lavfi generators (fractals, cellular automata, noise
# textures, pans and zooms), each encoded by the five Waterloo IVC 4K encoders (H.264, HEVC, VP9,
# AVS2, AV1) at 4 quality levels, level 1 the worst as in Waterloo, and labelled with VMAF
# against the lossless source (0-100, higher is better). The same contents encoded with VVC make
# a held-out codec for cross-codec tests. The labels are VMAF, not human opinion scores.
#
# Why: so that a new user with no data (and the tests) can run the whole pipeline in minutes.
# A model must learn "how much detail did compression destroy relative to this content", so
# what matters is variety of texture scale, contrast, colour and motion across contents.
#
# Use:
#     csv = make_toy_dataset("data/toy")               # ~2 min on 2 cores, cached afterwards
#     csv = make_toy_dataset("data/toy_tiny", tiny=True)  # a few seconds, for tests
#
# Layout of root: `toy.csv` and `toy_vvc.csv` (columns path,mos,source,codec,level,split,
# reference; paths relative to root), `ref/<source>.mkv` (lossless FFV1 sources, kept because
# they are small and useful as the reference column), `<codec>/<source>_<level>.<ext>`.
# The fixed `split` column holds out every fourth content; make your own content splits from
# the `source` column. A build happens in a temporary folder next to root and is renamed into
# place only when complete, with a marker holding a hash of the build parameters.

TOY_SIZE, TOY_FPS, TOY_FRAMES = (176, 144), 24, 16  # multiples of 16 (every encoder takes them), > 112 crops

# name -> lavfi graph. Fixed seeds keep noise sources identical from run to run.
TOY_SOURCES = {
    # fractals: zooms, morphs and rotations
    "mandel_seahorse": "mandelbrot=s=176x144:r=24:start_x=-0.743643887037151:start_y=0.13182590420533:start_scale=0.02:end_scale=0.01:end_pts=24",
    "mandel_full": "mandelbrot=s=176x144:r=24:start_x=-0.6:start_y=0:start_scale=2.6:end_scale=2.2:end_pts=24:inner=period",
    "mandel_spiral": "mandelbrot=s=176x144:r=24:start_x=-0.7746806106269039:start_y=-0.1374168856037867:start_scale=0.003:end_scale=0.002:end_pts=24:outer=normalized_iteration_count",
    "mandel_morph": "mandelbrot=s=176x144:r=24:start_x=-1.25:start_y=0.02:start_scale=0.2:end_scale=0.17:end_pts=24:morphamp=0.05:morphxf=3:morphyf=2:inner=convergence",
    "mandel_elephant_rot": "mandelbrot=s=256x256:r=24:start_x=0.2925:start_y=0.016:start_scale=0.03:end_scale=0.03:maxiter=500,rotate=a=t*0.5:ow=176:oh=144",
    "sierp_carpet": "sierpinski=s=176x144:r=24:type=carpet:seed=3:jump=2,lutrgb=r=val*0.9:g=val*0.6:b=80+val*0.3",
    "sierp_triangle": "sierpinski=s=176x144:r=24:type=triangle:seed=5:jump=1,negate,lutrgb=g=val*0.7:b=val*0.4",
    # cellular automata, cells of 2-4 pixels (1-pixel cells look like compression noise themselves)
    "life_classic": "life=s=88x72:r=24:ratio=0.35:seed=11:mold=12:life_color=#ffe070:death_color=#102040:mold_color=#604020,scale=176:144:flags=neighbor",
    "life_daynight": "life=s=59x48:r=24:ratio=0.5:seed=3:rule=B3678/S34678:life_color=#30c060:death_color=#202060,scale=176:144:flags=bicubic",
    "life_mold_big": "life=s=44x36:r=24:ratio=0.3:seed=21:mold=30:life_color=#ff4040:death_color=#f0f0e0:mold_color=#40a0ff,scale=176:144:flags=neighbor,gblur=sigma=1",
    "life_maze_soft": "life=s=44x36:r=24:ratio=0.45:seed=28:rule=B3/S1234:life_color=#e8c070:death_color=#403020,scale=176:144:flags=bicubic,gblur=sigma=1.5,noise=alls=12:allf=u:all_seed=28",
    "cellauto_18_big": "cellauto=s=59x48:r=24:rule=18:ratio=0.3:seed=2:full=1,scale=176:144:flags=neighbor,lutrgb=r=255-val*0.5:g=200:b=val",
    "cellauto_30_soft": "cellauto=s=88x72:r=24:rule=30:ratio=0.5:seed=4:full=1,scale=176:144:flags=bicubic,lutrgb=r=val*0.4:g=val*0.8",
    # noise textures (fixed seeds) moved by pans, zooms, rotations and shake
    "noise_fine_pan": "color=gray:s=320x240:r=24,noise=alls=100:allf=u:all_seed=1,gblur=sigma=1,eq=contrast=2,crop=176:144:x=t*40:y=t*20",
    "noise_mid_zoom": "color=gray:s=320x240:r=24,noise=alls=100:allf=u:all_seed=2,gblur=sigma=3,eq=contrast=5,zoompan=z=1+0.02*on:x=iw/2-iw/zoom/2:y=ih/2-ih/zoom/2:d=1:s=176x144:fps=24",
    "noise_coarse_rot": "color=gray:s=256x256:r=24,noise=alls=100:allf=u:all_seed=3,gblur=sigma=8,eq=contrast=12,rotate=a=t*0.4:ow=176:oh=144",
    "noise_boil": "color=gray:s=176x144:r=24,noise=alls=100:allf=t+u:all_seed=4,gblur=sigma=2.5,eq=contrast=5",
    "noise_colour": "color=gray:s=300x300:r=24,noise=alls=100:allf=u:all_seed=5,gblur=sigma=2,eq=contrast=4:saturation=3,hue=h=t*120,crop=176:144:x=60-t*50:y=t*60",
    "noise_streaks": "color=gray:s=400x144:r=24,noise=alls=100:allf=u:all_seed=6,gblur=sigma=6:sigmaV=0.5,eq=contrast=8,crop=176:144:x=t*90:y=0,colorchannelmixer=rr=1:gg=0.8:bb=0.5",
    "noise_faint": "color=0x807060:s=320x240:r=24,noise=alls=30:allf=u:all_seed=7,gblur=sigma=0.7,crop=176:144:x=t*30:y=40",
    "noise_sharp": "color=gray:s=256x200:r=24,noise=alls=100:allf=u:all_seed=8,gblur=sigma=4,eq=contrast=10,unsharp=7:7:2.5,scroll=h=0.01:v=0.004,crop=176:144",
    "noise_shake": "color=gray:s=240x200:r=24,noise=alls=100:allf=u:all_seed=25,gblur=sigma=2,eq=contrast=4,unsharp=5:5:1,crop=176:144:x=32+12*sin(t*19):y=28+9*cos(t*23),hue=s=0",
    "noise_parallax": "color=gray:s=480x144:r=24,noise=alls=100:allf=u:all_seed=11,gblur=sigma=12,eq=contrast=14,crop=176:144:x=t*20[bg];color=gray:s=480x144:r=24,noise=alls=100:allf=u:all_seed=12,gblur=sigma=1.2,eq=contrast=3,crop=176:144:x=t*110[fg];[bg][fg]blend=all_expr='A*0.65+B*0.35',eq=contrast=1.6:brightness=0.1,colorchannelmixer=rr=0.8:gg=1:bb=0.7",
    "noise_pebbles": "color=gray:s=640x288:r=24,noise=alls=100:allf=u:all_seed=36,gblur=sigma=5,eq=contrast=25,gblur=sigma=1,scale=320:144,crop=176:144:x=t*50,format=yuv420p,noise=c0s=20:c0f=u:all_seed=37,colorchannelmixer=rr=0.9:gg=0.75:bb=0.6",
    "noise_bars": "color=gray:s=176x144:r=24,noise=alls=100:allf=u:all_seed=26,gblur=sigma=3,eq=contrast=6,geq=lum='if(lt(mod(X*cos(T)+Y*sin(T),40),10),235,p(X,Y))':cb=128:cr=128",
    # perlin noise (1/f-like when octaves add up): clouds, foliage, water, marble, terrain
    "perlin_clouds": "perlin=s=176x144:r=24:octaves=6:persistence=0.6:xscale=1.5:yscale=1.5:tscale=1:random_mode=seed:random_seed=2",
    "perlin_fractal": "perlin=s=176x144:r=24:octaves=6:persistence=0.7:xscale=4:yscale=4:tscale=0.5:random_mode=seed:random_seed=1,format=gray,format=yuv420p,eq=contrast=2,pseudocolor=p=viridis",
    "perlin_fine": "perlin=s=176x144:r=24:octaves=3:persistence=0.8:xscale=16:yscale=12:tscale=2:random_mode=seed:random_seed=3,format=gray,format=yuv420p,eq=contrast=2,pseudocolor=p=turbo",
    "perlin_marble": "perlin=s=176x144:r=24:octaves=5:persistence=0.7:xscale=3:yscale=1:tscale=0.4:random_mode=seed:random_seed=4,format=gray,lutyuv=y=128+127*sin(val/9),format=yuv420p,pseudocolor=p=inferno",
    "perlin_marble_pan": "perlin=s=320x144:r=24:octaves=6:persistence=0.65:xscale=2:yscale=4:tscale=0:random_mode=seed:random_seed=29,format=gray,lutyuv=y=128+110*sin(val/6),format=yuv420p,pseudocolor=p=cividis,crop=176:144:x=t*60",
    "perlin_poster": "perlin=s=176x144:r=24:octaves=3:persistence=0.5:xscale=2:yscale=2:tscale=0.8:random_mode=seed:random_seed=5,format=gray,eq=contrast=2,lutyuv=y=floor(val/40)*40,format=yuv420p,pseudocolor=p=cool",
    "perlin_terrain": "perlin=s=264x216:r=24:octaves=6:persistence=0.65:xscale=2:yscale=2:tscale=0:random_mode=seed:random_seed=6,format=gray,format=yuv420p,eq=contrast=2.5,pseudocolor=p=cividis,zoompan=z=1.2+0.01*on:x=on*3:y=on*2:d=1:s=176x144:fps=24",
    "perlin_bark": "perlin=s=176x288:r=24:octaves=5:persistence=0.6:xscale=12:yscale=1:tscale=0:random_mode=seed:random_seed=38,format=gray,eq=contrast=3,format=yuv420p,colorchannelmixer=rr=0.7:gg=0.5:bb=0.3,crop=176:144:x=0:y=t*60",
    "perlin_foliage": "perlin=s=176x144:r=24:octaves=7:persistence=0.75:xscale=5:yscale=5:tscale=1.5:random_mode=seed:random_seed=21,format=gray,eq=contrast=3.5,format=yuv420p,colorchannelmixer=rr=0.35:gg=0.9:bb=0.25",
    "perlin_water": "perlin=s=176x144:r=24:octaves=4:persistence=0.5:xscale=8:yscale=20:tscale=6:random_mode=seed:random_seed=23,format=gray,eq=contrast=2.5,format=yuv420p,pseudocolor=p=blues",
    "perlin_skyline": "gradients=s=176x144:r=24:c0=0x3060c0:c1=0xf0d0a0:x0=88:y0=0:x1=88:y1=143:n=2:speed=0,format=rgb24[sky];perlin=s=176x144:r=24:octaves=5:persistence=0.6:xscale=1:yscale=4:tscale=0.3:random_mode=seed:random_seed=22,format=gray,geq=lum='if(gt(Y/H*255+p(X,Y)-128,200),0,255)',format=rgb24[m];[sky][m]blend=all_mode=multiply,format=gbrp,format=yuv420p,noise=c0s=16:c0f=u:all_seed=35",
    # smooth fields (gradients: colours and points given, its seed option is not honoured)
    "gradient_linear": "gradients=s=176x144:r=24:n=4:c0=0x3050a0:c1=0x60a0e0:c2=0xe0e0f0:c3=0x8040a0:x0=0:y0=0:x1=175:y1=143:speed=0.03:type=linear,format=yuv420p,noise=c0s=22:c0f=u:all_seed=31",
    "gradient_spiral": "gradients=s=176x144:r=24:n=3:c0=0x204080:c1=0xe0a040:c2=0x60c060:x0=20:y0=10:x1=150:y1=130:speed=0.05:type=spiral,format=yuv420p,noise=c0s=22:c0f=u:all_seed=32",
    "gradient_grain": "gradients=s=176x144:r=24:n=2:c0=0xd02040:c1=0x302090:x0=120:y0=80:x1=10:y1=10:speed=0.02:type=radial,format=yuv420p,noise=alls=14:allf=u:all_seed=24",
    "blobs": "color=gray:s=352x288:r=24,noise=alls=100:allf=u:all_seed=6,gblur=sigma=10,eq=contrast=30,scroll=h=0.004:v=0.003,scale=176:144,pseudocolor=p=plasma",
    # test patterns
    "testsrc2_pan": "testsrc2=s=352x288:r=24,crop=176:144:x=20+t*60:y=40+t*30",
    "colorspectrum_scroll": "colorspectrum=s=176x144:r=24:type=all,scroll=h=0.01,format=yuv420p,noise=alls=16:allf=u:all_seed=34",
    "smpte_rot": "smptehdbars=s=352x288:r=24,rotate=a=0.3+t*0.2:ow=176:oh=144",
    # mixtures of two generators
    "blend_mandel_zone": "mandelbrot=s=176x144:r=24:start_scale=1.5:end_scale=1.2:end_pts=24[a];zoneplate=s=176x144:r=24:kx2=30:ky2=30:kt2=2,format=rgb24[b];[a][b]blend=all_mode=multiply",
    "blend_life_perlin": "life=s=88x72:r=24:ratio=0.2:seed=5:mold=20,scale=176:144:flags=neighbor,format=rgb24[a];perlin=s=176x144:r=24:octaves=4:xscale=3:yscale=3:random_mode=seed:random_seed=6,format=rgb24[b];[a][b]blend=all_mode=screen",
    "blend_noise_gradient": "gradients=s=176x144:r=24:n=3:c0=0x40c040:c1=0xc040c0:c2=0x40a0c0:x0=0:y0=143:x1=175:y1=0:speed=0.04,format=rgb24[a];color=gray:s=176x144:r=24,noise=alls=100:allf=u:all_seed=8,gblur=sigma=1.5,eq=contrast=3,format=rgb24[b];[a][b]blend=all_mode=overlay",
    "blend_carpet_clouds": "sierpinski=s=176x144:r=24:type=carpet:seed=8,format=rgb24[a];perlin=s=176x144:r=24:octaves=5:xscale=2:yscale=2:random_mode=seed:random_seed=9,format=gray,format=yuv420p,pseudocolor=p=magma,format=rgb24[b];[a][b]blend=all_mode=difference",
    "carpet_grain": "sierpinski=s=176x144:r=24:type=carpet:seed=27:jump=1,format=yuv420p,noise=alls=25:allf=t+u:all_seed=27,lutrgb=r=val:g=val*0.85:b=val*0.6",
    # analytic pictures
    "geq_waves": "nullsrc=s=176x144:r=24,geq=lum='128+90*sin(X/7+T*4)*cos(Y/9-T*2)':cb='128+60*sin(X/30+T)':cr='128+60*cos(Y/25)',noise=c0s=20:c0f=u:all_seed=33",
    "geq_checker_warp": "nullsrc=s=176x144:r=24,geq=lum='if(mod(floor((X+8*sin(Y/10+T*3))/12)+floor(Y/12),2),220,30)':cb=100:cr=170",
    "geq_discs": "nullsrc=s=176x144:r=24,geq=lum='if(lt(hypot(X-60-40*T,Y-70),30),200,if(lt(hypot(X-130,Y-50-30*T),22),40,110+20*sin(X/3)*sin(Y/4)))':cb='if(lt(hypot(X-60-40*T,Y-70),30),90,140)':cr='if(lt(hypot(X-130,Y-50-30*T),22),200,120)'",
}

# codec -> (file extension, encoder arguments with {q}, quality values for levels 1..4)
TOY_CODECS = {
    "h264": ("mp4", "-c:v libx264 -preset medium -threads 1 -crf {q}", (51, 41, 33, 22)),
    "hevc": ("mp4", "-c:v libx265 -preset medium -crf {q} -x265-params pools=none:frame-threads=1:log-level=error", (51, 42, 35, 23)),
    "vp9": ("webm", "-c:v libvpx-vp9 -deadline good -cpu-used 4 -row-mt 0 -threads 1 -b:v 0 -crf {q} -qmin {q} -qmax {q} -auto-alt-ref 0 -lag-in-frames 0", (63, 59, 47, 25)),
    "avs2": ("avs2", "-c:v libxavs2 -xavs2-params thread_frames=1:thread_rows=1 -qp {q}", (63, 50, 39, 23)),
    "av1": ("mp4", "-c:v libaom-av1 -usage realtime -cpu-used 8 -row-mt 0 -threads 1 -aq-mode 0 -crf {q} -qmin {q} -qmax {q}", (63, 58, 47, 25)),
    "vvc": ("266", "-c:v libvvenc -preset faster -threads 1 -pix_fmt yuv420p10le -qp {q}", (60, 46, 38, 27)),
}
TOY_HELD_OUT = ("vvc",)  # written to toy_vvc.csv, never to toy.csv
TOY_ALONE = ("avs2",)  # libxavs2 crashes when two of its encoders share a process
TOY_TINY = dict(sources=("mandel_full", "noise_mid_zoom", "life_classic", "gradient_spiral"), codecs=("h264", "av1", "vvc"), frames=12)
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"]


def _run_ffmpeg(args, cwd):
    """Run the bundled ffmpeg quietly; return (ok, stderr tail)."""
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    env = dict(os.environ, SVT_LOG="1")  # SVT-AV1 prints its banner to stderr otherwise
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return r.returncode == 0, f"exit code {r.returncode}; stderr ends:\n{r.stderr[-1500:]}"


def _make_reference(graph, out, frames, cwd):
    """Render a lavfi graph to a lossless H.264 file (qp 0) of exactly `frames` frames.

    Lossless H.264 in mp4 rather than FFV1 in mkv: it is smaller here (motion compensation
    codes pans almost for free) and mp4 keeps exact 1/24 s timestamps, where mkv's 1 ms clock
    made encoders drop and repeat frames.
    """
    w, h = TOY_SIZE
    graph += f",scale={w}:{h},format=yuv420p,setsar=1,fps={TOY_FPS}"
    lossless = ["-c:v", "libx264", "-qp", "0", "-preset", "medium", "-threads", "1"]
    ok, err = _run_ffmpeg(["-f", "lavfi", "-i", graph, "-frames:v", str(frames), *lossless, *BITEXACT, out], cwd)
    if not ok or not os.path.getsize(os.path.join(cwd, out)):
        raise RuntimeError(f"toy set: could not render {out} from {graph!r}:\n{err}")


def _run_and_check(encs, lab, outs, frames, cwd, work):
    """Run the encodes, then the labelling; return None, or what went wrong, naming the file."""
    for enc in encs:
        ok, err = _run_ffmpeg(enc, cwd)
        if not ok:
            return f"{', '.join(outs)}: encoding failed: {err}"
    for out in outs:
        if not os.path.exists(os.path.join(cwd, out)) or not os.path.getsize(os.path.join(cwd, out)):
            return f"{out}: empty or missing output although the encoder exited 0"
    ok, err = _run_ffmpeg(lab, cwd)
    if not ok:
        return f"{', '.join(outs)}: decoding or VMAF failed: {err}"
    with open(os.path.join(cwd, f"{work}_frames.txt")) as f:
        streams = [line.split(",")[0].strip() for line in f if not line.startswith("#")]
    for i, out in enumerate(outs):
        if streams.count(str(i)) != frames:
            return f"{out}: decodes to {streams.count(str(i))} frames, expected {frames}"
    return None


def _encode_and_label(ref, outs, codec, frames, cwd, work):
    """Encode `ref` at the 4 levels of `codec` (one ffmpeg), then VMAF all 4 (one ffmpeg).

    Returns the 4 VMAF means, or raises naming the bad file. Each output is checked: it must be
    non-empty and decode to `frames` frames (a broken encoder run can exit 0 with an empty file).
    """
    ext, args, levels = TOY_CODECS[codec]
    n = len(outs)
    groups = [[i] for i in range(n)] if codec in TOY_ALONE else [range(n)]
    encs = [["-i", ref] + [a for i in g for a in ("-map", "0:v", *args.format(q=levels[i]).split(), *BITEXACT, outs[i])]
            for g in groups]
    # Frames are paired by index (raw .avs2/.266 streams carry no reliable timestamps), and
    # VMAF repeats a short input's last frame, so decoded frames are also counted on the side.
    sync = f"format=yuv420p,settb=1/{TOY_FPS},setpts=N"
    graph = f"[{n}:v]{sync},split={n}" + "".join(f"[r{i}]" for i in range(n))
    for i in range(n):
        graph += f";[{i}:v]{sync},split[d{i}][c{i}];[d{i}][r{i}]libvmaf=log_fmt=json:log_path={work}_{i}.json[v{i}]"
    lab = [a for out in outs for a in ("-i", out)] + ["-i", ref, "-filter_complex", graph]
    lab += [a for i in range(n) for a in ("-map", f"[v{i}]")] + ["-f", "null", "-"]
    lab += [a for i in range(n) for a in ("-map", f"[c{i}]")] + ["-f", "framemd5", f"{work}_frames.txt"]
    for attempt in range(2):  # a failed, empty or short encode is retried once
        problem = _run_and_check(encs, lab, outs, frames, cwd, work)
        if problem is None:
            return [json.load(open(os.path.join(cwd, f"{work}_{i}.json")))["pooled_metrics"]["vmaf"]["mean"] for i in range(n)]
    raise RuntimeError(f"toy set: {problem}")


def _build_source(name, codecs, frames, cwd):
    """Render one content and encode and label it with every codec; returns its CSV rows."""
    ref = f"ref/{name}.mp4"
    _make_reference(TOY_SOURCES[name], ref, frames, cwd)
    rows = []
    for codec in codecs:
        ext, _, levels = TOY_CODECS[codec]
        outs = [f"{codec}/{name}_{level}.{ext}" for level in range(1, len(levels) + 1)]
        scores = _encode_and_label(ref, outs, codec, frames, cwd, work=f"work/{name}_{codec}")
        rows += [dict(path=o, mos=f"{s:.3f}", source=name, codec=codec, level=lvl, reference=ref)
                 for lvl, (o, s) in enumerate(zip(outs, scores), 1)]
    return rows


def make_toy_dataset(root, tiny=False, workers=2):
    """Build (or find cached) the toy set in `root`; return the path of its `toy.csv`.

    tiny=True makes the test-sized variant through the same code. The build runs in a temporary
    folder beside root and is renamed into place when complete; a marker holding a hash of the
    build parameters makes a second call return at once.
    """
    root = pathlib.Path(root)
    names = TOY_TINY["sources"] if tiny else tuple(TOY_SOURCES)
    codecs = TOY_TINY["codecs"] if tiny else tuple(TOY_CODECS)
    frames = TOY_TINY["frames"] if tiny else TOY_FRAMES
    params = dict(size=TOY_SIZE, fps=TOY_FPS, frames=frames, sources={n: TOY_SOURCES[n] for n in names},
                  codecs={c: TOY_CODECS[c] for c in codecs}, ffmpeg=os.path.basename(FFMPEG))
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    done = lambda d: (d / ".complete").exists() and (d / ".complete").read_text() == key
    if done(root):
        return root / "toy.csv"
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    test = {n for i, n in enumerate(names) if i % 4 == 3}  # every 4th content: each family shows up
    try:
        for d in ("ref", "work", *codecs):
            (tmp / d).mkdir()
        with ThreadPoolExecutor(workers) as pool:  # each job is an ffmpeg process, so threads suffice
            jobs = [pool.submit(_build_source, n, [c for c in codecs if n in test or c not in TOY_HELD_OUT], frames, tmp)
                    for n in names]
            try:
                rows = [row for job in jobs for row in job.result()]
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        for row in rows:
            row["split"] = "test" if row["source"] in test else "train"
        for name, keep in (("toy.csv", lambda c: c not in TOY_HELD_OUT), ("toy_vvc.csv", lambda c: c in TOY_HELD_OUT)):
            with open(tmp / name, "w", newline="") as f:
                out = csv.DictWriter(f, ["path", "mos", "source", "codec", "level", "split", "reference"])
                out.writeheader()
                out.writerows(r for r in rows if keep(r["codec"]))
        shutil.rmtree(tmp / "work")
        (tmp / ".complete").write_text(key)  # last write: a folder without it is never complete
        if root.exists():
            if done(root):  # another process finished the same build first
                shutil.rmtree(tmp)
                return root / "toy.csv"
            old = tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent)
            os.replace(root, os.path.join(old, "stale"))
            shutil.rmtree(old)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / "toy.csv"

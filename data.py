"""A clip loader for compressed-video quality assessment: read a few frames, pick, crop, normalise.

Read top to bottom: probe() and read_clip() read frames, frame-exact, native or with the short
side resized, from any container the bundled ffmpeg opens (imageio-ffmpeg) or from raw 8/10-bit
4:2:0 .yuv (numpy memmap); train_indices() and eval_indices() pick frames; crop_clip() and
fragment_clip() pick pixels; normalise() makes the tensor; cached_frames() decodes a video once;
VideoDataset serves (clip, target, index) to a torch DataLoader. Which videos and labels (CSV
lists, BVI-HD, Waterloo IVC 4K, content splits) is datasets.py; the built-in toy set is toy.py.

It follows InternVQA (arXiv 2502.19026) and its released inference code: 8 frames, short side
resized to 224, random 224 x 224 crops in training and a centre crop at test, ImageNet
normalisation, targets = MOS scaled to [0, 1]; fragments=True gives FAST-VQA's grid mini-patch
sampling instead (fragments=n: an n x n grid).

    ds = VideoDataset(items, label_range=(0, 100), cache="clips")  # items: {path, mos, ...} (datasets.py)
    clip, target, index = ds[0]  # (3, 8, 224, 224) float32, scalar in [0, 1]

Needs only numpy, torch and imageio-ffmpeg.
"""

import hashlib
import math
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import imageio_ffmpeg
import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
YUV_KEYS = ("width", "height", "bit_depth", "fps")  # item columns passed on to probe / read_clip
SWS = "bilinear+accurate_rnd+full_chroma_int"  # ffmpeg's scaler: bilinear, exact rounding, full-size chroma

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


def run_ffmpeg(args, cwd=None):
    """Run the bundled ffmpeg quietly on `args` (no stdin, errors only, overwrite); returns
    (ok, what went wrong). A failed encode can still exit 0: callers check their outputs."""
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    env = dict(os.environ, SVT_LOG="1")  # SVT-AV1 prints its banner to stderr otherwise
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return r.returncode == 0, f"exit code {r.returncode}; stderr ends:\n{r.stderr[-1500:]}"


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


def resized_size(height, width, short_side):
    """(height, width) with the short side = short_side and the long one floor(long * short_side / short),
    as torchvision's Resize(short_side) rounds it: 3840x2160 and 1920x1080 -> 398x224 at 224."""
    short = min(height, width)
    return height * short_side // short, width * short_side // short


def _resize(x, size):
    """Bilinear resize of float (N, C, H, W) to (h, w); antialiased as ffmpeg's bilinear scaler is."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _yuv_to_rgb(y, u, v, bit_depth, size=None):
    """Limited-range Y'CbCr (T, H, W) luma and (T, ceil(H/2), ceil(W/2)) chroma -> RGB uint8
    (T, H, W, 3); BT.709 for HD and larger, else BT.601; chroma upsampled nearest-neighbour. With
    size = (h, w) every plane is resized straight to it (_resize): output (T, h, w, 3).

    One frame at a time, planar, so the float intermediates stay small (planes may be memmap views):
    the chroma terms of R, G and B are computed at chroma resolution, upsampled or resized, added to
    the luma, then interleaved."""
    s = 2 ** (bit_depth - 8)
    T, h, w = y.shape
    kr, kb = (0.2126, 0.0722) if h >= 720 else (0.299, 0.114)
    out = torch.empty(T, *(size or (h, w)), 3, dtype=torch.uint8)
    plane = lambda p, zero, span: (torch.from_numpy(np.asarray(p, np.float32)) - zero * s) / (span * s / 255)
    for t in range(T):
        luma, cb, cr = plane(y[t], 16, 219)[None, None], plane(u[t], 128, 224), plane(v[t], 128, 224)
        g = -(2 * kr * (1 - kr) * cr + 2 * kb * (1 - kb) * cb) / (1 - kr - kb)
        chroma = torch.stack([2 * (1 - kr) * cr, g, 2 * (1 - kb) * cb])[None]  # (1, 3, h/2, w/2)
        if size:
            luma, chroma = _resize(luma, size), _resize(chroma, size)
        else:
            chroma = F.interpolate(chroma, scale_factor=2, mode="nearest")[..., :h, :w]
        out[t] = (chroma + luma)[0].add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
    return out.numpy()


def _read_yuv(path, idx, width, height, bit_depth, size=None):
    """Only the wanted frames of a raw 4:2:0 file are read (memmap), one at a time."""
    w, h, cw, ch = width, height, (width + 1) // 2, (height + 1) // 2
    dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")  # >8-bit samples: 16-bit little-endian
    frames = np.memmap(path, dtype=dtype, mode="r").reshape(-1, _yuv_frame_samples(w, h))
    y = frames[:, : w * h].reshape(-1, h, w)  # views: nothing is read yet
    u = frames[:, w * h : w * h + cw * ch].reshape(-1, ch, cw)
    v = frames[:, w * h + cw * ch :].reshape(-1, ch, cw)
    return np.concatenate([_yuv_to_rgb(y[i : i + 1], u[i : i + 1], v[i : i + 1], bit_depth, size)
                           for i in idx])


def _decode(path, kept, info, seek=None, size=None):
    """RGB frames at `kept` (sorted, evenly spaced). With `seek` (seconds) ffmpeg jumps to the
    keyframe at or before it and a frame's index comes from its presentation time, so wherever
    the jump lands only wanted frames come out; without, it decodes from the start and counts.
    size = (h, w): the kept frames are resized by the scaler that converts them to RGB (SWS)."""
    if seek is None:
        index, start = "n", []
    else:
        index = f"round((t-{info['start']!r})*{info['fps']!r})"
        start = ["-copyts", "-seek_timestamp", "1", "-noaccurate_seek", "-ss", f"{seek:.6f}"]
    a, b = kept[0], kept[-1]
    step = kept[1] - a if len(kept) > 1 else 1
    pick = f"between({index}\\,{a}\\,{b})*not(mod({index}-{a}\\,{step}))"
    h, w = size or (info["height"], info["width"])
    scale = f",scale={w}:{h}:flags={SWS}" if size else ""  # its output is rgb24: one pass, then the pipe
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-noautorotate", *start, "-i", path, "-map", "0:v:0", "-vf",
           f"select='{pick}'{scale}", "-fps_mode", "passthrough", "-frames:v", str(len(kept)),  # then stop
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = subprocess.run(cmd, capture_output=True)
    if out.returncode or len(out.stdout) % (h * w * 3):
        raise ValueError(f"{path}: decoding {len(kept)} frames in {kept[0]}..{kept[-1]} failed "
                         f"({_ffmpeg_problem(out.stderr.decode(errors='replace'))})")
    return np.frombuffer(out.stdout, np.uint8).reshape(-1, h, w, 3)


def read_clip(path, frame_indices, width=None, height=None, bit_depth=None, fps=None, info=None,
              short_side=None):
    """Frames at 0-based `frame_indices` as RGB uint8 (T, H, W, 3), native resolution by default.

    short_side=S: (T, H', W', 3) with min(H', W') = S (resized_size), down- or upscaled, bilinear as
    in the authors' code and antialiased: the filter widens with the scale factor (a plain 2 x 2
    bilinear would skip most pixels of a 2160p frame). Only the wanted frames are resized, before or
    with their RGB conversion: no full-size RGB frame is made. Indices past the end repeat the last
    frame. `info`: probe()'s result (probed when None). Containers: only the wanted frames are
    converted, after a seek to the keyframe before the first one where the timestamps allow (see
    _decode); ffmpeg's scaler resizes (SWS). Raw .yuv: width, height, bit_depth (default 8) from the
    arguments or the file name; BT.709 from 720 lines up, else BT.601; torch resizes the planes.
    """
    path = str(path)
    idx = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < 0 or (short_side is not None and not short_side >= 1):
        raise ValueError(f"{path}: need frame indices >= 0 (a non-empty list) and a short_side >= 1 or None, "
                         f"got {frame_indices} and {short_side}")
    info = info or probe(path, width, height, bit_depth, fps)
    idx = np.minimum(idx, info["frames"] - 1)
    size = resized_size(info["height"], info["width"], int(short_side)) if short_side else None
    if _is_yuv(path):
        w, h, bits, _ = _yuv_format(path, width, height, bit_depth, fps)
        return _read_yuv(path, idx, w, h, bits, size)
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
        frames = _decode(path, kept, info, seek, size)
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
    """Bilinear upscale of uint8 (T, H, W, 3) to a short side of `short`; a no-op when it is longer."""
    if min(clip.shape[1:3]) >= short:
        return clip
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    x = _resize(x, resized_size(*clip.shape[1:3], short))
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


# -----------------------------------------------------------------------------
# decode once: the clip cache


def cached_frames(path, cache, short_side, info=None, **yuv):
    """All frames of `path` as read_clip(..., short_side=short_side) reads them: uint8 (N, H', W', 3)
    memory-mapped from a .npy in the folder `cache`, decoded and written there on first use.

    Its name hashes the source's absolute path, size and mtime and the geometry (short side; raw
    width, height, bit depth): a changed source gets a new entry (stale ones stay until deleted).
    Written to a unique temporary file, then renamed (atomic): workers and processes may share the
    folder and never read a half-written entry. Building holds the frames in memory twice."""
    path, stat = str(path), os.stat(path)
    raw = _yuv_format(path, **yuv)[:3] if _is_yuv(path) else None  # width, height, bit depth
    key = repr((os.path.abspath(path), stat.st_size, stat.st_mtime_ns, int(short_side), raw, SWS))
    name = os.path.splitext(os.path.basename(path))[0]
    entry = os.path.join(cache, f"{name}.{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy")
    if not os.path.exists(entry):
        info = info or probe(path, **yuv)
        frames = read_clip(path, range(info["frames"]), info=info, short_side=short_side, **yuv)
        os.makedirs(cache, exist_ok=True)
        fd, tmp = tempfile.mkstemp(".tmp", dir=cache)  # never named like an entry
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, frames)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache folder needs it readable
            os.replace(tmp, entry)
        except BaseException:
            os.remove(tmp)
            raise
    return np.load(entry, mmap_mode="r")


# -----------------------------------------------------------------------------
# dataset


class VideoDataset(torch.utils.data.Dataset):
    """(clip, target, index) per item: clip float32 (3, T, S, S) when training, (clips, 3, T, S, S)
    at test; target = (mos - lo) / (hi - lo), a float32 scalar. Items may carry width, height,
    bit_depth, fps (strings are fine) for raw .yuv files.

    resize=True (the authors' geometry): frames read with the short side resized to S, then an
    S x S crop; resize=False: the crop at native resolution. fragments: False (a crop), True
    (FAST-VQA's 7 x 7 grid) or a grid size n (with S = 14 n, each ViT token is one mini-patch from
    its own cell), always native: resize is ignored. Test clips are deterministic: evenly spaced
    clips, centre crop or cell-centre fragments. Training draws from a numpy Generator seeded per
    item with (seed, epoch, index): the same crops whatever the number of workers or the order, so
    a resumed run repeats them exactly; call set_epoch(e) every epoch to change them.
    check=True probes every file up front (check_videos) instead of on first use.
    cache=DIR: each video is decoded once at the resized geometry into DIR (cached_frames) and read
    from there; cache_cost() says how big DIR gets. Native crops and fragments need full-resolution
    frames: cache with resize=False or fragments is a ValueError.
    """

    def __init__(self, items, frames=8, size=224, stride=4, train=True, clips=1, label_range=(0, 100),
                 fragments=False, seed=0, check=False, resize=True, cache=None):
        lo, hi = label_range
        if not items or min(frames, size, stride, clips) < 1 or not hi > lo:
            raise ValueError(f"need items and frames, size, stride, clips >= 1 and hi > lo; got {len(items)} "
                             f"items, {frames}, {size}, {stride}, {clips}, label_range {label_range}")
        grid = 7 if fragments is True else int(fragments or 0)  # True: FAST-VQA's 7 x 7
        if grid and size % grid:
            raise ValueError(f"fragments on a {grid} x {grid} grid need a size that is a multiple of {grid}, "
                             f"got {size}")
        if cache and (grid or not resize):
            raise ValueError(f"cache= holds frames resized to a short side of {size}: native-resolution "
                             f"{'fragments' if grid else 'crops (resize=False)'} cannot use it")
        self.items, self.frames, self.size, self.stride = list(items), frames, size, stride
        self.train, self.clips, self.lo, self.hi = train, clips, float(lo), float(hi)
        self.grid, self.seed, self.epoch, self.cache = grid, seed, 0, cache
        self.short_side = size if resize and not grid else None  # None: native resolution
        self.info = {}  # path -> probe(); filled lazily, per worker process
        if check:
            self.info = {it["path"]: info for it, info in zip(self.items, check_videos(self.items))}

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.items)

    def _rng(self, index):
        return np.random.default_rng([self.seed, self.epoch, index])

    def cache_cost(self):
        """(bytes a frame of the largest video, bytes of all videos) that cache= holds: uint8 RGB at
        the resized geometry (267 kB a 16:9 frame at 224); probes the videos not probed yet."""
        todo = {it["path"]: it for it in self.items if it["path"] not in self.info}  # each file once
        self.info.update(zip(todo, check_videos(list(todo.values()))))
        infos = [self.info[path] for path in {it["path"] for it in self.items}]
        frame_bytes = [3 * math.prod(resized_size(i["height"], i["width"], self.size)) for i in infos]
        return max(frame_bytes), sum(b * i["frames"] for b, i in zip(frame_bytes, infos))

    def __getitem__(self, index):
        item = self.items[index]
        path, yuv = item["path"], _yuv_args(item)
        if self.cache:  # every frame, memory-mapped: reading a clip copies just its frames
            video = cached_frames(path, self.cache, self.size, self.info.get(path), **yuv)
            n, read = len(video), video.__getitem__
        else:
            info = self.info[path] = self.info.get(path) or probe(path, **yuv)
            n, read = info["frames"], partial(read_clip, path, info=info, short_side=self.short_side, **yuv)
        target = torch.tensor((item["mos"] - self.lo) / (self.hi - self.lo), dtype=torch.float32)
        pick = (lambda c, s, rng=None: fragment_clip(c, s, rng, self.grid)) if self.grid else crop_clip
        if self.train:
            rng = self._rng(index)
            clip = normalise(pick(read(train_indices(n, self.frames, self.stride, rng)), self.size, rng))
        else:  # (clips, 3, T, S, S)
            clip = torch.stack([normalise(pick(read(idx), self.size))
                                for idx in eval_indices(n, self.frames, self.stride, self.clips)])
        return clip, target, index


"""Frame-exact video decoding: read chosen frames of a compressed or raw video as RGB uint8.

probe() tells how many frames a file holds (and whether its timestamps allow seeking);
read_clip() returns the frames at given 0-based indices, at native resolution or with the short
side resized, from any container the bundled ffmpeg opens (imageio-ffmpeg) or from raw 8-16 bit
4:2:0 .yuv (numpy memmap). Only the wanted frames are converted and resized, and every ffmpeg
call has a timeout sized to its work, so a hung decoder is an error naming the file, not a hung
DataLoader worker. read_clips() and probe_many() do the same for many small videos at once: one
ffmpeg run for several files, as starting ffmpeg (~10 ms) costs more than reading a 2-frame clip
of a small video. This is the one file to replace if you bring your own decoder: data.py needs
only probe(), probe_many(), read_clip(), read_clips(), resized_size(), resize(), is_yuv(),
yuv_format(), SWS, YUV_KEYS and BATCH_PROBES from it (probe_many may return {} and read_clips be
[read_clip(**r) for r in requests]).

    info = probe("clip.mp4")                        # dict(frames, width, height, fps, start)
    frames = read_clip("clip.mp4", [0, 4, 8, 12], short_side=224)   # (4, 224, W', 3) uint8
    clips = read_clips([dict(path="a.mp4", frame_indices=[3, 5], info=probe("a.mp4")), ...])
    frames = read_clip("seq_1920x1080_10bit.yuv", range(8))        # geometry from the name

Needs only numpy and imageio-ffmpeg.
"""
import os
import re
import subprocess
import tempfile

import imageio_ffmpeg
import numpy as np

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
YUV_KEYS = ("width", "height", "bit_depth", "fps")  # what describes a raw .yuv beside its path
# ffmpeg's scaler: bilinear, exact rounding, full chroma
SWS = "bilinear+accurate_rnd+full_chroma_int"
# Timeouts: a fixed start-up allowance plus the work at a rate far below any real machine's.
TIMEOUT_S, PROBE_BYTES_S, DECODE_PIXELS_S = 60.0, 20e6, 5e6

# -----------------------------------------------------------------------------
# raw YUV geometry, resizing


def is_yuv(path):
    return str(path).lower().endswith(".yuv")


def yuv_format(path, width=None, height=None, bit_depth=None, fps=None):
    """(width, height, bit_depth, fps) of a raw .yuv: from the arguments, else from the file
    name."""
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


def resized_size(height, width, short_side):
    """(height, width) with the short side = short_side and the long one floor(long * short_side /
    short), as torchvision's Resize(short_side) rounds it: 3840x2160 and 1920x1080 -> 398x224."""
    short = min(height, width)
    return height * short_side // short, width * short_side // short


def _weights(n_in, n_out):
    """(n_out, n_in) bilinear resampling matrix with half-pixel centres; when shrinking, the
    triangle widens by the scale factor (antialiasing, as torch's antialias=True and ffmpeg's
    scaler do)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centre = (np.arange(n_out) + 0.5) * scale  # in input pixels
    x = np.arange(n_in) + 0.5
    w = np.clip(1 - np.abs(x[None] - centre[:, None]) / support, 0, None)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def resize(planes, size):
    """Bilinear, antialiased resize of (..., H, W) float planes to (..., h, w); separable, two
    matmuls."""
    h, w = size
    return (_weights(planes.shape[-2], h) @ np.asarray(planes, np.float32)
            @ _weights(planes.shape[-1], w).T)


# -----------------------------------------------------------------------------
# probing


def _ffmpeg_problem(stderr):
    """The last two distinct messages ffmpeg's demuxers and decoders logged, without prefixes."""
    lines = re.findall(r"^\[(?!out#)[^]]* @ 0x[0-9a-f]+\] (.+)$", stderr, re.M)
    lines = lines or stderr.strip().splitlines()[-1:]
    return "; ".join(dict.fromkeys(s.strip()[:200] for s in lines[-2:])) or "ffmpeg gave no message"


def _run(cmd, path, what, timeout):
    """ffmpeg `cmd`, output captured; a run past `timeout` seconds is killed and an error naming
    the file."""
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ValueError(f"{path}: ffmpeg did not finish {what} within {timeout:.0f} s (killed); "
                         f"the file may be damaged, or the machine far too busy") from None


def _frame_grid(pts, num, den):
    """(start in seconds, exact fps) when the packet times (ticks of num/den s) form a regular grid;
    None for a variable frame rate or packets without times, where only counting frames is exact."""
    pts = np.sort(np.array(pts, dtype=np.int64))
    # -2**63: a packet without a time (AVI)
    if len(pts) < 2 or pts[0] == -2**63 or pts[-1] == pts[0]:
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
    if is_yuv(path):
        w, h, bits, rate = yuv_format(path, width, height, bit_depth, fps)
        frame_bytes = _yuv_frame_samples(w, h) * (1 if bits == 8 else 2)
        if size % frame_bytes:
            raise ValueError(f"{path}: size {size} bytes is not a whole number of {w}x{h} "
                             f"{bits}-bit 4:2:0 frames of {frame_bytes} bytes")
        return dict(frames=size // frame_bytes, width=w, height=h, fps=rate, start=0.0)
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-copyts", "-i", path, "-map", "0:v:0", "-c", "copy",
           "-f", "framecrc", "-"]  # one line per packet: stream, dts, pts, duration, size, checksum
    out = _run(cmd, path, "listing its packets", TIMEOUT_S + size / PROBE_BYTES_S)
    err = out.stderr.decode(errors="replace")
    if "matches no streams" in err:
        raise ValueError(f"{path}: no video stream")
    if out.returncode:
        raise ValueError(f"{path}: cannot be opened as a video ({_ffmpeg_problem(err)})")
    return _listed(path, err, out.stdout.decode(errors="replace"))


def _listed(path, err, listing, number=0):
    """probe()'s dict from ffmpeg's log of input `number` (`err`) and its packet listing."""
    stream = re.search(rf"Stream #{number}:\d+.*?: Video: (.*)", err)  # the input's comes first
    if stream is None:
        raise ValueError(f"{path}: cannot be opened as a video ({_ffmpeg_problem(err)})")
    if "partial file" in err:  # the index promises more data than the file holds
        raise ValueError(f"{path}: truncated file ({_ffmpeg_problem(err)})")
    dims = re.search(r"\b([1-9]\d*)x([1-9]\d*)\b", stream[1])  # skips codec tags such as 0x31637661
    pts = [int(line.split(",")[2]) for line in listing.splitlines()
           if line and not line.startswith("#")]
    if dims is None or not pts:
        raise ValueError(f"{path}: no readable video frames ({_ffmpeg_problem(err)})")
    num, den = map(int, re.search(r"^#tb 0: (\d+)/(\d+)", listing, re.M).groups())
    # raw streams (no duration) get made-up timestamps from the parser: never seek by those
    grid = None if "Duration: N/A" in err else _frame_grid(pts, num, den)
    rate = re.search(r"([\d.]+)(k?) fps", stream[1]) or re.search(r"([\d.]+)(k?) tbr", stream[1])
    fps = grid[1] if grid else float(rate[1]) * (1000 if rate[2] else 1) if rate else 0.0
    start = grid[0] if grid else None
    return dict(frames=len(pts), width=int(dims[1]), height=int(dims[2]), fps=fps, start=start)


BATCH_PROBES = 16  # containers listed by one ffmpeg run in probe_many


def probe_many(paths):
    """{number in paths: probe(path)} for containers (not .yuv), listed by one ffmpeg run, each to
    its own file: starting ffmpeg costs more than listing a small video. Whatever that run cannot
    list is left out (a file it cannot open fails the whole run; a truncated one, all of it):
    probe() those one by one, for their own error."""
    paths = [str(p) for p in paths]
    try:
        return _probe_batch(paths)
    except OSError:  # no temporary folder to write to, a file gone: each alone, as probe() does
        return {}


def _probe_batch(paths):
    """probe_many's one ffmpeg run, its packet listings written to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="probes-") as tmp:
        cmd = [FFMPEG, "-nostdin", "-hide_banner", "-nostats", "-copyts"]
        cmd += [a for p in paths for a in ("-i", p)]
        cmd += [a for i in range(len(paths)) for a in ("-map", f"{i}:v:0", "-c", "copy", "-f",
                                                       "framecrc", os.path.join(tmp, f"{i}.crc"))]
        try:
            timeout = TIMEOUT_S + sum(map(os.path.getsize, paths)) / PROBE_BYTES_S
            out = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {}
        err = out.stderr.decode(errors="replace")
        if out.returncode or "partial file" in err:
            return {}
        # the log: each input's header and streams, then the outputs'
        parts = re.split(r"^(?=Input #\d+, |Stream mapping:|Output #)", err, flags=re.M)
        logs = {int(m[1]): part for part in parts if (m := re.match(r"Input #(\d+), ", part))}
        got = {}
        for i, path in enumerate(paths):
            try:
                with open(os.path.join(tmp, f"{i}.crc"), errors="replace") as f:
                    got[i] = _listed(path, logs.get(i, ""), f.read(), i)
            except (OSError, ValueError):
                pass  # probe() it alone
        return got


# -----------------------------------------------------------------------------
# reading


def _yuv_to_rgb(y, u, v, bit_depth, size=None):
    """Limited-range Y'CbCr (H, W) luma and (ceil(H/2), ceil(W/2)) chroma of one frame -> RGB uint8
    (H, W, 3); BT.709 for HD and larger, else BT.601; chroma upsampled nearest-neighbour. With
    size = (h, w) every plane is resized straight to it (resize): output (h, w, 3). The chroma
    terms of R, G and B are computed at chroma resolution, upsampled or resized, then added to the
    luma, so the float intermediates stay small (planes may be memmap views)."""
    s = 2 ** (bit_depth - 8)
    h, w = y.shape
    kr, kb = (0.2126, 0.0722) if h >= 720 else (0.299, 0.114)
    luma = (np.asarray(y, np.float32) - 16 * s) / (219 * s / 255)
    cb, cr = ((np.asarray(p, np.float32) - 128 * s) / (224 * s / 255) for p in (u, v))
    g = -(2 * kr * (1 - kr) * cr + 2 * kb * (1 - kb) * cb) / (1 - kr - kb)
    chroma = np.stack([2 * (1 - kr) * cr, g, 2 * (1 - kb) * cb])  # (3, h/2, w/2)
    if size:
        luma, chroma = resize(luma, size), resize(chroma, size)
    else:
        chroma = chroma.repeat(2, 1).repeat(2, 2)[:, :h, :w]
    return np.clip(chroma + luma + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _read_yuv(path, idx, width, height, bit_depth, size=None):
    """Only the wanted frames of a raw 4:2:0 file are read (memmap), one at a time."""
    w, h, cw, ch = width, height, (width + 1) // 2, (height + 1) // 2
    dtype = np.uint8 if bit_depth == 8 else np.dtype("<u2")  # >8-bit samples: 16-bit little-endian
    frames = np.memmap(path, dtype=dtype, mode="r").reshape(-1, _yuv_frame_samples(w, h))
    y = frames[:, : w * h].reshape(-1, h, w)  # views: nothing is read yet
    u = frames[:, w * h : w * h + cw * ch].reshape(-1, ch, cw)
    v = frames[:, w * h + cw * ch :].reshape(-1, ch, cw)
    return np.stack([_yuv_to_rgb(y[i], u[i], v[i], bit_depth, size) for i in idx])


def _decode_args(path, kept, info, seek, size, stream=0):
    """(input options, output options, timeout in s) of decoding the frames `kept` (sorted, evenly
    spaced) of input number `stream` into raw RGB. With `seek` (seconds) ffmpeg jumps to the
    keyframe at or before it and a frame's index comes from its presentation time, so wherever the
    jump lands only wanted frames come out; without, it decodes from the start and counts.
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
    # its output is rgb24: one pass, then the pipe
    scale = f",scale={w}:{h}:flags={SWS}" if size else ""
    outputs = ["-map", f"{stream}:v:0", "-vf", f"select='{pick}'{scale}", "-fps_mode",
               "passthrough", "-frames:v", str(len(kept)),  # then stop
               "-f", "rawvideo", "-pix_fmt", "rgb24"]
    # from the start: every frame up to the last; after a seek: the span plus a GOP of up to 10 s
    decoded = b + 1 if seek is None else b - a + 1 + 10 * max(info["fps"], 1)
    timeout = TIMEOUT_S + decoded * info["width"] * info["height"] / DECODE_PIXELS_S
    return ["-noautorotate", *start, "-i", path], outputs, timeout


def _decode(path, kept, info, seek=None, size=None):
    """RGB frames (N, h, w, 3) at `kept` (_decode_args), N < len(kept) where the video ends or a
    seek lands late; one ffmpeg run, an error naming the file if it fails."""
    inputs, outputs, timeout = _decode_args(path, kept, info, seek, size)
    h, w = size or (info["height"], info["width"])
    out = _run([FFMPEG, "-nostdin", "-v", "error", *inputs, *outputs, "-"], path,
               f"decoding frames {kept[0]}..{kept[-1]}", timeout)
    if out.returncode or len(out.stdout) % (h * w * 3):
        raise ValueError(f"{path}: decoding {len(kept)} frames in {kept[0]}..{kept[-1]} failed "
                         f"({_ffmpeg_problem(out.stderr.decode(errors='replace'))})")
    return np.frombuffer(out.stdout, np.uint8).reshape(-1, h, w, 3)


# Batched reads (read_clips): at most this many videos a run, each at most this many pixels a frame
# (each one's decoder holds its reference frames: a batch of 4K videos would hold gigabytes).
BATCH_VIDEOS, BATCH_PIXELS = 8, 1920 * 1080


def _decode_batch(plans):
    """{number in plans: frames} for the plans (containers, each with a first seek) whose first
    seek decoded every kept frame, in one ffmpeg run: each video its own input (one decoder thread:
    they run side by side) and its own output file. {} when the run fails: read_clip then reads
    each one alone and names the file that failed."""
    with tempfile.TemporaryDirectory(prefix="clips-") as tmp:
        cmd, outs, timeout = [FFMPEG, "-nostdin", "-v", "error"], [], TIMEOUT_S
        for i, p in enumerate(plans):
            inputs, outputs, t = _decode_args(p["path"], p["kept"], p["info"], p["seeks"][0],
                                              p["size"], stream=i)
            cmd += ["-threads", "1", *inputs]
            outs += [*outputs, os.path.join(tmp, f"{i}.rgb")]
            timeout += t - TIMEOUT_S  # one start-up allowance, every video's work
        try:
            if subprocess.run(cmd + outs, capture_output=True, timeout=timeout).returncode:
                return {}
        except subprocess.TimeoutExpired:
            return {}
        got = {}
        for i, p in enumerate(plans):
            h, w = p["size"] or (p["info"]["height"], p["info"]["width"])
            frames = np.fromfile(os.path.join(tmp, f"{i}.rgb"), np.uint8)
            if frames.size == len(p["kept"]) * h * w * 3:  # whole; else read alone, with retries
                got[i] = frames.reshape(-1, h, w, 3)
        return got


def _plan(path, frame_indices, width=None, height=None, bit_depth=None, fps=None, info=None,
          short_side=None):
    """read_clip's arguments checked and its work planned: dict(path, idx (clamped to the video),
    size ((h, w) or None), info), and raw .yuv's `yuv` (width, height, bit depth) or a
    container's `kept` (the frames to decode: sorted, evenly spaced) and `seeks` (where to jump,
    tried in turn until one returns every kept frame; None: from the start)."""
    path = str(path)
    idx = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < 0 or (short_side is not None and not short_side >= 1):
        raise ValueError(f"{path}: need frame indices >= 0 (a non-empty list) and "
                         f"a short_side >= 1 or None, got {frame_indices} and {short_side}")
    info = info or probe(path, width, height, bit_depth, fps)
    idx = np.minimum(idx, info["frames"] - 1)
    size = resized_size(info["height"], info["width"], int(short_side)) if short_side else None
    plan = dict(path=path, idx=idx, size=size, info=info)
    if is_yuv(path):
        return dict(plan, yuv=yuv_format(path, width, height, bit_depth, fps)[:3])
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
    return dict(plan, kept=kept, seeks=seeks)


def _read_planned(plan, frames=None):
    """The frames of a plan, (T, H, W, 3) uint8 at its indices; `frames`: its kept frames, when a
    batch run decoded them whole."""
    path, idx = plan["path"], plan["idx"]
    if "yuv" in plan:
        return _read_yuv(path, idx, *plan["yuv"], plan["size"])
    kept = plan["kept"]
    for seek in plan["seeks"] if frames is None else ():
        frames = _decode(path, kept, plan["info"], seek, plan["size"])
        if len(frames) == len(kept):
            break
    if not len(frames):
        raise ValueError(f"{path}: no frames decoded in {kept[0]}..{kept[-1]}")
    # fewer frames than asked (a damaged tail): the last decoded one stands in for the rest
    return frames[np.minimum(np.searchsorted(kept, idx), len(frames) - 1)]


def read_clip(path, frame_indices, width=None, height=None, bit_depth=None, fps=None, info=None,
              short_side=None):
    """Frames at 0-based `frame_indices` as RGB uint8 (T, H, W, 3), native resolution by default.

    short_side=S: (T, H', W', 3) with min(H', W') = S (resized_size), down- or upscaled, bilinear as
    in the authors' code and antialiased: the filter widens with the scale factor (a plain 2 x 2
    bilinear would skip most pixels of a 2160p frame). Only the wanted frames are resized, before or
    with their RGB conversion: no full-size RGB frame is made. Indices past the end repeat the last
    frame. `info`: probe()'s result (probed when None). Containers: only the wanted frames are
    converted, after a seek to the keyframe before the first one where the timestamps allow (see
    _decode_args); ffmpeg's scaler resizes (SWS). Raw .yuv: width, height, bit_depth (default 8)
    from the arguments or the file name; BT.709 from 720 lines up, else BT.601; resize() on the
    planes.
    """
    return _read_planned(_plan(path, frame_indices, width, height, bit_depth, fps, info,
                               short_side))


def read_clips(requests):
    """[read_clip(**r) for r in requests], the same frames, faster for small videos: starting
    ffmpeg costs about 10 ms, more than decoding a small clip, so the containers that can seek (a
    probe()d `info` with a start) of at most BATCH_PIXELS a frame are decoded BATCH_VIDEOS to an
    ffmpeg run. What such a run does not return whole (a damaged file, a seek that lands late) is
    read by read_clip's own path, which retries and names the file. requests: dicts of
    read_clip's arguments (path, frame_indices and any of the rest)."""
    plans = [_plan(**r) for r in requests]
    batched = [n for n, p in enumerate(plans) if "kept" in p and p["seeks"][0] is not None
               and p["info"]["width"] * p["info"]["height"] <= BATCH_PIXELS]
    frames = {}
    for i in range(0, len(batched), BATCH_VIDEOS):
        group = batched[i : i + BATCH_VIDEOS]
        if len(group) > 1:
            try:
                got = _decode_batch([plans[n] for n in group])
            except OSError:  # no temporary folder to write to: each alone, as read_clip reads
                got = {}
            frames.update((group[k], f) for k, f in got.items())
    return [_read_planned(p, frames.get(n)) for n, p in enumerate(plans)]

"""A clip loader for compressed-video quality assessment: pick frames, pick pixels, serve clips.

It follows InternVQA (Guan et al. 2025, arXiv 2502.19026) and its released inference code:
8 frames, every frame's short side resized to 224, a random 224 x 224 crop in training and a
centred one at test, ImageNet normalisation, targets = MOS scaled to [0, 1]; fragments give
FAST-VQA's grid mini-patch sampling instead (Wu et al. 2022). Read top to bottom:
train_indices() and eval_indices() pick frames, centred_indices() a second view's frames around
the same moment; crop_clip() and fragment_clip() pick pixels; normalise() makes the network's
input, on whatever device the batch is; check_videos() finds unreadable files before training;
cached_frames() decodes a video once; VideoDataset serves (clip, target, index) to a torch
DataLoader, or ((clip, student_clip), target, index) with a second, FAST-VQA view for a
distilled student. Decoding itself is video.py (swap it for your own); which videos and labels
is datasets.py; the built-in toy set is toy.py.

    ds = VideoDataset(items, label_range=(0, 100), cache="clips")  # items: {path, mos, ...}
    clip, target, index = ds[0]  # uint8 (3, 8, 224, 224), float32 scalar in [0, 1]
    x = normalise(clip.cuda())   # float32, ImageNet units: 4x less to move than float clips

Needs only numpy, torch and imageio-ffmpeg (through video.py).
"""
import hashlib
import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from video import (BATCH_PROBES, SWS, YUV_KEYS, is_yuv, probe, probe_many, read_clip, read_clips,
                   resize, resized_size, yuv_format)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# -----------------------------------------------------------------------------
# which frames


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
    """(clips, frames) indices of `clips` clips centred in equal parts of the video;
    deterministic."""
    s = _fit_stride(n_frames, frames, stride)
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if s == 0:
        return np.tile(np.arange(frames) * n_frames // frames, (clips, 1))
    room = n_frames - (frames - 1) * s - 1  # the last possible start
    starts = np.round((np.arange(clips) + 0.5) / clips * room).astype(np.int64)
    return starts[:, None] + np.arange(frames) * s


def centred_indices(n_frames, frames, stride, centre):
    """`frames` indices at `stride` around the frame `centre`: (first + last) // 2 == centre where
    the video allows, else the window moved inside it; stride shrunk and frames repeated for short
    videos as in train_indices(). Gives a second view (another length or stride) of one moment."""
    s = _fit_stride(n_frames, frames, stride)
    if s == 0:
        return np.arange(frames) * n_frames // frames
    span = (frames - 1) * s
    start = min(max(int(centre) - span // 2, 0), n_frames - 1 - span)
    return start + np.arange(frames) * s


# -----------------------------------------------------------------------------
# which pixels


def _upscale(clip, short):
    """Bilinear upscale of uint8 (T, H, W, 3) to a short side of `short`; a no-op when it is
    longer."""
    if min(clip.shape[1:3]) >= short:
        return clip
    planes = np.asarray(clip, np.float32).transpose(0, 3, 1, 2)  # (T, 3, H, W)
    planes = resize(planes, resized_size(*clip.shape[1:3], short))
    return np.clip(planes + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _offset(room, rng):
    return int(rng.integers(room + 1)) if rng is not None else room // 2


def crop_clip(clip, size, rng=None):
    """One size x size crop, the same on every frame: random with a numpy Generator, else
    centred."""
    clip = _upscale(clip, size)
    _, h, w, _ = clip.shape
    y, x = _offset(h - size, rng), _offset(w - size, rng)
    return clip[:, y : y + size, x : x + size]  # (T, S, S, 3)


FRAGMENT_GROUP = 32  # FAST-VQA draws new fragment offsets every 32 frames ("aligned")
FRAGMENT_SEED = 0  # test-time fragment offsets come from this seed and the clip number


def eval_rng(clip=0):
    """The fixed generator of test clip number `clip`: a video's test fragments are the same on
    every run and wherever it stands in a list (seeded by the clip, never by the item)."""
    return np.random.default_rng([FRAGMENT_SEED, clip])


def fragment_clip(clip, size, rng=None, grid=7):
    """FAST-VQA's fragments (Wu et al. 2022; get_spatial_fragments in the official
    fastvqa/datasets/fusion_datasets.py): a native p x p patch, p = size / grid, from each cell of
    a grid x grid split, tiled into size x size. Along an axis of res pixels cell i starts at
    min(res // grid * i, res - p) and its patch at an offset drawn in [0, res // grid - p), 0 when
    res // grid <= p; the offsets are drawn again for every 32 frames (FRAGMENT_GROUP). Frames with
    a short side under `size` are upscaled to it first, and the grid spans the upscaled frame (the
    official code keeps the old size for the grid: a small video's patches all come from its
    top-left). rng: a numpy Generator; None draws from eval_rng(0), fixed where the official code is
    random at test: a deliberate difference, so that a video always scores the same.
    uint8 (T, H, W, 3) -> (T, size, size, 3)."""
    if size % grid:
        raise ValueError(f"fragment size {size} is not a multiple of the grid {grid}")
    p = size // grid
    rng = eval_rng() if rng is None else rng
    clip = _upscale(clip, size)  # every cell holds a p x p patch: res // grid >= p
    t, h, w, _ = clip.shape
    # FAST-VQA's min(..., res - p) keeps patches inside; after the upscale it never binds
    cell_y = np.minimum(h // grid * np.arange(grid), h - p)
    cell_x = np.minimum(w // grid * np.arange(grid), w - p)
    out = np.empty((t, size, size, 3), np.uint8)
    for t0 in range(0, t, FRAGMENT_GROUP):
        group = slice(t0, t0 + FRAGMENT_GROUP)
        # integers(1) is always 0: cells no wider than a patch
        dy, dx = (rng.integers(max(res // grid - p, 1), size=(grid, grid)) for res in (h, w))
        for i, j in np.ndindex(grid, grid):
            y, x = cell_y[i] + dy[i, j], cell_x[j] + dx[i, j]
            out[group, i * p : (i + 1) * p, j * p : (j + 1) * p] = clip[group, y : y + p, x : x + p]
    return out


def to_tensor(clip):
    """uint8 (T, H, W, 3) frames -> uint8 tensor (3, T, H, W), the layout the models read."""
    return torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2)


def normalise(x):
    """uint8 (..., 3, T, H, W) -> float32 in ImageNet units, on x's device. Clips cross the
    DataLoader's shared memory and the host-to-device copy as uint8 and are normalised here."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1, 1)
    return (x.float() / 255 - mean) / std


# -----------------------------------------------------------------------------
# checking the videos, once


def yuv_args(item):
    """The raw-YUV description an item carries (width, height, bit_depth, fps), for
    video.probe/read_clip."""
    return {k: item[k] for k in YUV_KEYS if item.get(k) not in (None, "")}


PROBE_VERSION = 1  # bump when probe()'s output changes: remembered probes are then redone


def _probe_key(item):
    st = os.stat(item["path"])
    return repr((PROBE_VERSION, os.path.abspath(item["path"]), st.st_size, st.st_mtime_ns,
                 sorted(yuv_args(item).items())))


def check_videos(items, workers=8, memo=None):
    """probe() every item (threads: the work is in ffmpeg processes; containers listed
    BATCH_PROBES to a run by video.probe_many); returns the probe dicts.

    Finds missing, zero-byte, truncated and non-video files before training; raises one error that
    lists every bad file (FileNotFoundError when they are all missing, else ValueError). memo: a
    JSON file that remembers the probes of unchanged files (absolute path, size, modification time,
    raw format), so that a restart or a resume does not read every video again; rewritten
    atomically.
    """
    known = {}
    if memo and os.path.exists(memo):
        try:
            with open(memo) as f:
                known = json.load(f)
        except (OSError, ValueError):
            known = {}  # unreadable: probe again and rewrite it

    def safe_probe(item, listed):
        try:
            key = _probe_key(item)
            return key, known.get(key) or listed.get(item["path"]) or probe(item["path"],
                                                                            **yuv_args(item))
        except (OSError, ValueError) as e:
            return None, e

    def unknown_container(item):
        try:
            return not is_yuv(item["path"]) and os.path.getsize(item["path"]) and \
                _probe_key(item) not in known
        except OSError:
            return False  # probe() names the problem

    def check(chunk):  # its containers not remembered listed by one ffmpeg run, the rest alone
        todo = [it["path"] for it in chunk if unknown_container(it)]
        listed = probe_many(todo) if len(todo) > 1 else {}
        listed = {todo[i]: info for i, info in listed.items()}
        return [safe_probe(it, listed) for it in chunk]

    with ThreadPoolExecutor(workers) as pool:
        chunks = [items[i : i + BATCH_PROBES] for i in range(0, len(items), BATCH_PROBES)]
        done = [d for part in pool.map(check, chunks) for d in part]
    errors = [e for _, e in done if isinstance(e, Exception)]
    if errors:
        kind = (FileNotFoundError if all(isinstance(e, FileNotFoundError) for e in errors)
                else ValueError)
        raise kind(f"{len(errors)} of {len(items)} videos cannot be read:\n"
                   + "\n".join(map(str, errors)))
    if memo and any(key not in known for key, _ in done):
        _write_atomic(memo, lambda f: f.write(json.dumps({**known, **dict(done)}).encode()))
    return [info for _, info in done]


def _write_atomic(path, write):
    """write(file) into a unique temporary file beside `path`, then rename it over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(".tmp", dir=folder)  # never named like an entry
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared folder needs it readable
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


# -----------------------------------------------------------------------------
# decode once: the clip cache


def cached_frames(path, cache, short_side, info=None, **yuv):
    """All frames of `path` as read_clip(..., short_side=short_side) reads them: uint8
    (N, H', W', 3) memory-mapped from a .npy in the folder `cache`, decoded and written there on
    first use.

    Its name hashes the source's real path (symbolic links resolved: one entry per file), size and
    mtime and the geometry (short side; raw width, height, bit depth): a changed source gets a new
    entry (stale ones stay until deleted).
    Written to a unique temporary file, then renamed (atomic): workers and processes may share the
    folder and never read a half-written entry. Building holds the frames in memory twice."""
    path, stat = str(path), os.stat(path)
    raw = yuv_format(path, **yuv)[:3] if is_yuv(path) else None  # width, height, bit depth
    key = repr((os.path.realpath(path), stat.st_size, stat.st_mtime_ns, int(short_side), raw, SWS))
    name = os.path.splitext(os.path.basename(os.path.realpath(path)))[0]
    entry = os.path.join(cache, f"{name}.{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy")
    if not os.path.exists(entry):
        info = info or probe(path, **yuv)
        frames = read_clip(path, range(info["frames"]), info=info, short_side=short_side, **yuv)
        _write_atomic(entry, lambda f: np.save(f, frames))
    return np.load(entry, mmap_mode="r")


# -----------------------------------------------------------------------------
# dataset


class VideoDataset(torch.utils.data.Dataset):
    """(clip, target, index) per item: clip uint8 (3, T, S, S) when training, (clips, 3, T, S, S)
    at test (normalise() it on the device); target = (mos - lo) / (hi - lo), a float32 scalar.
    Items may carry width, height, bit_depth, fps (strings are fine) for raw .yuv files.

    resize=True (the authors' geometry): frames read with the short side resized to S, then an
    S x S crop; resize=False: the crop at native resolution. fragments: False (a crop), True
    (FAST-VQA's 7 x 7 grid) or a grid size n (with S = 14 n, each ViT token is one mini-patch from
    its own cell), always native: resize is ignored. Test clips are deterministic: evenly spaced
    clips, centre crop or fragments from eval_rng(clip number). Training draws from a numpy
    Generator seeded per item with (seed, epoch, index): the same crops whatever the number of
    workers or the order, so a resumed run repeats them exactly; call set_epoch(e) every epoch
    (an index k n + i is item i with draws of its own: a video visited twice in an epoch).
    check=True probes every file up front (check_videos) instead of on first use; info: the probes
    already made ({path: probe dict}, e.g. by one process for all).
    cache=DIR: each video is decoded once at the resized geometry into DIR (cached_frames) and read
    from there; cache_cost() says how big DIR gets. Native crops and fragments need full-resolution
    frames: cache with resize=False or fragments is a ValueError.

    student_view=dict(frames=, size=, stride=, fragments=GRID): a second view for a FAST-VQA
    student (FAST-VQA-B: frames=32, size=224, stride=2, fragments=7), always native fragments
    decoded from the video itself (the cache holds only the first view). Each item is then
    ((clip, student_clip), target, index), student_clip uint8 (3, T2, S2, S2) when training,
    (clips, 3, T2, S2, S2) at test. In training its frames are centred on the clip's centre frame
    (centred_indices), so both views see the same moment (what the alignment term compares); at
    test each view takes its own evenly spaced clips, so a student scores a video as it does alone
    (and as predict.py does). Its random draws follow the first view's from the same per-item
    Generator: the first view is the same with or without it.
    """

    def __init__(self, items, frames=8, size=224, stride=4, train=True, clips=1,
                 label_range=(0, 100), fragments=False, seed=0, check=False, resize=True,
                 cache=None, info=None, student_view=None):
        lo, hi = label_range
        if not items or min(frames, size, stride, clips) < 1 or not hi > lo:
            raise ValueError(f"need items and frames, size, stride, clips >= 1 and hi > lo; got "
                             f"{len(items)} items, {frames}, {size}, {stride}, {clips}, "
                             f"label_range {label_range}")
        grid = 7 if fragments is True else int(fragments or 0)  # True: FAST-VQA's 7 x 7
        if grid and size % grid:
            raise ValueError(f"fragments on a {grid} x {grid} grid need a size that is a multiple "
                             f"of {grid}, got {size}")
        if cache and (grid or not resize):
            what = "fragments" if grid else "crops (resize=False)"
            raise ValueError(f"cache= holds frames resized to a short side of {size}: "
                             f"native-resolution {what} cannot use it")
        view = dict(student_view or {})
        if student_view is not None and (
                set(view) != {"frames", "size", "stride", "fragments"}
                or not all(type(v) is int and v >= 1 for v in view.values())
                or view["size"] % view["fragments"]):
            raise ValueError(f"student_view needs integers frames, size, stride, fragments >= 1 "
                             f"with size a multiple of fragments (the grid), got {student_view}")
        self.items, self.frames, self.size, self.stride = list(items), frames, size, stride
        self.train, self.clips, self.lo, self.hi = train, clips, float(lo), float(hi)
        self.grid, self.seed, self.epoch, self.cache = grid, seed, 0, cache
        self.short_side = size if resize and not grid else None  # None: native resolution
        self.student = view or None
        self.info = dict(info or {})  # path -> probe(); filled lazily, per worker process
        if check and not info:
            self.info = {it["path"]: i for it, i in zip(self.items, check_videos(self.items))}

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.items)

    def _rng(self, index):
        return np.random.default_rng([self.seed, self.epoch, index])

    def _probe(self, path, yuv):
        info = self.info[path] = self.info.get(path) or probe(path, **yuv)
        return info

    def cache_cost(self):
        """(bytes a frame of the largest video, bytes of all videos) that cache= holds: uint8 RGB at
        the resized geometry (267 kB a 16:9 frame at 224); probes the videos not probed yet."""
        todo = {it["path"]: it for it in self.items if it["path"] not in self.info}  # once each
        self.info.update(zip(todo, check_videos(list(todo.values()))))
        files = {os.path.realpath(it["path"]): it["path"] for it in self.items}  # links: one file
        infos = [self.info[path] for path in files.values()]
        frame_bytes = [3 * math.prod(resized_size(i["height"], i["width"], self.size))
                       for i in infos]
        return max(frame_bytes), sum(b * i["frames"] for b, i in zip(frame_bytes, infos))

    def _view(self, frames, size, grid, rng):
        """Crops, or fragments on a grid, of each clip's frames (one (T, H, W, 3) array a row of
        the clip's frame indices): uint8 (3, T, S, S) when training, else (clips, 3, T, S, S)."""
        out = []
        for k, clip in enumerate(frames):
            if grid:  # at test: a fixed generator per clip number
                clip = fragment_clip(clip, size, eval_rng(k) if rng is None else rng, grid)
            else:
                clip = crop_clip(clip, size, rng)  # at test: centred
            out.append(to_tensor(clip))
        return out[0] if self.train else torch.stack(out)

    def _plan(self, index):
        """What item `index` draws before a pixel is read: (item, target, rng, views). views: the
        first view's and the student's (size, grid, frame rows (clips, T), short side, cached
        video or None); rng (None at test) draws the crops next."""
        item = self.items[index % len(self.items)]  # index n + i: item i's next visit, other crops
        path, yuv = item["path"], yuv_args(item)
        video = None
        if self.cache:  # every frame, memory-mapped: reading a clip copies just its frames
            video = cached_frames(path, self.cache, self.size, self.info.get(path), **yuv)
        n = len(video) if video is not None else self._probe(path, yuv)["frames"]
        target = torch.tensor((item["mos"] - self.lo) / (self.hi - self.lo), dtype=torch.float32)
        rng = self._rng(index) if self.train else None
        clips = (train_indices(n, self.frames, self.stride, rng)[None] if self.train
                 else eval_indices(n, self.frames, self.stride, self.clips))  # (clips, T)
        views = [(self.size, self.grid, clips, self.short_side, video)]
        if self.student:  # training: the same moment, around the clip's centre frame
            v = self.student  # always native fragments, decoded from the video itself
            windows = ([centred_indices(n, v["frames"], v["stride"], (idx[0] + idx[-1]) // 2)
                        for idx in clips] if self.train  # at test: its own clips, as alone
                       else eval_indices(n, v["frames"], v["stride"], self.clips))
            views.append((v["size"], v["fragments"], windows, None, None))
        return item, target, rng, views

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):
        """[self[i] for i in indices], every clip read by one video.read_clips call: small videos
        are then decoded several to an ffmpeg run, not one each (torch's DataLoader fetches a batch
        through this when it exists). The random draws are those of each item alone."""
        plans = [self._plan(i) for i in indices]
        reads = [dict(path=item["path"], frame_indices=idx, short_side=short,
                      info=self._probe(item["path"], yuv_args(item)), **yuv_args(item))
                 for item, _, _, views in plans for _, _, rows, short, video in views
                 if video is None for idx in rows]
        decoded = iter(read_clips(reads))
        out = []
        for index, (item, target, rng, views) in zip(indices, plans):
            frames = [[next(decoded) if video is None else video[idx] for idx in rows]
                      for _, _, rows, _, video in views]  # every view's, before any draw
            clip = [self._view(f, size, grid, rng) for f, (size, grid, *_) in zip(frames, views)]
            out.append((clip[0] if len(clip) == 1 else tuple(clip), target, index))
        return out

"""Tests for data.py and video.py: frame-exact reads (containers, variable frame rate and raw YUV),
resized reads against torch's resize, sampling geometry, FAST-VQA's fragments, uint8 clips
normalised against the float path, bad inputs, the remembered video check, the Dataset with worker
processes, the clip cache, a teacher's and a FAST-VQA student's views of the same moment.
Test videos are made in a temporary folder with the bundled ffmpeg; CPU only, about 17 s.

Run from the repository root:  python -m pytest -q tests/test_data.py
"""
import os
import shutil
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import data
import video

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
N, H, W = 45, 32, 40  # frames and size of the pattern video


def encode(path, frames, *args):
    """Write uint8 (T, H, W, 3) frames with ffmpeg; `args` are the output options."""
    t, h, w, _ = frames.shape
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", "25", "-i", "-", *args, "-y", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True, timeout=60)
    return str(path)


def pattern(n=N, h=H, w=W):
    """Frame i: red = 5 i, green = 4 row, blue = 4 column; frame and geometry both checkable."""
    y, x = np.mgrid[:h, :w]
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[..., 0] = 5 * np.arange(n)[:, None, None]
    frames[..., 1], frames[..., 2] = 4 * y, 4 * x
    return frames


def coordinates(t, h, w):
    """t identical frames whose pixels hold their own (row, column): row, column % 256, column //
    256."""
    y, x = np.mgrid[:h, :w]
    frame = np.stack([y, x % 256, x // 256], -1).astype(np.uint8)
    return np.repeat(frame[None], t, 0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Pattern videos with a keyframe every 10 frames, so reads past frame 10 need a real seek.
    mp4 and mkv are lossless (x264 at qp 0 has no B-frames); the others have B-frames (qp 1, close
    to lossless) and timestamps of every kind: mp4 with an edit list, MPEG-TS starting at 1.48 s,
    AVI and raw H.264 without usable ones (read_clip must decode those from the start)."""
    d = tmp_path_factory.mktemp("videos")
    lossless = ["-c:v", "libx264rgb", "-qp", "0", "-g", "10"]
    bframes = ["-c:v", "libx264rgb", "-qp", "1", "-bf", "2", "-g", "10"]
    return {
        "mp4": encode(d / "pattern.mp4", pattern(), *lossless),
        "mkv": encode(d / "pattern.mkv", pattern(), "-c:v", "ffv1", "-g", "10"),
        "b.mp4": encode(d / "bframes.mp4", pattern(), *bframes),
        "ts": encode(d / "bframes.ts", pattern(), *bframes),
        "avi": encode(d / "bframes.avi", pattern(), *bframes),
        "264": encode(d / "bframes.264", pattern(), *bframes),
    }


# -----------------------------------------------------------------------------
# reading


# None: no seeking
STARTS = [("mp4", 0.0), ("mkv", 0.0), ("b.mp4", 0.0), ("ts", 1.48), ("avi", None), ("264", None)]


@pytest.mark.parametrize("kind,start", STARTS)
def test_read_clip_is_frame_exact(videos, kind, start):
    path = videos[kind]
    assert video.probe(path) == dict(frames=N, width=W, height=H, fps=25.0, start=start)
    full = video.read_clip(path, range(N))
    if kind in ("mp4", "mkv"):
        np.testing.assert_array_equal(full, pattern())
    # red steps by 5: every frame is the right one
    assert np.abs(full.astype(int) - pattern()).max() <= 2
    for idx in ([0], [1, 5, 9], [9, 10, 11], [13, 17, 21, 25], [33, 29, 33, 41], [44, 50, 100]):
        np.testing.assert_array_equal(video.read_clip(path, idx), full[np.minimum(idx, N - 1)],
                                      f"{idx}")
    if kind in ("mp4", "mkv", "b.mp4"):  # the seek alone; read_clip falls back to decoding from the
        # start when it misses frames, as it does in MPEG-TS, where ffmpeg lands at a later keyframe
        got = video._decode(path, np.array([23, 27, 31]), video.probe(path), seek=23.25 / 25)
        np.testing.assert_array_equal(got, full[[23, 27, 31]])


def test_read_clip_many_frames(tmp_path):
    n = 300
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    frames[..., 0], frames[..., 1] = ((np.arange(n) % 256)[:, None, None],
                                      (np.arange(n) // 256)[:, None, None])
    path = encode(tmp_path / "long.mkv", frames, "-c:v", "ffv1", "-g", "10")
    np.testing.assert_array_equal(video.read_clip(path, range(n)), frames)
    # read as one span, then picked
    scattered = np.random.default_rng(0).choice(n, 150, replace=False)
    np.testing.assert_array_equal(video.read_clip(path, scattered), frames[scattered])


def test_variable_frame_rate_reads_are_frame_exact(tmp_path):
    """Frames 0-19 at 25 fps, then a gap of three frame times, then 25 fps again (lossless, a
    keyframe every 10): the times lie on no grid, so probe gives no start, and read_clip counts
    frames from the first instead of seeking by time (which read frames 20, 24, 29, 39 for 21, 25,
    30, 40)."""
    frames = pattern()
    path = encode(tmp_path / "vfr.mkv", frames, "-vf", "setpts='(N+2*gte(N,20))/25/TB'",
                  "-fps_mode", "passthrough", "-c:v", "ffv1", "-g", "10")
    info = video.probe(path)
    assert info["frames"] == N and info["start"] is None
    for idx in ([21, 25, 30, 40], [19, 20, 21], [40, 42, 44]):
        got = video.read_clip(path, idx)
        assert (got[:, 0, 0, 0] // 5).tolist() == idx  # red = 5 x the frame's index
        np.testing.assert_array_equal(got, frames[idx])


def yuv_file(path, planes, bit_depth, w, h):
    """Raw 4:2:0 frames, one per (Y, U, V) triple of 8-bit values: flat planes, scaled to
    bit_depth."""
    frames = [np.concatenate([np.full(w * h, y), np.full(w * h // 4, u), np.full(w * h // 4, v)])
              for y, u, v in planes]
    samples = np.concatenate(frames) * 2 ** (bit_depth - 8)
    samples.astype(np.uint8 if bit_depth == 8 else np.dtype("<u2")).tofile(path)
    return str(path)


YUV = [(126, 100, 180), (60, 200, 90), (235, 128, 128), (16, 128, 128)]


@pytest.mark.parametrize("bit_depth", [8, 10])
@pytest.mark.parametrize("w,h,matrix", [(64, 48, "bt601"), (1280, 720, "bt709")])
def test_yuv_round_trip(tmp_path, bit_depth, w, h, matrix):
    path = yuv_file(tmp_path / f"clip_{w}x{h}_25fps_{bit_depth}bit.yuv", YUV, bit_depth, w, h)
    assert video.probe(path) == dict(frames=4, width=w, height=h, fps=25.0, start=0.0)
    got = video.read_clip(path, [2, 0, 1, 3, 9])
    assert got.shape == (5, h, w, 3) and got.dtype == np.uint8
    # independent reference: ffmpeg's own converter with the matrix named explicitly
    pix_fmt = "yuv420p" if bit_depth == 8 else "yuv420p10le"
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", pix_fmt,
           "-s", f"{w}x{h}", "-i", path,
           "-vf", f"scale=in_color_matrix={matrix}:in_range=tv:flags=accurate_rnd+full_chroma_int",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    ref = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout,
                        np.uint8).reshape(4, h, w, 3)
    assert np.abs(got.astype(int) - ref[[2, 0, 1, 3, 3]]).max() <= 1
    if matrix == "bt601":  # by hand: y = 110/219, cb = -28/224, cr = 52/224; R = y + 1.402 cr, ...
        assert got[1, 0, 0].tolist() == [211, 97, 72]
    # 9: past the end
    assert got[0, 0, 0].tolist() == [255, 255, 255] and got[4, 0, 0].tolist() == [0, 0, 0]


def test_yuv_chroma_layout(tmp_path):
    path = yuv_file(tmp_path / "grey_64x48.yuv", [(126, 128, 128)], 8, 64, 48)
    raw = np.fromfile(path, np.uint8)
    raw[64 * 48 + 5 * 32 + 9] = 200  # U sample at chroma row 5, column 9
    raw.tofile(path)
    changed = (video.read_clip(path, [0])[0] != video.read_clip(path, [0])[0, 0, 0]).any(-1)
    assert np.argwhere(changed).tolist() == [[10, 18], [10, 19], [11, 18], [11, 19]]


def test_yuv_format_from_arguments(tmp_path):
    path = yuv_file(tmp_path / "plain.yuv", YUV[:2], 10, 64, 48)
    with pytest.raises(ValueError, match="plain.yuv.*WxH"):
        video.probe(path)
    assert video.probe(path, width=64, height=48, bit_depth=10)["frames"] == 2
    assert (video.read_clip(path, [0], width=64, height=48, bit_depth=10)[0, 0, 0].tolist()
            == [211, 97, 72])


def test_yuv_size_must_fit(tmp_path):
    path = tmp_path / "bad_64x48.yuv"
    path.write_bytes(bytes(64 * 48 * 3 // 2 + 7))
    with pytest.raises(ValueError, match=r"bad_64x48.yuv: size 4615 bytes .* 4608 bytes"):
        video.probe(path)


def _ffmpeg_runs(monkeypatch):
    """The ffmpeg command lines run from now on (subprocess.run, counted)."""
    ran, run = [], subprocess.run

    def counted(cmd, *args, **kwargs):
        ran.append(cmd)
        return run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counted)
    return ran


def test_read_clips_reads_what_read_clip_reads(videos, tmp_path, monkeypatch):
    """read_clips: the frames of read_clip one by one, for every kind of file (seekable containers
    batched, the MPEG-TS's late first seek redone alone, AVI and raw H.264 from the start, raw
    YUV), native and resized, repeated and uneven indices; the seekable ones of a batch in one
    ffmpeg run; a damaged file named as read_clip names it, the good ones read as before."""
    yuv = yuv_file(tmp_path / "flat_64x48.yuv", YUV * 3, 8, 64, 48)
    kinds = [*videos.values(), yuv]
    info = {p: video.probe(p) for p in kinds}
    rng = np.random.default_rng(0)
    requests = [dict(path=p, frame_indices=idx, info=info[p], short_side=short)
                for p in kinds for short in (None, 24)
                for idx in ([3, 7], [9, 10, 11], [29, 31, 33], [40, 12, 12, 50])]
    requests = [requests[i] for i in rng.permutation(len(requests))]
    expected = [video.read_clip(**r) for r in requests]
    ran = _ffmpeg_runs(monkeypatch)
    got = video.read_clips(requests)
    assert len(got) == len(expected)
    for r, a, b in zip(requests, got, expected):
        np.testing.assert_array_equal(a, b, f"{r['path']} {r['frame_indices']}")
    # mp4, mkv, b.mp4 and ts seek: 4 x 8 requests in 4 batched runs; alone: the avi's and the
    # 264's (no timestamps), and the ts's whose first seek landed late, again
    batched = [cmd for cmd in ran if cmd.count("-i") > 1]
    assert len(batched) == 4 and all(cmd.count("-i") == video.BATCH_VIDEOS for cmd in batched)
    alone = sorted(cmd[cmd.index("-i") + 1] for cmd in ran if cmd.count("-i") == 1)
    assert alone[:16] == [videos["264"]] * 8 + [videos["avi"]] * 8  # bframes.264 < .avi < .ts
    assert set(alone[16:]) <= {videos["ts"]}
    cut = tmp_path / "cut.mp4"
    whole = open(videos["mkv"], "rb").read()
    cut.write_bytes(whole[: len(whole) * 2 // 3])  # the tail gone: frames missing or an error
    mixed = [dict(path=videos["mp4"], frame_indices=[1, 2], info=info[videos["mp4"]]),
             dict(path=str(cut), frame_indices=[40, 41], info=dict(info[videos["mkv"]])),
             dict(path=videos["b.mp4"], frame_indices=[5], info=info[videos["b.mp4"]])]
    try:
        alone = [video.read_clip(**r) for r in mixed]
    except ValueError as e:
        assert "cut.mp4" in str(e)
        with pytest.raises(ValueError, match="cut.mp4"):
            video.read_clips(mixed)
    else:
        for a, b in zip(video.read_clips(mixed), alone):
            np.testing.assert_array_equal(a, b)


def test_batched_reads_without_a_temporary_folder(videos, monkeypatch):
    """No writable temporary folder: read_clips and the video check read each file alone, the
    same frames and probes."""
    paths = [videos["mp4"], videos["mkv"], videos["b.mp4"]]
    requests = [dict(path=p, frame_indices=[2, 4], info=video.probe(p)) for p in paths]
    expected, probes = [video.read_clip(**r) for r in requests], [video.probe(p) for p in paths]

    def no_folder(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(video.tempfile, "TemporaryDirectory", no_folder)
    for got, want in zip(video.read_clips(requests), expected):
        np.testing.assert_array_equal(got, want)
    assert data.check_videos([dict(path=p) for p in paths]) == probes


def test_dataset_batches_read_as_items_alone(items, videos, monkeypatch):
    """VideoDataset.__getitems__ (what a DataLoader calls): the items of __getitem__ one by one, in
    training (random crops, a second, FAST-VQA view) and at test (2 clips each); the DataLoader
    decodes a batch's seekable videos in one ffmpeg run."""
    many = items + [dict(path=videos[k], mos=10.0 * i, source=k) for i, k in enumerate(videos)]
    view = dict(frames=4, size=28, stride=2, fragments=7)
    for train in (True, False):
        ds = data.VideoDataset(many, frames=4, size=24, stride=3, train=train, clips=2, seed=5,
                               student_view=view)
        ds.set_epoch(2)
        alone = [ds[i] for i in range(len(ds))]
        order = list(np.random.default_rng(1).permutation(len(ds)))
        batch = ds.__getitems__(order)
        for i, (clips, target, index) in zip(order, batch):
            assert index == i and torch.equal(target, alone[i][1])
            assert all(torch.equal(a, b) for a, b in zip(clips, alone[i][0]))
    ds = data.VideoDataset([it for it in many if it["path"].endswith((".mp4", ".mkv"))],
                           frames=4, size=24, stride=3, train=True, check=True)  # probed now
    ran = _ffmpeg_runs(monkeypatch)
    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds))
    clips, _, _ = next(iter(loader))
    assert len(ran) == 1 and torch.equal(clips, torch.stack([ds[i][0] for i in range(len(ds))]))


def test_bad_video_files(tmp_path, videos):
    empty, text, cut = tmp_path / "empty.mp4", tmp_path / "notes.mp4", tmp_path / "cut.mp4"
    empty.write_bytes(b"")
    text.write_text("not a video\n")
    whole = open(videos["mp4"], "rb").read()
    cut.write_bytes(whole[: len(whole) // 2])  # ffmpeg writes the mp4 index (moov) at the end
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        video.probe(tmp_path / "missing.mp4")
    for path, problem in [(empty, "empty"), (text, "cannot be opened"),
                          (cut, "moov atom not found")]:
        with pytest.raises(ValueError, match=f"{path.name}.*{problem}"):
            video.probe(path)
    with pytest.raises(ValueError, match="(?s)2 of 3 videos.*empty.mp4: empty.*cut.mp4: cannot"):
        data.check_videos([dict(path=str(empty)), dict(path=videos["mp4"]), dict(path=str(cut))])
    assert data.check_videos([dict(path=videos["mkv"])])[0]["frames"] == N


def test_the_video_check_lists_many_videos_in_one_run(videos, tmp_path, monkeypatch):
    """check_videos: the probes of probe() one by one (every kind of file: seekable, MPEG-TS, AVI
    and raw H.264 without usable timestamps, raw YUV), the containers of a chunk listed in one
    ffmpeg run by probe_many; one bad file makes that run fail, and each file is then probed alone
    (the bad one named)."""
    yuv = yuv_file(tmp_path / "flat_64x48.yuv", YUV * 3, 8, 64, 48)
    paths = [*videos.values(), *videos.values(), yuv]  # each twice: a chunk may repeat a file
    expected = [video.probe(p) for p in paths]
    ran = _ffmpeg_runs(monkeypatch)
    assert data.check_videos([dict(path=p) for p in paths]) == expected
    assert len(ran) == 1 and ran[0].count("-i") == 2 * len(videos)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    ran.clear()
    with pytest.raises(ValueError, match="(?s)1 of 14 videos.*notes.mp4: cannot be opened"):
        data.check_videos([dict(path=p) for p in [*paths, str(text)]])
    assert len(ran) == 1 + 13  # the failed run, then every container alone, the text too


def test_the_video_check_is_remembered(videos, tmp_path, monkeypatch):
    """check_videos(memo=...) a second time runs no ffmpeg; a touched file (another mtime) is probed
    again."""
    paths = [shutil.copy(videos[k], tmp_path / f"{i}.{k}")
             for i, k in enumerate(("mp4", "mkv", "b.mp4"))]
    items = [dict(path=str(p)) for p in paths]
    memo = tmp_path / "probes.json"
    first = data.check_videos(items, memo=str(memo))
    assert memo.exists()
    run = subprocess.run

    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("ffmpeg ran")

    monkeypatch.setattr(subprocess, "run", no_ffmpeg)
    assert data.check_videos(items, memo=str(memo)) == first
    ran = []

    def counted(cmd, *args, **kwargs):
        ran.append(cmd)
        return run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counted)
    st = os.stat(items[1]["path"])
    # whatever the clock's resolution
    os.utime(items[1]["path"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert data.check_videos(items, memo=str(memo)) == first
    assert len(ran) == 1 and items[1]["path"] in ran[0]
    monkeypatch.setattr(subprocess, "run", no_ffmpeg)
    assert data.check_videos(items, memo=str(memo)) == first  # and remembered again


# -----------------------------------------------------------------------------
# resized reads


def test_resized_size():
    # 398.2
    assert video.resized_size(2160, 3840, 224) == video.resized_size(1080, 1920, 224) == (224, 398)
    assert video.resized_size(1920, 1080, 224) == (398, 224)  # portrait
    assert video.resized_size(480, 640, 224) == (224, 298)  # 298.7: floored, as torchvision does
    assert video.resized_size(54, 96, 128) == (128, 227)  # upscaled
    assert video.resized_size(10, 10, 7) == (7, 7)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three frames of ffmpeg's testsrc2 (fine text, sharp edges: aliasing shows) as containers and
    raw .yuv. RGB containers are lossless, so they test the resize alone; 4:2:0 ones test it
    together with the chroma, which the reference (full-size RGB) upsamples differently. The grey
    .yuv keep the luma and set the chroma to 128 (no colour), for the same reason."""
    d = tmp_path_factory.mktemp("scenes")

    def make(name, w, h, *args):
        src = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=25", "-frames:v", "3"]
        subprocess.run([FFMPEG, "-nostdin", "-v", "error", *src, *args, "-y", str(d / name)],
                       check=True, timeout=60)
        return str(d / name)

    rgb, yuv = ["-c:v", "libx264rgb", "-qp", "0"], ["-pix_fmt", "yuv420p", "-f", "rawvideo"]
    out = dict(wide=make("wide.mp4", 640, 360, *rgb), tall=make("tall.mkv", 360, 640, *rgb),
               small=make("small.mp4", 96, 54, *rgb),
               wide420=make("wide420.mp4", 640, 360, "-pix_fmt", "yuv420p"),
               wideyuv=make("wide_640x360.yuv", 640, 360, *yuv))
    for name, w, h in [("grey_640x360.yuv", 640, 360), ("grey_96x54.yuv", 96, 54),
                       ("grey_360x640.yuv", 360, 640)]:
        raw = np.fromfile(make(name, w, h, *yuv), np.uint8).reshape(3, -1)
        raw[:, w * h :] = 128
        raw.tofile(d / name)
        out[name[:-4]] = str(d / name)
    return out


def torch_resize(frames, size, antialias=True):
    """The independent reference: uint8 (T, H, W, 3) resized by torch, bilinear, half-pixel
    centres."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


# (video, short side, mean and max |difference| allowed), measured: antialiased mean (max); plain
# bilinear mean
RESIZES = [  # 0.14 (17); plain 2.3. ffmpeg's fixed-point filter taps differ a little
           ("wide", 100, 0.5, 255),
           ("wide", 64, 0.5, 255),  # 0.08 (23); 3.5
           ("tall", 100, 0.5, 255),  # 0.27 (18); 3.5: portrait
           ("small", 128, 0.1, 1),  # 0.014 (1): upscaled 2.4 x, where antialiasing plays no part
           # 0.89 (25); 2.7: 4:2:0, the chroma differs at coloured edges
           ("wide420", 100, 1.5, 255),
           ("wideyuv", 100, 0.5, 255),  # 0.24 (24); 2.2: raw 4:2:0, the same
           # 0.05 (1); 2.2: torch resizes the planes, so only rounding differs
           ("grey_640x360", 64, 0.1, 1),
           ("grey_360x640", 100, 0.1, 1),  # 0.05 (1); 2.4
           ("grey_96x54", 128, 0.1, 1)]  # 0.05 (1): upscaled


@pytest.mark.parametrize("name,short,mean,most", RESIZES)
def test_resized_read_matches_torch(scenes, name, short, mean, most):
    path = scenes[name]
    full = video.read_clip(path, [0, 2])  # native size, then resized by torch
    got = video.read_clip(path, [0, 2], short_side=short)
    size = video.resized_size(*full.shape[1:3], short)
    assert got.shape == (2, *size, 3) and got.dtype == np.uint8 and min(size) == short
    diff = np.abs(got.astype(int) - torch_resize(full, size))
    assert diff.mean() < mean and diff.max() <= most, f"mean {diff.mean():.3f}, max {diff.max()}"
    if short < min(full.shape[1:3]):  # downscaled: an aliasing resize would be far off
        assert np.abs(got.astype(int) - torch_resize(full, size, antialias=False)).mean() > 2


def test_container_and_yuv_resize_alike(scenes):
    """The same picture as a container and as .yuv: the same geometry and close pixels at any short
    side."""
    for short in (64, 100, 360, 500):
        a = video.read_clip(scenes["wide420"], [1], short_side=short)
        b = video.read_clip(scenes["wideyuv"], [1], short_side=short)
        # 0.3-0.6: x264 is lossy
        assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() < 1, short


# -----------------------------------------------------------------------------
# sampling


def test_train_indices():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        idx = data.train_indices(100, 8, 4, rng)
        assert idx.min() >= 0 and idx.max() < 100 and (np.diff(idx) == 4).all()
        starts.add(idx[0])
    assert len(starts) > 30 and max(starts) <= 100 - 29
    assert (np.diff(data.train_indices(20, 8, 4, rng)) == 2).all()  # stride shrunk to fit 20 frames
    # then frames repeat
    assert data.train_indices(3, 8, 4, rng).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert data.train_indices(1, 8, 4, rng).tolist() == [0] * 8


def test_eval_indices():
    idx = data.eval_indices(100, 8, 4, clips=3)
    assert (idx.shape == (3, 8) and idx.min() >= 0 and idx.max() < 100
            and (np.diff(idx, axis=1) == 4).all())
    assert (np.diff(idx[:, 0]) > 0).all()
    assert data.eval_indices(100, 8, 4)[0, 0] == 36  # one clip: centred, (100 - 29) / 2 rounded
    np.testing.assert_array_equal(idx, data.eval_indices(100, 8, 4, clips=3))
    assert data.eval_indices(5, 8, 4, clips=2).max() == 4
    with pytest.raises(ValueError, match="clips"):
        data.eval_indices(100, 8, 4, clips=0)


def test_crop_is_in_bounds_and_same_on_all_frames():
    clip = pattern(4, 40, 50)
    rng, corners = np.random.default_rng(0), set()
    for _ in range(50):
        out = data.crop_clip(clip, 24, rng)
        y, x = out[0, 0, 0, 1] // 4, out[0, 0, 0, 2] // 4
        np.testing.assert_array_equal(out, clip[:, y : y + 24, x : x + 24])
        corners.add((y, x))
    assert (len(corners) > 10 and max(y for y, _ in corners) <= 16
            and max(x for _, x in corners) <= 26)
    np.testing.assert_array_equal(data.crop_clip(clip, 24), clip[:, 8:32, 13:37])  # centre
    tiny = data.crop_clip(clip[:, :10, :30], 24, rng)  # short side 10 < 24: upscaled first
    assert tiny.shape == (4, 24, 24, 3) and tiny.dtype == np.uint8


def test_centred_indices():
    # by hand: start = centre - (frames - 1) * stride // 2, moved inside the video
    assert data.centred_indices(100, 8, 4, 50).tolist() == list(range(36, 65, 4))
    assert data.centred_indices(100, 4, 3, 50).tolist() == [46, 49, 52, 55]  # odd span: (46+55)//2
    assert data.centred_indices(100, 8, 4, 5).tolist() == list(range(0, 29, 4))  # at the start
    assert data.centred_indices(100, 8, 4, 95).tolist() == list(range(71, 100, 4))  # at the end
    assert data.centred_indices(20, 8, 4, 10).tolist() == list(range(3, 18, 2))  # stride 19 // 7
    assert data.centred_indices(5, 3, 4, 1).tolist() == [0, 2, 4]
    assert data.centred_indices(5, 8, 2, 2).tolist() == [0, 0, 1, 1, 2, 3, 3, 4]  # frames repeat
    assert data.centred_indices(1, 3, 2, 0).tolist() == [0, 0, 0]


def where(t, h, w):
    """t identical frames whose pixels hold their own (row, column), both up to 4095: red = row %
    256, green = column % 256, blue = 16 (row // 256) + column // 256."""
    y, x = np.mgrid[:h, :w]
    frame = np.stack([y % 256, x % 256, 16 * (y // 256) + x // 256], -1).astype(np.uint8)
    return np.repeat(frame[None], t, 0)


def corners(frame, grid, p):
    """(grid, grid, 2): (row, column) of each tiled patch's first pixel in a frame of where()."""
    px = frame[: grid * p : p, : grid * p : p].astype(int)
    return np.stack([px[..., 0] + 256 * (px[..., 2] // 16), px[..., 1] + 256 * (px[..., 2] % 16)],
                    -1)


def test_fragments_follow_fast_vqa_rule():
    """1080p: cells start every 1080 // 7 = 154 rows and 1920 // 7 = 274 columns (min(..., res -
    32) never binds), patches at offsets in [0, 154 - 32) and [0, 274 - 32), drawn per patch."""
    clip = where(2, 1080, 1920)
    cells_y = np.array([0, 154, 308, 462, 616, 770, 924])[:, None]
    cells_x = np.array([0, 274, 548, 822, 1096, 1370, 1644])[None, :]
    dy, dx = [], []
    for seed in range(40):
        out = data.fragment_clip(clip, 224, np.random.default_rng(seed))
        assert out.shape == (2, 224, 224, 3) and out.dtype == np.uint8
        c = corners(out[0], 7, 32)
        for i, j in np.ndindex(7, 7):  # native patches, the same on both frames
            y, x = c[i, j]
            np.testing.assert_array_equal(out[:, 32 * i : 32 * (i + 1), 32 * j : 32 * (j + 1)],
                                          clip[:, y : y + 32, x : x + 32])
        dy.append(c[..., 0] - cells_y)
        dx.append(c[..., 1] - cells_x)
    dy, dx = np.stack(dy), np.stack(dx)  # (40, 7, 7)
    assert dy.min() == 0 and dy.max() == 121 and dx.min() == 0 and dx.max() == 241
    assert len(np.unique(dy)) > 100 and len(np.unique(dx)) > 200
    assert (dy.std(2) > 0).all() and (dx.std(1) > 0).all()  # one draw per patch, not per row


def test_fragments_of_a_small_video_are_upscaled_first():
    """144 x 176 is upscaled to 224 x 273 (short side 224); the grid spans the upscaled frame:
    rows every 224 // 7 = 32 with no room to move, columns every 273 // 7 = 39, offsets in
    [0, 7)."""
    clip = where(2, 144, 176)
    up = data._upscale(clip, 224)
    assert up.shape == (2, 224, 273, 3)
    cells_x, seen = [0, 39, 78, 117, 156, 195, 234], set()
    for seed in range(6):
        out = data.fragment_clip(clip, 224, np.random.default_rng(seed))
        for i, j in np.ndindex(7, 7):
            patch = out[:, 32 * i : 32 * (i + 1), 32 * j : 32 * (j + 1)]
            near = range(max(cells_x[j] - 8, 0), min(cells_x[j] + 16, 273 - 32 + 1))
            found = [x for x in near
                     if np.array_equal(patch, up[:, 32 * i : 32 * (i + 1), x : x + 32])]
            assert len(found) == 1 and 0 <= found[0] - cells_x[j] < 7, (i, j, found)
            seen.add(found[0] - cells_x[j])
    assert seen == set(range(7))


def test_fragment_offsets_are_drawn_for_every_32_frames():
    clip = where(70, 300, 400)  # 300 // 7 = 42 and 400 // 7 = 57: room 10 and 25
    out = data.fragment_clip(clip, 224, np.random.default_rng(0))
    for a, b in [(0, 32), (32, 64), (64, 70)]:  # the same offsets within a group
        assert (out[a:b] == out[a]).all(), (a, b)
    assert not np.array_equal(out[0], out[32]) and not np.array_equal(out[32], out[64])
    assert (data.fragment_clip(clip[:8], 224, np.random.default_rng(0)) == out[0]).all()


def test_fragments_at_test_time_are_fixed():
    """No generator: eval_rng(0), the same every call (FAST-VQA draws them afresh at test)."""
    clip = where(3, 250, 300)
    out = data.fragment_clip(clip, 224)
    np.testing.assert_array_equal(out, data.fragment_clip(clip, 224))
    np.testing.assert_array_equal(out, data.fragment_clip(clip, 224, data.eval_rng(0)))
    assert not np.array_equal(out, data.fragment_clip(clip, 224, data.eval_rng(1)))
    cells = np.stack(np.meshgrid(35 * np.arange(7), 42 * np.arange(7), indexing="ij"), -1)
    c = corners(out[0], 7, 32) - cells  # 250 // 7 = 35 and 300 // 7 = 42 apart
    assert c.min() >= 0 and c[..., 0].max() < 35 - 32 and c[..., 1].max() < 42 - 32
    assert data.fragment_clip(where(2, 60, 90), 224).shape == (2, 224, 224, 3)  # upscaled
    assert data.fragment_clip(clip, 28, grid=2).shape == (3, 28, 28, 3)  # the ViT's 2 x 2 of 14 px
    with pytest.raises(ValueError, match="multiple"):
        data.fragment_clip(clip, 100)


def test_normalise():
    clip = np.zeros((2, 4, 4, 3), np.uint8)
    clip[..., 0] = round(255 * data.IMAGENET_MEAN[0])
    clip[..., 2] = 255
    t = data.to_tensor(clip)
    assert t.shape == (3, 2, 4, 4) and t.dtype == torch.uint8 and t[2].eq(255).all()
    x = data.normalise(torch.stack([t, t]))  # a batch: (2, 3, T, H, W)
    assert x.shape == (2, 3, 2, 4, 4) and x.dtype == torch.float32
    assert abs(x[:, 0]).max() < 0.01  # by hand: (round(255 * 0.485) / 255 - 0.485) / 0.229
    assert torch.allclose(x[:, 1], torch.tensor(-0.456 / 0.224))
    assert torch.allclose(x[:, 2], torch.tensor((1 - 0.406) / 0.225))


def test_uint8_clips_normalised_on_the_device_score_as_the_float_path(videos):
    """Clips cross the DataLoader as uint8 and data.normalise makes the network's input: the same
    numbers, and the same scores, as the old float path, (x / 255 - mean) / std in float64 numpy."""
    from model import VideoViT, ViTConfig
    ds = data.VideoDataset([dict(path=videos["mp4"], mos=50.0)], frames=4, size=28, stride=4,
                           train=False, clips=2)
    clips = ds[0][0]  # (2, 3, 4, 28, 28)
    assert clips.dtype == torch.uint8
    mean = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1, 1)
    old = (clips.numpy().astype(np.float64) / 255 - mean) / std
    new = data.normalise(clips)
    assert new.dtype == torch.float32
    np.testing.assert_allclose(new.numpy(), old, rtol=1e-6, atol=1e-6)
    torch.manual_seed(0)
    model = VideoViT(ViTConfig(embed_dim=64, depth=2, num_heads=4, pool_heads=4, pool_dim=32,
                               num_frames=4, img_size=28, init_values=0.5)).eval()
    with torch.no_grad():
        model.head.weight.normal_()  # a spread of scores
        torch.testing.assert_close(model(new), model(torch.from_numpy(old).float()), rtol=1e-5,
                                   atol=1e-6)


# -----------------------------------------------------------------------------
# dataset


@pytest.fixture(scope="module")
def items(videos, tmp_path_factory):
    d = tmp_path_factory.mktemp("dataset")
    # 5 frames, 16 x 24
    short = encode(d / "short.mp4", pattern(5, 16, 24), "-c:v", "libx264rgb", "-qp", "0")
    yuv = yuv_file(d / "clip.yuv", YUV * 3, 8, 64, 48)
    return [dict(path=videos["mp4"], mos=80.0, source="a"),
            dict(path=videos["mkv"], mos=20.0, source="b"),
            dict(path=short, mos=50.0, source="c"),
            dict(path=yuv, mos=50.0, source="d", width="64", height="48")]


@pytest.mark.parametrize("fragments", [False, True, 2])
def test_dataset_train(items, fragments):
    size = 28 if fragments else 24  # 7 x 7 fragments of 4 px, or 2 x 2 of 14 px (one per ViT token)
    ds = data.VideoDataset(items, frames=4, size=size, stride=4, train=True, fragments=fragments,
                           check=True)
    for i in range(len(ds)):
        clip, target, index = ds[i]
        assert clip.shape == (3, 4, size, size) and clip.dtype == torch.uint8 and index == i
        assert target.shape == () and target.item() == pytest.approx(items[i]["mos"] / 100)
    red = ds[0][0][0].float()  # 5 x frame numbers of the pattern
    frames = (red.mean((1, 2)) / 5).round()
    assert (frames.diff() == 4).all() and frames.max() < N
    again = data.VideoDataset(items, frames=4, size=size, stride=4, train=True, fragments=fragments)
    # same seed, epoch, index: same sample
    assert all(torch.equal(ds[i][0], again[i][0]) for i in range(len(ds)))
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], again[0][0])  # another epoch: another sample


def test_dataset_test_mode_is_deterministic_with_workers(items):
    ds = data.VideoDataset(items, frames=4, size=24, stride=2, train=False, clips=2,
                           label_range=(0, 80))
    clip, target, _ = ds[0]
    assert clip.shape == (2, 3, 4, 24, 24) and target.item() == 1.0
    torch.testing.assert_close(clip, ds[0][0], rtol=0, atol=0)

    def run(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers)
        return [torch.cat([x.flatten(), y, i]) for x, y, i in loader]

    one, two = run(0), run(2)
    assert len(one) == len(two) == 2 and all(torch.equal(a, b) for a, b in zip(one, two))


def test_dataset_train_is_reproducible_with_workers(items):
    ds = data.VideoDataset(items, frames=4, size=24, train=True, seed=3)

    def run(workers, seed=0):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers,
                                             generator=torch.Generator().manual_seed(seed))
        return torch.cat([x for x, _, _ in loader])

    first = run(2)
    # whichever process reads an item
    assert torch.equal(first, run(2)) and torch.equal(first, run(0))
    # the loader's seed plays no part: (seed, epoch, index) do
    assert torch.equal(first, run(2, seed=1))
    ds.set_epoch(1)
    assert not torch.equal(first, run(2))


# odd sizes; BT.709 at 720p
@pytest.mark.parametrize("h, w, bit_depth", [(7, 9, 8), (720, 1280, 10)])
def test_yuv_to_rgb_matches_the_textbook_formula(h, w, bit_depth):
    rng = np.random.default_rng(h)
    y = rng.integers(0, 2 ** bit_depth, (2, h, w)).astype(np.int16)
    u, v = (rng.integers(0, 2 ** bit_depth, (2, (h + 1) // 2, (w + 1) // 2)).astype(np.int16)
            for _ in "uv")
    kr, kb = (0.2126, 0.0722) if h >= 720 else (0.299, 0.114)
    s = 2.0 ** (bit_depth - 8)
    up = lambda c: c.astype(np.float64).repeat(2, 1).repeat(2, 2)[:, :h, :w]
    yy, cb, cr = (y / s - 16) / 219, (up(u) / s - 128) / 224, (up(v) / s - 128) / 224
    r, b = yy + 2 * (1 - kr) * cr, yy + 2 * (1 - kb) * cb
    g = (yy - kr * r - kb * b) / (1 - kr - kb)
    want = np.clip(np.round(np.stack([r, g, b], -1) * 255), 0, 255)
    got = np.stack([video._yuv_to_rgb(y[t], u[t], v[t], bit_depth) for t in range(2)])
    assert got.shape == (2, h, w, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 1  # float32 rounding


# -----------------------------------------------------------------------------
# resized crops and the clip cache


def test_dataset_crops_the_resized_frames(tmp_path):
    """Pixels that hold their coordinates: green = row, blue = column, both as ramps 0..255 over the
    frame."""
    h, w = 60, 100
    y, x = np.mgrid[:h, :w]
    frames = np.zeros((6, h, w, 3), np.uint8)
    frames[..., 0] = 40 * np.arange(6)[:, None, None]  # red: the frame number
    frames[..., 1], frames[..., 2] = np.round(y * 255 / (h - 1)), np.round(x * 255 / (w - 1))
    item = dict(path=encode(tmp_path / "ramps.mp4", frames, "-c:v", "libx264rgb", "-qp", "0"),
                mos=1.0)
    resized = video.read_clip(item["path"], range(6), short_side=24)  # (6, 24, 40, 3)
    assert resized.shape == (6, 24, 40, 3)
    test = data.VideoDataset([item], frames=2, size=24, stride=1, train=False)
    idx = data.eval_indices(6, 2, 1)[0]
    clip = resized[idx, :, 8:32]  # centred: (40 - 24) / 2
    assert torch.equal(test[0][0][0], data.to_tensor(clip))
    assert clip[..., 1].min() < 10 and clip[..., 1].max() > 245  # the whole height, and
    assert abs(clip[..., 2].mean() - 127.5) < 2  # the middle of the width
    native = data.VideoDataset([item], frames=2, size=24, stride=1, train=False, resize=False)
    # the old native crop
    assert torch.equal(native[0][0][0], data.to_tensor(frames[idx, 18:42, 38:62]))
    train, offsets = data.VideoDataset([item], frames=2, size=24, stride=1), set()
    for epoch in range(8):
        train.set_epoch(epoch)
        clip = train[0][0]
        t0 = int(round(clip[0, 0, 0, 0].item() / 40))
        matches = [x for x in range(17)
                   if torch.equal(clip, data.to_tensor(resized[[t0, t0 + 1], :, x : x + 24]))]
        # a random window of the resized frames, along the long side
        assert len(matches) == 1, epoch
        offsets.add(matches[0])
    assert len(offsets) > 2


def test_clip_cache(items, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    geometry = dict(frames=4, size=24, stride=2, train=False, clips=2)
    plain, cached = (data.VideoDataset(items, **geometry),
                     data.VideoDataset(items, **geometry, cache=str(cache)))
    for i in range(len(items)):  # the first pass builds the entries
        assert torch.equal(cached[i][0], plain[i][0])
    entries = sorted(cache.iterdir())
    assert [p.suffix for p in entries] == [".npy"] * 4
    for it in items:
        yuv = data.yuv_args(it)
        frames = data.cached_frames(it["path"], str(cache), 24, **yuv)
        assert frames.dtype == np.uint8 and isinstance(frames, np.memmap)
        n = video.probe(it["path"], **yuv)["frames"]
        np.testing.assert_array_equal(frames,
                                      video.read_clip(it["path"], range(n), short_side=24, **yuv))
    train = [data.VideoDataset(items, frames=4, size=24, seed=5, cache=c)
             for c in (None, str(cache))]
    plain_train = [train[0][i][0] for i in range(len(items))]
    per_frame, total = cached.cache_cost()  # the largest: 16 x 24 upscaled to 24 x 36
    assert (per_frame == 24 * 36 * 3
            and total == sum(np.load(p, mmap_mode="r").nbytes for p in entries))
    # the cost comes from the probe infos
    big = data.VideoDataset(items, size=224, cache=str(cache))
    big.info = {it["path"]: dict(frames=10, width=3840, height=2160) for it in items[:2]}
    # portrait 3:4
    big.info.update({it["path"]: dict(frames=5, width=480, height=640) for it in items[2:]})
    assert big.cache_cost() == (398 * 224 * 3, 2 * 10 * 398 * 224 * 3 + 2 * 5 * 298 * 224 * 3)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data, "read_clip", no_decoding)
    monkeypatch.setattr(data, "probe", no_decoding)
    for i in range(len(items)):  # from the cache alone, with the same seeded frames and crops
        assert torch.equal(train[1][i][0], plain_train[i])
    for kwargs in (dict(resize=False), dict(fragments=True, size=28)):
        with pytest.raises(ValueError, match="cache= holds frames resized"):
            data.VideoDataset(items, cache=str(cache), **kwargs)


def test_clip_cache_failures_and_changes(tmp_path, monkeypatch):
    cache, path = tmp_path / "cache", tmp_path / "clip_48x32.yuv"
    cache.mkdir()
    (cache / "tmp1234.tmp").write_bytes(b"half a file")  # left by a writer that was killed
    yuv_file(path, YUV, 8, 48, 32)

    def disk_full(f, frames):
        f.write(b"\x93NUMPY half")
        raise OSError("no space left on device")

    with monkeypatch.context() as m:
        m.setattr(np, "save", disk_full)
        with pytest.raises(OSError, match="no space"):
            data.cached_frames(path, str(cache), 16)
    # no entry, and no new temporary file
    assert [p.name for p in cache.iterdir()] == ["tmp1234.tmp"]
    resized = lambda: video.read_clip(path, range(4), short_side=16)
    old = np.array(data.cached_frames(path, str(cache), 16))
    np.testing.assert_array_equal(old, resized())
    before = os.stat(path).st_mtime_ns
    yuv_file(path, YUV[::-1], 8, 48, 32)  # new content, same name and size
    # whatever the file system's clock resolution
    os.utime(path, ns=(before + 10**9, before + 10**9))
    np.testing.assert_array_equal(data.cached_frames(path, str(cache), 16), resized())
    assert not np.array_equal(old, resized())
    # another geometry: another entry
    assert data.cached_frames(path, str(cache), 20).shape == (4, 20, 30, 3)
    # another raw format
    assert data.cached_frames(path, str(cache), 20, width=24, height=64).shape == (4, 53, 20, 3)
    assert (len(list(cache.glob("clip_48x32.*.npy"))) == 4
            and (cache / "tmp1234.tmp").read_bytes() == b"half a file")


def test_clip_cache_cold_with_two_workers(items, tmp_path):
    """Two worker processes race to build the same entries; every clip still has the right
    pixels."""
    # worker 0 reads items 0 and 2, worker 1 items 1 and 3
    both = [items[0], items[0], items[3], items[3]]
    geometry = dict(frames=4, size=24, stride=2, train=False)
    plain = data.VideoDataset(both, **geometry)
    cached = data.VideoDataset(both, **geometry, cache=str(tmp_path))
    loader = torch.utils.data.DataLoader(cached, batch_size=1, num_workers=2)
    assert all(torch.equal(clip[0], plain[i][0]) for clip, _, i in loader)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not list(tmp_path.glob("*.tmp"))


# -----------------------------------------------------------------------------
# two views of the same moment: the teacher's clip and a FAST-VQA student's fragments


M = 60  # frames of the moment video
TEACHER = dict(frames=4, size=24, stride=4)
STUDENT = dict(frames=8, size=28, stride=2, fragments=7)  # 4 px: cells 64 // 7 = 9, 80 // 7 = 11


@pytest.fixture(scope="module")
def moment(tmp_path_factory):
    """60 lossless frames of 64 x 80: red = 4 x the frame's index, green = 3 x row, blue = 3 x
    column."""
    y, x = np.mgrid[:64, :80]
    frames = np.empty((M, 64, 80, 3), np.uint8)
    frames[..., 0] = 4 * np.arange(M)[:, None, None]
    frames[..., 1], frames[..., 2] = 3 * y, 3 * x
    path = tmp_path_factory.mktemp("moment") / "moment.mp4"
    return dict(path=encode(path, frames, "-c:v", "libx264rgb", "-qp", "0", "-g", "10"), mos=50.0)


def frame_numbers(clips, red_step):
    """(clips, 3, T, H, W) -> the frame index each frame shows, [[...] per clip]."""
    return (clips[:, 0].float().mean((-2, -1)) / red_step).round().long().tolist()


def fragment_corners(student, grid, p):
    """(clips, 3, T, S, S) student clips of the moment video -> (clips, grid, grid, 2) offsets of
    each patch's first pixel inside its cell (rows 9, columns 11 apart); asserts native patches."""
    px = student[:, 1:, :, : grid * p : p, : grid * p : p].numpy().astype(int) // 3
    assert (px == px[:, :, :1]).all()  # one set of offsets for the clip's frames
    rows, cols = px[:, 0, 0], px[:, 1, 0]  # (clips, grid, grid)
    ramps = student[:, 1:, :, :p, :p].numpy().astype(int) // 3  # the first patch: +1 a pixel
    assert (np.diff(ramps[:, 0], axis=-2) == 1).all() and (np.diff(ramps[:, 1], axis=-1) == 1).all()
    return np.stack([rows - 9 * np.arange(grid)[:, None], cols - 11 * np.arange(grid)], -1)


def test_two_views_at_test_see_the_same_moments(moment, items):
    ds = data.VideoDataset([moment], **TEACHER, train=False, clips=2, student_view=STUDENT)
    (clip, student), target, index = ds[0]
    assert clip.shape == (2, 3, 4, 24, 24) and student.shape == (2, 3, 8, 28, 28)
    assert clip.dtype == student.dtype == torch.uint8 and target.item() == 0.5 and index == 0
    # by hand: eval_indices(60, 4, 4, 2) starts at round(47 / 4) = 12 and round(3 * 47 / 4) = 35,
    # centre frames 18 and 41; the student's 8 frames at stride 2 start 7 frames before them
    assert frame_numbers(clip, 4) == [[12, 16, 20, 24], [35, 39, 43, 47]]
    assert frame_numbers(student, 4) == [list(range(11, 26, 2)), list(range(34, 49, 2))]
    offsets = fragment_corners(student, 7, 4)
    assert offsets.min() == 0 and offsets[..., 0].max() < 9 - 4 and offsets[..., 1].max() < 11 - 4
    assert not np.array_equal(offsets[0], offsets[1])  # seeded by the clip number
    # wherever the video stands in the list, whatever the seed: the same clips
    other = dict(path=items[0]["path"], mos=10.0)
    moved = data.VideoDataset([other, other, moment], **TEACHER, train=False, clips=2, seed=7,
                              student_view=STUDENT)
    (clip2, student2), _, _ = moved[2]
    assert torch.equal(clip2, clip) and torch.equal(student2, student)
    (plain, student3), _, _ = moved[0]
    assert plain.shape == (2, 3, 4, 24, 24) and student3.shape == (2, 3, 8, 28, 28)


def test_two_views_in_training(moment, items):
    """Both views around one centre frame in every epoch; the first view is what it is without the
    second; (seed, epoch, index) repeat the student's frames and fragments, in workers too."""
    ds = data.VideoDataset([moment, items[2]], **TEACHER, seed=1, student_view=STUDENT)
    plain = data.VideoDataset([moment, items[2]], **TEACHER, seed=1)
    centres, corner_sets = set(), set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        plain.set_epoch(epoch)
        (clip, student), target, index = ds[0]
        assert clip.shape == (3, 4, 24, 24) and student.shape == (3, 8, 28, 28)
        assert clip.dtype == student.dtype == torch.uint8
        assert torch.equal(clip, plain[0][0])
        (again, student_again), _, _ = ds[0]
        assert torch.equal(again, clip) and torch.equal(student_again, student)
        (t,), (s,) = frame_numbers(clip[None], 4), frame_numbers(student[None], 4)
        centre = (t[0] + t[-1]) // 2
        assert np.diff(t).tolist() == [4] * 3 and np.diff(s).tolist() == [2] * 7
        assert (s[0] + s[-1]) // 2 == centre or s[0] == 0 or s[-1] == M - 1, (t, s)
        centres.add(centre)
        corner_sets.add(fragment_corners(student[None], 7, 4).tobytes())
    assert len(centres) > 3 and len(corner_sets) == 8
    # the short video (5 frames of 16 x 24): the teacher's stride shrinks to 1, the student's 8
    # frames repeat; its 16 x 24 frames are upscaled to 28 x 42
    (clip, student), _, _ = ds[1]
    assert clip.shape == (3, 4, 24, 24) and student.shape == (3, 8, 28, 28)
    (t,), (s,) = frame_numbers(clip[None], 5), frame_numbers(student[None], 5)
    assert t in ([0, 1, 2, 3], [1, 2, 3, 4]) and s == [0, 0, 1, 1, 2, 3, 3, 4]

    def run(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers)
        return [views for views, _, _ in loader]

    (one,), (two,) = run(0), run(2)
    assert one[0].shape == (2, 3, 4, 24, 24) and one[1].shape == (2, 3, 8, 28, 28)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_two_views_with_the_cache(moment, tmp_path):
    """The first view from the cache, the student's native frames decoded: the same clips."""
    geometry = dict(**TEACHER, train=False, clips=2, student_view=STUDENT)
    (clip, student), _, _ = data.VideoDataset([moment], **geometry)[0]
    (cached, student2), _, _ = data.VideoDataset([moment], **geometry, cache=str(tmp_path))[0]
    assert torch.equal(cached, clip) and torch.equal(student2, student)
    assert len(list(tmp_path.glob("*.npy"))) == 1


@pytest.mark.parametrize("view", [dict(frames=8, size=28, stride=2),
                                  dict(frames=8, size=30, stride=2, fragments=7),
                                  dict(frames=0, size=28, stride=2, fragments=7),
                                  dict(frames=8, size=28, stride=2, fragments=True)])
def test_bad_student_views(moment, view):
    with pytest.raises(ValueError, match="student_view needs"):
        data.VideoDataset([moment], student_view=view)

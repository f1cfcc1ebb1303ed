"""Tests for data.py: frame-exact reads (containers and raw YUV), sampling geometry, fragments,
CSV and dataset indexes, bad inputs, content splits, the Dataset with worker processes, and the
tiny toy set (labels, cache hit, byte-identical rebuild, atomic failure).
Test videos are made in a temporary folder with the bundled ffmpeg; CPU only, about 10 s.

Run from the repository root:  python -m pytest -q tests/test_data.py
"""
import csv
import filecmp
import os
import subprocess
import time

import imageio_ffmpeg
import numpy as np
import pytest
import torch

import data

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
N, H, W = 45, 32, 40  # frames and size of the pattern video


def encode(path, frames, *args):
    """Write uint8 (T, H, W, 3) frames with ffmpeg; `args` are the output options."""
    t, h, w, _ = frames.shape
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "25",
           "-i", "-", *args, "-y", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return str(path)


def pattern(n=N, h=H, w=W):
    """Frame i: red = 5 i, green = 4 row, blue = 4 column; frame and geometry both checkable."""
    y, x = np.mgrid[:h, :w]
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[..., 0] = 5 * np.arange(n)[:, None, None]
    frames[..., 1], frames[..., 2] = 4 * y, 4 * x
    return frames


def coordinates(t, h, w):
    """t identical frames whose pixels hold their own (row, column): row, column % 256, column // 256."""
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


STARTS = [("mp4", 0.0), ("mkv", 0.0), ("b.mp4", 0.0), ("ts", 1.48), ("avi", None), ("264", None)]  # None: no seeking


@pytest.mark.parametrize("kind,start", STARTS)
def test_read_clip_is_frame_exact(videos, kind, start):
    path = videos[kind]
    assert data.probe(path) == dict(frames=N, width=W, height=H, fps=25.0, start=start)
    full = data.read_clip(path, range(N))
    if kind in ("mp4", "mkv"):
        np.testing.assert_array_equal(full, pattern())
    assert np.abs(full.astype(int) - pattern()).max() <= 2  # red steps by 5: every frame is the right one
    for idx in ([0], [1, 5, 9], [9, 10, 11], [13, 17, 21, 25], [33, 29, 33, 41], [44, 50, 100]):
        np.testing.assert_array_equal(data.read_clip(path, idx), full[np.minimum(idx, N - 1)], f"{idx}")
    if kind in ("mp4", "mkv", "b.mp4"):  # the seek alone; read_clip falls back to decoding from the
        # start when it misses frames, as it does in MPEG-TS, where ffmpeg lands at a later keyframe
        got = data._decode(path, np.array([23, 27, 31]), data.probe(path), seek=23.25 / 25)
        np.testing.assert_array_equal(got, full[[23, 27, 31]])


def test_read_clip_many_frames(tmp_path):
    n = 300
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    frames[..., 0], frames[..., 1] = (np.arange(n) % 256)[:, None, None], (np.arange(n) // 256)[:, None, None]
    path = encode(tmp_path / "long.mkv", frames, "-c:v", "ffv1", "-g", "10")
    np.testing.assert_array_equal(data.read_clip(path, range(n)), frames)
    scattered = np.random.default_rng(0).choice(n, 150, replace=False)  # read as one span, then picked
    np.testing.assert_array_equal(data.read_clip(path, scattered), frames[scattered])


def yuv_file(path, planes, bit_depth, w, h):
    """Raw 4:2:0 frames, one per (Y, U, V) triple of 8-bit values: flat planes, scaled to bit_depth."""
    frames = [np.concatenate([np.full(w * h, y), np.full(w * h // 4, u), np.full(w * h // 4, v)]) for y, u, v in planes]
    samples = np.concatenate(frames) * 2 ** (bit_depth - 8)
    samples.astype(np.uint8 if bit_depth == 8 else np.dtype("<u2")).tofile(path)
    return str(path)


YUV = [(126, 100, 180), (60, 200, 90), (235, 128, 128), (16, 128, 128)]


@pytest.mark.parametrize("bit_depth", [8, 10])
@pytest.mark.parametrize("w,h,matrix", [(64, 48, "bt601"), (1280, 720, "bt709")])
def test_yuv_round_trip(tmp_path, bit_depth, w, h, matrix):
    path = yuv_file(tmp_path / f"clip_{w}x{h}_25fps_{bit_depth}bit.yuv", YUV, bit_depth, w, h)
    assert data.probe(path) == dict(frames=4, width=w, height=h, fps=25.0, start=0.0)
    got = data.read_clip(path, [2, 0, 1, 3, 9])
    assert got.shape == (5, h, w, 3) and got.dtype == np.uint8
    # independent reference: ffmpeg's own converter with the matrix named explicitly
    pix_fmt = "yuv420p" if bit_depth == 8 else "yuv420p10le"
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{w}x{h}", "-i", path,
           "-vf", f"scale=in_color_matrix={matrix}:in_range=tv:flags=accurate_rnd+full_chroma_int", "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-"]
    ref = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.uint8).reshape(4, h, w, 3)
    assert np.abs(got.astype(int) - ref[[2, 0, 1, 3, 3]]).max() <= 1
    if matrix == "bt601":  # by hand: y = 110/219, cb = -28/224, cr = 52/224; R = y + 1.402 cr, ...
        assert got[1, 0, 0].tolist() == [211, 97, 72]
    assert got[0, 0, 0].tolist() == [255, 255, 255] and got[4, 0, 0].tolist() == [0, 0, 0]  # 9: past the end


def test_yuv_chroma_layout(tmp_path):
    path = yuv_file(tmp_path / "grey_64x48.yuv", [(126, 128, 128)], 8, 64, 48)
    raw = np.fromfile(path, np.uint8)
    raw[64 * 48 + 5 * 32 + 9] = 200  # U sample at chroma row 5, column 9
    raw.tofile(path)
    changed = (data.read_clip(path, [0])[0] != data.read_clip(path, [0])[0, 0, 0]).any(-1)
    assert np.argwhere(changed).tolist() == [[10, 18], [10, 19], [11, 18], [11, 19]]


def test_yuv_format_from_arguments(tmp_path):
    path = yuv_file(tmp_path / "plain.yuv", YUV[:2], 10, 64, 48)
    with pytest.raises(ValueError, match="plain.yuv.*WxH"):
        data.probe(path)
    assert data.probe(path, width=64, height=48, bit_depth=10)["frames"] == 2
    assert data.read_clip(path, [0], width=64, height=48, bit_depth=10)[0, 0, 0].tolist() == [211, 97, 72]


def test_yuv_size_must_fit(tmp_path):
    path = tmp_path / "bad_64x48.yuv"
    path.write_bytes(bytes(64 * 48 * 3 // 2 + 7))
    with pytest.raises(ValueError, match=r"bad_64x48.yuv: size 4615 bytes .* 4608 bytes"):
        data.probe(path)


def test_bad_video_files(tmp_path, videos):
    empty, text, cut = tmp_path / "empty.mp4", tmp_path / "notes.mp4", tmp_path / "cut.mp4"
    empty.write_bytes(b"")
    text.write_text("not a video\n")
    whole = open(videos["mp4"], "rb").read()
    cut.write_bytes(whole[: len(whole) // 2])  # ffmpeg writes the mp4 index (moov) at the end
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        data.probe(tmp_path / "missing.mp4")
    for path, problem in [(empty, "empty"), (text, "cannot be opened"), (cut, "moov atom not found")]:
        with pytest.raises(ValueError, match=f"{path.name}.*{problem}"):
            data.probe(path)
    with pytest.raises(ValueError, match="(?s)2 of 3 videos.*empty.mp4: empty.*cut.mp4: cannot"):
        data.check_videos([dict(path=str(empty)), dict(path=videos["mp4"]), dict(path=str(cut))])
    assert data.check_videos([dict(path=videos["mkv"])])[0]["frames"] == N


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
    assert data.train_indices(3, 8, 4, rng).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]  # then frames repeat
    assert data.train_indices(1, 8, 4, rng).tolist() == [0] * 8


def test_eval_indices():
    idx = data.eval_indices(100, 8, 4, clips=3)
    assert idx.shape == (3, 8) and idx.min() >= 0 and idx.max() < 100 and (np.diff(idx, axis=1) == 4).all()
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
    assert len(corners) > 10 and max(y for y, _ in corners) <= 16 and max(x for _, x in corners) <= 26
    np.testing.assert_array_equal(data.crop_clip(clip, 24), clip[:, 8:32, 13:37])  # centre
    tiny = data.crop_clip(clip[:, :10, :30], 24, rng)  # short side 10 < 24: upscaled first
    assert tiny.shape == (4, 24, 24, 3) and tiny.dtype == np.uint8


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_fragments_geometry(seed):
    h, w, p = 250, 300, 32
    clip = coordinates(3, h, w)
    out = data.fragment_clip(clip, 224, None if seed is None else np.random.default_rng(seed))
    assert out.shape == (3, 224, 224, 3)
    np.testing.assert_array_equal(out[0], out[1])  # identical frames in, so the offsets are shared
    offsets = []
    for i in range(7):
        for j in range(7):
            block = out[0, i * p : (i + 1) * p, j * p : (j + 1) * p].astype(int)
            y0, x0 = block[0, 0, 0], block[0, 0, 1] + 256 * block[0, 0, 2]
            np.testing.assert_array_equal(block, clip[0, y0 : y0 + p, x0 : x0 + p])  # a native patch
            assert i * h // 7 <= y0 and y0 + p <= (i + 1) * h // 7 and j * w // 7 <= x0 and x0 + p <= (j + 1) * w // 7
            offsets.append((y0 - i * h // 7, x0 - j * w // 7))
    if seed is None:  # test time: cell centres
        assert set(offsets) <= {((h * (i + 1) // 7 - h * i // 7 - p) // 2, (w * (j + 1) // 7 - w * j // 7 - p) // 2)
                                for i in range(7) for j in range(7)}
        np.testing.assert_array_equal(out, data.fragment_clip(clip, 224))
    else:
        assert len(set(offsets)) > 10
        np.testing.assert_array_equal(out, data.fragment_clip(clip, 224, np.random.default_rng(seed)))
    small = data.fragment_clip(coordinates(2, 60, 90), 224, np.random.default_rng(0))  # upscaled first
    assert small.shape == (2, 224, 224, 3)
    with pytest.raises(ValueError, match="multiple"):
        data.fragment_clip(clip, 100)


def test_normalise():
    clip = np.zeros((2, 4, 4, 3), np.uint8)
    clip[..., 0] = round(255 * data.IMAGENET_MEAN[0])
    x = data.normalise(clip)
    assert x.shape == (3, 2, 4, 4) and x.dtype == torch.float32
    assert abs(x[0]).max() < 0.01
    assert torch.allclose(x[2], torch.tensor(-data.IMAGENET_MEAN[2] / data.IMAGENET_STD[2]))


# -----------------------------------------------------------------------------
# indexes and splits


def write_csv(path, text):
    path.write_text(text)
    return path


def test_load_csv(tmp_path, videos):
    sub = tmp_path / "clips"
    sub.mkdir()
    (sub / "a.mp4").write_bytes(b"x")
    text = f"path,mos,codec\nclips/a.mp4,42.5,h264\n{videos['mkv']},7,\n"  # relative, absolute
    items = data.load_csv(write_csv(tmp_path / "list.csv", text))
    assert items == [dict(path=str(sub / "a.mp4"), mos=42.5, source="a", codec="h264"),
                     dict(path=videos["mkv"], mos=7.0, source="pattern", codec="")]
    items = data.load_csv(write_csv(tmp_path / "src.csv", "\ufeffmos,source,path\n1,s1,clips/a.mp4\n"))  # with a BOM
    assert items[0]["source"] == "s1"


@pytest.mark.parametrize("text,error,match", [
    ("file,mos\nclips/a.mp4,1\n", ValueError, r"bad.csv, line 1: .*lacks \['path'\]"),
    ("path,score\nclips/a.mp4,1\n", ValueError, r"bad.csv, line 1: .*lacks \['mos'\]"),
    ("path,mos\nclips/a.mp4,nan\n", ValueError, r"bad.csv, line 2: score 'nan' is not a finite number"),
    ("path,mos\nclips/a.mp4,good\n", ValueError, r"bad.csv, line 2: score 'good'"),
    ("path,mos\nclips/a.mp4,1\n./clips/a.mp4,2\n", ValueError, r"bad.csv, line 3: duplicated path .* line 2"),
    ("path,mos\nclips/a.mp4,1\n,2\n", ValueError, r"bad.csv, line 3: empty path"),
    ("path,mos\nclips/a.mp4,1\nclips/gone.mp4,2\n", FileNotFoundError, r"bad.csv, line 3: .*gone.mp4 does not exist"),
])
def test_load_csv_errors(tmp_path, text, error, match):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"x")
    with pytest.raises(error, match=match):
        data.load_csv(write_csv(tmp_path / "bad.csv", text))


def test_waterloo4k_index(tmp_path):
    lines = []
    for codec in ("H264", "VP9"):
        for video in range(1, 7):
            for level in (1, 2):
                path = tmp_path / codec / f"{video:02d}" / f"960x540_{level}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"x")
                lines.append(f"{codec} {video} {'960x540' if video % 2 else '540p'} {level} {10 * level + video}")
    (tmp_path / "scores.txt").write_text("\n".join(lines) + "\n")
    items = data.waterloo4k_index(tmp_path)
    assert len(items) == 24
    assert items[0] == dict(path=str(tmp_path / "H264" / "01" / "960x540_1.mp4"), mos=11.0, source="1",
                            codec="H264", level="1", resolution="960x540")
    train, test = data.official_split(items, "waterloo4k")
    assert {it["source"] for it in test} == {"1", "2", "3", "4"} and {it["source"] for it in train} == {"5", "6"}
    assert data.label_range("waterloo4k", items) == (0.0, 100.0)
    (tmp_path / "bad.txt").write_text("H264 1 960x540 1 50\nH264 9 960x540 1 50\n")
    with pytest.raises(FileNotFoundError, match=r"bad.txt, line 2: .*09.960x540_1.mp4"):
        data.waterloo4k_index(tmp_path, tmp_path / "bad.txt")


def test_bvihd_index(tmp_path):
    names = ["BallUnderWater_QP27", "Bookcase_QP37_synth", "Flowers_QP32", "Water_QP22"]
    (tmp_path / "seqs").mkdir()
    for name in names:
        (tmp_path / "seqs" / f"{name}.yuv").write_bytes(b"")
    rows = "".join(f"{name}  {10 + i}\n" for i, name in enumerate(names))
    (tmp_path / "dmos.txt").write_text("video DMOS\n# comment\n" + rows)
    items = data.bvihd_index(tmp_path, tmp_path / "dmos.txt", bit_depth=10, fps=60)
    assert [it["source"] for it in items] == ["BallUnderWater", "Bookcase", "Flowers", "Water"]
    assert [it["mos"] for it in items] == [90.0, 89.0, 88.0, 87.0]
    assert items[0]["path"] == str(tmp_path / "seqs" / "BallUnderWater_QP27.yuv")
    assert data._yuv_args(items[0]) == dict(width="1920", height="1080", bit_depth="10", fps="60")
    train, test = data.official_split(items, "bvihd")
    assert [it["source"] for it in test] == ["BallUnderWater", "Bookcase"] and len(train) == 2
    (tmp_path / "dmos.csv").write_text("name,DMOS,std\nFlowers_QP32.yuv,12.5,3.1\n")
    assert data.bvihd_index(tmp_path, tmp_path / "dmos.csv", bit_depth=8, fps=60)[0]["mos"] == 87.5
    (tmp_path / "dmos.csv").write_text("name,dmos\nFlowers_QP32.yuv,12.5\nGone_QP1,3\n")
    with pytest.raises(FileNotFoundError, match=r"dmos.csv, line 3: no file Gone_QP1.yuv"):
        data.bvihd_index(tmp_path, tmp_path / "dmos.csv", bit_depth=8, fps=60)


def test_splits_share_no_source():
    items = [dict(path=f"{s}_{q}.mp4", mos=float(q), source=f"s{s}") for s in range(10) for q in range(4)]
    train, test = data.split_by_source(items, 0.3, seed=1)
    assert len(train) + len(test) == 40 and len(test) == 12
    assert not {it["source"] for it in train} & {it["source"] for it in test}
    assert (train, test) == data.split_by_source(items, 0.3, seed=1)
    assert test != data.split_by_source(items, 0.3, seed=2)[1]
    with pytest.raises(ValueError, match="at least 2 sources"):
        data.split_by_source(items[:4])
    with pytest.raises(ValueError, match="no official split"):
        data.official_split(items, "csv")
    with pytest.raises(ValueError, match="0 test"):
        data.official_split(items, "bvihd")
    assert data.label_range("csv", items) == (0.0, 3.0)


# -----------------------------------------------------------------------------
# dataset


@pytest.fixture(scope="module")
def items(videos, tmp_path_factory):
    d = tmp_path_factory.mktemp("dataset")
    short = encode(d / "short.mp4", pattern(5, 16, 24), "-c:v", "libx264rgb", "-qp", "0")  # 5 frames, 16 x 24
    yuv = yuv_file(d / "clip.yuv", YUV * 3, 8, 64, 48)
    return [dict(path=videos["mp4"], mos=80.0, source="a"), dict(path=videos["mkv"], mos=20.0, source="b"),
            dict(path=short, mos=50.0, source="c"), dict(path=yuv, mos=50.0, source="d", width="64", height="48")]


@pytest.mark.parametrize("fragments", [False, True, 2])
def test_dataset_train(items, fragments):
    size = 28 if fragments else 24  # 7 x 7 fragments of 4 px, or 2 x 2 of 14 px (one per ViT token)
    ds = data.VideoDataset(items, frames=4, size=size, stride=4, train=True, fragments=fragments, check=True)
    for i in range(len(ds)):
        clip, target, index = ds[i]
        assert clip.shape == (3, 4, size, size) and clip.dtype == torch.float32 and index == i
        assert target.shape == () and target.item() == pytest.approx(items[i]["mos"] / 100)
    red = ds[0][0][0] * data.IMAGENET_STD[0] + data.IMAGENET_MEAN[0]  # 5 x frame numbers of the pattern
    frames = (red.mean((1, 2)) * 255 / 5).round()
    assert (frames.diff() == 4).all() and frames.max() < N
    torch.testing.assert_close(ds[0][0], ds[0][0])  # same seed, epoch and index: same sample
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], data.VideoDataset(items, frames=4, size=size, fragments=fragments)[0][0])


def test_dataset_test_mode_is_deterministic_with_workers(items):
    ds = data.VideoDataset(items, frames=4, size=24, stride=2, train=False, clips=2, label_range=(0, 80))
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
    assert torch.equal(first, run(2)) and torch.equal(first, run(0))  # whichever process reads an item
    assert torch.equal(first, run(2, seed=1))  # the loader's seed plays no part: (seed, epoch, index) do
    ds.set_epoch(1)
    assert not torch.equal(first, run(2))


# ---------------------------------------------------------------------------
# the toy set (tiny variant)

COLUMNS = ["path", "mos", "source", "codec", "level", "split", "reference"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return data.make_toy_dataset(tmp_path_factory.mktemp("toy") / "tiny", tiny=True)


def test_csv_columns_and_files(tiny):
    with open(tiny) as f:
        assert f.readline().strip().split(",") == COLUMNS
    rows, vvc = read(tiny), read(tiny.parent / "toy_vvc.csv")
    sources, codecs = data.TOY_TINY["sources"], data.TOY_TINY["codecs"]
    assert len(rows) == len(sources) * (len(codecs) - 1) * 4  # every source, codec and level once
    assert {r["codec"] for r in rows} == set(codecs) - {"vvc"} and {r["codec"] for r in vvc} == {"vvc"}
    assert {r["source"] for r in vvc} == {r["source"] for r in rows if r["split"] == "test"} != set()
    for r in rows + vvc:
        assert 0 <= float(r["mos"]) <= 100 and r["level"] in "1234"
        for p in (r["path"], r["reference"]):
            assert (tiny.parent / p).stat().st_size > 0, p


def test_labels_fall_as_level_worsens(tiny):
    rows = read(tiny) + read(tiny.parent / "toy_vvc.csv")
    for codec in {r["codec"] for r in rows}:
        means = [sum(float(r["mos"]) for r in rows if r["codec"] == codec and r["level"] == str(level))
                 / sum(r["codec"] == codec and r["level"] == str(level) for r in rows) for level in (1, 2, 3, 4)]
        assert means == sorted(means) and len(set(means)) == 4, (codec, means)


def test_second_call_is_a_cache_hit(tiny, monkeypatch):
    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("a cached toy set must not run ffmpeg")
    monkeypatch.setattr(data.subprocess, "run", no_ffmpeg)
    start = time.perf_counter()
    assert data.make_toy_dataset(tiny.parent, tiny=True) == tiny
    assert time.perf_counter() - start < 0.5


def test_rebuild_is_byte_identical(tiny, tmp_path):
    again = data.make_toy_dataset(tmp_path / "tiny", tiny=True)
    for dirpath, _, files in os.walk(tiny.parent):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), tiny.parent)
            assert filecmp.cmp(tiny.parent / rel, again.parent / rel, shallow=False), rel


def failing_encoder(monkeypatch, damage):
    """From the second encode command on, run `damage(real_ffmpeg, args, cwd)` in its place."""
    real, calls = data._run_ffmpeg, []

    def fake(args, cwd):
        if "-map" not in args or "-filter_complex" in args or "lavfi" in args:
            return real(args, cwd)  # the reference render and the labelling run untouched
        calls.append(args)
        return real(args, cwd) if len(calls) == 1 else damage(real, args, cwd)
    monkeypatch.setattr(data, "_run_ffmpeg", fake)


def test_failed_build_leaves_no_complete_set(tmp_path, monkeypatch):
    failing_encoder(monkeypatch, lambda real, args, cwd: (False, "simulated encoder crash"))
    with pytest.raises(RuntimeError, match="simulated encoder crash"):
        data.make_toy_dataset(tmp_path / "tiny", tiny=True)
    assert os.listdir(tmp_path) == []  # neither the set nor its temporary build folder


def test_empty_output_is_an_error_naming_the_file(tmp_path, monkeypatch):
    def empty(real, args, cwd):  # exit 0 but a zero-byte file, as libvvenc did with its threads
        result = real(args, cwd)
        open(os.path.join(cwd, args[-1]), "w").close()
        return result
    failing_encoder(monkeypatch, empty)
    with pytest.raises(RuntimeError, match=r"/\w+_4\.\w+: empty or missing"):
        data.make_toy_dataset(tmp_path / "tiny", tiny=True)
    assert os.listdir(tmp_path) == []


def test_short_output_is_an_error_naming_the_file(tmp_path, monkeypatch):
    failing_encoder(monkeypatch, lambda real, args, cwd: real(args[:-1] + ["-frames:v", "3", args[-1]], cwd))
    with pytest.raises(RuntimeError, match=r"/\w+_4\.\w+: decodes to 3 frames, expected 12"):
        data.make_toy_dataset(tmp_path / "tiny", tiny=True)


def test_toy_official_split_is_the_split_column(tiny):
    items = data.load_csv(tiny)
    train, test = data.official_split(items, "toy")
    assert len(train) + len(test) == len(items) and test
    assert not {it["source"] for it in train} & {it["source"] for it in test}
    vvc = data.load_csv(tiny.parent / "toy_vvc.csv")
    assert {it["source"] for it in vvc} == {it["source"] for it in test}  # VVC: unseen contents only
    with pytest.raises(ValueError, match="no 'split' column"):
        data.official_split([dict(path="a.mp4", mos=1.0, source="a")] * 4, "toy")


@pytest.mark.parametrize("h, w, bit_depth", [(7, 9, 8), (720, 1280, 10)])  # odd sizes; BT.709 at 720p
def test_yuv_to_rgb_matches_the_textbook_formula(h, w, bit_depth):
    rng = np.random.default_rng(h)
    y = rng.integers(0, 2 ** bit_depth, (2, h, w)).astype(np.int16)
    u, v = (rng.integers(0, 2 ** bit_depth, (2, (h + 1) // 2, (w + 1) // 2)).astype(np.int16) for _ in "uv")
    kr, kb = (0.2126, 0.0722) if h >= 720 else (0.299, 0.114)
    s = 2.0 ** (bit_depth - 8)
    up = lambda c: c.astype(np.float64).repeat(2, 1).repeat(2, 2)[:, :h, :w]
    yy, cb, cr = (y / s - 16) / 219, (up(u) / s - 128) / 224, (up(v) / s - 128) / 224
    r, b = yy + 2 * (1 - kr) * cr, yy + 2 * (1 - kb) * cb
    g = (yy - kr * r - kb * b) / (1 - kr - kb)
    want = np.clip(np.round(np.stack([r, g, b], -1) * 255), 0, 255)
    got = data._yuv_to_rgb(y, u, v, bit_depth)
    assert got.shape == (2, h, w, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want).max() <= 1  # float32 rounding

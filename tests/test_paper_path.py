"""End-to-end test of the paper's data path: train.py on miniature copies of the two datasets of the
InternVQA paper, laid out and labelled as the real ones are (docs/reference.md, section 4), with the
paper profile at tiny model sizes.

- Waterloo IVC 4K: `<Encoder>/<NN>/<W>x<H>_<level>.mp4` (H.264 and HEVC, 3840x2160, 1920x1080 and
  960x540, sources 1 and 2 of the official test split and 5 and 12 for training), labelled both by
  a headerless five-column scores.txt and by the widely shared CSV (header, 540p-style resolutions,
  machine-specific path prefix, an extra column). Both give the same items.
- BVI-HD: 1920x1080 8-bit 4:2:0 .yuv files `<Source>_<QP>.yuv` and a `name,DMOS` file.

train.main runs in-process so that the test can watch what the models see: data.read_clips (and the
clip cache's data.read_clip) must return frames whose short side is --size (from 2160p, 1080p and
540p alike: the paper profile resizes, then crops), the whole frame downscaled with an antialiased
filter (and BT.709 for the HD .yuv), compared with independent decodes; every clip the models get is
(B, 3, T, size, size), each evaluation clip is exactly the centre crop of what was read for it and
each training clip one of its crops. Then: predictions.csv holds every official test video once with
its label, --resume continues to a larger --max-steps, and --cache fills its folder and reproduces
the predictions without decoding or probing again. Checkpoints are deleted after each test.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_paper_path.py      # about a minute on 2 cores
"""
import contextlib
import csv
import os
import random
import signal
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import data
import datasets
import distill
import model
import train

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SIZE, FRAMES = 28, 2
TINY_PAPER = ["--student", "tiny", "--teacher", "tiny", "--frames", str(FRAMES),
              "--size", str(SIZE), "--stride", "1", "--test-clips", "2", "--batch-size", "2",
              "--workers", "0", "--epochs", "1",
              # else: the paper profile (resize, lr rule, ...)
              "--dtype", "fp32", "--log-every", "1", "--device", "cpu"]

# Content per source: different generators and parameters, rendered at 960x540 (the mandelbrot at
# 480x270: it is slow) and scaled to each encoded resolution, as one content at three resolutions.
SOURCES = {1: "testsrc2=size=960x540:rate=4",
           2: "mandelbrot=size=480x270:rate=4:maxiter=64:start_scale=2",
           5: "testsrc2=size=960x540:rate=4,hue=h=120:s=1.5",
           12: "mandelbrot=size=480x270:rate=4:maxiter=48:start_x=-0.6:start_y=0.4:start_scale=1"}
CRF = {1: 45, 2: 38, 3: 30, 4: 22}  # level 1 is the worst
# (encoder, video number, WxH, level); H.264 for the large frames: x265 needs seconds per 4K frame
# here
WATERLOO = [("H264", 1, "3840x2160", 2), ("HEVC", 1, "960x540", 1), ("H264", 1, "960x540", 3),
            ("H264", 2, "1920x1080", 3), ("H264", 2, "960x540", 2), ("HEVC", 2, "960x540", 4),
            ("H264", 5, "960x540", 1), ("H264", 5, "960x540", 4), ("HEVC", 5, "960x540", 2),
            ("H264", 12, "1920x1080", 1), ("H264", 12, "960x540", 2), ("HEVC", 12, "960x540", 3)]
WATERLOO_TEST = {"1", "2"}  # of the official test sources 1-4
# name: DMOS
BVIHD = {"BallUnderWater_22": 31.5, "BallUnderWater_37": 62.25, "Bookcase_27": 40.0,
         "Music_42": 71.8, "Fountains_22": 25.0, "Fountains_37": 58.4, "Maple_27": 36.1,
         "Maple_42": 80.0}
BVIHD_TEST = {"BallUnderWater", "Bookcase", "Music"}
YUV_FRAMES = 3


def ffmpeg(*args):
    proc = subprocess.run([FFMPEG, "-nostdin", "-y", "-hide_banner", "-loglevel", "error", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"ffmpeg {' '.join(args)}\n{proc.stderr[-2000:]}"


def mos_of(encoder, video, res, level):
    """Made-up MOS in the real set's direction (higher level, larger frame: better), two
    decimals."""
    return round(12.0 + 17.5 * level + {"960x540": 0.0, "1920x1080": 4.0, "3840x2160": 7.0}[res]
                 + 1.3 * video + (2.1 if encoder == "HEVC" else 0.0), 2)


@pytest.fixture(scope="module")
def waterloo(tmp_path_factory):
    """(root, scores.txt, the shared CSV): a mini Waterloo IVC 4K folder in the real layout."""
    root = tmp_path_factory.mktemp("ivc4k")
    for encoder, video, res, level in WATERLOO:
        w, h = res.split("x")
        out = root / encoder / f"{video:02d}" / f"{res}_{level}.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        codec = (["-c:v", "libx265", "-x265-params", "log-level=error:pools=1:frame-threads=1"]
                 if encoder == "HEVC"
                 else ["-c:v", "libx264", "-threads", "1"])
        ffmpeg("-f", "lavfi", "-i", f"{SOURCES[video]},scale={w}:{h}", "-frames:v", "4", *codec,
               "-preset", "ultrafast", "-crf", str(CRF[level]), "-pix_fmt", "yuv420p", str(out))
    # scores.txt: no header, five columns; resolutions written both ways (the real file's form
    # varies)
    with open(root / "scores.txt", "w") as f:
        for i, (encoder, video, res, level) in enumerate(WATERLOO):
            written = res if i % 2 else f"{res.split('x')[1]}p"
            f.write(f"{encoder} {video} {written} {level} "
                    f"{mos_of(encoder, video, res, level):.2f}\n")
    # the widely shared CSV: header, 540p-style resolutions, numbers without zeros, a foreign
    # prefix, one more column, and another row order
    csv_path = root.parent / "waterloo4k_mos.csv"
    rows = list(WATERLOO)
    random.Random(0).shuffle(rows)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Encoder", "Video Number", "Resolution", "Distortion Level", "MOS", "path",
                    "Std"])
        for encoder, video, res, level in rows:
            w.writerow([encoder, video, f"{res.split('x')[1]}p", level,
                        f"{mos_of(encoder, video, res, level):.2f}",
                        f"/home/someone/ivc4k/{encoder}/{video:02d}/{res}_{level}.mp4", "11.42"])
    return str(root), str(root / "scores.txt"), str(csv_path)


@pytest.fixture(scope="module")
def bvihd(tmp_path_factory):
    """(root, DMOS file): raw 1920x1080 8-bit 4:2:0 files named <Source>_<QP>.yuv, one folder
    down."""
    root = tmp_path_factory.mktemp("bvihd")
    (root / "videos").mkdir()
    for i, name in enumerate(BVIHD):
        qp = int(name.split("_")[1])
        source = SOURCES[[1, 2, 5, 12][i // 2]]
        ffmpeg("-f", "lavfi", "-i", f"{source},scale=1920:1080,noise=alls={qp - 20}:allf=t",
               "-frames:v", str(YUV_FRAMES), "-f", "rawvideo", "-pix_fmt", "yuv420p",
               str(root / "videos" / f"{name}.yuv"))
    labels = root / "dmos.csv"
    labels.write_text("name,DMOS\n" + "".join(f"{n}{'.yuv' if i % 2 else ''},{d}\n"
                                              for i, (n, d) in enumerate(BVIHD.items())))
    return str(root), str(labels)


@pytest.fixture
def outs(tmp_path):
    """A factory of output folders, whose checkpoints go at teardown."""
    made = []
    yield lambda name: made.append(str(tmp_path / name)) or made[-1]
    remove_checkpoints(*made)


def remove_checkpoints(*folders):
    for folder in folders:
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            if name.endswith(".pt"):
                os.remove(os.path.join(folder, name))


@contextlib.contextmanager
def recording():
    """Records, in call order, what data.read_clip and data.read_clips return ("read", path,
    indices, frames: one event a clip, in the order asked) and what the models are fed: ("train",
    x) at every Distiller.forward, ("eval", x) at every VideoViT.forward (evaluation calls the
    models themselves; training goes through the Distiller)."""
    events = []
    read_clip, read_clips, vit_forward, distiller_forward = (
        data.read_clip, data.read_clips, model.VideoViT.forward, distill.Distiller.forward)

    def record(path, frame_indices, frames):
        small = frames.size <= 1_000_000  # a native 4K clip (a broken resize) is only measured
        events.append(("read", str(path), np.array(frame_indices),
                       frames.copy() if small else frames.shape))
        return frames

    def read(path, frame_indices, *a, **k):  # the clip cache's
        return record(path, frame_indices, read_clip(path, frame_indices, *a, **k))

    def reads(requests):  # VideoDataset's: a batch's clips
        got = read_clips(requests)
        return [record(r["path"], r["frame_indices"], f) for r, f in zip(requests, got)]

    def vit(self, x):
        events.append(("eval", x.detach().clone()))
        return vit_forward(self, x)

    def distiller(self, x, y):
        events.append(("train", x.detach().clone()))
        return distiller_forward(self, x, y)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "read_clip", read)
        mp.setattr(data, "read_clips", reads)
        mp.setattr(model.VideoViT, "forward", vit)
        mp.setattr(distill.Distiller, "forward", distiller)
        yield events


def run_train(argv):
    """train.main in this process; its SIGINT/SIGTERM handlers are undone afterwards (pytest's
    Ctrl-C)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = train.main(argv)
    except SystemExit as e:
        raise AssertionError(f"train.main exited ({e.code}) with: {' '.join(argv)}") from None
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert code == 0, f"train.main returned {code} with: {' '.join(argv)}"


def read_predictions(out):
    with open(os.path.join(out, "predictions.csv"), newline="") as f:
        return list(csv.DictReader(f))


def waterloo_path(root, encoder, video, res, level):
    return os.path.join(root, encoder, f"{video:02d}", f"{res}_{level}.mp4")


def centre_crop_normalised(frames, size):
    """Independent reference: (T, H, W, 3) uint8 -> centre size x size crop, (3, T, S, S)
    ImageNet units."""
    _, h, w, _ = frames.shape
    y, x = (h - size) // 2, (w - size) // 2
    clip = torch.from_numpy(frames[:, y:y + size, x:x + size].astype(np.float32)
                            / 255).permute(3, 0, 1, 2)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (clip - mean[:, None, None, None]) / std[:, None, None, None]


def check_geometry(events, native_sizes, size=SIZE, frames=FRAMES):
    """Every read is resized (short side = size, aspect kept); every model input is (B, 3, T, S, S);
    each evaluation input is the centre crops of the clips read just before it; each training clip
    is one of the size x size crops of the clip read for it (one read per clip, in batch order)."""
    reads = [e for e in events if e[0] == "read"]
    assert reads and any(e[0] == "train" for e in events) and any(e[0] == "eval" for e in events)
    for _, path, _, frames_or_shape in reads:
        shape = getattr(frames_or_shape, "shape", frames_or_shape)
        w, h = native_sizes[path]
        assert shape[0] == frames and shape[3] == 3, (path, shape)
        assert min(shape[1:3]) == size, (
            f"{path} ({w}x{h}) read as {shape}: short side is not --size {size}")
        assert abs(shape[2] - w * size / h) < 1, (
            f"{path} ({w}x{h}) read as {shape}: aspect not kept")
    for i, (kind, x) in ((i, e) for i, e in enumerate(events) if e[0] != "read"):
        assert tuple(x.shape[1:]) == (3, frames, size, size), f"{kind} input {tuple(x.shape)}"
        before = [r[3] for r in events[:i] if r[0] == "read"][-x.shape[0]:]  # this batch's reads
        if kind == "eval":  # a batch of one video: its test clips
            want = torch.stack([centre_crop_normalised(r, size) for r in before])
            torch.testing.assert_close(x, want, atol=1e-5, rtol=0,
                                       msg="an evaluation clip is not the centre crop")
            continue
        for clip, read in zip(x, before):
            h, w = read.shape[1:3]
            crops = (centre_crop_normalised(read[:, top:top + size, left:left + size], size)
                     for top in range(h - size + 1) for left in range(w - size + 1))
            assert any(torch.allclose(clip, c, atol=1e-5, rtol=0) for c in crops), (
                "a training clip is no crop")


def first_read(events, path):
    """(frame indices, frames) of the first read_clip of `path` in a recording."""
    return next((e[2], e[3]) for e in events if e[0] == "read" and e[1] == path)


def ffmpeg_frame(path, n, filters="", raw_size=None):
    """Frame n of a video as RGB24 bytes, by ffmpeg alone; raw_size=(W, H) for a 4:2:0 .yuv."""
    raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "%dx%d" % raw_size] if raw_size else []
    cmd = [FFMPEG, "-nostdin", "-v", "error", *raw, "-i", path,
           "-vf", f"select=eq(n\\,{n}){filters}", "-frames:v", "1",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout


# -------------------------------------------------------------------------------------------------
# Waterloo IVC 4K


def test_both_label_forms_give_the_same_items(waterloo):
    root, scores, shared_csv = waterloo
    by_path = lambda items: sorted(items, key=lambda it: it["path"])
    from_txt, from_csv = (datasets.waterloo4k_index(root),
                          datasets.waterloo4k_index(root, shared_csv))
    assert len(from_txt) == len(WATERLOO) and by_path(from_txt) == by_path(from_csv)
    assert datasets.waterloo4k_index(root, scores) == from_txt  # scores.txt is the default
    paths = {it["path"]: it for it in from_txt}
    for encoder, video, res, level in WATERLOO:
        it = paths[waterloo_path(root, encoder, video, res, level)]
        assert ((it["source"], it["codec"], it["level"], it["resolution"])
                == (str(video), encoder, str(level), res))
        assert it["mos"] == pytest.approx(mos_of(encoder, video, res, level))


@pytest.fixture(scope="module")
def waterloo_run(waterloo, tmp_path_factory):
    """(out, events, the step-2 checkpoint): two steps and an evaluation on the mini Waterloo set
    (labels: scores.txt, the default), watched by recording()."""
    out = str(tmp_path_factory.mktemp("waterloo") / "out")
    with recording() as events:
        run_train(TINY_PAPER + ["--data", "waterloo4k", "--data-root", waterloo[0],
                                "--max-steps", "2", "--out", out])
    step2 = torch.load(os.path.join(out, "last.pt"), map_location="cpu", weights_only=True)
    yield out, events, dict(step=step2["step"], student=step2["student"])
    remove_checkpoints(out)


def test_waterloo_geometry(waterloo, waterloo_run):
    root = waterloo[0]
    events = waterloo_run[1]
    check_geometry(events, {waterloo_path(root, e, v, r, l): tuple(map(int, r.split("x")))
                            for e, v, r, l in WATERLOO})
    read = {e[1] for e in events if e[0] == "read"}
    for video in [("H264", 1, "3840x2160", 2), ("H264", 2, "1920x1080", 3),
                  ("HEVC", 1, "960x540", 1)]:
        assert waterloo_path(root, *video) in read


def test_waterloo_resize_is_the_whole_frame(waterloo, waterloo_run):
    """A 2160p frame read at short side 28 is the whole 4K frame downscaled by an antialiased
    bilinear filter: it matches torch's on an independent full-size decode (about 1 level here;
    a plain 2 x 2 bilinear is 8 levels off, a 1-pixel shift 18, the next frame 7)."""
    path = waterloo_path(waterloo[0], "H264", 1, "3840x2160", 2)
    indices, frames = first_read(waterloo_run[1], path)
    assert isinstance(frames, np.ndarray) and min(frames.shape[1:3]) == SIZE, (
        f"read at {np.shape(frames)}")
    full = np.frombuffer(ffmpeg_frame(path, int(indices[0])), np.uint8).reshape(1, 2160, 3840, 3)
    full = torch.from_numpy(full.copy()).permute(0, 3, 1, 2).float()
    want = F.interpolate(full, size=frames.shape[1:3], mode="bilinear",
                         antialias=True)[0].permute(1, 2, 0)
    diff = (torch.from_numpy(frames[0].astype(np.float32)) - want).abs().mean().item()
    assert diff < 3, f"mean |read_clip - antialiased bilinear downscale| = {diff:.1f} levels"


def test_waterloo_predictions_hold_each_test_video_once(waterloo, waterloo_run):
    root, out = waterloo[0], waterloo_run[0]
    rows = read_predictions(out)
    want = {waterloo_path(root, e, v, r, l): mos_of(e, v, r, l) for e, v, r, l in WATERLOO
            if str(v) in WATERLOO_TEST}
    assert sorted(r["path"] for r in rows) == sorted(want)  # each once, none from a training source
    for r in rows:
        assert float(r["mos"]) == pytest.approx(want[r["path"]])
        assert np.isfinite(float(r["teacher"])) and np.isfinite(float(r["student"]))
    assert os.path.exists(os.path.join(out, "best.pt"))


def test_waterloo_shared_csv_gives_the_same_predictions_rows(waterloo, waterloo_run, outs):
    root, _, shared_csv = waterloo
    out = outs("csv")
    run_train(TINY_PAPER + ["--data", "waterloo4k", "--data-root", root, "--labels", shared_csv,
                            "--eval-only", "--out", out])
    rows, ref = read_predictions(out), read_predictions(waterloo_run[0])
    assert sorted((r["path"], r["mos"]) for r in rows) == sorted((r["path"], r["mos"]) for r in ref)


def test_waterloo_resume(waterloo, waterloo_run):
    """--resume with a larger --max-steps: last.pt ends at the new step, with other weights, and
    holds the evaluations of both runs."""
    out, _, before = waterloo_run
    assert before["step"] == 2
    run_train(TINY_PAPER + ["--data", "waterloo4k", "--data-root", waterloo[0], "--max-steps", "3",
                            "--out", out, "--resume"])
    after = torch.load(os.path.join(out, "last.pt"), map_location="cpu", weights_only=True)
    assert after["step"] == 3
    assert [h["step"] for h in after["history"]] == [2, 3]
    assert set(after["student"]) == set(before["student"])
    assert any(not torch.equal(after["student"][k], v) for k, v in before["student"].items())
    assert len(read_predictions(out)) == sum(str(v) in WATERLOO_TEST for _, v, _, _ in WATERLOO)


def test_waterloo_cache(waterloo, outs, tmp_path):
    """--cache: the first run fills the folder with the resized videos (what read_clip gives), the
    second reads nothing but the cache and predicts the same."""
    root = waterloo[0]
    cache = tmp_path / "cache"
    args = TINY_PAPER + ["--data", "waterloo4k", "--data-root", root, "--max-steps", "1",
                         "--cache", str(cache)]
    run_train(args + ["--out", outs("a")])
    entries = sorted(p for p in cache.iterdir() if p.suffix == ".npy")
    n_test = sum(str(v) in WATERLOO_TEST for _, v, _, _ in WATERLOO)
    assert len(entries) >= n_test, [p.name for p in entries]
    # the check's memo
    assert {p.name for p in cache.iterdir()} - {p.name for p in entries} == {"probes.json"}
    path = waterloo_path(root, "H264", 1, "3840x2160", 2)
    entry = [p for p in entries if p.name.startswith("3840x2160_2.")]
    assert len(entry) == 1
    np.testing.assert_array_equal(np.load(entry[0]),
                                  data.read_clip(path, range(4), short_side=SIZE))
    def no_probe(*args, **kwargs):
        raise AssertionError("the second run probed a video again")

    with recording() as events, pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "probe", no_probe)  # the memo in the cache folder remembers every probe
        run_train(args + ["--out", outs("b")])
    assert not [e for e in events if e[0] == "read"], "the second run decoded videos again"
    assert all(tuple(e[1].shape[1:]) == (3, FRAMES, SIZE, SIZE) for e in events)
    assert sorted(p for p in cache.iterdir() if p.suffix == ".npy") == entries
    first, second = ((tmp_path / d / "predictions.csv").read_text() for d in "ab")
    assert first == second


# -------------------------------------------------------------------------------------------------
# BVI-HD


def test_bvihd(bvihd, outs):
    root, labels = bvihd
    out = outs("out")
    with recording() as events:
        run_train(TINY_PAPER + ["--data", "bvihd", "--data-root", root, "--labels", labels,
                                "--yuv-fps", "25", "--yuv-bit-depth", "8", "--max-steps", "2",
                                "--out", out])
    path = lambda name: os.path.join(root, "videos", f"{name}.yuv")
    check_geometry(events, {path(n): (1920, 1080) for n in BVIHD})
    rows = read_predictions(out)
    # quality = 100 - DMOS
    want = {path(n): 100 - d for n, d in BVIHD.items() if n.split("_")[0] in BVIHD_TEST}
    assert sorted(r["path"] for r in rows) == sorted(want)
    for r in rows:
        assert float(r["mos"]) == pytest.approx(want[r["path"]])
    ckpt = torch.load(os.path.join(out, "last.pt"), map_location="cpu", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["config"]["resize"] is True  # the paper profile's default
    # The .yuv frames: BT.709 (HD), resized as ffmpeg's bilinear scaler does (0.05 levels here;
    # BT.601: 9)
    indices, frames = first_read(events, path("Bookcase_27"))
    h, w = frames.shape[1:3]
    want = ffmpeg_frame(path("Bookcase_27"), int(indices[0]),
                        f",scale={w}:{h}:flags=bilinear:in_color_matrix=bt709"
                        ":in_range=tv:out_range=pc", raw_size=(1920, 1080))
    diff = np.abs(frames[0].astype(np.float32)
                  - np.frombuffer(want, np.uint8).reshape(h, w, 3)).mean()
    assert diff < 1.5, f"mean |read_clip - ffmpeg's BT.709 bilinear| = {diff:.2f} levels"

"""Tests for toy.py on its tiny variant: columns and files, labels falling with the level, cache hit,
byte-identical rebuild, and failed, empty or short encodes that leave no complete set. Then a set
built from own sources (three tiny videos made here: mp4, mkv, raw .yuv), the bad-source errors,
the up-front ffmpeg check and the progress lines.

Run from the repository root:  python -m pytest -q tests/test_toy.py
"""
import csv
import filecmp
import os
import re
import time

import numpy as np
import pytest

import datasets
import toy
from video import probe, read_clip

COLUMNS = ["path", "mos", "source", "codec", "level", "split", "reference"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def level_means(rows, codec):
    """Mean label of each level 1..4 of one codec."""
    return [np.mean([float(r["mos"]) for r in rows if r["codec"] == codec and r["level"] == str(level)])
            for level in (1, 2, 3, 4)]


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(toy, "PROGRESS_EVERY", 1e9)  # a slow build: only the first and the last line
        path = toy.make_toy_dataset(tmp_path_factory.mktemp("toy") / "tiny", tiny=True, log=lines.append)
    return path, lines


@pytest.fixture(scope="module")
def tiny(tiny_build):
    return tiny_build[0]


def test_csv_columns_and_files(tiny):
    with open(tiny) as f:
        assert f.readline().strip().split(",") == COLUMNS
    rows, vvc = read(tiny), read(tiny.parent / "toy_vvc.csv")
    sources, codecs = toy.TOY_TINY["sources"], toy.TOY_TINY["codecs"]
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
        means = level_means(rows, codec)
        assert means == sorted(means) and len(set(means)) == 4, (codec, means)


def test_second_call_is_a_cache_hit(tiny, monkeypatch):
    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("a cached toy set must not run ffmpeg")
    monkeypatch.setattr(toy.subprocess, "run", no_ffmpeg)
    start = time.perf_counter()
    assert toy.make_toy_dataset(tiny.parent, tiny=True) == tiny
    assert time.perf_counter() - start < 0.5


def test_rebuild_is_byte_identical(tiny, tmp_path):
    again = toy.make_toy_dataset(tmp_path / "tiny", tiny=True)
    for dirpath, _, files in os.walk(tiny.parent):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), tiny.parent)
            assert filecmp.cmp(tiny.parent / rel, again.parent / rel, shallow=False), rel


def failing_encoder(monkeypatch, damage):
    """From the second encode command on, run `damage(real_ffmpeg, args, cwd)` in its place."""
    real, calls = toy.run_ffmpeg, []

    def fake(args, cwd):
        if "-map" not in args or "-filter_complex" in args or "lavfi" in args:
            return real(args, cwd)  # the reference render and the labelling run untouched
        calls.append(args)
        return real(args, cwd) if len(calls) == 1 else damage(real, args, cwd)
    monkeypatch.setattr(toy, "run_ffmpeg", fake)


def test_failed_build_leaves_no_complete_set(tmp_path, monkeypatch):
    failing_encoder(monkeypatch, lambda real, args, cwd: (False, "simulated encoder crash"))
    with pytest.raises(RuntimeError, match="simulated encoder crash"):
        toy.make_toy_dataset(tmp_path / "tiny", tiny=True)
    assert os.listdir(tmp_path) == []  # neither the set nor its temporary build folder


def test_empty_output_is_an_error_naming_the_file(tmp_path, monkeypatch):
    def empty(real, args, cwd):  # exit 0 but a zero-byte file, as libvvenc did with its threads
        result = real(args, cwd)
        open(os.path.join(cwd, args[-1]), "w").close()
        return result
    failing_encoder(monkeypatch, empty)
    with pytest.raises(RuntimeError, match=r"/\w+_4\.\w+: empty or missing"):
        toy.make_toy_dataset(tmp_path / "tiny", tiny=True)
    assert os.listdir(tmp_path) == []


def test_short_output_is_an_error_naming_the_file(tmp_path, monkeypatch):
    failing_encoder(monkeypatch, lambda real, args, cwd: real(args[:-1] + ["-frames:v", "3", args[-1]], cwd))
    with pytest.raises(RuntimeError, match=r"/\w+_4\.\w+: decodes to 3 frames, expected 12"):
        toy.make_toy_dataset(tmp_path / "tiny", tiny=True)


def test_toy_official_split_is_the_split_column(tiny):
    items = datasets.load_csv(tiny)
    train, test = datasets.official_split(items, "toy")
    assert len(train) + len(test) == len(items) and test
    assert not {it["source"] for it in train} & {it["source"] for it in test}
    vvc = datasets.load_csv(tiny.parent / "toy_vvc.csv")
    assert {it["source"] for it in vvc} == {it["source"] for it in test}  # VVC: unseen contents only
    with pytest.raises(ValueError, match="no 'split' column"):
        datasets.official_split([dict(path="a.mp4", mos=1.0, source="a")] * 4, "toy")


def test_progress_lines_do_not_flood(tiny_build):
    _, lines = tiny_build
    assert len(lines) == 2 and lines[0].startswith("toy set: building 4 contents"), lines
    assert re.fullmatch(r"toy set: 4/4 contents, \d+ s", lines[1]), lines


# -----------------------------------------------------------------------------
# own sources

OWN = dict(codecs=("h264", "av1"), frames=6, size=(96, 64))  # small and fast
# brightness 20 * frame number (+ texture, so that the encoders have something to lose): shows the cut
STEPS = "nullsrc=s=128x96:r=24,geq=lum='16+20*N+20*sin(X/3)*sin(Y/4)':cb=128:cr=128"


def video(path, graph, frames, *args):
    """A small source video rendered by the bundled ffmpeg; `args` choose the codec or raw format."""
    ok, err = toy.run_ffmpeg(["-f", "lavfi", "-i", graph, "-frames:v", str(frames), *args, str(path)])
    assert ok, err
    return path


@pytest.fixture(scope="module")
def own_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    video(d / "mandel.mp4", "mandelbrot=s=160x90:r=24", 10, "-c:v", "libx264", "-crf", "10")  # 16:9
    video(d / "pattern.mkv", "testsrc2=s=96x120:r=30", 8, "-c:v", "ffv1")  # portrait
    video(d / "steps_128x96.yuv", STEPS, 9, "-f", "rawvideo", "-pix_fmt", "yuv420p")  # geometry in the name
    (d / "notes.txt").write_text("not a video: skipped")
    return d


@pytest.fixture(scope="module")
def own(own_dir, tmp_path_factory):
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(toy, "PROGRESS_EVERY", 0)  # a line per finished content
        path = toy.make_toy_dataset(tmp_path_factory.mktemp("own") / "set", sources=own_dir, log=lines.append, **OWN)
    return path, lines


def test_own_sources_csv_and_files(own):
    path, _ = own
    with open(path) as f:
        assert f.readline().strip().split(",") == COLUMNS
    rows = read(path)
    assert len(rows) == 3 * 2 * 4 and not (path.parent / "toy_vvc.csv").exists()  # no VVC asked
    assert sorted({r["source"] for r in rows}) == ["mandel", "pattern", "steps_128x96"]  # stems, sorted
    assert {(r["source"], r["codec"], r["level"]) for r in rows} == {
        (s, c, str(lvl)) for s in ("mandel", "pattern", "steps_128x96") for c in OWN["codecs"] for lvl in (1, 2, 3, 4)}
    assert {r["split"] for r in rows} == {"train"}  # every 4th source is test: none of 3
    for r in rows:
        assert r["reference"] == f"ref/{r['source']}.mp4" and (path.parent / r["path"]).stat().st_size > 0
    for ref in {r["reference"] for r in rows}:
        info = probe(path.parent / ref)
        assert (info["frames"], info["width"], info["height"]) == (6, 96, 64), ref


def test_own_reference_is_the_middle_of_the_source(own):
    path, _ = own
    ref = read_clip(path.parent / "ref/steps_128x96.mp4", range(6)).astype(float)
    steps = ref.mean(axis=(1, 2, 3)) / (20 * 255 / 219)  # frame number, from the brightness
    assert np.allclose(steps, np.arange(1, 7), atol=0.1), steps  # 9 frames: 1..6 is the middle


def test_own_labels_fall_as_level_worsens(own):
    rows = read(own[0])
    for codec in OWN["codecs"]:
        means = level_means(rows, codec)
        assert means == sorted(means) and len(set(means)) == 4, (codec, means)


def test_own_progress_lines(own):
    _, lines = own
    assert lines[0].startswith("toy set: building 3 contents x 4 levels of h264 av1 in "), lines
    assert [re.fullmatch(r"toy set: (\d)/3 contents, \d+ s", line)[1] for line in lines[1:]] == ["1", "2", "3"]


def test_own_second_call_is_a_cache_hit(own, own_dir, monkeypatch):
    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("a cached toy set must not run ffmpeg")
    monkeypatch.setattr(toy.subprocess, "run", no_ffmpeg)
    assert toy.make_toy_dataset(own[0].parent, sources=own_dir, log=None, **OWN) == own[0]


def test_own_rebuild_after_a_source_changes(tmp_path):
    src = video(tmp_path / "clip.mp4", "testsrc2=s=96x64:r=24", 6)
    build = lambda: toy.make_toy_dataset(tmp_path / "set", sources=[src], log=None, **dict(OWN, codecs=("h264",)))
    before = (build().parent / "ref/clip.mp4").read_bytes()
    mtime = os.stat(src).st_mtime_ns
    video(src, "mandelbrot=s=96x64:r=24", 6)
    os.utime(src, ns=(mtime + 10**9, mtime + 10**9))  # written a second later, whatever the clock's tick
    assert (build().parent / "ref/clip.mp4").read_bytes() != before


def test_own_bad_sources_are_one_error_before_encoding(own_dir, tmp_path, monkeypatch):
    short = video(tmp_path / "short.mp4", "testsrc2=s=96x64:r=24", 3)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(4000))
    same_stem = tmp_path / "mandel.mkv"
    same_stem.write_bytes((own_dir / "pattern.mkv").read_bytes())
    mandel = own_dir / "mandel.mp4"
    encodes = []
    monkeypatch.setattr(toy, "run_ffmpeg", lambda *args: encodes.append(args) or (False, "must not run"))
    sources = [own_dir / "pattern.mkv", short, broken, mandel, own_dir / ".." / own_dir.name / "mandel.mp4", same_stem]
    with pytest.raises(ValueError) as e:
        toy.make_toy_dataset(tmp_path / "out" / "set", sources=sources, **OWN)
    message = str(e.value)
    assert "4 of 6 sources" in message and "pattern.mkv" not in message
    assert f"{short}: 3 frames, fewer than the 6 asked" in message
    assert f"{broken}: cannot be opened as a video" in message
    assert f"mandel.mp4: the same file as {mandel}" in message
    assert f"{same_stem}: the same stem (content name) as {mandel}" in message
    assert encodes == [] and os.listdir(tmp_path / "out") == []  # nothing encoded, no folder left


def test_own_sources_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no video files"):
        toy.make_toy_dataset(tmp_path / "set", sources=tmp_path)  # an empty folder
    with pytest.raises(ValueError, match="is not a folder"):
        toy.make_toy_dataset(tmp_path / "set", sources=tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown keys height_px"):
        toy.make_toy_dataset(tmp_path / "set", sources=[dict(path="a_64x48.yuv", height_px=48)])
    with pytest.raises(ValueError, match="unknown codecs"):
        toy.make_toy_dataset(tmp_path / "set", sources=[tmp_path / "a.mp4"], codecs=("mpeg2",))


def test_cover_keeps_the_aspect_ratio_and_centres():
    ramp = np.broadcast_to(np.arange(160, dtype=np.uint8)[None, None, :, None], (1, 90, 160, 3))
    wide = toy._cover(ramp, (96, 64))  # scaled by 64/90 to 114 x 64, then 9 columns cut on each side
    assert wide.shape == (1, 64, 96, 3)
    assert abs(int(wide[0, 0, 0, 0]) - 9 * 90 / 64) <= 2 and abs(int(wide[0, 0, -1, 0]) - (159 - 9 * 90 / 64)) <= 2
    tall = toy._cover(ramp.transpose(0, 2, 1, 3), (96, 64))  # 90 wide, 160 tall: scaled up, rows cut
    assert tall.shape == (1, 64, 96, 3) and abs(int(tall[0, 0, 0, 0]) - 80 + 32 * 90 / 96) <= 2


# -----------------------------------------------------------------------------
# the ffmpeg check


def test_ffmpeg_check_reads_the_graphs_and_passes_here():
    assert toy._filters_in(toy.TOY_SOURCES["geq_checker_warp"]) == {"nullsrc", "geq"}  # commas inside quotes
    assert toy._filters_in(toy.TOY_SOURCES["noise_parallax"]) == {
        "color", "noise", "gblur", "eq", "crop", "blend", "colorchannelmixer"}  # [labels], two chains
    toy._check_ffmpeg(tuple(toy.TOY_CODECS), list(toy.TOY_SOURCES.values()))  # the bundled ffmpeg has it all


def test_missing_encoders_and_filters_are_one_error_before_building(tmp_path, monkeypatch):
    real = toy._ffmpeg_names
    monkeypatch.setattr(toy, "_ffmpeg_names", lambda kind: real(kind) - {"libaom-av1", "libvmaf", "life"})
    with pytest.raises(RuntimeError, match=r"lacks encoders: libaom-av1; filters: libvmaf, life\."):
        toy.make_toy_dataset(tmp_path / "tiny", tiny=True)
    assert os.listdir(tmp_path) == []

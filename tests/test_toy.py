"""Tests for toy.py on its tiny variant: columns and files, labels falling with the level, cache
hit, byte-identical rebuild, and failed, empty or short encodes that leave no complete set. Then a
set built from own sources (three tiny videos made here: mp4, mkv, raw .yuv), the bad-source errors,
the up-front ffmpeg check and the progress lines. Then the pre-training corpus: its draws
(deterministic, extendable, rendering like the toy set's graphs, disjoint from the 12 test
contents by each of its three rules), build_once (cache, stale, failed and concurrent builds) and
a tiny corpus build (labels, cache hit, rebuild on any change, interruption, byte-identical).

Run from the repository root:  python -m pytest -q tests/test_toy.py
"""
import csv
import filecmp
import os
import pathlib
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import contents
import datasets
import toy
from video import probe, read_clip

COLUMNS = ["path", "mos", "source", "codec", "level", "split", "reference"]
CORPUS_COLUMNS = ["path", "mos", "source", "codec", "level", "split", "reference"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def level_means(rows, codec):
    """Mean label of each level 1..4 of one codec."""
    return [np.mean([float(r["mos"]) for r in rows
                     if r["codec"] == codec and r["level"] == str(level)])
            for level in (1, 2, 3, 4)]


def quiet_build(build, root, **kw):
    """(build(root, ...)'s path, its log lines) as a slow build logs: the first and the last."""
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(toy, "PROGRESS_EVERY", 1e9)
        return build(root, log=lines.append, **kw), lines


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    return quiet_build(toy.make_toy_dataset, tmp_path_factory.mktemp("toy") / "tiny", tiny=True)


@pytest.fixture(scope="module")
def tiny(tiny_build):
    return tiny_build[0]


@pytest.fixture(scope="module")
def held_out(tiny):
    return toy.make_held_out(tiny.parent, log=None)


def test_csv_columns_and_files(tiny, held_out):
    """toy.csv: every source, codec and level once; the held-out VVC set (make_held_out, built
    when asked, inside the toy set's folder): the test contents only, from the toy set's own
    references."""
    with open(tiny) as f:
        assert f.readline().strip().split(",") == COLUMNS
    rows, vvc = read(tiny), read(held_out)
    sources, codecs = toy.TOY_TINY["sources"], toy.TOY_TINY["codecs"]
    assert len(rows) == len(sources) * len(codecs) * 4 and "vvc" not in codecs
    assert {r["codec"] for r in rows} == set(codecs) and {r["codec"] for r in vvc} == {"vvc"}
    assert {r["source"] for r in vvc} == {r["source"] for r in rows
                                          if r["split"] == "test"} != set()
    for path, folder in [(r, tiny.parent) for r in rows] + [(r, held_out.parent) for r in vvc]:
        assert 0 <= float(path["mos"]) <= 100 and path["level"] in "1234"
        for p in (path["path"], path["reference"]):
            assert (folder / p).stat().st_size > 0, p
    assert {(held_out.parent / r["reference"]).resolve() for r in vvc} <= \
        {(tiny.parent / r["reference"]).resolve() for r in rows}  # the toy set's own references
    assert toy.make_held_out(tiny.parent, log=pytest.fail) == held_out  # built once
    with pytest.raises(ValueError, match="not a built toy set"):
        toy.make_held_out(tiny.parent / "elsewhere")
    with pytest.raises(ValueError, match="need codecs from vvc"):
        toy.make_held_out(tiny.parent, codecs=("h264",))


def test_labels_fall_as_level_worsens(tiny, held_out):
    rows = read(tiny) + read(held_out)
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
    for dirpath, dirs, files in os.walk(tiny.parent):
        dirs[:] = [d for d in dirs if d != toy.HELD_OUT]  # made by make_held_out, not by the build
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
    failing_encoder(monkeypatch,
                    lambda real, args, cwd: real(args[:-1] + ["-frames:v", "3", args[-1]], cwd))
    with pytest.raises(RuntimeError, match=r"/\w+_4\.\w+: decodes to 3 frames, expected 12"):
        toy.make_toy_dataset(tmp_path / "tiny", tiny=True)


def test_toy_official_split_is_the_split_column(tiny, held_out):
    items = datasets.load_csv(tiny)
    train, test = datasets.official_split(items, "toy")
    assert len(train) + len(test) == len(items) and test
    assert not {it["source"] for it in train} & {it["source"] for it in test}
    vvc = datasets.load_csv(held_out)
    # VVC: unseen contents only
    assert {it["source"] for it in vvc} == {it["source"] for it in test}
    with pytest.raises(ValueError, match="no 'split' column"):
        datasets.official_split([dict(path="a.mp4", mos=1.0, source="a")] * 4, "toy")


def test_progress_lines_do_not_flood(tiny_build):
    _, lines = tiny_build
    assert len(lines) == 2 and lines[0].startswith("toy set: building 4 contents"), lines
    assert re.fullmatch(r"toy set: 4/4 contents, \d+ s", lines[1]), lines


# -----------------------------------------------------------------------------
# own sources

OWN = dict(codecs=("h264", "av1"), frames=6, size=(96, 64))  # small and fast
# brightness 20 * frame number (+ texture, so that the encoders have something to lose):
# shows the cut
STEPS = "nullsrc=s=128x96:r=24,geq=lum='16+20*N+20*sin(X/3)*sin(Y/4)':cb=128:cr=128"


def video(path, graph, frames, *args):
    """A small source video rendered by the bundled ffmpeg; `args` choose the codec or raw
    format."""
    ok, err = toy.run_ffmpeg(["-f", "lavfi", "-i", graph, "-frames:v", str(frames), *args,
                              str(path)])
    assert ok, err
    return path


@pytest.fixture(scope="module")
def own_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    video(d / "mandel.mp4", "mandelbrot=s=160x90:r=24", 10, "-c:v", "libx264", "-crf", "10")  # 16:9
    video(d / "pattern.mkv", "testsrc2=s=96x120:r=30", 8, "-c:v", "ffv1")  # portrait
    # geometry in the name
    video(d / "steps_128x96.yuv", STEPS, 9, "-f", "rawvideo", "-pix_fmt", "yuv420p")
    (d / "notes.txt").write_text("not a video: skipped")
    return d


@pytest.fixture(scope="module")
def own(own_dir, tmp_path_factory):
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(toy, "PROGRESS_EVERY", 0)  # a line per finished content
        path = toy.make_toy_dataset(tmp_path_factory.mktemp("own") / "set", sources=own_dir,
                                    log=lines.append, **OWN)
    return path, lines


def test_own_sources_csv_and_files(own):
    path, _ = own
    with open(path) as f:
        assert f.readline().strip().split(",") == COLUMNS
    rows = read(path)
    assert len(rows) == 3 * 2 * 4 and not (path.parent / "toy_vvc.csv").exists()  # no VVC asked
    # stems, sorted
    assert sorted({r["source"] for r in rows}) == ["mandel", "pattern", "steps_128x96"]
    assert {(r["source"], r["codec"], r["level"]) for r in rows} == {
        (s, c, str(lvl)) for s in ("mandel", "pattern", "steps_128x96") for c in OWN["codecs"]
        for lvl in (1, 2, 3, 4)}
    assert {r["split"] for r in rows} == {"train"}  # every 4th source is test: none of 3
    for r in rows:
        assert (r["reference"] == f"ref/{r['source']}.mp4"
                and (path.parent / r["path"]).stat().st_size > 0)
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
    assert [re.fullmatch(r"toy set: (\d)/3 contents, \d+ s", line)[1]
            for line in lines[1:]] == ["1", "2", "3"]


def test_own_second_call_is_a_cache_hit(own, own_dir, monkeypatch):
    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("a cached toy set must not run ffmpeg")
    monkeypatch.setattr(toy.subprocess, "run", no_ffmpeg)
    assert toy.make_toy_dataset(own[0].parent, sources=own_dir, log=None, **OWN) == own[0]


def test_own_rebuild_after_a_source_changes(tmp_path):
    src = video(tmp_path / "clip.mp4", "testsrc2=s=96x64:r=24", 6)
    build = lambda: toy.make_toy_dataset(tmp_path / "set", sources=[src], log=None,
                                         **dict(OWN, codecs=("h264",)))
    before = (build().parent / "ref/clip.mp4").read_bytes()
    mtime = os.stat(src).st_mtime_ns
    video(src, "mandelbrot=s=96x64:r=24", 6)
    # written a second later, whatever the clock's tick
    os.utime(src, ns=(mtime + 10**9, mtime + 10**9))
    assert (build().parent / "ref/clip.mp4").read_bytes() != before


def test_own_bad_sources_are_one_error_before_encoding(own_dir, tmp_path, monkeypatch):
    short = video(tmp_path / "short.mp4", "testsrc2=s=96x64:r=24", 3)
    broken = tmp_path / "broken.mp4"
    # fixed bytes: random ones can probe as some other format (CI saw it once)
    broken.write_bytes(b"this is not a video\n" * 200)
    same_stem = tmp_path / "mandel.mkv"
    same_stem.write_bytes((own_dir / "pattern.mkv").read_bytes())
    mandel = own_dir / "mandel.mp4"
    encodes = []
    monkeypatch.setattr(toy, "run_ffmpeg",
                        lambda *args: encodes.append(args) or (False, "must not run"))
    sources = [own_dir / "pattern.mkv", short, broken, mandel,
               own_dir / ".." / own_dir.name / "mandel.mp4", same_stem]
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
    for codecs in (("mpeg2",), ("vvc",), ("h264", "h264")):  # VVC: make_held_out's only
        with pytest.raises(ValueError, match=r"codecs from h264, hevc, vp9, avs2, av1 \(each once; "
                                             r"vvc: make_held_out\)"):
            toy.make_toy_dataset(tmp_path / "set", sources=[tmp_path / "a.mp4"], codecs=codecs)


def test_cover_keeps_the_aspect_ratio_and_centres():
    ramp = np.broadcast_to(np.arange(160, dtype=np.uint8)[None, None, :, None], (1, 90, 160, 3))
    # scaled by 64/90 to 114 x 64, then 9 columns cut on each side
    wide = toy._cover(ramp, (96, 64))
    assert wide.shape == (1, 64, 96, 3)
    assert (abs(int(wide[0, 0, 0, 0]) - 9 * 90 / 64) <= 2
            and abs(int(wide[0, 0, -1, 0]) - (159 - 9 * 90 / 64)) <= 2)
    # 90 wide, 160 tall: scaled up, rows cut
    tall = toy._cover(ramp.transpose(0, 2, 1, 3), (96, 64))
    assert tall.shape == (1, 64, 96, 3) and abs(int(tall[0, 0, 0, 0]) - 80 + 32 * 90 / 96) <= 2


# -----------------------------------------------------------------------------
# the ffmpeg check


def test_ffmpeg_check_reads_the_graphs_and_passes_here():
    # commas inside quotes
    assert toy._filters_in(toy.TOY_SOURCES["geq_checker_warp"]) == {"nullsrc", "geq"}
    # [labels], two chains
    assert toy._filters_in(toy.TOY_SOURCES["noise_parallax"]) == {
        "color", "noise", "gblur", "eq", "crop", "blend", "colorchannelmixer"}
    # the bundled ffmpeg has it all
    toy._check_ffmpeg(tuple(toy.TOY_CODECS), list(toy.TOY_SOURCES.values()))


def test_missing_encoders_and_filters_are_one_error_before_building(tmp_path, monkeypatch):
    real = toy._ffmpeg_names
    monkeypatch.setattr(toy, "_ffmpeg_names",
                        lambda kind: real(kind) - {"libaom-av1", "libvmaf", "life"})
    with pytest.raises(RuntimeError, match=r"lacks encoders: libaom-av1; filters: libvmaf, life\."):
        toy.make_toy_dataset(tmp_path / "tiny", tiny=True)
    assert os.listdir(tmp_path) == []


# -----------------------------------------------------------------------------
# the pre-training corpus: its draws

SEEDED = {"noise": "all_seed", "life": "seed", "cellauto": "seed", "sierpinski": "seed",
          "perlin": "random_seed"}  # generators whose pictures a seed decides


def filters(graph):
    """(name, {option: value}) of each filter of a lavfi graph; quoted expressions kept whole."""
    parts = re.split(r"[,;](?=(?:[^']*'[^']*')*[^']*$)", graph)  # separators outside '...'
    out = []
    for part in parts:
        name, _, opts = re.sub(r"\[\w+\]", "", part).partition("=")
        pairs = re.split(r":(?=(?:[^']*'[^']*')*[^']*$)", opts) if opts else []
        out.append((name, dict(p.split("=", 1) for p in pairs if "=" in p)))
    return out


def seeds(graph):
    return [int(o[SEEDED[n]]) for n, o in filters(graph) if n in SEEDED and SEEDED[n] in o]


def test_draw_contents_is_deterministic_and_extends():
    first = contents.draw_contents(60)
    assert first == contents.draw_contents(60)
    # a prefix, not a redraw
    assert list(first.items())[:10] == list(contents.draw_contents(10).items())
    numbers = [re.fullmatch(r"([a-z]+)_(\d{4})", n)[2] for n in first]
    assert numbers == [f"{i:04d}" for i in range(60)]
    # every family, early
    assert {n.split("_")[0] for n in list(first)[:14]} == set(contents.FAMILIES)
    other = contents.draw_contents(60, seed=1)
    assert not set(other.values()) & set(first.values())


def render(graph, folder, frames=2):
    """Render `frames` frames of a graph as ffmpeg sees it: its frame header and grey pixels."""
    args = ["-f", "lavfi", "-i", graph, "-map", "0:v", "-frames:v", str(frames), "-f", "framemd5",
            "head.txt", "-map", "0:v", "-frames:v", str(frames), "-pix_fmt", "gray", "-f",
            "rawvideo", "grey.raw"]
    os.makedirs(folder)
    ok, err = toy.run_ffmpeg(args, folder)
    assert ok, (graph, err)
    head = (pathlib.Path(folder) / "head.txt").read_text()
    return head, np.fromfile(os.path.join(folder, "grey.raw"), np.uint8)


def test_drawn_graphs_render_like_the_toy_sets(tmp_path):
    graphs = contents.draw_contents(42)  # three rounds of the families
    toy._check_ffmpeg((), graphs.values())  # every filter named is in the bundled ffmpeg
    with ThreadPoolExecutor(2) as pool:
        out = list(pool.map(render, graphs.values(), [tmp_path / n for n in graphs]))
    for name, (head, grey) in zip(graphs, out):
        assert "#dimensions 0: 176x144" in head and "#tb 0: 1/24" in head, (name, head)
        assert grey.size == 2 * 176 * 144 and grey.std() > 1, (name, grey.std())  # not a flat frame
    assert len({grey.tobytes() for _, grey in out}) == len(out)  # no two alike


def test_corpus_holds_no_toy_graph(monkeypatch):
    drawn = list(contents.draw_contents(300).values())
    assert not set(drawn) & set(toy.TOY_SOURCES.values())
    # a training content's graph, then another
    copies = iter([toy.TOY_SOURCES["noise_boil"], "color=gray:s=176x144:r=24"])
    far = dict(motion="boil", sigma=2.5, contrast=5, speed=0)  # not near any test content
    monkeypatch.setitem(contents.FAMILIES, "noise", lambda rng: (far, next(copies)))
    # the copy refused
    assert contents.draw_contents(1) == {"noise_0000": "color=gray:s=176x144:r=24"}


def test_corpus_seeds_are_not_the_toy_sets():
    written = [s for g in toy.TOY_SOURCES.values() for s in seeds(g)]
    assert len(written) == sum(g.count("seed=") for g in toy.TOY_SOURCES.values())  # all 48 read
    toy_seeds = set(written)
    assert max(toy_seeds) < contents.CORPUS_SEEDS[0]
    for name, graph in contents.draw_contents(300).items():
        for n, o in filters(graph):  # every seeded generator has its seed written out
            assert n not in SEEDED or SEEDED[n] in o, (name, n)
        assert all(contents.CORPUS_SEEDS[0] <= s < contents.CORPUS_SEEDS[1]
                   for s in seeds(graph)), name
        assert not set(seeds(graph)) & toy_seeds, name


def near_version(ref, nudge):
    """A key with every parameter of a TEST_CONTENTS entry at its radius' edge (times nudge)."""
    key = {}
    for k, v in ref.items():
        if isinstance(v, tuple):
            key[k] = v[0] + (v[1] - v[0]) * 0.9
        elif isinstance(v, (set, frozenset)):
            key[k] = sorted(v)[-1]
        elif isinstance(v, str) or v == 0:
            key[k] = v
        else:
            key[k] = v * nudge
    return key


def test_the_table_is_the_twelve_test_contents():
    test = {n for i, n in enumerate(toy.TOY_SOURCES) if i % 4 == 3}
    assert set(contents.TEST_CONTENTS) == test and len(test) == 12
    generator = dict(mandel="mandelbrot=", life="life=", cellauto="cellauto=", noise="noise=",
                     perlin="perlin=", sierp="sierpinski=", blend="blend=")
    for name, (family, _) in contents.TEST_CONTENTS.items():
        assert generator[family] in toy.TOY_SOURCES[name], name


def test_variants_of_test_contents_are_refused_and_redrawn(monkeypatch):
    for name, (family, ref) in contents.TEST_CONTENTS.items():
        for nudge in (1.9, 1 / 1.9):  # just inside the factor NEAR = 2, above and below
            assert contents._variant_of(family, near_version(ref, nudge)) == name, (name, nudge)
        for k, v in ref.items():  # any one parameter outside the radius: not that content
            if isinstance(v, (int, float)) and v != 0:
                assert contents._variant_of(family,
                                            dict(near_version(ref, 1), **{k: v * 2.1})) != name
        assert contents._variant_of("gradient", near_version(ref, 1)) is None  # another family
    mirrored = dict(x=-1.25, y=-0.21, scale=0.19)  # in the view of -1.25-0.02i, the mirror image
    assert contents._variant_of("mandel", mirrored) == "mandel_morph"
    rotated = dict(motion="rotate", sigma=8, contrast=12, speed=0.4)
    as_layer = dict(layers="geq + noise", parts=[("geq", dict(kind="waves")), ("noise", rotated)])
    assert contents._variant_of("blend", as_layer) == "noise_coarse_rot"  # a blend over a variant
    # the draw itself: a variant of noise_coarse_rot (new seed, hue turned, flipped) is redrawn
    draws = iter([(dict(rotated, sigma=9.5, speed=0.7), "variant"),
                  (dict(rotated, sigma=20), "far")])
    monkeypatch.setitem(contents.FAMILIES, "noise", lambda rng: next(draws))
    assert contents.draw_contents(1) == {"noise_0000": "far"}


def test_real_draws_reach_test_contents_and_are_refused():
    refused = 0
    for i in range(300):
        family, key, graph, r = contents._draw(i, 0)
        assert contents._variant_of(family, key) is None, (i, key)
        refused += r
    assert refused > 0  # the families do draw near the test contents: the rule is at work


def test_elementary_rules_up_to_mirror_and_negation():
    # rule 30, mirrored, negated
    assert {contents._ca_class(r) for r in (30, 86, 135, 149)} == {"30"}
    assert (contents._ca_class(183) == contents._ca_class(18) == "18"
            and contents._ca_class(110) != "30")
    assert contents._ca_class(124) == contents._ca_class(137) == contents._ca_class(193) == "110"


@pytest.mark.parametrize("n", [0, -3, 2.5, "10", True, None])
def test_draw_contents_bad_arguments(n):
    with pytest.raises(ValueError, match=r"corpus: n must be an integer >= 1, got"):
        contents.draw_contents(n)
    with pytest.raises(ValueError, match=r"corpus: seed must be an integer >= 0, got -1"):
        contents.draw_contents(3, seed=-1)


def test_make_corpus_bad_arguments_before_any_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(toy, "run_ffmpeg", lambda *a, **k: pytest.fail("must not run ffmpeg"))
    for bad in (dict(codecs=("vvc",)), dict(codecs=("mpeg2",)), dict(codecs=()),
                dict(codecs=("h264", "h264")), dict(frames=1), dict(size=(95, 64)),
                dict(per_content=0), dict(codecs=("h264", "av1"), per_content=3)):
        with pytest.raises(ValueError, match="corpus: need codecs from h264, hevc, vp9, avs2, av1"):
            toy.make_corpus(tmp_path / "c", **dict(dict(contents=2), **bad))
    with pytest.raises(ValueError, match="corpus: n must be"):
        toy.make_corpus(tmp_path / "c", contents=0)
    assert os.listdir(tmp_path) == []


# -----------------------------------------------------------------------------
# build_once


def test_build_once_builds_once_and_replaces_another_key(tmp_path):
    calls = []

    def build(text):
        def fill(tmp):
            assert isinstance(tmp, pathlib.Path) and tmp.parent == tmp_path
            assert not any(tmp.iterdir())
            calls.append(text)
            (tmp / "out.txt").write_text(text)
        return fill
    root = tmp_path / "thing"
    assert toy.build_once(str(root), "k1", build("one")) == root  # a str root: a Path back
    assert toy.build_once(root, "k1", build("two")) == root and calls == ["one"]
    assert (root / ".complete").read_text() == "k1" and (root / "out.txt").read_text() == "one"
    toy.build_once(root, "k2", build("three"))
    assert calls == ["one", "three"] and (root / "out.txt").read_text() == "three"
    assert (root / ".complete").read_text() == "k2" and os.listdir(tmp_path) == ["thing"]
    with pytest.raises(TypeError, match="key must be a str"):  # before anything is built
        toy.build_once(root, 123, lambda tmp: pytest.fail("built with a bad key"))


def test_build_once_failure_leaves_root_as_it_was(tmp_path):
    root = tmp_path / "thing"
    toy.build_once(root, "k1", lambda tmp: (tmp / "out.txt").write_text("old"))

    def broken(tmp):
        (tmp / "out.txt").write_text("half")
        raise KeyboardInterrupt  # an interrupt, not only an error
    with pytest.raises(KeyboardInterrupt):
        toy.build_once(root, "k2", broken)
    assert (root / "out.txt").read_text() == "old" and (root / ".complete").read_text() == "k1"
    assert os.listdir(tmp_path) == ["thing"]  # no temporary folder left
    with pytest.raises(KeyboardInterrupt):
        toy.build_once(tmp_path / "new", "k1", broken)
    assert os.listdir(tmp_path) == ["thing"]  # no half-built folder under the new name


def test_build_once_concurrent_builders(tmp_path, monkeypatch):
    root = tmp_path / "thing"

    def slow(text, other=None):  # `other` is another process finishing while this one builds
        def fill(tmp):
            (tmp / "out.txt").write_text(text)
            if other:
                other()
        return fill
    # the same key finished first by another builder: it stands, this copy is discarded
    toy.build_once(root, "k", slow("mine", lambda: toy.build_once(root, "k", slow("theirs"))))
    assert (root / "out.txt").read_text() == "theirs" and os.listdir(tmp_path) == ["thing"]
    # another key finished first: stale for this one, so replaced
    toy.build_once(root, "k2", slow("mine", lambda: toy.build_once(root, "k3", slow("theirs"))))
    assert (root / "out.txt").read_text() == "mine" and (root / ".complete").read_text() == "k2"
    # the other builder's rename lands between this one's last look and its own rename
    real, landed = os.replace, []

    def replace(src, dst):
        if pathlib.Path(dst) == root and not landed:
            landed.append(1)
            toy.build_once(root, "k4", slow("theirs"))
        return real(src, dst)
    monkeypatch.setattr(toy.os, "replace", replace)
    toy.build_once(root, "k4", slow("mine"))
    assert (root / "out.txt").read_text() == "theirs" and os.listdir(tmp_path) == ["thing"]


# -----------------------------------------------------------------------------
# a tiny corpus build

TINY_CORPUS = dict(contents=4, codecs=("h264",), frames=6)  # about a second


@pytest.fixture(scope="module")
def corpus_build(tmp_path_factory):
    return quiet_build(toy.make_corpus, tmp_path_factory.mktemp("corpus") / "c", **TINY_CORPUS)


@pytest.fixture(scope="module")
def corpus(corpus_build):
    return corpus_build[0]


def test_corpus_csv_and_files(corpus):
    with open(corpus) as f:
        assert f.readline().strip().split(",") == CORPUS_COLUMNS
    rows = read(corpus)
    names = list(contents.draw_contents(4))
    assert [(r["source"], r["level"]) for r in rows] == [(n, str(lvl)) for n in names
                                                         for lvl in range(1, 5)]
    assert {r["codec"] for r in rows} == {"h264"} and not (corpus.parent / "toy_vvc.csv").exists()
    for r in rows:
        assert r["path"] == f"h264/{r['source']}_{r['level']}.mp4" and 0 <= float(r["mos"]) <= 100
        assert r["reference"] == f"ref/{r['source']}.mp4" and r["split"] == "train"
        assert (corpus.parent / r["path"]).stat().st_size
    for name in names:
        info = probe(corpus.parent / f"ref/{name}.mp4")
        assert (info["frames"], info["width"], info["height"]) == (6, 176, 144), name
    assert re.fullmatch(r"[0-9a-f]{64}", (corpus.parent / toy.MARKER).read_text())
    assert sorted(os.listdir(corpus.parent)) == [".complete", "corpus.csv", "h264", "ref"]


def test_corpus_labels_fall_as_level_worsens(corpus):
    means = level_means(read(corpus), "h264")
    assert means == sorted(means) and len(set(means)) == 4, means


def test_corpus_progress_lines(corpus_build):
    path, lines = corpus_build
    assert lines[0] == f"corpus: building 4 contents x 4 levels of h264 in {path.parent}", lines
    assert len(lines) == 2 and re.fullmatch(r"corpus: 4/4 contents, \d+ s", lines[1]), lines


def test_corpus_second_call_is_a_cache_hit(corpus, monkeypatch):
    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("a cached corpus must not run ffmpeg")
    monkeypatch.setattr(toy.subprocess, "run", no_ffmpeg)
    start = time.perf_counter()
    assert toy.make_corpus(corpus.parent, log=None, **TINY_CORPUS) == corpus
    assert time.perf_counter() - start < 0.5


def test_corpus_codecs_in_turn(tmp_path):
    """per_content=k: content i is encoded by codecs i*k .. i*k+k-1 (modulo), 4 levels each."""
    path = toy.make_corpus(tmp_path / "c", contents=3, codecs=("h264", "av1", "hevc"),
                           per_content=2, frames=4, log=None)
    rows = read(path)
    names = list(contents.draw_contents(3))
    got = {n: sorted({r["codec"] for r in rows if r["source"] == n}) for n in names}
    assert got == {names[0]: ["av1", "h264"], names[1]: ["h264", "hevc"], names[2]: ["av1", "hevc"]}
    assert len(rows) == 3 * 2 * 4


def test_corpus_any_parameter_change_rebuilds(corpus, tmp_path, monkeypatch):
    changes = [dict(), dict(contents=5), dict(seed=1), dict(codecs=("av1",)),
               dict(codecs=("h264", "av1")), dict(codecs=("h264", "av1"), per_content=1),
               dict(frames=7), dict(size=(96, 64))]
    keys = []
    with monkeypatch.context() as mp:
        mp.setattr(toy, "build_once", lambda root, key, build: keys.append(key))
        for change in changes:
            toy.make_corpus(tmp_path / "c", log=None, **dict(TINY_CORPUS, **change))
    assert keys[0] == (corpus.parent / toy.MARKER).read_text()  # the marker holds the key
    assert len(set(keys)) == len(changes), keys
    # and a different key does rebuild: a copy of the corpus, then fewer frames
    shutil.copytree(corpus.parent, tmp_path / "copy")
    again = toy.make_corpus(tmp_path / "copy", log=None, **dict(TINY_CORPUS, frames=5))
    assert probe(again.parent / read(again)[0]["reference"])["frames"] == 5
    assert (again.parent / toy.MARKER).read_text() != keys[0]


def test_corpus_interrupted_build_leaves_nothing(corpus, tmp_path, monkeypatch):
    real, calls = toy._build_source, []

    def third_fails(*args):
        calls.append(args[0])
        if len(calls) % 3 == 0:
            raise RuntimeError("injected failure mid-build")
        return real(*args)
    monkeypatch.setattr(toy, "_build_source", third_fails)
    with pytest.raises(RuntimeError, match="injected failure mid-build"):
        toy.make_corpus(tmp_path / "c", log=None, workers=1, **TINY_CORPUS)
    assert len(calls) >= 3 and os.listdir(tmp_path) == []  # no corpus, no temporary folder
    # a rebuild (another frame count) interrupted over a finished corpus leaves that one whole
    shutil.copytree(corpus.parent, tmp_path / "old")
    with pytest.raises(RuntimeError, match="injected failure mid-build"):
        toy.make_corpus(tmp_path / "old", log=None, workers=1, **dict(TINY_CORPUS, frames=5))
    assert os.listdir(tmp_path) == ["old"]
    for d, _, files in os.walk(corpus.parent):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), corpus.parent)
            assert filecmp.cmp(corpus.parent / rel, tmp_path / "old" / rel, shallow=False), rel


def test_corpus_rebuild_is_byte_identical(corpus, tmp_path):
    again = toy.make_corpus(tmp_path / "c", log=None, **TINY_CORPUS)
    names = sorted(os.path.relpath(os.path.join(d, f), corpus.parent)
                   for d, _, files in os.walk(corpus.parent) for f in files)
    assert names == sorted(os.path.relpath(os.path.join(d, f), again.parent)
                           for d, _, files in os.walk(again.parent) for f in files)
    for rel in names:
        assert filecmp.cmp(corpus.parent / rel, again.parent / rel, shallow=False), rel

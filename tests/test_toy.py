"""Tests for toy.py on its tiny variant: columns and files, labels falling with the level, cache hit,
byte-identical rebuild, and failed, empty or short encodes that leave no complete set.

Run from the repository root:  python -m pytest -q tests/test_toy.py
"""
import csv
import filecmp
import os
import time

import pytest

import data
import datasets
import toy

COLUMNS = ["path", "mos", "source", "codec", "level", "split", "reference"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return toy.make_toy_dataset(tmp_path_factory.mktemp("toy") / "tiny", tiny=True)


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
        means = [sum(float(r["mos"]) for r in rows if r["codec"] == codec and r["level"] == str(level))
                 / sum(r["codec"] == codec and r["level"] == str(level) for r in rows) for level in (1, 2, 3, 4)]
        assert means == sorted(means) and len(set(means)) == 4, (codec, means)


def test_second_call_is_a_cache_hit(tiny, monkeypatch):
    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("a cached toy set must not run ffmpeg")
    monkeypatch.setattr(data.subprocess, "run", no_ffmpeg)
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

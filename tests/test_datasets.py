"""Tests for datasets.py: CSV lists, the Waterloo IVC 4K and BVI-HD indexes, bad label files,
content splits and label ranges. Expected items are written out from the datasets' published
layouts (docs/reference.md, section 4), not derived with the code under test. Files are
stand-ins (a few bytes): indexes never decode.

Run from the repository root:  python -m pytest -q tests/test_datasets.py
"""
import os

import pytest

import datasets


def write_csv(path, text):
    path.write_text(text)
    return path


def test_load_csv(tmp_path):
    sub = tmp_path / "clips"
    sub.mkdir()
    (sub / "a.mp4").write_bytes(b"x")
    other = tmp_path / "elsewhere" / "pattern.mkv"
    other.parent.mkdir()
    other.write_bytes(b"x")
    text = f"path,mos,codec\nclips/a.mp4,42.5,h264\n{other},7,\n"  # relative, absolute
    items = datasets.load_csv(write_csv(tmp_path / "list.csv", text))
    assert items == [dict(path=str(sub / "a.mp4"), mos=42.5, source="a", codec="h264"),
                     dict(path=str(other), mos=7.0, source="pattern", codec="")]
    with_bom = "\ufeffmos,source,path\n1,s1,clips/a.mp4\n"  # as a spreadsheet may save it
    items = datasets.load_csv(write_csv(tmp_path / "src.csv", with_bom))
    assert items == [dict(path=str(sub / "a.mp4"), mos=1.0, source="s1")]


def test_load_csv_skips_blank_rows_and_trims_sources(tmp_path):
    """A list saved by a spreadsheet: blank rows (`,,`, spaces) between and after the videos are
    skipped, a source typed with spaces around it is that source."""
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x")
    text = ("path,mos,source\r\na.mp4,1, Bookcase \r\n,,\r\n   \r\nb.mp4,2,Bookcase\r\n"
            ",,,\r\n,,\r\n")
    items = datasets.load_csv(write_csv(tmp_path / "sheet.csv", text))
    assert items == [dict(path=str(tmp_path / "a.mp4"), mos=1.0, source="Bookcase"),
                     dict(path=str(tmp_path / "b.mp4"), mos=2.0, source="Bookcase")]


def test_unlabeled_list_refuses_a_test_source_in_any_case_or_spacing(tmp_path):
    for name in ("test.mp4", "other.mp4"):
        (tmp_path / name).write_bytes(b"x")
    test_items = [dict(path=str(tmp_path / "test.mp4"), mos=1.0, source="Bookcase")]
    for source in (" bookcase", "BOOKCASE "):
        listed = write_csv(tmp_path / "unrated.csv", f"path,source\nother.mp4,{source}\n")
        with pytest.raises(ValueError, match="other.mp4 .*source of the test split"):
            datasets.load_unlabeled(listed, test_items)
    listed = write_csv(tmp_path / "unrated.csv", "path,source\nother.mp4,Bookshelf\n")
    assert [it["source"] for it in datasets.load_unlabeled(listed, test_items)] == ["Bookshelf"]


def test_test_labels_leave_out_a_file_that_trains_under_another_source(tmp_path):
    """--test-labels: a test video whose file is in the training list (pseudo-labelled there, its
    source the file stem) is not evaluated, whatever source the test list gives it; nor one of a
    content that trains, its name in another case."""
    import argparse

    names = [f"v{i}.mp4" for i in range(7)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    train = "path,mos,source,split\n" + "".join(f"{n},{i},{n[:2]},train\n"
                                                for i, n in enumerate(names[:2]))
    test = "path,mos,source\n" + "".join(f"{n},{i},C{i}\n" for i, n in enumerate(names[:-1]))
    test += f"{names[-1]},5,V1\n"  # a content that trains (v1), in another case
    labels, tests = write_csv(tmp_path / "train.csv", train), write_csv(tmp_path / "t.csv", test)
    args = argparse.Namespace(data="csv", labels=str(labels), split="official",
                              test_labels=str(tests))
    train_items, test_items, _ = datasets.read_split(args)
    assert [it["source"] for it in train_items] == ["v0", "v1"]
    assert [os.path.basename(it["path"]) for it in test_items] == names[2:-1]


@pytest.mark.parametrize("text,error,match", [
    ("file,mos\nclips/a.mp4,1\n", ValueError, r"bad.csv, line 1: .*lacks \['path'\]"),
    ("path,score\nclips/a.mp4,1\n", ValueError, r"bad.csv, line 1: .*lacks \['mos'\]"),
    ("path,mos\nclips/a.mp4,nan\n", ValueError,
     r"bad.csv, line 2: score 'nan' is not a finite number"),
    ("path,mos\nclips/a.mp4,good\n", ValueError, r"bad.csv, line 2: score 'good'"),
    ("path,mos\nclips/a.mp4,1\n./clips/a.mp4,2\n", ValueError,
     r"bad.csv, line 3: duplicated path .* line 2"),
    ("path,mos\nclips/a.mp4,1\n,2\n", ValueError, r"bad.csv, line 3: empty path"),
    ("path,mos\nclips/a.mp4,1,extra\n", ValueError, r"bad.csv, line 2: more fields than"),
    ("path,mos\n", ValueError, r"bad.csv: no videos listed"),
    ("path,mos\nclips/a.mp4,1\nclips/gone.mp4,2\n", FileNotFoundError,
     r"bad.csv, line 3: .*gone.mp4 does not exist"),
])
def test_load_csv_errors(tmp_path, text, error, match):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"x")
    with pytest.raises(error, match=match):
        datasets.load_csv(write_csv(tmp_path / "bad.csv", text))


# The dataset's three frame sizes and how the shared CSV writes them (docs/reference.md, section 4)
WATERLOO_HEIGHT = {"960x540": "540p", "1920x1080": "1080p", "3840x2160": "2160p"}


@pytest.fixture
def waterloo(tmp_path):
    """A stand-in Waterloo IVC 4K tree (2 encoders x 6 videos x 3 resolutions x 2 levels) and its
    rows (encoder, video, resolution, level, MOS), MOS with two decimals as in the shared CSV."""
    rows = []
    for codec in ("H264", "VP9"):
        for video in range(1, 7):
            for res in WATERLOO_HEIGHT:
                for level in (1, 2):
                    path = tmp_path / codec / f"{video:02d}" / f"{res}_{level}.mp4"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"x")
                    mos = f"{10 * level + video + len(res) / 100:.2f}"
                    rows.append((codec, video, res, level, mos))
    return tmp_path, rows


def expected_items(root, rows):
    """The items the layout `<Encoder>/<NN>/<W>x<H>_<level>.mp4` and the rows call for."""
    return [dict(path=str(root / codec / f"{video:02d}" / f"{res}_{level}.mp4"), mos=float(mos),
                 source=str(video), codec=codec, level=str(level), resolution=res)
            for codec, video, res, level, mos in rows]


def shared_csv(rows, columns=("Encoder", "Video Number", "Resolution", "Distortion Level", "MOS",
                              "path")):
    """The widely shared CSV of those rows: 540p-style resolutions, paths under a foreign
    prefix."""
    lines = [",".join(columns)]
    for codec, video, res, level, mos in rows:
        values = {"encoder": codec, "videonumber": str(video), "resolution": WATERLOO_HEIGHT[res],
                  "distortionlevel": str(level), "mos": mos, "notes": "seen twice",
                  "path": f"/home/someone/Waterloo IVC 4K/{codec}/{video:02d}/{res}_{level}.mp4"}
        lines.append(",".join(values["".join(c.lower().split())] for c in columns))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("video_format", ["{}", "{:02d}"])  # 1 as written; 01 tolerated
def test_waterloo4k_index(waterloo, video_format):
    root, rows = waterloo
    lines = [f"{c} {video_format.format(v)} {r} {l} {m}\n" for c, v, r, l, m in rows]
    (root / "scores.txt").write_text("".join(lines))
    items = datasets.waterloo4k_index(root)  # scores.txt is the default
    assert len(items) == 72
    assert items[0] == dict(path=str(root / "H264" / "01" / "960x540_1.mp4"), mos=11.07,
                            source="1", codec="H264", level="1", resolution="960x540")
    assert items == expected_items(root, rows)
    train, test = datasets.official_split(items, "waterloo4k")
    assert {it["source"] for it in test} == {"1", "2", "3", "4"}
    assert {it["source"] for it in train} == {"5", "6"}
    assert datasets.label_range("waterloo4k", items) == (0.0, 100.0)
    (root / "bad.txt").write_text("H264 1 960x540 1 50\nH264 9 960x540 1 50\n")
    with pytest.raises(FileNotFoundError, match=r"bad.txt, line 2: .*09.960x540_1.mp4"):
        datasets.waterloo4k_index(root, root / "bad.txt")


@pytest.mark.parametrize("columns", [
    ("Encoder", "Video Number", "Resolution", "Distortion Level", "MOS", "path"),  # as shared
    ("MOS", "Notes", "path", "Video Number", "encoder", "Distortion Level", "Resolution"),
    (" video number", "DISTORTION LEVEL", "Encoder", "resolution", "Mos "),  # no path column
])
def test_waterloo4k_shared_csv(waterloo, columns):
    root, rows = waterloo
    (root / "waterloo.csv").write_text(shared_csv(rows, columns))
    assert datasets.waterloo4k_index(root, root / "waterloo.csv") == expected_items(root, rows)


def test_waterloo4k_csv_paths_from_windows_and_encoder_folders_in_any_case(waterloo):
    root, rows = waterloo
    (root / "H264").rename(root / "h264")
    text = shared_csv(rows[:2]).replace("/home/someone/Waterloo IVC 4K/", "D:\\Waterloo4K\\")
    (root / "waterloo.csv").write_text(text.replace("/", "\\"))
    items = datasets.waterloo4k_index(root, root / "waterloo.csv")
    assert [it["path"] for it in items] == [str(root / "h264" / "01" / f"960x540_{level}.mp4")
                                            for level in (1, 2)]
    assert items[0]["codec"] == "H264"


@pytest.mark.parametrize("line,error,match", [
    ("H264,1,540p,1,11.07", ValueError, r"line 3: 5 fields, the header has 6"),
    ("H264,1,540p,one,11.07,x/H264/01/960x540_1.mp4", ValueError,
     r"line 3: .*integers, got '1', 'one'"),
    ("H264,1,540p,2,,x/H264/01/960x540_2.mp4", ValueError,
     r"line 3: score '' is not a finite number"),
    ("H264,1,540p,1,11.07,x/H264/01/960x540_2.mp4", ValueError,
     r"line 3: path 'x/H264/01/960x540_2.mp4' does not end in H264/01/960x540_1.mp4"),
    ("H264,1,540p,1,11.07,H264/01/960x540_1.mp4", ValueError,
     r"line 3: H264/01/960x540_1.mp4 again .*line 2"),
    ("H264,7,540p,1,11.07,x/H264/07/960x540_1.mp4", FileNotFoundError,
     r"line 3: .*07.960x540_1.mp4 does not exist"),
])
def test_waterloo4k_csv_bad_line(waterloo, line, error, match):
    root, rows = waterloo
    (root / "bad.csv").write_text(shared_csv(rows[:1]) + line + "\n")
    with pytest.raises(error, match=r"bad.csv, " + match):
        datasets.waterloo4k_index(root, root / "bad.csv")


@pytest.mark.parametrize("text,match", [
    ("Encoder,Video,Resolution,Distortion Level,MOS,path\n",
     r", line 1: .*lacks \['videonumber'\]"),
    ("H264 1 960x540 1\n", r", line 1: expected encoder, video, resolution, level, MOS"),
    ("", r": no videos listed"),
])
def test_waterloo4k_bad_label_file(waterloo, text, match):
    root, _ = waterloo
    (root / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=r"bad.csv" + match):
        datasets.waterloo4k_index(root, root / "bad.csv")


def test_bvihd_index(tmp_path):
    names = ["BallUnderWater_QP27", "Bookcase_QP37_synth", "Flowers_QP32", "Water_QP22"]
    (tmp_path / "seqs").mkdir()
    for name in names:
        (tmp_path / "seqs" / f"{name}.yuv").write_bytes(b"")
    rows = "".join(f"{name}  {10 + i}\n" for i, name in enumerate(names))
    (tmp_path / "dmos.txt").write_text("video DMOS\n# comment\n" + rows)
    items = datasets.bvihd_index(tmp_path, tmp_path / "dmos.txt", bit_depth=10, fps=60)
    assert [it["source"] for it in items] == ["BallUnderWater", "Bookcase", "Flowers", "Water"]
    assert [it["mos"] for it in items] == [90.0, 89.0, 88.0, 87.0]  # 100 - DMOS: higher is better
    assert items[0] == dict(path=str(tmp_path / "seqs" / "BallUnderWater_QP27.yuv"), mos=90.0,
                            source="BallUnderWater", dmos="10", width="1920", height="1080",
                            bit_depth="10", fps="60")
    train, test = datasets.official_split(items, "bvihd")
    assert [it["source"] for it in test] == ["BallUnderWater", "Bookcase"]
    assert [it["source"] for it in train] == ["Flowers", "Water"]
    # the header names the DMOS column: 12.5, not the last number on the line (3.1)
    (tmp_path / "dmos.csv").write_text("name,DMOS,std\nFlowers_QP32.yuv,12.5,3.1\n")
    [item] = datasets.bvihd_index(tmp_path, tmp_path / "dmos.csv", bit_depth=8, fps=60)
    assert item["mos"] == 87.5
    (tmp_path / "dmos.csv").write_text("name,dmos\nFlowers_QP32.yuv,12.5\nGone_QP1,3\n")
    with pytest.raises(FileNotFoundError, match=r"dmos.csv, line 3: no file Gone_QP1.yuv"):
        datasets.bvihd_index(tmp_path, tmp_path / "dmos.csv", bit_depth=8, fps=60)
    (tmp_path / "dmos.csv").write_text("name,dmos\nFlowers_QP32.yuv,12.5\nWater_QP22.yuv\n")
    with pytest.raises(ValueError, match=r"dmos.csv, line 3: expected a file name and a DMOS"):
        datasets.bvihd_index(tmp_path, tmp_path / "dmos.csv", bit_depth=8, fps=60)


def test_official_split_matches_sources_in_any_case():
    items = [dict(path=f"{s}.yuv", mos=1.0, source=s) for s in ("music", "BOOKCASE", "Flowers")]
    train, test = datasets.official_split(items, "bvihd")
    assert [it["source"] for it in test] == ["music", "BOOKCASE"]
    assert [it["source"] for it in train] == ["Flowers"]


@pytest.mark.parametrize("dataset", ["toy", "csv"])
def test_toy_and_csv_split_is_their_split_column(dataset):
    items = [dict(path=f"{i}.mp4", mos=1.0, source=f"s{i // 2}", split=s)
             for i, s in enumerate(["train", "train", "test", "test", "train", "train"])]
    train, test = datasets.official_split(items, dataset)
    assert [it["path"] for it in test] == ["2.mp4", "3.mp4"]
    assert [it["path"] for it in train] == ["0.mp4", "1.mp4", "4.mp4", "5.mp4"]
    with pytest.raises(ValueError, match="1 items have no 'split' column"):
        datasets.official_split(items + [dict(path="x.mp4", mos=1.0, source="x")], dataset)
    everything = [dict(it, split="train") for it in items]  # a pre-training corpus: all train
    assert datasets.official_split(everything, dataset) == (everything, [])


def test_splits_share_no_source():
    # interleaved: the four encodes of each source are not next to each other
    items = [dict(path=f"{s}_{q}.mp4", mos=float(q), source=f"s{s}")
             for q in range(4) for s in range(10)]
    train, test = datasets.split_by_source(items, 0.3, seed=1)
    assert len(test) == 12 and len({it["source"] for it in test}) == 3  # round(10 x 0.3) sources
    assert len(train) == 28 and not {it["source"] for it in train} & {it["source"] for it in test}
    for part in (train, test):  # items keep their order
        positions = [items.index(it) for it in part]
        assert positions == sorted(positions)
    assert (train, test) == datasets.split_by_source(items, 0.3, seed=1)  # seeded
    assert test != datasets.split_by_source(items, 0.3, seed=2)[1]
    # at least one source on each side, however small or large the fraction
    assert len({it["source"] for it in datasets.split_by_source(items, 0.01)[1]}) == 1
    assert len({it["source"] for it in datasets.split_by_source(items, 0.99)[0]}) == 1
    with pytest.raises(ValueError, match="at least 2 sources"):
        datasets.split_by_source([it for it in items if it["source"] == "s0"])
    for fraction in (0, 1, 1.5):
        with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
            datasets.split_by_source(items, fraction)
    with pytest.raises(ValueError, match="no 'split' column.*--split random"):
        datasets.official_split(items, "csv")
    with pytest.raises(ValueError, match="no official split"):
        datasets.official_split(items, "kadid")
    with pytest.raises(ValueError, match="0 test"):
        datasets.official_split(items, "bvihd")


def test_label_range():
    items = [dict(path=f"{i}.mp4", mos=m, source=str(i)) for i, m in enumerate([3.0, -1.0, 7.5])]
    assert datasets.label_range("csv", items) == (-1.0, 7.5)  # from the training items
    for name in ("bvihd", "waterloo4k", "toy"):  # nominal, whatever the items say
        assert datasets.label_range(name, items) == (0.0, 100.0)
    with pytest.raises(ValueError, match="cannot infer a label range for 'csv' from 2 items"):
        datasets.label_range("csv", items[:1] * 2)
    with pytest.raises(ValueError, match="from 0 items"):
        datasets.label_range("csv")

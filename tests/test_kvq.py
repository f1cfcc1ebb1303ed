"""Tests of the KVQ pieces: datasets.kvq_index and read_rank_pairs, metrics.kvq_score, predict.py
--kvq, and the authors' released KVQ weight's layout scored as their code scores it.

    python -m pytest -q tests/test_kvq.py       # about 25 s on 2 cores

The parity fixture, tests/fixtures/kvq_authors.json, holds numbers only: the output of the
authors' InternVQA_KVQ/models/internvideo2.py (github.com/lixinustc/KVQE-Challenge-CVPR-NTIRE2025)
for internvideo2_base_patch14_224 with tubelet 2, after their run_KVQ_test.py's loading of a file
with 8 temporal positions, on weights made by authors_state() below, and the key names and
shapes of their model. No code of theirs is in this repository; the fixture's "about" says how it
was made.
"""
import contextlib
import csv
import json
import math
import os
import shutil
import subprocess
import sys
from collections import OrderedDict
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

import data
import datasets
import metrics
import predict
import runtime
import video
from model import CONFIGS, VideoViT
from test_train import predict_here

# -----------------------------------------------------------------------------------------------
# The authors' KVQ file, made from a seed


def authors_shapes():
    """{key: shape} of the authors' KVQ weight: base, tubelet 2, (8, 16, 16) positions."""
    cfg = replace(CONFIGS["base"], tubelet_size=2, num_frames=16)
    with torch.device("meta"):
        return {k: v.shape for k, v in VideoViT(cfg).state_dict().items()}


def authors_state(seed):
    """The state dict of a file like the authors' mp_rank_00_model_states.pt (their key names):
    internvideo2_base_patch14_224 with tubelet 2 and a position table of 8 temporal positions (the
    count their loader assumes), every tensor in sorted key order from one float64 generator:
    norm weights 1 + N(0, 0.2^2), pos_embed and cls_token N(0, 0.5^2), other vectors N(0, 0.1^2),
    matrices N(0, 1 / fan_in); stored in bf16, as DeepSpeed's bf16 engine saves its module."""
    shapes = authors_shapes()
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name in sorted(shapes):
        x = torch.randn(shapes[name], generator=g, dtype=torch.float64)
        if name in ("pos_embed", "cls_token"):
            x = 0.5 * x
        elif len(shapes[name]) == 1 and "norm" in name and name.endswith("weight"):
            x = 1 + 0.2 * x
        elif len(shapes[name]) == 1:
            x = 0.1 * x
        else:
            x = x / math.sqrt(math.prod(shapes[name][1:]))
        sd[name] = x.to(torch.bfloat16)
    return sd


FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "kvq_authors.json")
with open(FIXTURE) as _f:
    AUTHORS = json.load(_f)


def deepspeed_file(path, sd):
    """`sd` in the layout of DeepSpeed's mp_rank_00_model_states.pt: the weights under `module`
    beside bookkeeping of the kinds its engine writes (sizes, a set, None, counters, its config)
    and the client state the authors' utils.save_model adds (the epoch)."""
    torch.save({"module": sd, "buffer_names": [], "optimizer": None,
                "param_shapes": [OrderedDict((k, v.shape) for k, v in sd.items())],
                "sparse_tensor_module_names": set(), "lr_scheduler": None, "skipped_steps": 0,
                "global_steps": 3000, "dp_world_size": 4, "mp_world_size": 1,
                "ds_config": {"bf16": {"enabled": True}, "zero_optimization": {"stage": 1}},
                "ds_version": "0.14.0", "epoch": 29}, path)
    return str(path)


def run_predict(argv):
    """(exit code, stdout lines, stderr) of predict.py's main in this process."""
    proc = predict_here(argv)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


# -----------------------------------------------------------------------------------------------
# A KVQ-shaped folder


SPLITS = {  # filename, cls_label, dis_label, label
    "train": [("train/0001.mp4", 0, 1, 3.2), ("train/0002.mp4", 1, 2, 1.6),
              ("train/0003.mp4", 2, 1, 4.4)],
    "val": [("val/0001.mp4", 0, 0, 3.0), ("val/0002.mp4", 1, 1, 2.2), ("val/0003.mp4", 2, 2, 4.6),
            ("val/0004.mp4", 0, 3, 1.4)],
    "test": [("test/0002.mp4", 1, 0, 0), ("test/0001.mp4", 0, 1, 0)],  # not sorted, on purpose
}
PAIRS = {"source": [("val/0001.mp4", "val/0004.mp4", 1), ("val/0002.mp4", "val/0003.mp4", 2)],
         "nonsource": [("val/0003.mp4", "val/0001.mp4", 1)]}


def write_pairs(path, pairs):
    import openpyxl
    book = openpyxl.Workbook()
    book.remove(book.active)
    for sheet, rows in pairs.items():
        ws = book.create_sheet(sheet)
        ws.append(["name1", "name2", "better"])
        for row in rows:
            ws.append(list(row))
    book.save(path)


@pytest.fixture(scope="module")
def kvq(tmp_path_factory):
    """KVQ's layout from three tiny videos (copied where the split files need more): the three
    split files, truth.csv of val, and rank-pair-val.xlsx where openpyxl is installed."""
    import imageio_ffmpeg
    root = tmp_path_factory.mktemp("kvq")
    made = []
    for i, crf in enumerate((18, 38, 51)):
        path = root / f"made{i}.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-f", "lavfi",
                        "-i", f"testsrc2=s=64x48:r=10:d=1,hue=h={70 * i}", "-c:v", "libx264",
                        "-crf", str(crf), "-pix_fmt", "yuv420p", str(path)], check=True,
                       timeout=60)
        made.append(path)
    for split, rows in SPLITS.items():
        (root / split).mkdir()
        for i, (name, *_) in enumerate(rows):
            shutil.copy(made[i % 3], root / name)
        (root / datasets.KVQ_SPLITS[split]).write_text(
            "".join(f"{n},{c},{d},{label}\n" for n, c, d, label in rows))
    (root / "truth.csv").write_text("filename,score\n" + "".join(
        f"{n},{label}\n" for n, _, _, label in SPLITS["val"]))
    with contextlib.suppress(ImportError):
        write_pairs(root / datasets.KVQ_PAIRS, PAIRS)
    return root


def test_kvq_index_reads_the_split_files(kvq):
    items = datasets.kvq_index(kvq)
    assert [(it["name"], it["split"], it["mos"], it["source"], it["dis_label"]) for it in items] \
        == [(n, s, label, str(c), str(d)) for s in ("train", "val") for n, c, d, label in SPLITS[s]]
    assert all(it["path"] == str(kvq / it["name"]) for it in items)
    train_items, test_items = datasets.official_split(items, "kvq")
    assert [it["name"] for it in train_items] == [r[0] for r in SPLITS["train"]]
    assert [it["name"] for it in test_items] == [r[0] for r in SPLITS["val"]]
    assert datasets.label_range("kvq") == (1.0, 5.0)
    unlabelled = datasets.read_kvq_split(kvq / datasets.KVQ_SPLITS["test"], labels=False)
    assert [it["name"] for it in unlabelled] == ["test/0002.mp4", "test/0001.mp4"]
    assert all(math.isnan(it["mos"]) for it in unlabelled)


@pytest.mark.parametrize("line, error, match", [
    ("val/0001.mp4,0,0\n", ValueError, "line 2: expected filename,cls_label,dis_label,label"),
    ("val/0001.mp4,0,0,good\n", ValueError, "line 2: score 'good' is not a finite number"),
    ("val/0001.mp4,0,0,0.6\n", ValueError, "line 2: label 0.6 outside KVQ's 1..5"),
    ("val/0009.mp4,0,0,3\n", FileNotFoundError, "line 2: .*0009.mp4 does not exist"),
    ("val/0002.mp4,0,0,3\n", ValueError, "line 2: val/0002.mp4 again \\(first on line 1\\)"),
])
def test_kvq_index_errors_name_the_file_and_line(kvq, tmp_path, line, error, match):
    split = tmp_path / datasets.KVQ_SPLITS["val"]
    split.write_text("val/0002.mp4,1,1,2.2\n" + line)
    with pytest.raises(error, match=f"{split}, {match}"):
        datasets.read_kvq_split(split, root=kvq)


def test_a_missing_split_file_is_named(tmp_path):
    shutil.copy(FIXTURE, tmp_path / datasets.KVQ_SPLITS["train"])  # train only, and no videos
    with pytest.raises(FileNotFoundError, match="val_split_v4_revise66_compete.txt: KVQ split"):
        datasets.kvq_index(tmp_path, splits=("val",))


# -----------------------------------------------------------------------------------------------
# The challenge's score


def test_kvq_score_by_hand():
    truth = dict(a=1, b=2, c=3, d=4, e=5)
    pred = dict(a=1, b=3, c=2, d=5, e=7, f=3)  # f: only in a pair, tied with b
    pairs = {"source": [("a", "b", 2), ("c", "b", 1), ("d", "e", 2), ("b", "f", 1)],
             "nonsource": [("e", "a", 1), ("a", "e", 1)]}
    # ranks of pred over a..e: 1 3 2 4 5, so sum d^2 = 2 and SRCC = 1 - 6 * 2 / (5 * 24) = 0.9;
    # PLCC: deviations from the means (3.6 and 3) -2.6 -0.6 -1.6 1.4 3.4 and -2 -1 0 1 2, products
    # summing to 14, squares to 23.2 and 10: 14 / sqrt(232). Pairs said (1 when score1 >= score2):
    # source 2 2 2 1 (b = f: 1) against 2 1 2 1, 3 of 4; nonsource 1 2 against 1 1, 1 of 2.
    plcc = 14 / math.sqrt(232)
    got = metrics.kvq_score(pred, truth, pairs)
    want = dict(score=0.45 * 0.9 + 0.45 * plcc + 0.05 * 0.5 + 0.05 * 0.75, srcc=0.9, plcc=plcc,
                acc_source=0.75, acc_nonsource=0.5)
    assert got == pytest.approx(want, abs=1e-12)


def test_kvq_score_names_a_video_without_prediction():
    truth = dict(a=1, b=2, c=3, d=4)
    with pytest.raises(ValueError, match=r"1 videos have no prediction, e.g. \['x'\]"):
        metrics.kvq_score(dict(a=1, b=2, c=3, d=4), truth,
                          {"source": [("a", "x", 1)], "nonsource": [("a", "b", 2)]})


def test_rank_pairs_from_the_xlsx(kvq, tmp_path):
    pytest.importorskip("openpyxl")
    assert datasets.kvq_pairs(kvq) == PAIRS
    assert datasets.kvq_pairs(tmp_path) is None  # no pairs file: no score
    bad = dict(PAIRS, nonsource=[("val/0003.mp4", "val/0001.mp4", 3)])
    write_pairs(tmp_path / "bad.xlsx", bad)
    with pytest.raises(ValueError, match=r"bad.xlsx, sheet nonsource, row 2: expected name1, "
                                         r"name2, better \(1 or 2\)"):
        datasets.read_rank_pairs(tmp_path / "bad.xlsx")
    write_pairs(tmp_path / "one.xlsx", {"source": PAIRS["source"]})
    with pytest.raises(ValueError, match="one.xlsx: no sheet 'nonsource'"):
        datasets.read_rank_pairs(tmp_path / "one.xlsx")


def test_rank_pairs_without_openpyxl_name_the_package_and_file(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import openpyxl now fails
    with pytest.raises(ImportError, match=r"pairs.xlsx needs openpyxl: pip install openpyxl"):
        datasets.read_rank_pairs(tmp_path / "pairs.xlsx")


def test_the_evaluation_prints_the_kvq_score(kvq, tmp_path, capsys):
    pairs = PAIRS
    items = datasets.official_split(datasets.kvq_index(kvq), "kvq")[1]
    scores = {"student": [3.1, 2.0, 4.0, 1.9]}
    result = runtime.report(scores, items, None, str(tmp_path), "eval", pairs=pairs)
    want = metrics.kvq_score(dict(zip([it["name"] for it in items], scores["student"])),
                             {it["name"]: it["mos"] for it in items}, pairs)
    assert result["student"]["kvq"] == want
    line = next(s for s in capsys.readouterr().out.splitlines() if "KVQ score" in s)
    assert line.split()[:4] == ["student", "KVQ", "score", f"{want['score']:.4f}"]
    runtime.report(scores, items[:3] + items[:1], None, str(tmp_path), "eval", pairs=pairs)
    assert "KVQ score: n/a, the rank pairs do not fit this test set" in capsys.readouterr().out


# -----------------------------------------------------------------------------------------------
# predict.py: the authors' weight, their clip, the challenge's file


def test_the_authors_file_scores_as_their_code(tmp_path, monkeypatch):
    """A file in the authors' layout (tubelet 2, 8 temporal positions, bf16 under `module`), scored
    by predict.py: their KVQ clip and 1..5 scale by default, and their forward to 1e-5."""
    assert sorted([k, list(v)] for k, v in authors_shapes().items()) == \
        sorted(AUTHORS["file_keys"])  # their model's key names and shapes
    ckpt = deepspeed_file(tmp_path / "mp_rank_00_model_states.pt",
                          authors_state(AUTHORS["weight_seed"]))
    g = torch.Generator().manual_seed(AUTHORS["input_seed"])
    clip = torch.randint(0, 256, AUTHORS["input_shape"], generator=g, dtype=torch.uint8)

    def their_clip(path, geo):  # run_KVQ_test.py's: 8 frames at stride 8 from the first, 224
        assert geo == dict(frames=8, size=224, stride=8, clips=1, fragments=0, resize=True,
                           from_start=True)
        return clip

    features, read_model = [], runtime.read_model

    def read_and_watch(*args, **kwargs):
        model, ckpt, report = read_model(*args, **kwargs)
        assert report["resized"] == ["pos_embed (1, 2049, 768) on a 8 x 16 x 16 grid -> "
                                     f"{tuple(AUTHORS['pos_embed_loaded'])}"]
        model.fc_norm.register_forward_hook(lambda m, i, out: features.append(out))
        return model, ckpt, report

    monkeypatch.setattr(predict, "video_clips", their_clip)
    monkeypatch.setattr(runtime, "read_model", read_and_watch)
    code, lines, err = run_predict(["--ckpt", ckpt, "--dtype", "fp32", "--device", "cpu", "v.mp4"])
    assert code == 0, err
    assert lines[0] == "path,score"
    score = float(lines[1].split(",")[1])
    assert abs(score - 5 * AUTHORS["score"]) < 5e-5  # on the label scale, label / 5 * 5
    torch.testing.assert_close(features[0][0].double(),
                               torch.tensor(AUTHORS["feature"], dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_the_kvq_clip_is_their_first_frames(monkeypatch):
    """Frames 0, 8, ..., 56 from the start; a shorter video repeats its last one, as their reader
    does (not the frame count's last frame)."""
    asked = []

    def read_clip(path, index, info, short_side):
        asked.append(list(index))
        return np.zeros((len(index), short_side, short_side * 2, 3), np.uint8)

    monkeypatch.setattr(video, "read_clip", read_clip)
    for n in (100, 20):
        monkeypatch.setattr(video, "probe", lambda path: dict(frames=n))
        assert predict.video_clips("v.mp4", predict.KVQ).shape == (1, 3, 8, 224, 224)
    assert asked == [[0, 8, 16, 24, 32, 40, 48, 56], [0, 8, 16, 16, 16, 16, 16, 16]]


def test_predict_kvq_writes_the_challenge_file(kvq, tmp_path):
    """filename,score: one row per line of the split file, in its order and spelling, on the
    checkpoint's label scale; here a tiny checkpoint of this project trained on KVQ's 1..5, with
    the authors' clip (--geometry kvq) read from the videos themselves."""
    torch.manual_seed(0)
    model = VideoViT(replace(CONFIGS["tiny"], tubelet_size=2, init_values=0.5)).eval()
    with torch.no_grad():  # weights of order one, so that the videos' scores differ
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ckpt = str(tmp_path / "best.pt")
    torch.save(dict(student=model.state_dict(), student_config=asdict(model.cfg), teacher=None,
                    config=dict(frames=2, size=28, stride=1, test_clips=2, fragments=0,
                                resize=False, dtype="fp32"),
                    label_range=[1.0, 5.0]), ckpt)
    split = str(kvq / datasets.KVQ_SPLITS["test"])
    code, lines, err = run_predict(["--ckpt", ckpt, "--kvq", split, "--geometry", "kvq",
                                    "--dtype", "fp32", "--device", "cpu"])
    assert code == 0, err
    rows = list(csv.reader(lines))
    assert rows[0] == ["filename", "score"]
    assert [r[0] for r in rows[1:]] == ["test/0002.mp4", "test/0001.mp4"]
    with torch.no_grad():
        want = [1 + 4 * model(data.normalise(predict.video_clips(str(kvq / r[0]), predict.KVQ)))
                .item() for r in rows[1:]]
    # predict.py runs on one thread, this reference on the default count: float32 rounding
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(want, abs=1e-5)
    assert len(set(want)) == 2


def test_train_builds_the_tubelet_of_the_file_it_loads(tmp_path):
    """train.py --student-ckpt with a tubelet-2 file in the authors' layout (a ViT-S here, to stay
    fast) builds a tubelet-2 student, whose patch kernel then loads as the file holds it, and
    trains; a clip length the tubelet does not divide is a one-line error naming the file."""
    from test_train import TINY, main, toy_set

    toy = tmp_path / "toy"
    toy_set.make_toy_dataset(toy, tiny=True, log=None)
    torch.manual_seed(0)
    sd = VideoViT(replace(CONFIGS["small"], tubelet_size=2, num_frames=16)).state_dict()
    path = deepspeed_file(tmp_path / "mp_rank_00_model_states.pt", sd)
    common = TINY + ["--data-root", str(toy), "--student", "small", "--student-ckpt", path,
                     "--teacher", "none", "--trust-ckpt", "--max-steps", "1", "--test-clips", "1",
                     "--lr", "0"]
    main(common + ["--out", str(tmp_path / "out")])
    saved = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    assert saved["student_config"]["tubelet_size"] == 2
    kernel = saved["student"]["patch_embed.proj.weight"]
    assert kernel.shape == (384, 3, 2, 14, 14)
    torch.testing.assert_close(kernel, sd["patch_embed.proj.weight"])  # lr 0: as loaded
    bad = main(common + ["--out", str(tmp_path / "bad"), "--frames", "3"], check=False)
    assert bad.returncode == 1 and f"{path} has a tubelet of 2 frames" in bad.stderr

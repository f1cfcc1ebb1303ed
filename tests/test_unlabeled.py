"""Tests of training on videos nobody rated: the unlabeled term by hand, no gradient from it
reaches the teacher, the labelled terms unchanged by unlabeled clips beside them, a test video or
source in --unlabeled refused, exact resume with unlabeled data (the unlabeled order too, with
--grad-accum), a FAST-VQA student and two processes, --labelled-sources hiding the other contents'
labels from every loss term, and predict.py --as-labels read back by datasets.load_csv.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_unlabeled.py
"""
import csv
import math
import os
from types import SimpleNamespace

import pytest
import torch

import datasets
from distill import Distiller, freeze_teacher
from model import VideoViT, ViTConfig
from test_train import (FASTVQA, TINY, equal_states, listing, main, predict_here, run, state,
                        toy, toy_rows, torchrun)

assert toy  # the tiny toy set fixture, used by name below


def cfg(dim, depth, pool_dim):
    return ViTConfig(embed_dim=dim, depth=depth, num_heads=4, pool_heads=4, pool_dim=pool_dim,
                     num_frames=4, img_size=28, init_values=0.5)


def pair(**kw):
    torch.manual_seed(0)
    teacher = freeze_teacher(VideoViT(cfg(96, 4, 32)))  # its last block and head train
    student = VideoViT(cfg(64, 2, 32))
    return Distiller(teacher, student, **kw)


def clips(seed, b):
    return torch.randn(b, 3, 4, 28, 28, generator=torch.Generator().manual_seed(seed))


def smooth_l1(a, b, beta):  # written out: 0.5 d^2 / beta inside beta, |d| - beta / 2 beyond
    d = (a - b).abs()
    return torch.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta).mean()


def layer_norm(f):  # no affine: zero mean, unit (biased) variance per row
    return (f - f.mean(-1, keepdim=True)) / torch.sqrt(f.var(-1, unbiased=False, keepdim=True)
                                                        + 1e-5)


def test_the_unlabeled_term_by_hand():
    """On unlabeled clips: w_student * mean((s - t)^2) + w_align * SmoothL1(LN(f_s), LN(f_t)),
    weighed by w_unlabeled and added to the labelled terms, which do not change."""
    d = pair(w_student=0.7, w_align=1.3, w_unlabeled=0.4).eval()
    x, y, xu = clips(0, 3), torch.rand(3), clips(1, 2)
    out = d(x, y, xu)
    with torch.no_grad():
        s, t = d.student(xu), d.teacher(xu)
        f_s, f_t = d.student.forward_features(xu), d.teacher.forward_features(xu)
        by_hand = 0.7 * ((s - t) ** 2).mean() + 1.3 * smooth_l1(layer_norm(f_s), layer_norm(f_t),
                                                                 2.0)
    torch.testing.assert_close(out["loss_unlabeled"], by_hand, rtol=1e-5, atol=1e-6)
    labelled = d(x, y)
    for k in ("loss_teacher", "loss_student", "loss_align"):
        torch.testing.assert_close(out[k], labelled[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"], labelled["loss"] + 0.4 * by_hand, rtol=1e-5,
                               atol=1e-6)
    assert out["score_student"].shape == (3,)  # the labelled clips' scores only


def test_no_gradient_of_the_unlabeled_term_reaches_the_teacher():
    """The teacher's score is a target: its trainable tail gets no gradient from the unlabeled
    term; the student gets one. (The teacher's own term still trains it on labels.)"""
    d = pair().train()
    out = d(clips(0, 2), torch.rand(2), clips(1, 3))
    out["loss_unlabeled"].backward()
    trainable = [p for p in d.teacher.parameters() if p.requires_grad]
    assert trainable and all(p.grad is None or not p.grad.any() for p in trainable)
    assert all(p.grad is not None and p.grad.any() for p in d.student.head.parameters())
    d.zero_grad(set_to_none=True)
    d(clips(0, 2), torch.rand(2), clips(1, 3))["loss"].backward()
    assert d.teacher.head.weight.grad.any()  # from L2(teacher score, MOS)


def test_unlabeled_clips_need_a_teacher():
    torch.manual_seed(0)
    alone = Distiller(None, VideoViT(cfg(64, 2, 32)))
    with pytest.raises(ValueError, match="teacher's score is their target"):
        alone(clips(0, 2), torch.rand(2), clips(1, 2))


def test_hide_labels_keeps_n_sources():
    items = [dict(path=f"{s}_{i}", mos=float(i), source=s) for s in "abcdef" for i in range(3)]
    for n in (1, 4, 6):
        kept, hidden = datasets.hide_labels(items, n, seed=3)
        assert len({it["source"] for it in kept}) == n and len(kept) == 3 * n
        assert {it["source"] for it in kept}.isdisjoint({it["source"] for it in hidden})
        assert all(math.isnan(it["mos"]) for it in hidden) and len(hidden) == 3 * (6 - n)
    assert datasets.hide_labels(items, 2, 3) == datasets.hide_labels(items, 2, 3)
    with pytest.raises(ValueError, match="the training split has 6"):
        datasets.hide_labels(items, 7)


# -----------------------------------------------------------------------------------------------
# Through train.py on the tiny toy set: 3 training contents (24 videos), 1 test content


def unlabeled_list(toy, tmp_path, rows, name="unrated.csv", mos=True):
    path = tmp_path / name
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "source"] + (["mos"] if mos else []))
        w.writerows([r["path"], r["source"]] + (["not a number"] if mos else []) for r in rows)
    return str(path)


def test_a_test_video_or_source_in_the_unlabeled_list_is_refused(toy, tmp_path):
    test_rows = toy_rows(toy, "test")
    sneaky = [dict(r, source="elsewhere") for r in test_rows[:1]]  # a test video, renamed source
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    os.link(test_rows[0]["path"], renamed / "copy.mp4")  # another file of a test source
    for rows in (sneaky, [dict(path=str(renamed / "copy.mp4"), source=test_rows[0]["source"])]):
        listed = unlabeled_list(toy, tmp_path, rows)
        proc = main(TINY + ["--data-root", toy, "--out", str(tmp_path / "o"), "--unlabeled",
                            listed], check=False)
        assert proc.returncode == 1 and "source of the test split" in proc.stderr
        assert not (tmp_path / "o" / "last.pt").exists()


def test_unlabeled_needs_a_teacher_and_a_student(toy, tmp_path):
    listed = unlabeled_list(toy, tmp_path, toy_rows(toy, "train")[:2])
    for extra in (["--teacher", "none"], ["--student", "none"]):
        proc = main(TINY + ["--data-root", toy, "--unlabeled", listed] + extra, check=False)
        assert proc.returncode == 2 and "needs a teacher and a student" in proc.stderr


def test_a_frozen_teacher_with_an_untrained_head_is_refused(toy, tmp_path):
    """--w-teacher 0 freezes the whole teacher; without a file that holds its quality head its
    scores (the unlabeled videos' targets) come from a head nobody trained. Alignment alone with
    such a teacher stays allowed: it uses the features, not the scores."""
    listed = unlabeled_list(toy, tmp_path, toy_rows(toy, "train")[:2])
    proc = main(TINY + ["--data-root", toy, "--unlabeled", listed, "--w-teacher", "0",
                        "--out", str(tmp_path / "o")], check=False)
    assert proc.returncode == 1 and "quality head is untrained" in proc.stderr
    assert not (tmp_path / "o" / "last.pt").exists()
    main(TINY + ["--data-root", toy, "--w-teacher", "0", "--max-steps", "1", "--out",
                 str(tmp_path / "aligned")])


def test_a_run_with_unlabeled_videos_trains_on_them_and_resumes_exactly(toy, tmp_path):
    """The unlabeled list (a mos column ignored) changes the student; stopped at step 1 and
    resumed to 3 (across an epoch, with --grad-accum, each epoch more unlabeled clips than the
    list holds), it equals the straight run."""
    listed = unlabeled_list(toy, tmp_path, toy_rows(toy, "train")[:5])
    common = TINY + ["--data-root", toy, "--grad-accum", "2", "--steps-per-epoch", "2",
                     "--unlabeled", listed, "--unlabeled-batch-size", "2", "--test-clips", "1"]
    main(common + ["--out", str(tmp_path / "a"), "--max-steps", "3"])
    main(common + ["--out", str(tmp_path / "b"), "--max-steps", "1"])
    proc = main(common + ["--out", str(tmp_path / "b"), "--max-steps", "3", "--resume"])
    assert "unlabeled 5 videos" in proc.stdout
    for key in ("student", "teacher"):
        assert equal_states(state(tmp_path / "a" / "last.pt", key),
                            state(tmp_path / "b" / "last.pt", key)), key
    # the list edited since (a video fewer): --resume refuses, saying why, and saves nothing
    saved = (tmp_path / "b" / "last.pt").read_bytes()
    assert unlabeled_list(toy, tmp_path, toy_rows(toy, "train")[:4]) == listed  # rewritten
    proc = main(common + ["--out", str(tmp_path / "b"), "--max-steps", "4", "--resume"],
                check=False)
    assert proc.returncode == 1 and "the training videos or their labels" in proc.stderr
    assert (tmp_path / "b" / "last.pt").read_bytes() == saved
    unlabeled_list(toy, tmp_path, toy_rows(toy, "train")[:5])  # as it was: it resumes
    main(common + ["--out", str(tmp_path / "b"), "--max-steps", "4", "--resume"])
    main(TINY + ["--data-root", toy, "--grad-accum", "2", "--steps-per-epoch", "2", "--out",
                 str(tmp_path / "c"), "--max-steps", "3", "--test-clips", "1"])
    assert not equal_states(state(tmp_path / "a" / "last.pt"), state(tmp_path / "c" / "last.pt"))


def test_labelled_sources_hide_the_other_labels_from_every_term(toy, tmp_path):
    """--labelled-sources 1 on two label files that differ only in the hidden contents' MOS: the
    same weights (their videos train, unlabeled); the kept content's MOS changes them."""
    rows = toy_rows(toy)
    kept, _ = datasets.hide_labels([dict(r, mos=float(r["mos"])) for r in rows
                                    if r["split"] == "train"], 1, seed=0)
    kept = {it["source"] for it in kept}

    def labels(name, bump_hidden, bump_kept=0.0):
        path = tmp_path / name
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "mos", "source", "split"])
            for r in rows:
                hidden = r["split"] == "train" and r["source"] not in kept
                bump = bump_hidden if hidden else bump_kept if r["split"] == "train" else 0.0
                w.writerow([r["path"], float(r["mos"]) + bump, r["source"], r["split"]])
        return str(path)

    def weights(name, csv_path, *extra):
        out = tmp_path / name
        main(TINY + ["--data", "csv", "--labels", csv_path, "--label-range", "0", "100",
                     "--labelled-sources", "1", "--steps-per-epoch", "2", "--max-steps", "2",
                     "--test-clips", "1", "--out", str(out), *extra])
        return state(out / "last.pt")

    a = weights("a", labels("a.csv", 0.0))
    assert equal_states(a, weights("b", labels("b.csv", 37.0)))
    c = weights("c", labels("c.csv", 0.0, bump_kept=5.0))
    assert not equal_states(a, c)


def test_a_fastvqa_student_learns_from_unlabeled_videos(toy, tmp_path):
    listed = unlabeled_list(toy, tmp_path, toy_rows(toy, "train")[:4], mos=False)
    out = tmp_path / "f"
    main(TINY + FASTVQA + ["--data-root", toy, "--out", str(out), "--max-steps", "1",
                           "--unlabeled", listed, "--test-clips", "1"])
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


def test_two_processes_with_unlabeled_videos(toy, tmp_path):
    """Under DDP every rank takes its share of the unlabeled clips; the run saves its step."""
    listed = unlabeled_list(toy, tmp_path, toy_rows(toy, "train")[:6])
    out = tmp_path / "ddp"
    run(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1", "--unlabeled",
                listed, "--test-clips", "1"], script=torchrun(2))
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


# -----------------------------------------------------------------------------------------------
# Offline: predict.py --as-labels


def test_as_labels_writes_a_list_that_load_csv_reads(toy, tmp_path):
    """Scores of an unlabeled list, with its sources, on the checkpoint's label scale: read back
    by load_csv, the same videos and sources, the scores equal to predict.py's plain output."""
    out = tmp_path / "run"
    main(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1"])
    rows = toy_rows(toy, "train")[:5]
    listed = unlabeled_list(toy, tmp_path, [dict(r, source=f"c{i % 2}") for i, r in
                                            enumerate(rows)], mos=False)
    labels = predict_here(["--ckpt", str(out / "last.pt"), "--csv", listed, "--as-labels"])
    assert labels.returncode == 0, labels.stderr
    path = tmp_path / "pseudo.csv"
    path.write_text(labels.stdout)
    items = datasets.load_csv(path)
    plain = predict_here(["--ckpt", str(out / "last.pt"), "--csv", listed])
    scores = {p: float(s) for p, s in (line.rsplit(",", 1) for line in
                                       plain.stdout.strip().splitlines()[1:])}
    assert [it["path"] for it in items] == [r["path"] for r in rows]
    assert [it["source"] for it in items] == ["c0", "c1", "c0", "c1", "c0"]
    assert all(it["split"] == "train" for it in items)  # --data csv's official split reads it
    for it in items:
        assert it["mos"] == pytest.approx(scores[it["path"]], abs=1e-6)
        assert 0.0 <= it["mos"] <= 100.0  # the toy set's scale
    # A raw .yuv whose geometry only the list gives (nothing in its name), beside a spreadsheet's
    # blank rows: scored with that geometry, and the list written keeps it for train.py
    raw = tmp_path / "clip.yuv"  # 4 frames of 48 x 40, 8-bit 4:2:0
    raw.write_bytes(torch.randint(0, 256, (4 * 48 * 40 * 3 // 2,), dtype=torch.uint8,
                                  generator=torch.Generator().manual_seed(0)).numpy().tobytes())
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(f"path,source,width,height\r\n{rows[0]['path']},c0,,\r\n,,,\r\n"
                     f"clip.yuv,raw,48,40\r\n  ,,,\r\n")
    labels = predict_here(["--ckpt", str(out / "last.pt"), "--csv", str(mixed), "--as-labels"])
    assert labels.returncode == 0, labels.stderr
    assert labels.stdout.splitlines()[0] == "path,mos,source,split,width,height"
    path.write_text(labels.stdout)
    items = datasets.load_csv(path)
    assert [(it["path"], it["source"]) for it in items] == [(rows[0]["path"], "c0"),
                                                            (str(raw), "raw")]
    assert items[0]["mos"] == pytest.approx(scores[rows[0]["path"]], abs=1e-6)
    assert (items[1]["width"], items[1]["height"]) == ("48", "40") and 0 <= items[1]["mos"] <= 100


def test_split_unlabeled_with_a_weight_of_zero_uses_none(toy, tmp_path):
    rows = [dict(r, mos=float(r["mos"])) for r in toy_rows(toy, "train")]
    args = SimpleNamespace(labelled_sources=1, unlabeled=None, split_seed=0, w_unlabeled=0.0)
    kept, unlabeled = datasets.split_unlabeled(args, rows, [])
    assert unlabeled == [] and len({it["source"] for it in kept}) == 1
    args.w_unlabeled = 1.0
    listed = listing(tmp_path / "l.csv", toy_rows(toy, "train")[:2])
    args.unlabeled = listed
    kept, unlabeled = datasets.split_unlabeled(args, rows, toy_rows(toy, "test"))
    assert len(unlabeled) == len(rows) - len(kept) + 2
    assert all(math.isnan(it["mos"]) for it in unlabeled)

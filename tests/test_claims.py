"""Tests of claims the code makes that no other test could fail: the loss divided by --grad-accum
before backward, best.pt kept by the highest SRCC, the alignment gradient kept from the teacher by
default (Distiller) and unless --align-to-teacher (train.py), and which view each model of a
FAST-VQA student's pair sees. Each was seen to fail on a copy of the code broken on purpose.

Runs of train.py happen in this process on the tiny toy set, through tests/test_train.py's main().

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_claims.py     # about 20 s
"""
import pytest
import torch

import distill
import toy as toy_set
import train
from distill import Distiller, freeze_teacher
from fastvqa import FastVQA, FastVQAConfig
from model import VideoViT, ViTConfig
from test_train import TINY, main


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The tiny toy set, as tests/test_train.py builds it."""
    root = tmp_path_factory.mktemp("toy") / "toy"
    toy_set.make_toy_dataset(root, tiny=True, log=None)
    return str(root)


# -----------------------------------------------------------------------------------------------
# train.py: the optimizer step and best.pt


def scored_by_rank(monkeypatch, *orders):
    """train.predict_scores replaced: at its k-th call every model scores each test video by
    orders[k](its rank by MOS) (the last order for later calls), without running a model. Returns
    the list of calls made."""
    calls = []

    def ranked(models, test_set, *args, **kwargs):
        mos = [it["mos"] for it in test_set.items]
        rank = {i: r for r, i in enumerate(sorted(range(len(mos)), key=mos.__getitem__))}
        order = orders[min(len(calls), len(orders) - 1)]
        calls.append(order)
        return {name: [float(order(rank[i])) for i in range(len(mos))] for name in models}

    monkeypatch.setattr(train, "predict_scores", ranked)
    return calls


def test_the_loss_is_divided_by_grad_accum(toy, tmp_path, monkeypatch):
    """Batch 2 x accum 1 and batch 1 x accum 2 on the same two clips (one optimizer step of the same
    permutation, the same per-clip draws) reach the optimizer with the same gradients: the mean over
    the batch, not twice it. Clipping and drop-path off, so that nothing rescales or draws.
    (Without the division, AdamW's normalisation hides the doubled gradient from other tests.)"""
    grads, step = [], torch.optim.AdamW.step

    def at_step(self, *args, **kwargs):
        grads.append([p.grad.clone() for g in self.param_groups for p in g["params"]
                      if p.grad is not None])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", at_step)
    scored_by_rank(monkeypatch, lambda r: r)  # no evaluation: only the gradients matter
    for batch, accum in ((2, 1), (1, 2)):
        main(TINY + ["--data-root", toy, "--out", str(tmp_path / f"{batch}x{accum}"),
                     "--max-steps", "1", "--batch-size", str(batch), "--grad-accum", str(accum),
                     "--clip-grad", "0", "--drop-path", "0"])
    whole, accumulated = grads
    assert len(whole) == len(accumulated) > 0
    assert min(g.norm() for g in whole) > 0  # every one of them learns something to compare
    for a, b in zip(whole, accumulated):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)


def test_best_pt_keeps_the_highest_srcc(toy, tmp_path, monkeypatch):
    """Three evaluations whose student SRCC is middling, perfect, then reversed: best.pt holds the
    second (neither the first, the last, nor the lowest: keeping the lowest keeps the third)."""
    # the worst video scored best; each video by its rank; reversed
    calls = scored_by_rank(monkeypatch, lambda r: r or 99, lambda r: r, lambda r: -r)
    out = tmp_path / "o"
    # one optimizer step an epoch (24 training videos), an evaluation after each
    main(TINY + ["--data-root", toy, "--out", str(out), "--teacher", "none", "--epochs", "3",
                 "--batch-size", "12", "--grad-accum", "2"])
    history = torch.load(out / "last.pt", weights_only=True)["history"]
    srcc = [h["student"]["srcc"] for h in history]
    assert len(calls) == 3 and 0 < srcc[0] < 0.99 and srcc[1:] == pytest.approx([1, -1]), srcc
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["step"] == 2 and best["best"]["student"]["srcc"] == pytest.approx(1)


# -----------------------------------------------------------------------------------------------
# The alignment gradient and the teacher


def vit(dim=32, depth=2, pool_dim=16, img_size=28, **kw):
    return VideoViT(ViTConfig(embed_dim=dim, depth=depth, num_heads=2, pool_heads=2,
                              pool_dim=pool_dim, num_frames=4, img_size=img_size, init_values=0.5,
                              **kw))


def teacher_grads(w_teacher, w_align, **kw):
    """{name: gradient} of a teacher (its last block, pooling, fc_norm and head trainable) after one
    backward of a Distiller built with kw (and no other argument)."""
    torch.manual_seed(0)
    d = Distiller(freeze_teacher(vit(dim=48)), vit(), w_teacher=w_teacher, w_align=w_align, **kw)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 3, 4, 28, 28, generator=g), torch.rand(3, generator=g)
    d.train()
    d(x, y)["loss"].backward()
    return {n: p.grad for n, p in d.teacher.named_parameters() if p.grad is not None}


def test_by_default_the_alignment_gradient_never_reaches_the_teacher():
    """Distiller built without detach_teacher: with the teacher's own term off, alignment alone
    gives its trainable parts no gradient; with it on, they get exactly what that term gives.
    detach_teacher=False (the authors' code) does reach them, so a flipped default fails here."""
    assert teacher_grads(w_teacher=0, w_align=1) == {}
    assert teacher_grads(w_teacher=0, w_align=1, detach_teacher=False)  # it could have
    alone, aligned = teacher_grads(w_teacher=1, w_align=0), teacher_grads(w_teacher=1, w_align=1)
    assert alone.keys() == aligned.keys() and "blocks.1.mlp.fc1.weight" in alone
    assert all(torch.equal(alone[n], aligned[n]) for n in alone)


def teacher_moved(toy, out, monkeypatch, flags):
    """The names of the teacher's tensors that differ between the teacher train.py hands to the
    Distiller and the one in OUT/last.pt after one step, with the teacher's own term off."""
    start, init = [], distill.Distiller.__init__

    def recording(self, teacher, *args, **kwargs):
        start.append({k: v.detach().clone() for k, v in teacher.state_dict().items()})
        init(self, teacher, *args, **kwargs)

    monkeypatch.setattr(distill.Distiller, "__init__", recording)
    scored_by_rank(monkeypatch, lambda r: r)  # no evaluation: only the weights matter
    main(TINY + ["--data-root", toy, "--out", str(out), "--max-steps", "1", "--w-teacher", "0",
                 *flags])
    end = torch.load(out / "last.pt", weights_only=True)["teacher"]
    assert len(start) == 1 and end.keys() == start[0].keys()
    return [k for k in end if not torch.equal(start[0][k], end[k])]


def test_train_detaches_the_teacher_unless_align_to_teacher(toy, tmp_path, monkeypatch):
    """--w-teacher 0, so only the alignment term could move the teacher: it stays bit-equal to its
    start, and with --align-to-teacher its last block and pooling learn (its head, on no term's
    path, and its frozen blocks never do). Inverting the flag leaves the aligned teacher unmoved."""
    assert teacher_moved(toy, tmp_path / "detached", monkeypatch, []) == []
    moved = teacher_moved(toy, tmp_path / "aligned", monkeypatch, ["--align-to-teacher"])
    assert any(k.startswith("blocks.1.") for k in moved) and \
        any(k.startswith("clip_projector.") for k in moved)
    assert all(k.startswith(("blocks.1.", "clip_projector.", "fc_norm.")) for k in moved), moved


# -----------------------------------------------------------------------------------------------
# Two views: which model sees which


def test_a_fastvqa_student_sees_its_own_view():
    """A ViT teacher and a FAST-VQA student fed (teacher's clips, student's fragments) of the same
    shape, so that a swap raises no shape error: the tensor reaching each model's first layer is
    its own view, bit for bit."""
    torch.manual_seed(0)
    teacher = freeze_teacher(vit(patch_size=16, img_size=64))  # reads 4 x 64 x 64 as FAST-VQA does
    student = FastVQA(FastVQAConfig(embed_dim=4, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                    head_hidden=8, drop_path=0.0, head_dropout=0.0))
    seen = {}
    teacher.patch_embed.proj.register_forward_pre_hook(
        lambda m, inputs: seen.setdefault("teacher", inputs[0]))
    student.fragments_backbone.register_forward_pre_hook(
        lambda m, inputs: seen.setdefault("student", inputs[0]))
    d = Distiller(teacher, student).train()
    g = torch.Generator().manual_seed(0)
    x_t, x_s = (torch.randn(2, 3, 4, 64, 64, generator=g) for _ in range(2))
    out = d((x_t, x_s), torch.rand(2, generator=g))
    assert {"loss_teacher", "loss_student", "loss_align"} <= set(out)
    assert torch.equal(seen["student"], x_s) and torch.equal(seen["teacher"], x_t)

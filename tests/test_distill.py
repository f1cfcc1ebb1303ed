"""Tests of distill.py: what the teacher trains, what it keeps for backward, the loss by hand,
the weight-0 ablations, where the alignment gradient goes, the projection, the optimizer groups
(weight decay and layer-wise lr), and a compiled Distiller (torch.compile, aot_eager).

    python -m pytest -q tests/test_distill.py
"""
import pytest
import torch
import torch.nn.functional as F

from distill import Distiller, build_optimizer, freeze_teacher, frozen_prefix, teacher_features
from fastvqa import FastVQA, FastVQAConfig
from model import VideoViT, ViTConfig


def cfg(dim=64, depth=4, pool_dim=32, **kw):
    return ViTConfig(embed_dim=dim, depth=depth, num_heads=4, pool_heads=4, pool_dim=pool_dim,
                     num_frames=4, img_size=28, init_values=0.5, **kw)


def pair(student_dim=32, teacher_pool=32, seed=0, **kw):
    torch.manual_seed(seed)
    teacher = freeze_teacher(VideoViT(cfg(dim=96, depth=4, pool_dim=teacher_pool)))
    student = VideoViT(cfg(dim=64, depth=2, pool_dim=student_dim))
    return Distiller(teacher, student, **kw)


def batch(seed=0, b=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 4, 28, 28, generator=g), torch.rand(b, generator=g)


def test_frozen_teacher_parameters_get_no_grad_and_trainable_ones_do():
    d = pair()
    x, y = batch()
    d.train()
    d(x, y)["loss"].backward()
    t = d.teacher
    for name, p in t.named_parameters():
        trainable = name.startswith(("blocks.3.", "clip_projector.", "fc_norm.", "head."))
        assert p.requires_grad == trainable, name
        assert (p.grad is not None) == trainable, name
    assert all(p.grad is not None for p in d.student.parameters())
    assert frozen_prefix(t) == 3
    assert not t.blocks[0].training and t.blocks[3].training  # frozen parts stay in eval mode


@pytest.mark.parametrize("trainable, prefix, n_trainable_blocks",
                         [("last", 3, 1), ("last+embed", 0, 1), ("none", 4, 0), ("all", 0, 4)])
def test_trainable_choices(trainable, prefix, n_trainable_blocks):
    t = freeze_teacher(VideoViT(cfg()), trainable)
    assert frozen_prefix(t) == prefix
    assert sum(any(p.requires_grad for p in b.parameters()) for b in t.blocks) == n_trainable_blocks
    assert t.pos_embed.requires_grad == (trainable in ("last+embed", "all"))
    with pytest.raises(ValueError, match="trainable must be one of"):
        freeze_teacher(t, "first")


def saved_tensor_bytes(fn):
    """(fn(), bytes of the distinct storages autograd saved for backward while it ran)."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), str(t.device))] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def test_teacher_features_equal_the_plain_forward():
    t = freeze_teacher(VideoViT(cfg())).eval()
    x, _ = batch()
    torch.testing.assert_close(teacher_features(t, x), t.forward_features(x))


def test_distill_step_saves_no_more_than_student_step_plus_teacher_tail():
    d = pair()
    d.train()
    x, y = batch(b=2)
    _, student = saved_tensor_bytes(lambda: F.mse_loss(d.student(x), y))
    with torch.no_grad():
        h = d.teacher.run_blocks(d.teacher.embed(x), d.teacher.blocks[:3])
    _, tail = saved_tensor_bytes(lambda: F.mse_loss(d.teacher.forward_head(
        d.teacher.pool(d.teacher.run_blocks(h, d.teacher.blocks[3:]))), y))
    _, distill = saved_tensor_bytes(lambda: d(x, y)["loss"])
    assert distill <= 1.1 * (student + tail)
    # The authors' variant trains the embeddings, so backward goes through every block: the
    # three frozen blocks then keep their activations too.
    _, one_block = saved_tensor_bytes(lambda: d.teacher.blocks[3](h))
    freeze_teacher(d.teacher, "last+embed")
    _, released = saved_tensor_bytes(lambda: d(x, y)["loss"])
    assert released - distill > 0.9 * 3 * one_block


def test_loss_equals_a_hand_computation():
    d = pair(student_dim=16)  # widths differ: a projection on the student side
    d.eval()
    x, y = batch()
    out = d(x, y)
    fs, ft = d.student.forward_features(x), d.teacher.forward_features(x)
    ss, st = d.student.head(fs).squeeze(-1), d.teacher.head(ft).squeeze(-1)
    a = d.align(fs)
    a = (a - a.mean(-1, keepdim=True)) / torch.sqrt(a.var(-1, unbiased=False, keepdim=True) + 1e-5)
    b = ((ft - ft.mean(-1, keepdim=True))
         / torch.sqrt(ft.var(-1, unbiased=False, keepdim=True) + 1e-5))
    diff = (a - b).abs()
    smooth_l1 = torch.where(diff < 2.0, 0.5 * diff ** 2 / 2.0, diff - 1.0).mean()  # beta 2
    l_t, l_s = ((st - y) ** 2).mean(), ((ss - y) ** 2).mean()
    torch.testing.assert_close(out["loss_teacher"], l_t)
    torch.testing.assert_close(out["loss_student"], l_s)
    torch.testing.assert_close(out["loss_align"], smooth_l1)
    torch.testing.assert_close(out["loss"], l_t + l_s + smooth_l1)
    torch.testing.assert_close(out["score_student"], ss)
    d2 = pair(student_dim=16, w_teacher=0.5, w_student=2.0, w_align=3.0)
    d2.load_state_dict(d.state_dict())
    d2.eval()
    torch.testing.assert_close(d2(x, y)["loss"], 0.5 * l_t + 2.0 * l_s + 3.0 * smooth_l1)


def test_weight_zero_removes_exactly_its_term():
    x, y = batch()
    full = pair().eval()(x, y)
    for kw, kept in [(dict(w_align=0), ("loss_teacher", "loss_student")),
                     (dict(w_teacher=0), ("loss_student", "loss_align"))]:
        out = pair(**kw).eval()(x, y)
        torch.testing.assert_close(out["loss"], sum(full[k] for k in kept))
        removed = {"loss_align", "loss_teacher", "loss_student"} - set(kept)
        assert not removed & set(out)  # what is off is absent from the output


def test_baseline_never_calls_the_teacher(monkeypatch):
    d = pair(w_teacher=0, w_align=0)
    calls = []
    monkeypatch.setattr(d.teacher, "forward_features", lambda x: calls.append(1))
    monkeypatch.setattr(d.teacher, "embed", lambda x: calls.append(1))
    x, y = batch()
    out = d(x, y)
    assert calls == [] and "score_teacher" not in out
    torch.testing.assert_close(out["loss"], out["loss_student"])
    with pytest.raises(ValueError, match="nothing to train"):
        pair(w_teacher=0, w_align=0, w_student=0)


def test_alignment_gradient_reaches_the_teacher_only_when_asked():
    x, y = batch()
    for detach, reaches in ((True, False), (False, True)):
        d = pair(w_teacher=0, detach_teacher=detach)
        d.train()
        d(x, y)["loss"].backward()
        assert (d.teacher.head.weight.grad is None)  # the head is not on the alignment path
        assert (d.teacher.clip_projector.cross_attn.proj.weight.grad is not None) == reaches


def test_the_alignment_gradient_never_reaches_the_teacher_by_default():
    """Under the defaults (w_teacher 1, detach_teacher, the teacher frozen but its last block), the
    teacher's gradients are bit-equal with and without the alignment term: it learns from its own
    L2 term alone. With detach_teacher=False (the authors' code) the alignment term changes them."""
    x, y = batch()

    def teacher_grads(**kw):
        d = pair(**kw)
        d.train()
        d(x, y)["loss"].backward()
        return {n: p.grad for n, p in d.teacher.named_parameters() if p.grad is not None}

    alone = teacher_grads(w_align=0)
    assert alone and all(n.startswith(("blocks.3.", "clip_projector.", "fc_norm.", "head."))
                         for n in alone)
    for detach in (True, False):
        aligned = teacher_grads(w_align=1, detach_teacher=detach)
        assert aligned.keys() == alone.keys()
        same = [n for n in alone if torch.equal(alone[n], aligned[n])]
        if detach:
            assert same == list(alone)
        else:  # only the head is off the alignment path
            assert same == ["head.weight", "head.bias"]


def test_projection_exactly_when_sizes_differ():
    assert isinstance(pair(student_dim=32).align, torch.nn.Identity)
    assert "align.weight" not in pair(student_dim=32).state_dict()
    proj = pair(student_dim=16).align
    assert isinstance(proj, torch.nn.Linear) and tuple(proj.weight.shape) == (32, 16)
    torch.manual_seed(0)
    swin = Distiller(freeze_teacher(VideoViT(cfg(pool_dim=32))), FastVQA(tiny_fastvqa(dim=3)))
    assert tuple(swin.align.weight.shape) == (32, 24)  # FAST-VQA's final map: 8 x 3 channels
    assert isinstance(Distiller(freeze_teacher(VideoViT(cfg(pool_dim=24))),
                                FastVQA(tiny_fastvqa(dim=3))).align, torch.nn.Identity)


def test_teacher_alone_and_bf16_prefix():
    x, y = batch()
    alone = Distiller(freeze_teacher(VideoViT(cfg()), "all"), None)
    out = alone(x, y)
    torch.testing.assert_close(out["loss"], out["loss_teacher"])
    d = pair(teacher_dtype=torch.bfloat16)
    assert d.teacher.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert d.teacher.blocks[3].mlp.fc1.weight.dtype == torch.float32
    out = d.eval()(x, y)
    assert out["score_teacher"].dtype == torch.float32 and torch.isfinite(out["loss"])


def test_two_adamw_steps_by_hand():
    """build_optimizer's steps (fused on the CPU) against AdamW written out: m = b1 m + (1 - b1) g,
    v = b2 v + (1 - b2) g^2, bias-corrected, p <- p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps);
    two steps, so that the betas count (one step's bias correction cancels them)."""
    torch.manual_seed(0)
    d = pair(student_dim=16)
    opt = build_optimizer([d.student], lr=1e-2, weight_decay=0.05)
    assert all(g["fused"] for g in opt.param_groups)
    wd = {n: g["weight_decay"] for g in opt.param_groups for n in g["names"]}
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 1e-2
    want = {n: p.detach().double().clone() for n, p in d.student.named_parameters()}
    m = {n: torch.zeros_like(w) for n, w in want.items()}
    v = {n: torch.zeros_like(w) for n, w in want.items()}
    for t in (1, 2):
        for n, p in d.student.named_parameters():
            p.grad = torch.randn_like(p)
            g = p.grad.double()
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            m_hat, v_hat = m[n] / (1 - b1 ** t), v[n] / (1 - b2 ** t)
            want[n] = want[n] * (1 - lr * wd[n]) - lr * m_hat / (v_hat.sqrt() + eps)
        opt.step()
    for n, p in d.student.named_parameters():
        assert torch.allclose(p.double(), want[n], atol=1e-6), n


def test_optimizer_groups():
    d = pair(student_dim=16)
    opt = build_optimizer([d.student, d.teacher, d.align], lr=1e-3, weight_decay=0.05,
                          layer_decay=0.5)
    where = {}
    for g in opt.param_groups:
        for name, p in zip(g["names"], g["params"]):
            where[id(p)] = (name, g["weight_decay"], g["lr"])
    trainable = [p for m in (d.student, d.teacher, d.align) for p in m.parameters()
                 if p.requires_grad]
    assert len(where) == len(trainable) and all(id(p) in where for p in trainable)
    assert all(id(p) not in where for p in d.teacher.blocks[0].parameters())  # frozen: never seen
    wd = {name: (decay, lr) for name, decay, lr in where.values()}
    s = d.student  # depth 2: embeddings lr x 0.5^3, block 0 x 0.5^2, block 1 x 0.5, head x 1
    assert where[id(s.pos_embed)][1:] == (0.0, pytest.approx(1e-3 * 0.125))
    assert where[id(s.cls_token)][1] == 0.0
    assert where[id(s.patch_embed.proj.weight)][1:] == (0.05, pytest.approx(1e-3 * 0.125))
    assert where[id(s.blocks[0].attn.qkv.weight)][1:] == (0.05, pytest.approx(1e-3 * 0.25))
    assert where[id(s.blocks[1].ls1.gamma)][1:] == (0.0, pytest.approx(1e-3 * 0.5))
    assert where[id(s.blocks[1].norm1.weight)][1] == 0.0
    assert where[id(s.blocks[1].mlp.fc1.bias)][1] == 0.0
    assert where[id(s.clip_projector.cross_attn.q_bias)][1] == 0.0
    assert where[id(s.head.weight)][1:] == (0.05, pytest.approx(1e-3))
    assert where[id(d.teacher.blocks[3].attn.qkv.weight)][1:] == (0.05, pytest.approx(1e-3 * 0.5))
    assert where[id(d.align.weight)][1:] == (0.05, pytest.approx(1e-3))
    # each group's decay, as AdamW applies it: 0 exactly for 1-D, cls, pos
    for g in opt.param_groups:
        for name, p in zip(g["names"], g["params"]):
            assert g["weight_decay"] == (0.0 if p.ndim <= 1 or name in ("cls_token", "pos_embed")
                                         else 0.05), name
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.05}
    assert wd["blocks.0.attn.qkv.weight"][0] == 0.05 and wd["blocks.0.ls1.gamma"][0] == 0.0
    with pytest.raises(ValueError, match="nothing to optimize"):
        build_optimizer(freeze_teacher(VideoViT(cfg()), "none"), lr=1e-3)


def tiny_fastvqa(dim=4):
    return FastVQAConfig(embed_dim=dim, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), head_hidden=8,
                         drop_path=0.0, head_dropout=0.0)


def test_a_fastvqa_student_learns_from_its_own_view():
    """Two views: the teacher reads its clips, FAST-VQA its fragments of the same moment. The
    loss by hand (the student's feature: the space-time mean of its final map, no projection at
    equal widths), the views never swapped, and an optimizer step that moves the student."""
    torch.manual_seed(0)
    teacher = freeze_teacher(VideoViT(cfg(pool_dim=32)))
    d = Distiller(teacher, FastVQA(tiny_fastvqa(dim=4))).eval()  # final map: 32 channels
    assert isinstance(d.align, torch.nn.Identity)
    (x_t, y), x_s = batch(b=4), torch.randn(4, 3, 4, 64, 64)
    out = d((x_t, x_s), y)
    fmap, ft = d.student.forward_features(x_s), d.teacher.forward_features(x_t)
    ss = d.student.vqa_head(fmap).flatten(1).mean(1)  # the mean of the per-token scores
    st = d.teacher.head(ft).squeeze(-1)
    fs = fmap.flatten(2).mean(-1)  # (4, 32)
    norm = lambda f: (f - f.mean(-1, keepdim=True)) / torch.sqrt(
        f.var(-1, unbiased=False, keepdim=True) + 1e-5)
    diff = (norm(fs) - norm(ft)).abs()
    smooth_l1 = torch.where(diff < 2.0, 0.5 * diff ** 2 / 2.0, diff - 1.0).mean()
    torch.testing.assert_close(out["loss_student"], ((ss - y) ** 2).mean())
    torch.testing.assert_close(out["loss_teacher"], ((st - y) ** 2).mean())
    torch.testing.assert_close(out["loss_align"], smooth_l1)
    with pytest.raises(ValueError, match="expected"):  # the teacher's clips are not FAST-VQA's
        d((x_s, x_t), y)
    opt = build_optimizer([d.student, d.teacher, d.align], lr=1e-2)
    d.train()
    before = {n: p.detach().clone() for n, p in d.student.named_parameters()}
    d((x_t, x_s), y)["loss"].backward()
    opt.step()
    moved = [n for n, p in d.student.named_parameters() if not torch.equal(before[n], p)]
    assert "fragments_backbone.patch_embed.proj.weight" in moved and FastVQA.SCORE_BIAS in moved


def test_compiled_distiller_with_the_student_term_off():
    """torch.compile (aot_eager: the graph capture and autograd of --compile, fast on a CPU) of a
    Distiller with w_student=0: every parameter that requires grad gets a gradient, and the
    student's head, frozen by the Distiller because its term is off, keeps grad None and is left
    unchanged by an AdamW step (with weight decay, a zero gradient would still move it)."""
    torch.manual_seed(0)
    teacher = freeze_teacher(VideoViT(cfg(dim=32, depth=2, pool_dim=16)))
    d = Distiller(teacher, VideoViT(cfg(dim=32, depth=1, pool_dim=16)), w_student=0)
    assert not any(p.requires_grad for p in d.student.head.parameters())
    opt = build_optimizer([d.student, d.teacher, d.align], lr=1e-2, weight_decay=0.05)
    head = [p.detach().clone() for p in d.student.head.parameters()]
    x, y = batch()
    d.train()
    torch.compile(d, backend="aot_eager")(x, y)["loss"].backward()
    assert [n for n, p in d.named_parameters() if p.requires_grad and p.grad is None] == []
    assert all(p.grad is None for p in d.student.head.parameters())
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(head, d.student.head.parameters()))

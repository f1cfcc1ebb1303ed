"""Tests of model.py: shapes, official sizes and key layout, attention paths, an independent
re-implementation of the upstream forward (float32, and float64 to rounding), a bf16 frozen prefix
without autocast, and checkpoint loading (also into models built on the meta device).

    python -m pytest -q tests/test_model.py
"""
import argparse
import copy
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fastvqa import FastVQA, FastVQAConfig
from model import (CONFIGS, RMSNorm, VideoViT, ViTConfig, checkpoint_grid,
                   dct_patch_init, flops_per_clip, load_internvideo2, remap_state_dict,
                   sincos_pos_embed)
from runtime import config_of, load_weights, read_model

TINY_FASTVQA = FastVQAConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                             head_hidden=8)


def tiny(**kw):
    base = dict(embed_dim=64, depth=2, num_heads=4, pool_heads=4, pool_dim=32, num_frames=4,
                img_size=28, init_values=0.5)
    return ViTConfig(**{**base, **kw})


def clip(cfg, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, cfg.num_frames, cfg.img_size, cfg.img_size, generator=g)


def randomize(model, seed=0):
    """Give every parameter random values, so that a key loaded into the wrong place shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.ndim == 1 else 0.0))
    return model


def test_shapes():
    cfg = tiny()
    model = VideoViT(cfg)
    x = clip(cfg)
    assert model.embed(x).shape == (2, 1 + 4 * 2 * 2, 64)
    assert model.forward_features(x).shape == (2, 32)
    assert model(x).shape == (2,)
    assert VideoViT(tiny(num_outputs=5))(x).shape == (2, 5)


@pytest.mark.parametrize("shape", [(2, 4, 28, 28, 3), (2, 3, 3, 28, 28), (2, 3, 4, 28, 30),
                                   (3, 4, 28, 28)])
def test_bad_input_shape_names_the_shape(shape):
    with pytest.raises(ValueError, match=str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        VideoViT(tiny())(torch.zeros(shape))


@pytest.mark.parametrize("name, keys, params_m", [("small", 178, 23.0), ("base", 178, 89.4),
                                                  ("large", 334, 308.9), ("1b", 542, 1020.7)])
def test_official_sizes_on_meta_device(name, keys, params_m):
    with torch.device("meta"):
        sd = VideoViT(CONFIGS[name]).state_dict()
    assert len(sd) == keys
    assert abs(sum(v.numel() for v in sd.values()) / 1e6 - params_m) < 0.1
    assert sd["pos_embed"].shape == (1, 2049, CONFIGS[name].embed_dim)
    assert sd["patch_embed.proj.weight"].shape == (CONFIGS[name].embed_dim, 3, 1, 14, 14)
    if name == "1b":
        assert sd["blocks.39.attn.qkv.weight"].shape == (4224, 1408)
        assert sd["blocks.0.mlp.fc1.weight"].shape == (6144, 1408)
        assert "blocks.40.norm1.weight" not in sd
    names = {k.split(".", 2)[-1] for k in sd if k.startswith("blocks.0.")}
    assert names == {"norm1.weight", "attn.qkv.weight", "attn.q_norm.weight", "attn.k_norm.weight",
                     "attn.proj.weight", "attn.proj.bias", "ls1.gamma", "norm2.weight",
                     "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
                     "ls2.gamma"}


def test_fused_attention_equals_manual():
    cfg = tiny()
    fused = randomize(VideoViT(cfg)).eval()
    manual = VideoViT(ViTConfig(**{**cfg.__dict__, "fused_attn": False})).eval()
    manual.load_state_dict(fused.state_dict())
    x = clip(cfg)
    torch.testing.assert_close(fused(x), manual(x), rtol=1e-5, atol=1e-5)


def reference_forward(sd, cfg, x):
    """An independent functional forward written from the upstream description, reading the
    official state dict directly: qkv reshaped (B, N, 3, heads, hd) as upstream does, q/k norm
    applied to the transposed-back full width, GELU tanh, attention pooling, fc_norm, head."""
    def rms(t, w):  # in float32 at least, as upstream
        t = t.to(torch.promote_types(t.dtype, torch.float32))
        return w * (t * (t.pow(2).mean(-1, keepdim=True) + 1e-6).rsqrt())

    B = x.shape[0]
    D, H = cfg.embed_dim, cfg.num_heads
    t = F.conv3d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=(1, 14, 14))
    t = t.permute(0, 2, 3, 4, 1).reshape(B, -1, D)  # (B, T*h*w, D), frame by frame, row-major
    t = torch.cat([sd["cls_token"].expand(B, 1, D), t], 1) + sd["pos_embed"]
    N = t.shape[1]
    for i in range(cfg.depth):
        p = lambda k: sd[f"blocks.{i}.{k}"]
        h = rms(t, p("norm1.weight"))
        qkv = (h @ p("attn.qkv.weight").T).reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = rms(q.transpose(1, 2).reshape(B, N, D),
                p("attn.q_norm.weight")).reshape(B, N, H, -1).transpose(1, 2)
        k = rms(k.transpose(1, 2).reshape(B, N, D),
                p("attn.k_norm.weight")).reshape(B, N, H, -1).transpose(1, 2)
        a = ((q * (D // H) ** -0.5) @ k.transpose(-1, -2)).softmax(-1) @ v
        a = a.transpose(1, 2).reshape(B, N, D) @ p("attn.proj.weight").T + p("attn.proj.bias")
        t = t + p("ls1.gamma") * a
        h = rms(t, p("norm2.weight")) @ p("mlp.fc1.weight").T + p("mlp.fc1.bias")
        h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
        t = t + p("ls2.gamma") * (h @ p("mlp.fc2.weight").T + p("mlp.fc2.bias"))
    c = lambda k: sd[f"clip_projector.{k}"]
    ln = lambda u, n: F.layer_norm(u, (D,), c(f"{n}.weight"), c(f"{n}.bias"), 1e-5)
    Hp = cfg.pool_heads
    q = ln(t.mean(1, keepdim=True), "norm1_q") @ c("cross_attn.q.weight").T + c("cross_attn.q_bias")
    k = ln(t, "norm1_k") @ c("cross_attn.k.weight").T + c("cross_attn.k_bias")
    v = ln(t, "norm1_v") @ c("cross_attn.v.weight").T + c("cross_attn.v_bias")
    q, k, v = (u.reshape(B, -1, Hp, D // Hp).transpose(1, 2) for u in (q, k, v))
    a = ((q * (D // Hp) ** -0.5) @ k.transpose(-1, -2)).softmax(-1) @ v
    f = a.transpose(1, 2).reshape(B, D) @ c("cross_attn.proj.weight").T + c("cross_attn.proj.bias")
    f = F.layer_norm(f, (cfg.pool_dim,), sd["fc_norm.weight"], sd["fc_norm.bias"], 1e-5)
    return f, (f @ sd["head.weight"].T + sd["head.bias"]).squeeze(-1)


def test_forward_matches_independent_reference():
    cfg = tiny()
    model = randomize(VideoViT(cfg)).eval()
    x = clip(cfg)
    feat, score = reference_forward(model.state_dict(), cfg, x)
    torch.testing.assert_close(model.forward_features(x), feat, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model(x), score, rtol=1e-4, atol=1e-4)


def test_forward_matches_independent_reference_in_float64():
    """In float64 the two forwards agree to rounding (1e-10), far below what the tanh GELU (the
    exact one is ~1e-4 away) or RMSNorm's eps (1e-6; 1e-5 moves the output by ~1e-6) change;
    RMSNorm computes in float64 too (at least float32, as upstream)."""
    cfg = tiny()
    model = randomize(VideoViT(cfg)).eval().double()
    x = clip(cfg).double()
    feat, score = reference_forward(model.state_dict(), cfg, x)
    assert feat.dtype == score.dtype == torch.float64
    torch.testing.assert_close(model.forward_features(x), feat, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(x), score, rtol=1e-10, atol=1e-10)


def test_rmsnorm_normalises_in_at_least_float32():
    """Against x / sqrt(mean(x^2) + eps) in float64, written here: float32 and float64 inputs
    normalise to their own precision; a bf16 input is normalised in float32, rounded to bf16 once,
    then scaled by the weight (upstream's order), so all but a rare element (where float32 and
    float64 round to different bf16 neighbours) equal the reference rounded to bf16; a bf16
    model's output stays bf16."""
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(64)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(64, generator=g) + 0.5)
    x = torch.randn(4, 50, 64, generator=g, dtype=torch.float64) * 3
    w = norm.weight.detach().double()

    def want(x):
        x = x.double()
        return x / (x.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()

    with torch.no_grad():
        out32, out64 = norm(x.float()), copy.deepcopy(norm).double()(x)
        xb = x.to(torch.bfloat16)
        outb, outbb = norm(xb), copy.deepcopy(norm).to(torch.bfloat16)(xb)
    assert (out32.dtype, out64.dtype, outb.dtype, outbb.dtype) == (
        torch.float32, torch.float64, torch.float32, torch.bfloat16)
    torch.testing.assert_close(out32.double(), w * want(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out64, w * want(x), rtol=1e-12, atol=1e-12)
    rounded = w.float() * want(xb).to(torch.bfloat16).float()
    off = (outb - rounded).abs() / rounded.abs()
    assert off.max() <= 2 ** -7 and (off > 0).float().mean() < 0.01, (off > 0).float().mean()


def test_sincos_table():
    dim, t, h, w = 64, 3, 2, 5
    pe = sincos_pos_embed(dim, t, h, w)
    assert pe.shape == (1 + t * h * w, dim)
    assert torch.all(pe[0] == 0) and pe.abs().max() <= 1
    grid = pe[1:].reshape(t, h * w, dim)
    # temporal: same within a frame
    assert torch.equal(grid[:, :1, :16].expand(t, h * w, 16), grid[:, :, :16])
    # spatial: same across frames
    assert torch.equal(grid[:1, :, 16:].expand(t, h * w, 48), grid[:, :, 16:])
    assert len({tuple(r.tolist()) for r in pe[1:]}) == t * h * w  # every position distinct


def test_flops_estimate_matches_torch_flop_counter():
    cfg = tiny(depth=3, fused_attn=False)  # the counter does not see the CPU fused kernel
    model = VideoViT(cfg).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip(cfg, batch=1))
    assert counter.get_total_flops() == pytest.approx(flops_per_clip(cfg), rel=1e-3)


def test_grad_checkpointing_gives_the_same_gradients():
    cfg = tiny()
    grads = []
    for ckpt in (False, True):
        model = VideoViT(ViTConfig(**{**cfg.__dict__, "grad_checkpointing": ckpt}))
        randomize(model)
        model(clip(cfg)).sum().backward()
        grads.append(model.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_drop_path_only_in_training():
    cfg = tiny(drop_path=0.5)
    model = randomize(VideoViT(cfg))
    x = clip(cfg)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    outs = [model(x) for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


# ------------------------------------------------------------------------------------------
# Loading


def official_file(source, frames=None):
    """Wrap a state dict like the stage-2 release: nested under `module`, vision keys prefixed,
    plus the decoders, text tower and extra tables that a vision-only model must drop."""
    sd = {f"vision_encoder.{k}": v.clone() for k, v in source.state_dict().items()}
    sd.update({"vision_encoder.clip_decoder.0.head.weight": torch.zeros(3, 3),
               "vision_encoder.final_clip_decoder.head.weight": torch.zeros(3),
               "vision_encoder.img_pos_embed": torch.zeros(1, 5, 2),
               "vision_encoder.clip_pos_embed": torch.zeros(2),
               "text_encoder.bert.encoder.layer.0.weight": torch.zeros(2),
               "vision_proj.weight": torch.zeros(2, 2),
               "text_proj.weight": torch.zeros(2, 2), "temp": torch.tensor(0.07),
               "itm_head.weight": torch.zeros(2)})
    return {"module": sd}


def test_official_layout_loads_and_reproduces_outputs():
    cfg = tiny(img_size=224)  # official files: 16 x 16 patches a frame
    source, target = randomize(VideoViT(cfg), 1).eval(), VideoViT(cfg).eval()
    report = load_internvideo2(target, official_file(source))
    assert len(report["loaded"]) == len(source.state_dict())
    assert len(report["dropped"]) == 9 and report["left_at_init"] == [] and report["resized"] == []
    x = clip(cfg)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)
    assert torch.equal(target.pos_embed, source.pos_embed)  # same size: untouched


def test_remap_strips_every_wrapper():
    sd = {"model": {"backbone.encoder.blocks.0.ls1.gamma": torch.ones(2), "args": "not a tensor"}}
    out, dropped = remap_state_dict(sd)
    assert list(out) == ["blocks.0.ls1.gamma"] and dropped == ["args"]


def test_four_frame_checkpoint_into_eight_frame_model():
    src = randomize(VideoViT(tiny(num_frames=4, img_size=224)), 2)
    # Patch rows of frame f hold the value f: linear interpolation from 4 to 8 frames with
    # align_corners False samples source frame i/2 - 1/4, clamped to [0, 3].
    with torch.no_grad():
        src.pos_embed[0, 1:] = torch.arange(4.0).repeat_interleave(256)[:, None]
    dst = VideoViT(tiny(num_frames=8, img_size=224))
    report = load_internvideo2(dst, src.state_dict())
    assert report["resized"] == ["pos_embed (1, 1025, 64) on a 4 x 16 x 16 grid -> (1, 2049, 64)"]
    per_frame = dst.pos_embed[0, 1:].reshape(8, 256, 64)
    expected = torch.tensor([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])
    torch.testing.assert_close(per_frame, expected[:, None, None].expand(8, 256, 64))
    assert torch.equal(dst.pos_embed[0, 0], src.pos_embed[0, 0])  # cls row kept
    assert torch.equal(dst.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)


def test_spatial_resize_is_bicubic_per_frame():
    src = VideoViT(tiny(num_frames=2, img_size=224))
    dst = VideoViT(tiny(num_frames=2, img_size=112))
    with torch.no_grad():
        src.pos_embed[0, 1:] = torch.randn(2 * 256, 64)
    load_internvideo2(dst, src.state_dict())
    grid = src.pos_embed[0, 1:].reshape(2, 16, 16, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(dst.pos_embed[0, 1:], expected.permute(0, 2, 3, 1).reshape(128, 64))


def test_classifier_head_is_left_at_init_and_reported():
    cfg = tiny(num_frames=2)  # 8 patch rows: only 2 x 2 x 2 reads them
    source = randomize(VideoViT(tiny(num_frames=2, num_outputs=710)))
    target = VideoViT(cfg)
    head_before = target.head.weight.clone()
    report = load_internvideo2(target, source.state_dict())
    assert report["left_at_init"] == ["head.weight", "head.bias"]
    assert torch.equal(target.head.weight, head_before)
    assert torch.equal(target.fc_norm.weight, source.fc_norm.weight)
    sd = {k: v for k, v in source.state_dict().items() if not k.startswith(("head.", "fc_norm."))}
    report = load_internvideo2(target, sd)  # a pretrain file: no fc_norm, no head
    assert sorted(report["left_at_init"]) == ["fc_norm.bias", "fc_norm.weight", "head.bias",
                                              "head.weight"]


def test_missing_unexpected_and_misshaped_keys_raise_one_error_listing_all():
    cfg = tiny(num_frames=2)  # 8 patch rows: only 2 x 2 x 2 reads them
    sd = VideoViT(cfg).state_dict()
    del sd["blocks.1.attn.k_norm.weight"]
    sd["blocks.0.mlp.fc1.weight"] = torch.zeros(7, 64)
    sd["blocks.9.norm1.weight"] = torch.zeros(64)
    with pytest.raises(ValueError) as err:
        load_internvideo2(VideoViT(cfg), sd)
    msg = str(err.value)
    assert "missing: blocks.1.attn.k_norm.weight" in msg
    assert "unexpected: blocks.9.norm1.weight" in msg
    assert "blocks.0.mlp.fc1.weight: file (7, 64) vs model (256, 64)" in msg
    report = load_internvideo2(VideoViT(cfg), sd, strict=False)
    assert report["missing"] == ["blocks.1.attn.k_norm.weight"]


def test_file_with_non_tensor_objects_needs_trust(tmp_path):
    cfg = tiny(num_frames=2)  # 8 patch rows: only 2 x 2 x 2 reads them
    source = randomize(VideoViT(cfg))
    path = tmp_path / "deepspeed.pt"
    torch.save({"module": source.state_dict(), "args": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(ValueError, match="trust=True") as err:
        load_internvideo2(VideoViT(cfg), str(path))
    assert str(path) in str(err.value)
    target = VideoViT(cfg)
    load_internvideo2(target, str(path), trust=True)
    assert torch.equal(target.head.weight, source.head.weight)
    torch.save({"model": source.state_dict()}, tmp_path / "plain.pt")  # plain files need no trust
    load_internvideo2(VideoViT(cfg), str(tmp_path / "plain.pt"))


def test_dct_patch_init_is_the_orthonormal_2d_dct_of_each_channel():
    from scipy.fft import dctn
    cfg = ViTConfig(embed_dim=48, depth=1, num_heads=2, num_frames=2, img_size=28, tubelet_size=2,
                    patch_init="dct")
    conv = torch.nn.Conv3d(3, 48, (2, 14, 14), stride=(2, 14, 14))
    dct_patch_init(conv)
    # what patch_init="dct" does
    assert torch.equal(VideoViT(cfg).patch_embed.proj.weight, conv.weight)
    x = torch.randn(1, 3, 2, 14, 14, dtype=torch.float64)
    out = F.conv3d(x, conv.weight.double(), conv.bias.double(), stride=conv.stride).flatten()
    # (3, 14, 14); frames summed
    coef = dctn(x.sum(2)[0].numpy(), type=2, norm="ortho", axes=(1, 2))
    freqs = sorted(((u, v) for u in range(14) for v in range(14)), key=lambda f: (f[0] + f[1], f))
    for i in range(48):
        u, v = freqs[i // 3]
        want = 0.3 * (1 + u + v) / 2 * coef[i % 3, u, v]
        # float32 weights
        assert math.isclose(out[i].item(), want, rel_tol=1e-5, abs_tol=1e-6), (i, u, v)
    # a flat patch excites only the DC filters
    flat = torch.ones(1, 3, 2, 14, 14, dtype=torch.float64)
    resp = F.conv3d(flat, conv.weight.double(), stride=conv.stride).flatten()
    # float32 weights
    assert resp[:3].abs().min() > 0.1 and resp[3:].abs().max() < 1e-6 * resp[:3].abs().min()


def test_a_bare_table_of_the_models_size_is_not_guessed_either():
    """A state dict without geometry whose table has the model's row count: 72 patch rows read as
    2 x 6 x 6 or 8 x 3 x 3, so it needs a frame count; with it, it is resized from its real grid."""
    source = randomize(VideoViT(tiny(num_frames=2, img_size=84)), 4)  # 2 x 6 x 6
    target = VideoViT(tiny(num_frames=8, img_size=42))  # 8 x 3 x 3: the same 72 rows
    with pytest.raises(ValueError, match=r"8 x 3 x 3 or 2 x 6 x 6.*--ckpt-frames"):
        load_internvideo2(target, source.state_dict())
    report = load_internvideo2(target, source.state_dict(), frames=2)
    assert report["resized"] == ["pos_embed (1, 73, 64) on a 2 x 6 x 6 grid -> (1, 73, 64)"]
    # by hand: 2 -> 8 frames linear (align_corners False: frame j samples j / 4 - 3 / 8, clamped),
    # then 6 x 6 -> 3 x 3 bicubic per frame
    src = source.pos_embed[0, 1:].detach().reshape(2, 6, 6, 64)
    pos = (torch.arange(8) + 0.5) / 4 - 0.5
    w = pos.clamp(0, 1)[:, None, None, None]
    timed = (1 - w) * src[0] + w * src[1]  # (8, 6, 6, 64)
    spatial = F.interpolate(timed.permute(0, 3, 1, 2), size=(3, 3), mode="bicubic",
                            align_corners=False)
    torch.testing.assert_close(target.pos_embed[0, 1:], spatial.permute(0, 2, 3, 1).reshape(72, 64))
    assert torch.equal(target.pos_embed[0, 0], source.pos_embed[0, 0])
    single = randomize(VideoViT(tiny(num_frames=1, img_size=98)), 5)  # 49 rows: only 1 x 7 x 7
    again = VideoViT(tiny(num_frames=1, img_size=98))
    assert load_internvideo2(again, single.state_dict())["resized"] == []
    assert torch.equal(again.pos_embed, single.pos_embed)


def test_a_position_table_grid_is_never_guessed():
    # official: 16 x 16 a frame
    assert checkpoint_grid(2049) == (8, 16, 16) and checkpoint_grid(1025) == (4, 16, 16)
    assert (checkpoint_grid(73, saved_grid=(2, 6, 6)) == (2, 6, 6)
            and checkpoint_grid(73, frames=2) == (2, 6, 6))
    with pytest.raises(ValueError, match=r"8 x 3 x 3 or 2 x 6 x 6.*--ckpt-frames"):
        checkpoint_grid(73)  # a 2 x 84 px table: 72 patch rows read two ways
    with pytest.raises(ValueError, match="not 5 frames"):
        checkpoint_grid(73, frames=5)
    with pytest.raises(ValueError, match=r"saved geometry \(2, 4, 4\)"):
        checkpoint_grid(73, saved_grid=(2, 4, 4))


def project_checkpoint(path, model, **extra):
    """A training checkpoint of this project, as train.py writes it (the fields load_weights
    reads)."""
    torch.save(dict(student=model.state_dict(), student_config=asdict(model.cfg), teacher=None,
                    config={}, **extra), path)


def test_a_checkpoint_of_this_project_loads_at_its_saved_geometry(tmp_path):
    quick = randomize(VideoViT(tiny(num_frames=2, img_size=84)), 3)  # 2 x 6 x 6: 72 patch rows
    project_checkpoint(tmp_path / "best.pt", quick)
    # 8 x 3 x 3: also 72 patch rows, another grid
    target = VideoViT(tiny(num_frames=8, img_size=42))
    report = load_weights(target, str(tmp_path / "best.pt"))
    assert report["resized"] == ["pos_embed (1, 73, 64) on a 2 x 6 x 6 grid -> (1, 73, 64)"]
    assert not torch.equal(target.pos_embed, quick.pos_embed) and report["left_at_init"] == []
    x = clip(target.cfg)
    # 4 x 6 x 6: a real resize, from the saved 2 x 6 x 6
    bigger = VideoViT(tiny(num_frames=4, img_size=84))
    load_weights(bigger, str(tmp_path / "best.pt"))
    per_frame = bigger.pos_embed[0, 1:].reshape(4, 36, -1)
    src = quick.pos_embed[0, 1:].reshape(2, 36, -1)
    # linear, 2 -> 4
    expected = torch.stack([src[0], 0.75 * src[0] + 0.25 * src[1], 0.25 * src[0] + 0.75 * src[1],
                            src[1]])
    torch.testing.assert_close(per_frame, expected)
    assert target(x).shape == (2,)
    with pytest.raises(ValueError, match=f"{tmp_path / 'best.pt'}: holds no teacher weights"):
        load_weights(VideoViT(tiny()), str(tmp_path / "best.pt"), which="teacher")
    project_checkpoint(tmp_path / "partial.pt", quick, student_partial=True)
    with pytest.raises(ValueError, match="only the trainable part"):
        load_weights(VideoViT(tiny()), str(tmp_path / "partial.pt"))


def test_load_weights_names_the_file_and_what_does_not_fit(tmp_path):
    sd = VideoViT(tiny()).state_dict()
    del sd["blocks.1.mlp.fc2.bias"]
    torch.save({"module": sd}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd.pth: state dict does not fit (.|\n)*"
                                         r"missing: blocks.1.mlp.fc2.bias"):
        load_weights(VideoViT(tiny()), str(tmp_path / "odd.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a torch checkpoint"):
        load_weights(VideoViT(tiny()), str(tmp_path / "junk.pth"))
    with pytest.raises(ValueError, match="gone.pth: cannot be read as a torch checkpoint"):
        load_weights(VideoViT(tiny()), str(tmp_path / "gone.pth"))
    fast = FastVQA(TINY_FASTVQA)  # an earlier version's CNN student: no config, no model for it
    torch.save(dict(student={"stem.0.weight": torch.zeros(1)}, student_config=None, teacher=None,
                    config={}),
               tmp_path / "conv.pt")
    with pytest.raises(ValueError, match="conv.pt: holds an earlier version's CNN student"):
        load_weights(fast, str(tmp_path / "conv.pt"))


def test_config_of_an_official_file_by_width_and_depth():
    with torch.device("meta"):
        sd = {f"module.backbone.{k}": v for k, v in VideoViT(CONFIGS["base"]).state_dict().items()}
    cfg = config_of(sd, num_frames=4)
    assert (cfg.embed_dim, cfg.depth, cfg.num_frames) == (768, 12, 4)
    with pytest.raises(ValueError, match="not an InternVideo2 vision encoder"):
        config_of({"foo": torch.zeros(1)})


@pytest.mark.parametrize("trainable", ["last", "none"])
def test_a_bf16_frozen_prefix_hands_over_without_autocast(trainable):
    """A teacher whose frozen prefix is stored in bf16 (Distiller's teacher_dtype), run without
    autocast: forward and distill.teacher_features give the same float32 scores, close to the
    float32 teacher's, and the float32 tail computes in float32 on what the prefix hands over (the
    stream cast once; left to type promotion, its RMSNorms would round to bf16). "none": every
    block is frozen, so the bf16 stream meets the float32 pooling directly."""
    from distill import Distiller, freeze_teacher, teacher_features
    cfg = tiny()
    fp32 = freeze_teacher(randomize(VideoViT(cfg)), trainable).eval()
    teacher = freeze_teacher(VideoViT(cfg), trainable)
    teacher.load_state_dict(fp32.state_dict())
    Distiller(teacher, None, w_align=0, teacher_dtype=torch.bfloat16)
    n = cfg.depth - 1 if trainable == "last" else cfg.depth  # the frozen prefix
    assert ([b.mlp.fc1.weight.dtype for b in teacher.blocks]
            == [torch.bfloat16] * n + [torch.float32] * (cfg.depth - n))
    assert teacher.clip_projector.cross_attn.q.weight.dtype == torch.float32
    teacher.eval()
    x = clip(cfg)
    with torch.no_grad():
        whole = teacher(x)
        parts = teacher.forward_head(teacher_features(teacher, x))
    assert whole.dtype == parts.dtype == torch.float32
    torch.testing.assert_close(whole, parts, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(whole, fp32(x), rtol=0.05, atol=0.05)  # bf16 keeps 8 bits
        handed = teacher.run_blocks(teacher.embed(x), teacher.blocks[:n])
        assert handed.dtype == torch.bfloat16
        tail = fp32.forward_head(fp32.pool(fp32.run_blocks(handed.float(), fp32.blocks[n:])))
    torch.testing.assert_close(whole, tail, rtol=1e-6, atol=1e-6)


def test_a_model_built_on_the_meta_device_loads_as_a_normal_one(tmp_path):
    """Built on the meta device (no memory, no init) and loaded, a model equals the same file loaded
    into a normally built one; the parts the file lacks (a 710-class head, or fc_norm and head of a
    backbone file) get memory and the init, finite: the head at 1e-3 x trunc-normal 0.02, zero
    bias."""
    cfg = tiny(num_frames=2)
    source = randomize(VideoViT(tiny(num_frames=2, num_outputs=710)), 6)
    backbone = {k: v for k, v in source.state_dict().items()
                if not k.startswith(("head.", "fc_norm."))}
    for sd in (source.state_dict(), backbone):
        normal = VideoViT(cfg)
        load_internvideo2(normal, sd)
        with torch.device("meta"):
            meta = VideoViT(cfg)
        report = load_internvideo2(meta, sd)
        assert not any(p.is_meta for p in meta.parameters())
        fresh = set(report["left_at_init"])
        assert fresh == ({"head.weight", "head.bias"} if sd is not backbone else
                         {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"})
        a, b = normal.state_dict(), meta.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a if k not in fresh)
        assert all(torch.isfinite(b[k]).all() for k in fresh)
        assert torch.equal(b["head.bias"], torch.zeros(1))
        assert 0.5e-5 < b["head.weight"].std().item() < 3e-5 and b["head.weight"].abs().max() < 1e-3
        if "fc_norm.weight" in fresh:
            assert (torch.equal(b["fc_norm.weight"], torch.ones(32))
                    and torch.equal(b["fc_norm.bias"], torch.zeros(32)))
    # this project's checkpoint, through runtime.read_model
    project_checkpoint(tmp_path / "best.pt", source)
    model, _, report = read_model(str(tmp_path / "best.pt"))
    assert report["left_at_init"] == [] and not any(p.is_meta for p in model.parameters())
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
    # a FAST-VQA student of this project: read back at its saved config, every tensor equal
    torch.manual_seed(0)
    fast = FastVQA(TINY_FASTVQA)
    torch.save(dict(student=fast.state_dict(), student_config=asdict(fast.cfg), teacher=None,
                    config={}), tmp_path / "fast.pt")
    model, _, report = read_model(str(tmp_path / "fast.pt"))
    assert isinstance(model, FastVQA) and model.cfg == fast.cfg and report["left_at_init"] == []
    assert all(torch.equal(v, fast.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="fast.pt: holds a FAST-VQA student, not a VideoViT"):
        load_weights(VideoViT(tiny()), str(tmp_path / "fast.pt"))
    with pytest.raises(ValueError, match="best.pt: holds an InternVideo2 ViT student, not a Fast"):
        load_weights(FastVQA(TINY_FASTVQA), str(tmp_path / "best.pt"))


def test_scores_stay_float32_under_bf16_autocast():
    """A fresh head's spread (~1e-3) is below bf16's step near 0.6 (~4e-3): bf16 scores would all
    tie."""
    model = VideoViT(tiny()).eval()
    with torch.no_grad():
        model.head.bias.fill_(0.6)
    x = clip(model.cfg, batch=8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        scores = model(x)
    assert scores.dtype == torch.float32 and len(set(scores.tolist())) == 8


def test_the_official_reading_comes_before_a_frame_count():
    # an official 8-frame table is never 2 x 32 x 32
    assert checkpoint_grid(2049, frames=2) == (8, 16, 16)

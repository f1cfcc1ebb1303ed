"""Tests of fastvqa.py: parity with the official FAST-VQA code, the official key layout, the
window geometry and the gate, fused vs manual attention, FLOPs, and checkpoint loading.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_fastvqa.py     # about 25 s on one core

The parity fixture, tests/fixtures/fastvqa_official.json, holds numbers only: the outputs of the
official code (github.com/VQAssessment/FAST-VQA-and-FasterVQA, commit 9f264e4) for FAST-VQA-B at
1x3x32x224x224 (the paper's input), 8x96x96 (stage 4 unshifted), 10x64x64 and 14x96x96 (maps
padded in time, shift larger than the adapted window) and FAST-VQA-M at 16x128x128 and 16x160x160
(padded in space), and the official state-dict keys and shapes of B and M. It was made by
building fastvqa/models/swin_backbone.py's SwinTransformer3D(use_checkpoint=False) (M:
window_size=(4, 4, 4), frag_biases=[0, 0, 0, 0]) and head.py's VQAHead(768, 64) with einops and a
stand-in for timm's DropPath / trunc_normal_, in float64 and eval mode, filling every parameter
with `fill` below (keys prefixed fragments_backbone. / vqa_head. as in the released files), and
recording the mean of the head's map and the backbone map's per-channel and per-position means.
No official code is in this repository. Tolerances: 1e-9 absolute in float64 (the cases agree to
about 1e-15); the 32x224x224 case runs here in float32 (5 s instead of 18 s in float64) at 1e-5
absolute (it agrees to about 1e-7).
"""
import copy
import functools
import json
import math
import os
from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fastvqa import (FASTVQA_CONFIGS, OFFICIAL_SCORE_STATS, FastVQA, FastVQAConfig, attention,
                     fastvqa_config_of, flops_per_clip, fragment_gate, is_fastvqa_state,
                     load_fastvqa, official_quality, relative_position_index, remap_fastvqa,
                     shift_mask, stage_window)

with open(os.path.join(os.path.dirname(__file__), "fixtures", "fastvqa_official.json")) as _f:
    OFFICIAL = json.load(_f)


def fill(model, seed):
    """Every floating tensor of the state dict, in sorted key order, from one float64 generator:
    bias tables N(0, 0.5^2) (so the position bias and the gate matter), norm weights 1 + N(0,
    0.2^2), other vectors N(0, 0.1^2), matrices N(0, 1 / fan_in). Integer buffers are skipped."""
    g = torch.Generator().manual_seed(seed)
    named = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name in sorted(named):
            t = named[name]
            if not t.is_floating_point():
                continue
            x = torch.randn(t.shape, generator=g, dtype=torch.float64)
            if name.endswith("position_bias_table"):
                x = x * 0.5
            elif t.ndim == 1 and "norm" in name and name.endswith("weight"):
                x = 1 + 0.2 * x
            elif t.ndim == 1:
                x = x * 0.1
            else:
                x = x / math.sqrt(math.prod(t.shape[1:]))
            t.copy_(x)
    return model


@functools.lru_cache(maxsize=None)
def filled(name, seed):
    """A float64 model filled like the official one (cached: filling 28M values takes a while)."""
    return fill(FastVQA(FASTVQA_CONFIGS[name]).double(), seed).eval()


def case_id(case):
    return f"{case['config']}-" + "x".join(map(str, case["input_shape"][2:]))


# ---------------------------------------------------------------------------------------------
# Parity with the official code


@pytest.mark.parametrize("case", OFFICIAL["cases"], ids=case_id)
def test_matches_the_official_code(case):
    production = case["input_shape"][2] == 32  # the heavy one: float32
    dtype, atol = (torch.float32, 1e-5) if production else (torch.float64, 1e-9)
    model = filled(case["config"], OFFICIAL["weight_seed"])
    if dtype != torch.float64:
        model = copy.deepcopy(model).to(dtype)
    g = torch.Generator().manual_seed(OFFICIAL["input_seed"])
    x = torch.randn(case["input_shape"], generator=g, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        fmap = model.forward_features(x)
        score = model.forward_head(fmap)
    assert list(fmap.shape) == case["map_shape"]
    f64 = dict(dtype=torch.float64)
    torch.testing.assert_close(fmap.double().mean(dim=(0, 2, 3, 4)),
                               torch.tensor(case["map_channel_means"], **f64), atol=atol, rtol=0)
    torch.testing.assert_close(fmap.double().mean(dim=(0, 1)).flatten(),
                               torch.tensor(case["map_position_means"], **f64), atol=atol, rtol=0)
    assert abs(score.item() - case["score"]) < atol


@pytest.mark.parametrize("name", ["b", "m"])
def test_state_dict_is_the_official_layout(name):
    sd = FastVQA(FASTVQA_CONFIGS[name]).state_dict()
    assert [(k, list(v.shape)) for k, v in sd.items()] == \
        list(OFFICIAL["official_keys"][name].items())


def test_parameter_counts():
    count = {n: sum(p.numel() for p in FastVQA(c).parameters())
             for n, c in FASTVQA_CONFIGS.items()}
    assert round(count["b"] / 1e6, 2) == 28.13
    assert round(count["m"] / 1e6, 2) == 27.60


# ---------------------------------------------------------------------------------------------
# Geometry, the gate, attention paths, shapes, gradients, FLOPs


def test_window_geometry():
    # FAST-VQA-B at 32x224x224: stage maps (16, 56, 56) ... (16, 7, 7)
    assert stage_window((16, 56, 56), (8, 7, 7), (8, 7, 7)) == ((8, 7, 7), (4, 3, 3))
    assert stage_window((16, 7, 7), (8, 7, 7), (8, 7, 7)) == ((8, 7, 7), (4, 0, 0))
    # upstream shifts by half the base window, even when the window adapted to a smaller one
    assert stage_window((4, 24, 24), (2, 3, 3), (8, 7, 7)) == ((2, 3, 3), (4, 3, 3))
    assert stage_window((4, 3, 3), (2, 3, 3), (8, 7, 7)) == ((2, 3, 3), (4, 0, 0))
    idx = relative_position_index((2, 2, 2))  # table of 3 x 3 x 3 offsets, centre row 13
    assert idx.shape == (8, 8) and idx.diagonal().eq(13).all()
    assert idx[0, 7] == 0 and idx[7, 0] == 26  # offsets (-1, -1, -1) and (1, 1, 1)


def test_fragment_gate_is_the_integer_l1_distance():
    # a 4 x 4 map, 2 x 2 fragment cells of 2 x 2 tokens, one 2 x 2 window of tokens
    assert fragment_gate((1, 4, 4), (1, 2, 2), (0, 0, 0)).eq(0).all()  # windows = cells
    gate = fragment_gate((1, 4, 4), (1, 2, 2), (0, 1, 1))  # rolled: each window spans 4 cells
    expected = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1], [1, 2, 0, 1], [2, 1, 1, 0]])
    assert torch.equal(gate[0], expected.float())  # diagonal neighbours: 2, not 1


def test_shift_mask_separates_the_rolled_regions():
    assert shift_mask((2, 4, 4), (2, 2, 2), (0, 0, 0)).eq(0).all()
    mask = shift_mask((1, 1, 4), (1, 1, 2), (0, 0, 1))  # regions [0, 2), [2, 3), [3, 4)
    assert mask[0].eq(0).all()
    assert torch.equal(mask[1], torch.tensor([[0.0, -100.0], [-100.0, 0.0]]))


def test_fused_and_manual_attention_agree():
    q, k, v = torch.randn(3, 2, 6, 10, 8, dtype=torch.float64).unbind(0)
    bias = torch.randn(1, 6, 10, 10, dtype=torch.float64)
    torch.testing.assert_close(attention(q, k, v, bias, True), attention(q, k, v, bias, False))
    model = fill(FastVQA(FASTVQA_CONFIGS["b"]).double(), 0).eval()
    x = torch.randn(1, 3, 10, 96, 96, dtype=torch.float64)  # shifts, the gate, padding in time
    outs = []
    for fused in (True, False):
        for m in model.modules():
            if hasattr(m, "fused"):
                m.fused = fused
        with torch.no_grad():
            outs.append(model.forward_features(x))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-12, rtol=0)


def test_shapes_and_forward_is_head_of_features():
    model = FastVQA(FASTVQA_CONFIGS["b"]).eval()
    assert model.feature_dim == 768
    for size, grid in (((8, 96, 96), (4, 3, 3)), ((4, 32, 64), (2, 1, 2)),
                       ((12, 64, 96), (6, 2, 3))):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            fmap = model.forward_features(x)
            assert fmap.shape == (2, 768, *grid)
            assert model(x).shape == (2,)
            assert torch.equal(model.forward_head(fmap), model(x))
    m = FastVQA(FASTVQA_CONFIGS["m"]).eval()
    with torch.no_grad():
        assert m.forward_features(torch.randn(1, 3, 8, 64, 64)).shape == (1, 768, 4, 2, 2)


def test_forward_head_is_float32_under_autocast():
    model = FastVQA(FASTVQA_CONFIGS["m"]).eval()
    fmap = torch.randn(2, 768, 4, 2, 2).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        score = model.forward_head(fmap)
    assert score.dtype == torch.float32 and score.shape == (2,)


def test_gradients_reach_every_parameter():
    model = FastVQA(replace(FASTVQA_CONFIGS["b"], drop_path=0.0, head_dropout=0.0))
    # at 96 px the windows straddle fragment cells; at 64 px the unshifted ones lie inside one
    # cell (gate 0), so their relative tables get no gradient (upstream alike)
    model(torch.randn(2, 3, 8, 96, 96)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # the fragment tables start at zero, yet learn
    assert model.fragments_backbone.layers[0].blocks[0].attn.fragment_position_bias_table.grad \
        .abs().sum() > 0


@pytest.mark.parametrize("shape, words", [
    ((3, 8, 64, 64), "expected (B, 3, T, H, W)"),
    ((1, 4, 8, 64, 64), "expected (B, 3, T, H, W)"),
    ((1, 3, 7, 64, 64), "multiple of 2"),
    ((1, 3, 8, 100, 64), "multiples of 32"),
    ((1, 3, 2, 64, 64), "too small"),
])
def test_bad_input_is_refused(shape, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        FastVQA(FASTVQA_CONFIGS["b"]).forward_features(torch.zeros(shape))


@pytest.mark.parametrize("name, size", [("b", (8, 96)), ("b", (10, 64)), ("m", (16, 160))])
def test_flops_estimate_matches_torch_flop_counter(name, size):
    cfg = replace(FASTVQA_CONFIGS[name], fused_attn=False)  # the counter misses the CPU kernel
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        FastVQA(cfg).eval()(torch.randn(1, 3, size[0], size[1], size[1]))
    assert counter.get_total_flops() == flops_per_clip(cfg, *size)


def test_official_quality():
    assert official_quality(-0.110198185) == pytest.approx(0.5)
    assert official_quality(-0.110198185 + 0.04178565) == pytest.approx(1 / (1 + math.exp(-1)))
    assert official_quality(50.0) == 1.0 and official_quality(-50.0) == 0.0  # no overflow
    scores = torch.tensor([-0.2, -0.1, 0.0])
    torch.testing.assert_close(official_quality(scores),
                               torch.tensor([official_quality(s) for s in scores.tolist()]))
    assert official_quality(0.023889644, "FAST-VQA-M") == pytest.approx(0.5)


def test_official_score_stats_are_those_of_the_official_vqa_py():
    """(mean, std) of each released model's raw scores, written here by hand from `mean_stds` in
    vqa.py of the official repository (commit 9f264e4); each model's mean maps to 0.5."""
    official = {
        "FasterVQA": (0.14759505, 0.03613452),
        "FasterVQA-MS": (0.15218826, 0.03230298),
        "FasterVQA-MT": (0.14699507, 0.036453716),
        "FAST-VQA": (-0.110198185, 0.04178565),
        "FAST-VQA-M": (0.023889644, 0.030781006),
    }
    assert OFFICIAL_SCORE_STATS == official
    for name, (mean, std) in official.items():
        assert official_quality(mean, name) == pytest.approx(0.5)
        assert official_quality(mean - std, name) == pytest.approx(1 / (1 + math.e))


# ---------------------------------------------------------------------------------------------
# Loading

SMALL = FastVQAConfig(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), head_hidden=8)


def source_model(seed=1):
    return fill(FastVQA(SMALL), seed).eval()


def layouts(sd):
    """The same weights in each published layout (as the official files nest and name them)."""
    backbone = {k: v for k, v in sd.items() if k.startswith("fragments_backbone.")}
    head = {k: v for k, v in sd.items() if k.startswith("vqa_head.")}
    dover = {"technical_" + k[len("fragments_"):]: v for k, v in backbone.items()}
    dover.update({"technical_head." + k[len("vqa_head."):]: v for k, v in head.items()})
    dover.update({"aesthetic_backbone.stem.weight": torch.zeros(4, 3),
                  "aesthetic_head.fc_hid.weight": torch.zeros(2, 4)})
    kinetics = {k[len("fragments_"):]: v for k, v in backbone.items()
                if "fragment_position_bias_table" not in k}
    kinetics.update({"cls_head.fc_cls.weight": torch.zeros(400, 768),
                     "cls_head.fc_cls.bias": torch.zeros(400)})
    return {
        "official": {"state_dict": dict(sd)},
        "official-in-model": {"model": {"state_dict": dict(sd)}},
        "ddp": {"module": {"module." + k: v for k, v in sd.items()}},
        "dover": {"state_dict": dover},
        "kinetics": {"meta": {"config": "swin"}, "state_dict": kinetics},
        "bare": dict(sd),
    }


@pytest.mark.parametrize("layout", ["official", "official-in-model", "ddp", "dover", "kinetics",
                                    "bare"])
def test_each_layout_loads_strictly_from_a_file(tmp_path, layout):
    src = source_model()
    path = tmp_path / f"{layout}.pth"
    torch.save(layouts(src.state_dict())[layout], path)
    model = fill(FastVQA(SMALL), 2).eval()  # other values everywhere, fragment tables included
    report = load_fastvqa(model, str(path))
    own, ref = model.state_dict(), src.state_dict()
    weights = [k for k in own if not k.endswith("relative_position_index")]
    if layout == "kinetics":
        init = [k for k in weights if k.startswith("vqa_head.") or "fragment_position" in k]
        assert sorted(report["left_at_init"]) == sorted(init)
        assert sorted(report["dropped"]) == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
        assert all(own[k].eq(0).all() for k in init if "fragment_position" in k)
        assert all(torch.equal(own[k], ref[k]) for k in weights if k not in init)
    else:
        assert report["left_at_init"] == []
        assert all(torch.equal(own[k], ref[k]) for k in own)
        x = torch.randn(1, 3, 8, 64, 64)
        with torch.no_grad():
            assert torch.equal(model(x), src(x))
    if layout == "dover":
        assert sorted(report["dropped"]) == ["aesthetic_backbone.stem.weight",
                                             "aesthetic_head.fc_hid.weight"]
    assert set(report["loaded"]) | set(report["left_at_init"]) == set(own)
    assert report["resized"] == []


def test_relative_position_index_may_be_absent_but_never_wrong():
    sd = source_model().state_dict()
    without = {k: v for k, v in sd.items() if not k.endswith("relative_position_index")}
    report = load_fastvqa(FastVQA(SMALL), without)
    assert report["left_at_init"] == [] and set(report["loaded"]) == set(without)
    key = "fragments_backbone.layers.1.blocks.1.attn.relative_position_index"
    tampered = dict(sd)
    tampered[key] = sd[key].flip(0)
    with pytest.raises(ValueError, match=f"{key}: differs from the index"):
        load_fastvqa(FastVQA(SMALL), tampered)
    model = FastVQA(SMALL)
    report = load_fastvqa(model, tampered, strict=False)
    assert report["mismatched"] == [f"{key}: differs from the index the model computes for its "
                                    f"window (not loaded)"]
    assert torch.equal(model.state_dict()[key], sd[key])  # the model's own stays


def test_a_broken_file_is_refused_with_every_problem_named():
    sd = dict(source_model().state_dict())
    del sd["fragments_backbone.layers.2.blocks.0.mlp.fc1.bias"]
    sd["fragments_backbone.layers.0.blocks.0.attn.extra"] = torch.zeros(3)
    sd["vqa_head.fc_hid.weight"] = torch.zeros(8, 16, 1, 1, 1)
    with pytest.raises(ValueError) as err:
        load_fastvqa(FastVQA(SMALL), {"state_dict": sd})
    msg = str(err.value)
    assert "missing: fragments_backbone.layers.2.blocks.0.mlp.fc1.bias" in msg
    assert "unexpected: fragments_backbone.layers.0.blocks.0.attn.extra" in msg
    assert "mis-shaped: vqa_head.fc_hid.weight: file (8, 16, 1, 1, 1) vs model (8, 128, 1, 1, 1)" \
        in msg
    report = load_fastvqa(FastVQA(SMALL), {"state_dict": sd}, strict=False)
    assert report["missing"] == ["fragments_backbone.layers.2.blocks.0.mlp.fc1.bias"]
    assert report["unexpected"] == ["fragments_backbone.layers.0.blocks.0.attn.extra"]
    assert len(report["mismatched"]) == 1
    # a head-bearing file must hold the fragment tables: only a backbone init may lack them
    sd = dict(source_model().state_dict())
    del sd["fragments_backbone.layers.0.blocks.1.attn.fragment_position_bias_table"]
    with pytest.raises(ValueError, match="missing: .*layers.0.blocks.1.attn.fragment_position"):
        load_fastvqa(FastVQA(SMALL), sd)


def internvideo2_like():
    return {"module": {"cls_token": torch.zeros(1, 1, 8), "pos_embed": torch.zeros(1, 5, 8),
                       "blocks.0.attn.qkv.weight": torch.zeros(24, 8),
                       "clip_projector.norm1_q.weight": torch.zeros(8)}}


def test_other_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="InternVideo2 checkpoint") as err:
        load_fastvqa(FastVQA(SMALL), internvideo2_like())
    assert "\n" not in str(err.value)
    text = tmp_path / "scores.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        load_fastvqa(FastVQA(SMALL), str(text))


def test_config_and_family_of_a_state_dict():
    def meta(keys):
        return {k: torch.empty(shape, device="meta") for k, shape in keys.items()}

    b, m = meta(OFFICIAL["official_keys"]["b"]), meta(OFFICIAL["official_keys"]["m"])
    assert fastvqa_config_of({"state_dict": b}) == FASTVQA_CONFIGS["b"]
    assert fastvqa_config_of(m) == FASTVQA_CONFIGS["m"]
    dover = {"technical_" + k[len("fragments_"):] if k.startswith("fragments_") else k: v
             for k, v in b.items()}
    kinetics = {k[len("fragments_"):]: v for k, v in b.items()
                if k.startswith("fragments_") and "fragment_position" not in k}
    assert fastvqa_config_of(dover) == fastvqa_config_of(kinetics) == FASTVQA_CONFIGS["b"]
    assert all(is_fastvqa_state(sd) for sd in (b, m, {"state_dict": dover}, kinetics))
    assert not is_fastvqa_state(internvideo2_like()) and not is_fastvqa_state([1, 2])
    with pytest.raises(ValueError, match="neither FAST-VQA-B nor -M: width 16"):
        fastvqa_config_of(source_model().state_dict())
    with pytest.raises(ValueError, match="InternVideo2 checkpoint"):
        fastvqa_config_of(internvideo2_like())


def test_remap_is_pure_and_refuses_duplicates():
    sd = {"module.vqa_head.fc_last.bias": torch.zeros(1), "epoch": 3}
    out, dropped = remap_fastvqa({"state_dict": sd})
    assert list(out) == ["vqa_head.fc_last.bias"] and dropped == ["epoch"]
    assert list(sd) == ["module.vqa_head.fc_last.bias", "epoch"]  # input untouched
    with pytest.raises(ValueError, match="both are 'vqa_head.fc_last.bias'"):
        remap_fastvqa({"technical_head.fc_last.bias": torch.zeros(1),
                       "vqa_head.fc_last.bias": torch.zeros(1)})

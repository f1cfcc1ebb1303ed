"""FAST-VQA, the heterogeneous student: a Video Swin-T with gated relative position biases and a
per-token quality head, written from scratch in plain PyTorch.

Follows Wu et al. 2022, "FAST-VQA: Efficient End-to-end Video Quality Assessment with Fragment
Sampling" (ECCV), as its official code runs (github.com/VQAssessment/FAST-VQA-and-FasterVQA,
commit 9f264e4: fastvqa/models/swin_backbone.py, head.py, evaluator.py, options/fast/*.yml). The
input is a clip of fragments (docs/reference.md, section 7): a 7 x 7 grid of 32 px patches per
frame, 32 frames, normalised like ImageNet (data.normalise). Parameter names equal the official
files', so a release loads by name; `load_fastvqa` reads every published layout (FAST-VQA-B,
FasterVQA, FAST-VQA-M, DOVER's technical branch, the Kinetics-400 Video Swin-T it starts from) and
fails loudly on anything that does not fit.

    from fastvqa import FASTVQA_CONFIGS, FastVQA, load_fastvqa
    model = FastVQA(FASTVQA_CONFIGS["b"])
    print(load_fastvqa(model, "FAST_VQA_B_1_4.pth"))   # the report: loaded, dropped, ...
    score = model(clip)                    # clip (B, 3, 32, 224, 224) -> (B,) raw score
    fmap = model.forward_features(clip)    # (B, 768, 16, 7, 7), the map the head scores

Any clip of 2k frames and multiples of 32 px runs: the attention window scales with the input
(8 x 7 x 7 at 32 x 224 x 224; 2 x 3 x 3 at 8 x 96 x 96). Needs only torch: copy it alone.
"""
import math
import os
import pickle
import zipfile
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Building blocks. A Swin block pads the (D, H, W) token map to whole windows, rolls it by half a
# window (every second block), cuts it into windows, attends inside each with a position bias,
# and undoes the three (SwinBlock.window_attention); a stage builds its geometry once.


def attention(q, k, v, bias, fused=True):
    """Attention on (B, heads, N, head_dim) with an additive (.., heads, N, N) bias, scale
    head_dim ** -0.5. The fused kernel runs; the manual version is the reference (tested equal)."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias  # (B, heads, N, N)
    return attn.softmax(dim=-1) @ v  # (B, heads, N, head_dim)


def relative_position_index(window):
    """(N, N) row of the (2d-1)(2h-1)(2w-1)-row bias table for each query i and key j of a
    window: the offset coords[i] - coords[j], shifted to start at 0, read in mixed radix."""
    d, h, w = window
    coords = torch.stack(torch.meshgrid(torch.arange(d), torch.arange(h), torch.arange(w),
                                        indexing="ij")).flatten(1)  # (3, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N)
    rel = rel + torch.tensor([d - 1, h - 1, w - 1])[:, None, None]
    return (rel[0] * (2 * h - 1) + rel[1]) * (2 * w - 1) + rel[2]  # (N, N)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside each window, with a relative position bias; in stages with
    `frag_bias` a second table, gated per token pair (fragment_gate):

        bias = relative_table[idx] * gate + fragment_table[idx] * (1 - gate)

    so two tokens of one fragment (gate 0) see only the fragment table, neighbouring fragments
    (gate 1) only the relative table, farther ones a linear extrapolation of the two. The tables
    and index are those of the base window; a smaller adapted window reads the same offsets."""

    def __init__(self, dim, num_heads, window, frag_bias, fused=True):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.fused = fused
        rows = math.prod(2 * w - 1 for w in window)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        if frag_bias:
            self.fragment_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        # persistent, as in the official files (the loader checks it, never takes it)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, window, gate, mask):
        """(nW, heads, N, N) additive bias for an adapted `window`: the position bias, gated when
        gate (nW, N, N) is given, plus the shift mask (nW, N, N)."""
        d, h, w = window
        N = d * h * w
        idx = self.relative_position_index.view(*self.window, *self.window)
        idx = idx[:d, :h, :w, :d, :h, :w].reshape(-1)  # the offsets of the smaller window
        # (heads, N, N) each
        rel = self.relative_position_bias_table[idx].view(N, N, -1).permute(2, 0, 1).contiguous()
        mask = mask[:, None].to(rel.dtype)  # (nW, 1, N, N)
        if gate is None:
            return rel + mask
        frag = self.fragment_position_bias_table[idx].view(N, N, -1).permute(2, 0, 1).contiguous()
        # rel * gate + frag * (1 - gate) in one pass over the (nW, h, N, N) result
        return torch.addcmul(frag + mask, gate[:, None].to(rel.dtype), rel - frag)

    def forward(self, x, window, gate, mask):
        """x (B, nW, N, C) windows; mask (nW, N, N) of the shift -> (B, nW, N, C)."""
        B, nW, N, C = x.shape
        h = self.num_heads
        # 3 x (B, nW, h, N, hd)
        q, k, v = self.qkv(x).view(B, nW, N, 3, h, C // h).permute(3, 0, 1, 4, 2, 5)
        # windows and heads share one axis, so the (nW, h, N, N) bias broadcasts over the batch
        q, k, v = (t.reshape(B, nW * h, N, C // h) for t in (q, k, v))
        bias = self.position_bias(window, gate, mask).view(1, nW * h, N, N)
        x = attention(q, k, v, bias.to(q.dtype), self.fused)  # (B, nW*h, N, hd)
        x = x.view(B, nW, h, N, C // h).transpose(2, 3).reshape(B, nW, N, C)
        return self.proj(x)


def to_windows(x, window):
    """(B, D, H, W, C) -> (B, nW, N, C): N = d*h*w tokens per window, windows in row-major
    order (upstream: window_partition)."""
    B, D, H, W, C = x.shape
    d, h, w = window
    x = x.view(B, D // d, d, H // h, h, W // w, w, C).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(B, -1, d * h * w, C)


def from_windows(x, window, grid):
    """(B, nW, N, C) -> (B, D, H, W, C), the inverse of to_windows."""
    (d, h, w), (D, H, W) = window, grid
    x = x.view(x.shape[0], D // d, H // h, W // w, d, h, w, -1).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(x.shape[0], D, H, W, -1)


class DropPath(nn.Module):  # twin of model.DropPath: fastvqa.py copies alone
    """Stochastic depth: drop the whole residual branch for a random subset of samples."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Mlp(nn.Module):  # twin of model.Mlp (exact GELU only): fastvqa.py copies alone
    """fc1, GELU, fc2, with the exact GELU FAST-VQA was trained with."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm block: windowed attention (shifted in every second block), then an MLP."""

    def __init__(self, dim, num_heads, window, frag_bias, mlp_ratio, drop_path, fused=True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, num_heads, window, frag_bias, fused)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def window_attention(self, x, window, shift, gate, mask):
        """(B, D, H, W, C) -> same: pad to whole windows, roll, attend per window, undo both."""
        B, D, H, W, C = x.shape
        pads = [(w - n % w) % w for n, w in zip((D, H, W), window)]
        # zeros after the norm, attended to like any token (upstream: no mask for padding)
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        padded = x.shape[1:4]
        x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        x = self.attn(to_windows(x, window), window, gate, mask)  # (B, nW, N, C)
        x = torch.roll(from_windows(x, window, padded), shifts=shift, dims=(1, 2, 3))
        return x[:, :D, :H, :W]

    def forward(self, x, window, shift, gate, mask):
        x = x + self.drop_path(self.window_attention(self.norm1(x), window, shift, gate, mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Halves H and W (never time): each 2 x 2 neighbourhood concatenated, LayerNorm, Linear."""

    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x):  # (B, D, H, W, C) -> (B, D, H/2, W/2, 2C)
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2],
                       x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=-1)  # upstream's order
        return self.reduction(self.norm(x))


def stage_window(grid, window, base_window):
    """(window, shift) on a (D, H, W) map. A map no larger than the window in a dimension gets the
    whole map as window and no shift there (upstream: get_window_size). Upstream shifts by half
    the BASE window even when the window adapted to a smaller one (e.g. shift 4 with window 2 in
    time): kept, as the weights were trained with it."""
    size = tuple(min(w, g) for w, g in zip(window, grid))
    shift = tuple(0 if g <= w else b // 2 for g, w, b in zip(grid, window, base_window))
    return size, shift


def shift_mask(padded, window, shift, device=None):
    """(nW, N, N) additive mask for shifted windows: -100 between tokens of different regions
    (upstream: compute_mask).

    After the cyclic roll the last window in a dimension holds tokens that were not neighbours.
    Along each dimension of size P upstream labels [0, P-w), [P-w, P-s), [P-s, P), the later
    label winning where they overlap (s > w); shift 0 is one region. All zeros without shift."""
    labels = []
    for P, w, s in zip(padded, window, shift):
        p = torch.arange(P, device=device)
        labels.append(torch.where(p >= P - s, 2, torch.where(p >= P - w, 1, 0)) if s > 0
                      else torch.zeros_like(p))
    region = labels[0][:, None, None] * 9 + labels[1][None, :, None] * 3 + labels[2]  # (D, H, W)
    region = to_windows(region[None, ..., None], window)[0, ..., 0]  # (nW, N)
    return (region[:, :, None] != region[:, None, :]) * -100.0


def fragment_gate(padded, window, shift, device=None):
    """(nW, N, N) gate between the tokens of each window: the L1 distance of their fragment cells
    (upstream: global_position_index).

    The map is cut into a grid of h x w fragment cells (the window's spatial size: 7 x 7 at 224
    px, one per 32 px fragment of the input), each token taking its cell by nearest neighbour,
    rolled with the shift like the tokens. Upstream's gate is this integer distance; its 0 / 1
    "same cell or not" form is commented out there."""
    D, H, W = padded
    _, h, w = window
    # nearest neighbour (upstream: F.interpolate) from h cells onto H rows; exact here, as a
    # FAST-VQA-B map holds 8, 4, 2 or 1 rows per cell
    cy = (torch.arange(H, device=device) * h // H)[None, :, None].expand(D, H, W)
    cx = (torch.arange(W, device=device) * w // W)[None, None, :].expand(D, H, W)
    cells = torch.stack([cy, cx], dim=-1)[None]  # (1, D, H, W, 2)
    cells = torch.roll(cells, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
    cells = to_windows(cells, window)[0].float()  # (nW, N, 2)
    return (cells[:, :, None, 0] - cells[:, None, :, 0]).abs() + \
        (cells[:, :, None, 1] - cells[:, None, :, 1]).abs()


class Stage(nn.Module):
    """Blocks at one resolution (upstream's BasicLayer), then patch merging. The window geometry,
    the shift mask and the fragment gate depend only on the map size: built once per forward."""

    def __init__(self, dim, depth, num_heads, window, frag_bias, mlp_ratio, drop_paths, merge,
                 fused=True):
        super().__init__()
        self.window = window  # the base window
        self.frag_bias = frag_bias
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, frag_bias, mlp_ratio, drop_paths[i], fused)
            for i in range(depth))
        self.downsample = PatchMerging(dim) if merge else nn.Identity()

    def forward(self, x, window):
        """x (B, D, H, W, C); window: the base window adapted to the input."""
        grid = x.shape[1:4]
        window, shift = stage_window(grid, window, self.window)
        padded = tuple(math.ceil(n / w) * w for n, w in zip(grid, window))
        shifts = [(0, 0, 0), shift]  # even blocks plain, odd blocks shifted
        masks = [shift_mask(padded, window, s, x.device) for s in shifts]
        gates = [fragment_gate(padded, window, s, x.device) if self.frag_bias else None
                 for s in shifts]
        for i, blk in enumerate(self.blocks):
            x = blk(x, window, shifts[i % 2], gates[i % 2], masks[i % 2])
        return self.downsample(x)


def adapted_window(window, base, frames, height, width):
    """The window for an input of frames x height x width: the base window (at the base input
    `base` = (frames, size, size)) scaled by input / base size, rounded down (upstream:
    get_adaptive_window_size)."""
    return tuple(w * n // b for w, n, b in zip(window, (frames, height, width), base))


class VideoSwin(nn.Module):
    """The backbone: (B, 3, T, H, W) clip -> (B, C, T/2, H/32, W/32) map after the final norm."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        self.patch_embed.norm = nn.LayerNorm(cfg.embed_dim)
        n = sum(cfg.depths)
        dpr = [cfg.drop_path * i / max(n - 1, 1) for i in range(n)]  # linear over all blocks
        self.layers = nn.ModuleList(
            Stage(cfg.embed_dim * 2 ** i, depth, cfg.num_heads[i], cfg.window_size,
                  cfg.frag_biases[i], cfg.mlp_ratio, dpr[sum(cfg.depths[:i]):][:depth],
                  merge=i < len(cfg.depths) - 1, fused=cfg.fused_attn)
            for i, depth in enumerate(cfg.depths))
        self.norm = nn.LayerNorm(cfg.embed_dim * 2 ** (len(cfg.depths) - 1))

    def check_input(self, x):
        """The window adapted to x, after checking x's shape."""
        cfg = self.cfg
        stride = cfg.patch_size[1] * 2 ** (len(cfg.depths) - 1)  # 32: patch 4, three mergings
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) (B, channels, frames, height, width), "
                             f"got {tuple(x.shape)}")
        T, H, W = x.shape[2:]
        if T % cfg.patch_size[0] or H % stride or W % stride:
            raise ValueError(f"expected frames a multiple of {cfg.patch_size[0]} and height and "
                             f"width multiples of {stride}, got {T} x {H} x {W}")
        base = (cfg.base_frames, cfg.base_size, cfg.base_size)
        window = adapted_window(cfg.window_size, base, T, H, W)
        if min(window) < 1:
            least = [math.ceil(b / w) for b, w in zip(base, cfg.window_size)]
            raise ValueError(f"a {T} x {H} x {W} clip is too small: the window "
                             f"{cfg.window_size} at {' x '.join(map(str, base))} scales to "
                             f"{window}; needs at least {' x '.join(map(str, least))}")
        return window

    def forward(self, x):
        window = self.check_input(x)
        x = self.patch_embed.proj(x.to(self.patch_embed.proj.weight.dtype))  # (B, C, t, h, w)
        x = self.patch_embed.norm(x.permute(0, 2, 3, 4, 1))  # (B, t, h, w, C), channels last
        for stage in self.layers:
            x = stage(x, window)  # (B, t, h/2, w/2, 2C) after merging
        return self.norm(x).permute(0, 4, 1, 2, 3)  # (B, C, t, h, w)


class VQAHead(nn.Module):
    """Per-token MLP as 1 x 1 x 1 convolutions: (B, C, t, h, w) map -> (B, 1, t, h, w) scores."""

    def __init__(self, dim, hidden, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc_hid = nn.Conv3d(dim, hidden, 1)
        self.fc_last = nn.Conv3d(hidden, 1, 1)

    def forward(self, x):
        return self.fc_last(self.dropout(F.gelu(self.fc_hid(self.dropout(x)))))


@torch.no_grad()
def _init(m):
    """Upstream's init of one module: truncated normal 0.02 on Linear and zero biases, unit
    LayerNorms, relative tables truncated normal 0.02, fragment tables zero; the convolutions
    (patch embedding, head) keep PyTorch's default init, as upstream does."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv3d):
        m.reset_parameters()
    elif isinstance(m, WindowAttention3D):
        nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)
        if hasattr(m, "fragment_position_bias_table"):
            nn.init.zeros_(m.fragment_position_bias_table)  # start as the plain relative bias


# ---------------------------------------------------------------------------------------------
# Config and model


@dataclass
class FastVQAConfig:
    embed_dim: int = 96
    depths: tuple = (2, 2, 6, 2)
    num_heads: tuple = (3, 6, 12, 24)  # head dim 32 in every stage
    window_size: tuple = (8, 7, 7)  # (t, h, w) tokens at the base input; scales with the input
    frag_biases: tuple = (True, True, True, False)  # stages with the gated fragment bias
    head_hidden: int = 64
    patch_size: tuple = (2, 4, 4)  # (frames, px, px) per token
    mlp_ratio: float = 4.0
    drop_path: float = 0.1  # stochastic depth at the last block, linear from 0 at the first
    head_dropout: float = 0.5  # before and inside the head, as upstream
    base_frames: int = 32  # the input the window is given for (upstream's base_x_size)
    base_size: int = 224
    fused_attn: bool = True  # F.scaled_dot_product_attention, else the manual reference


FASTVQA_CONFIGS = {
    # FAST-VQA-B and FasterVQA: 28.13M params; 32 x 224 x 224 input (7 x 7 fragments of 32 px)
    "b": FastVQAConfig(),
    # FAST-VQA-M: 27.60M params; 16 x 128 x 128 input (4 x 4 fragments). Its window is (4, 4, 4)
    # at upstream's base input of 32 x 224 x 224, so (2, 2, 2) at its own 16 x 128 x 128.
    "m": FastVQAConfig(window_size=(4, 4, 4), frag_biases=(False, False, False, False)),
}


class FastVQA(nn.Module):
    """Backbone and head under the official names (`fragments_backbone`, `vqa_head`); the score of
    a clip is the mean of the head's per-token scores, as the official evaluator computes it."""

    SCORE_BIAS = "vqa_head.fc_last.bias"  # the parameter a fresh head's mean score is set by

    def __init__(self, cfg: FastVQAConfig):
        super().__init__()
        assert len(cfg.depths) == len(cfg.num_heads) == len(cfg.frag_biases), cfg
        self.cfg = cfg
        self.feature_dim = cfg.embed_dim * 2 ** (len(cfg.depths) - 1)  # 768
        self.fragments_backbone = VideoSwin(cfg)
        self.vqa_head = VQAHead(self.feature_dim, cfg.head_hidden, cfg.head_dropout)
        self.init_weights()

    def init_weights(self):
        self.apply(_init)

    @property
    def head(self):
        """The quality head, by the name VideoViT gives it (distill.Distiller freezes it when the
        student's term is off); its keys stay `vqa_head.*`."""
        return self.vqa_head

    def forward_features(self, x):
        """(B, 3, T, H, W) normalised clip -> (B, C, T/2, H/32, W/32) final map."""
        return self.fragments_backbone(x)

    def forward_head(self, fmap):
        """(B, C, t, h, w) map -> (B,) score, the mean of the per-token scores. In the head's own
        dtype (float32) even under autocast: bf16 keeps 8 bits of a score, far coarser than the
        spread of a fresh head's scores, so scores would tie (as model.VideoViT.forward_head)."""
        with torch.autocast(fmap.device.type, enabled=False):
            scores = self.vqa_head(fmap.to(self.vqa_head.fc_hid.weight.dtype))  # (B, 1, t, h, w)
        return scores.mean(dim=(1, 2, 3, 4))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# Cost and the official score scale


def flops_per_clip(cfg: FastVQAConfig, frames=None, size=None):
    """Forward FLOPs (2 per multiply-add) of the matmuls and convolutions for one clip of
    frames x size x size (default: the base input), with the window as the model adapts it and
    the padded tokens the attention runs on; norms, softmax and GELU are left out."""
    frames, size = frames or cfg.base_frames, size or cfg.base_size
    pt, ps = cfg.patch_size[0], cfg.patch_size[1]
    window = adapted_window(cfg.window_size, (cfg.base_frames, cfg.base_size, cfg.base_size),
                            frames, size, size)
    grid = (frames // pt, size // ps, size // ps)
    C = cfg.embed_dim
    macs = math.prod(grid) * 3 * math.prod(cfg.patch_size) * C  # patch embedding
    for i, depth in enumerate(cfg.depths):
        win, _ = stage_window(grid, window, cfg.window_size)
        n = math.prod(grid)
        n_pad = math.prod(math.ceil(g / w) * w for g, w in zip(grid, win))
        attn = n_pad * 4 * C * C + 2 * n_pad * math.prod(win) * C  # qkv + proj, q @ k, attn @ v
        macs += depth * (attn + 2 * n * C * int(C * cfg.mlp_ratio))
        if i < len(cfg.depths) - 1:
            grid = (grid[0], grid[1] // 2, grid[2] // 2)
            macs += math.prod(grid) * 4 * C * 2 * C  # patch merging
            C *= 2
    macs += math.prod(grid) * (C * cfg.head_hidden + cfg.head_hidden)  # per-token head
    return 2 * macs


# vqa.py of the official repository: mean and std of each released model's raw scores, for its
# sigmoid rescaling of a video's score to [0, 1]
OFFICIAL_SCORE_STATS = {
    "FAST-VQA": (-0.110198185, 0.04178565),
    "FAST-VQA-M": (0.023889644, 0.030781006),
    "FasterVQA": (0.14759505, 0.03613452),
    "FasterVQA-MS": (0.15218826, 0.03230298),
    "FasterVQA-MT": (0.14699507, 0.036453716),
}


def official_quality(score, model="FAST-VQA"):
    """A raw score (float or tensor) -> the official [0, 1] quality:
    sigmoid((score - mean) / std)."""
    mean, std = OFFICIAL_SCORE_STATS[model]
    x = (score - mean) / std
    return torch.sigmoid(x) if torch.is_tensor(x) else 0.5 * (1 + math.tanh(x / 2))


# ---------------------------------------------------------------------------------------------
# Loading the official checkpoints

RENAMES = (  # file prefix -> this model's; after "module." is stripped
    ("technical_backbone.", "fragments_backbone."),  # DOVER: its technical branch is FAST-VQA-B
    ("technical_head.", "vqa_head."),
    ("backbone.", "fragments_backbone."),  # Kinetics-400 Video Swin-T (mmaction), the init
)
DROPPED = ("aesthetic_backbone.", "aesthetic_head.", "cls_head.")  # DOVER's other branch; K400


def read_checkpoint(path, trust=False):  # twin of model.read_checkpoint: fastvqa.py copies alone
    """torch.load on the CPU, tensors only unless trust=True (full unpickling runs code from the
    file)."""
    try:
        with open(path, "rb") as f:
            first = f.read(1)
        # torch.save writes a zip (legacy: a pickle)
        if not zipfile.is_zipfile(path) and first != b"\x80":
            raise ValueError(f"{path}: not a torch checkpoint (neither a zip archive nor a pickle)")
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: holds objects other than tensors (e.g. arguments or optimizer "
                         f"state saved by DeepSpeed), so the safe weights_only load refused it. If "
                         f"you trust the file, pass trust=True (train.py / predict.py: "
                         f"--trust-ckpt).\n{e}") from None
    except (OSError, RuntimeError, EOFError) as e:
        raise ValueError(f"{path}: cannot be read as a torch checkpoint ({e})") from None


def rename_keys(sd, rename, dropped_prefixes):  # twin of model.rename_keys: fastvqa.py copies alone
    """(state dict with every key renamed by rename(key), list of dropped keys): a name that
    starts with one of dropped_prefixes, or a value that is not a tensor, is dropped; two keys
    that become one name are an error (never one silently taken over the other)."""
    out, dropped, origin = {}, [], {}
    for key, value in sd.items():
        name = rename(key)
        if name.startswith(dropped_prefixes) or not torch.is_tensor(value):
            dropped.append(key)
        elif name in out:
            raise ValueError(f"the file holds {origin[name]!r} and {key!r}: both are {name!r}")
        else:
            out[name], origin[name] = value, key
    return out, dropped


def unwrap(ckpt):
    """The state dict inside `state_dict` / `model` / `module` nesting."""
    while isinstance(ckpt, dict) and not any(torch.is_tensor(v) for v in ckpt.values()):
        inner = [ckpt[k] for k in ("state_dict", "model", "module")
                 if isinstance(ckpt.get(k), dict)]
        if not inner:
            break
        ckpt = inner[0]
    if not isinstance(ckpt, dict):
        raise ValueError(f"expected a state dict, got {type(ckpt).__name__}")
    return ckpt


def remap_fastvqa(sd):
    """Official file contents -> (state dict in this model's names, list of dropped keys)."""
    def rename(key):
        name = key[len("module."):] if key.startswith("module.") else key
        old, new = next(((o, n) for o, n in RENAMES if name.startswith(o)), ("", ""))
        return new + name[len(old):]
    return rename_keys(unwrap(sd), rename, DROPPED)


def is_fastvqa_state(sd):
    """Whether a read checkpoint (any nesting above) holds a FAST-VQA / Video Swin backbone."""
    try:
        keys = remap_fastvqa(sd)[0]
    except ValueError:
        return False
    return ("fragments_backbone.patch_embed.proj.weight" in keys and
            "fragments_backbone.layers.0.blocks.0.attn.relative_position_bias_table" in keys)


def _refuse_other_family(sd, where):
    """InternVideo2 files (model.py) hold cls_token, pos_embed and clip_projector.*, under any
    prefix; a Video Swin holds none of them."""
    if any(k.rsplit(".", 1)[-1] in ("cls_token", "pos_embed") or "clip_projector." in k
           for k in sd):
        raise ValueError(f"{where} is an InternVideo2 checkpoint (keys cls_token, pos_embed, "
                         f"clip_projector), not FAST-VQA: load it with model.load_internvideo2")


def fastvqa_config_of(sd):
    """The FASTVQA_CONFIGS entry a checkpoint is ("b" or "m", as a new FastVQAConfig), read from
    its width, depths, heads, relative table size and fragment tables. A Kinetics Video Swin-T
    (no fragment tables) reads as "b", the model it initialises."""
    sd = remap_fastvqa(sd)[0]
    _refuse_other_family(sd, "the state dict")
    pre = "fragments_backbone."
    if not is_fastvqa_state(sd):
        raise ValueError(f"not a FAST-VQA state dict: no {pre}patch_embed.proj.weight or "
                         f"{pre}layers.0.blocks.0.attn.relative_position_bias_table")
    stages = sorted({int(k.split(".")[2]) for k in sd if k.startswith(pre + "layers.")})
    depths, heads, rows, frag = [], [], [], []
    for i in stages:
        blocks = {int(k.split(".")[4]) for k in sd if k.startswith(f"{pre}layers.{i}.blocks.")}
        table = sd[f"{pre}layers.{i}.blocks.0.attn.relative_position_bias_table"]
        depths.append(len(blocks))
        rows.append(table.shape[0])
        heads.append(table.shape[1])
        frag.append(f"{pre}layers.{i}.blocks.0.attn.fragment_position_bias_table" in sd)
    width = sd[pre + "patch_embed.proj.weight"].shape[0]
    for name, cfg in FASTVQA_CONFIGS.items():
        cfg_rows = math.prod(2 * w - 1 for w in cfg.window_size)
        if ((width, tuple(depths), tuple(heads)) == (cfg.embed_dim, cfg.depths, cfg.num_heads)
                and set(rows) == {cfg_rows} and (tuple(frag) == cfg.frag_biases or not any(frag))):
            return replace(cfg)
    raise ValueError(f"neither FAST-VQA-B nor -M: width {width}, depths {depths}, heads {heads}, "
                     f"relative table rows {rows}, fragment tables in stages "
                     f"{[i for i, f in enumerate(frag) if f]}")


def load_fastvqa(model, ckpt, strict=True, trust=False):
    """Load weights into `model`, a FastVQA, and return a report.

    ckpt: a path or an already read dict: an official FAST-VQA-B / FasterVQA / FAST-VQA-M file
    (`state_dict` nesting), a DOVER file (its technical branch; the aesthetic one is dropped), the
    Kinetics-400 Video Swin-T (`backbone.*`; its classifier dropped), or a state dict of this
    model. Read with weights_only=True (trust=True unpickles anything: only for trusted files).
    Every key must load: anything missing, unexpected or mis-shaped raises one error listing all
    of them (strict=False: reported instead). A file without a head is a backbone init: the head
    and the fragment tables are then initialised (zero tables, as upstream starts from Kinetics).
    `relative_position_index` is derived, not learnt: the file's may be absent, and must equal
    the model's. Returns dict(loaded, dropped, resized, left_at_init) (and, with strict=False,
    missing / unexpected / mismatched).
    """
    where = str(ckpt) if isinstance(ckpt, (str, os.PathLike)) else "state dict"
    if not isinstance(ckpt, dict):
        ckpt = read_checkpoint(ckpt, trust)
    sd, dropped = remap_fastvqa(ckpt)
    _refuse_other_family(sd, where)
    own = model.state_dict()
    absent_ok = ["relative_position_index"]  # derived from the window, not learnt
    if not any(k.startswith("vqa_head.") for k in sd):  # a backbone init: the Kinetics Swin
        absent_ok += ["vqa_head.", "fragment_position_bias_table"]
    absent = [k for k in own if k not in sd]
    missing = [k for k in absent if not any(a in k for a in absent_ok)]
    left_at_init = [k for k in absent if k not in missing and "position_index" not in k]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    indices = [k for k in sd if k.endswith("relative_position_index") and k in own
               and k not in shapes and not torch.equal(sd[k].long(), own[k])]
    mis_shaped = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in shapes]
    wrong = [f"{k}: differs from the index the model computes for its window (not loaded)"
             for k in indices]
    mismatched = mis_shaped + wrong
    problems = [f"missing: {k}" for k in missing] + [f"unexpected: {k}" for k in unexpected] + \
               [f"mis-shaped: {m}" for m in mis_shaped] + [f"wrong: {m}" for m in wrong]
    if problems and strict:
        raise ValueError(f"{where} does not fit FastVQA({model.cfg}):\n  " + "\n  ".join(problems))
    report = dict(loaded=[], dropped=dropped, resized=[], left_at_init=left_at_init)
    if problems:
        report.update(missing=missing, unexpected=unexpected, mismatched=mismatched)
    sd = {k: v.to(own[k].dtype) for k, v in sd.items()
          if k in own and k not in shapes and k not in indices}
    # the index is derived: an equal one counts as loaded, but the model's own buffer stays
    model.load_state_dict({k: v for k, v in sd.items()
                           if not k.endswith("relative_position_index")}, strict=False)
    with torch.no_grad():
        for k in left_at_init:  # as upstream starts from Kinetics: zero tables, a fresh head
            if k.endswith("fragment_position_bias_table"):
                model.get_parameter(k).zero_()
        if any(k.startswith("vqa_head.") for k in left_at_init):
            model.vqa_head.apply(_init)
    report["loaded"] = sorted(sd)
    return report

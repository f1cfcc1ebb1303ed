"""The InternVideo2 video ViT with a quality head, written from scratch in plain PyTorch.

Follows the InternVideo2 vision encoder (Wang et al. 2024, "InternVideo2: Scaling Foundation
Models for Multimodal Video Understanding") as released in the official checkpoints: tubelet
patch embedding, learned position embedding, pre-norm blocks with RMSNorm, q/k RMS-normalised
over the full width, LayerScale, no final norm, then attention pooling (`clip_projector`),
fc_norm and a linear head. InternVQA (Guan et al. 2025) uses the head with one output: the
quality score. Parameter names equal the official fine-tune layout, so a state dict loads by
name; `load_internvideo2` handles every published wrapping and fails loudly on anything that
does not fit. The heterogeneous student, FAST-VQA, is fastvqa.py.

    from model import CONFIGS, VideoViT, load_internvideo2
    model = VideoViT(CONFIGS["small"])    # random init; or, for weights about to come from a file:
    with torch.device("meta"):            # no memory and no init until the file fills it
        model = VideoViT(CONFIGS["small"])
    print(load_internvideo2(model, "S14_ft_k710_f8.pth"))   # the report: loaded, resized, ...
    score = model(clip)                   # clip (B, 3, 8, 224, 224) -> (B,)

Needs only torch.
"""
import math
import pickle
import zipfile
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# ---------------------------------------------------------------------------------------------
# Building blocks


class RMSNorm(nn.Module):
    """RMSNorm with a weight and no bias, computed in at least float32 as upstream does (a bf16
    model normalises in float32; a float64 one stays float64), then cast back and scaled, in
    upstream's order: x * rsqrt(mean(x^2) + eps), in torch's fused F.rms_norm."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))
        return self.weight * F.rms_norm(x32, x.shape[-1:], eps=self.eps).to(x.dtype)


class LayerScale(nn.Module):
    def __init__(self, dim, init_values):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x):
        return x * self.gamma


class DropPath(nn.Module):  # twin of fastvqa.DropPath: fastvqa.py copies alone
    """Stochastic depth: drop the whole residual branch for a random subset of samples."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def attention(q, k, v, fused=True):
    """Scaled dot-product attention on (B, heads, N, head_dim) tensors, scale head_dim ** -0.5.

    The fused kernel is what runs; the manual version is the readable reference (tested equal).
    """
    if fused:
        return F.scaled_dot_product_attention(q, k, v)
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, heads, Nq, Nk)
    return attn.softmax(dim=-1) @ v  # (B, heads, Nq, head_dim)


class Attention(nn.Module):
    """Self-attention; q and k are RMS-normalised over the full width before the head split."""

    def __init__(self, dim, num_heads, fused=True):
        super().__init__()
        self.num_heads = num_heads
        self.fused = fused
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)  # rows [q | k | v], each head-major
        self.q_norm = RMSNorm(dim)
        self.k_norm = RMSNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, N, D)
        q, k = self.q_norm(q), self.k_norm(k)
        # (B, h, N, hd)
        q, k, v = (t.view(B, N, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        x = attention(q, k, v, self.fused).transpose(1, 2).reshape(B, N, D)
        return self.proj(x)


class Mlp(nn.Module):  # twin of fastvqa.Mlp (exact GELU only there): fastvqa.py copies alone
    """fc1, GELU, fc2. InternVideo2's released weights were trained with the fused MLP kernel's
    tanh GELU (the default here); FAST-VQA's with the exact one (approximate="none")."""

    def __init__(self, dim, hidden, approximate="tanh"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.approximate = approximate

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_hidden, init_values, drop_path=0.0, fused=True):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, num_heads, fused)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = RMSNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim, init_values)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x


class CrossAttention(nn.Module):
    """Pooling attention: bias-free q/k/v projections with separate bias vectors (upstream
    layout)."""

    def __init__(self, dim, num_heads, out_dim, fused=True):
        super().__init__()
        self.num_heads = num_heads
        self.fused = fused
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.k_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x_q, x_k, x_v):
        B, Nq, D = x_q.shape
        q = (F.linear(x_q, self.q.weight, self.q_bias)
             .view(B, Nq, self.num_heads, -1).transpose(1, 2))
        k = (F.linear(x_k, self.k.weight, self.k_bias)
             .view(B, -1, self.num_heads, D // self.num_heads).transpose(1, 2))
        v = (F.linear(x_v, self.v.weight, self.v_bias)
             .view(B, -1, self.num_heads, D // self.num_heads).transpose(1, 2))
        x = attention(q, k, v, self.fused).transpose(1, 2).reshape(B, Nq, D)  # (B, Nq, D)
        return self.proj(x)


class AttentionPool(nn.Module):
    """`clip_projector`: one query, the LayerNormed mean token, attends over all tokens. No
    residual."""

    def __init__(self, dim, num_heads, out_dim, fused=True):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_k = nn.LayerNorm(dim, eps=1e-5)
        self.norm1_v = nn.LayerNorm(dim, eps=1e-5)
        self.cross_attn = CrossAttention(dim, num_heads, out_dim, fused)

    def forward(self, x):  # (B, N, D) -> (B, out_dim)
        q = self.norm1_q(x.mean(dim=1, keepdim=True))  # cls token included in the mean
        return self.cross_attn(q, self.norm1_k(x), self.norm1_v(x)).squeeze(1)


def sincos_pos_embed(dim, t, h, w):
    """3-D sin-cos table (1 + t*h*w, dim): a quarter of the channels temporal, three quarters
    spatial (half rows, half columns), the cls row zero. Upstream's init; training moves it."""
    def one_d(d, pos):  # (len(pos), d)
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        out = pos.double()[:, None] * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    dt, ds = dim // 4, dim // 4 * 3
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    # (h*w, ds)
    spatial = torch.cat([one_d(ds // 2, gy.flatten()), one_d(ds // 2, gx.flatten())], dim=1)
    temporal = one_d(dt, torch.arange(t))  # (t, dt)
    table = torch.cat([temporal[:, None].expand(t, h * w, dt),
                       spatial[None].expand(t, h * w, ds)], dim=2)
    return torch.cat([torch.zeros(1, dim, dtype=table.dtype),
                      table.reshape(t * h * w, dim)]).float()


@torch.no_grad()
def dct_patch_init(conv, gain=0.3):
    """Patch embedding as a 2-D DCT, the transform codecs quantise: filter i reads colour channel
    i % 3 at the (i // 3)-th lowest frequency (u, v), scaled by 1 + u + v to roughly whiten the
    1/f spectrum of natural images. Blur and quantisation then change the direction of a token,
    not just its size (which the RMSNorms would hide), so a model trained from scratch sees
    compression from the first step; from the official init it took several times more steps
    on the toy set. Filters past the p*p frequencies keep their random init."""
    D, _, t, p, _ = conv.weight.shape
    k = torch.arange(p, dtype=torch.float64)
    basis = torch.cos(math.pi * (k[None] + 0.5) * k[:, None] / p)  # (frequency, position)
    basis = basis / basis.norm(dim=1, keepdim=True)
    freqs = sorted(((u, v) for u in range(p) for v in range(p)), key=lambda f: (f[0] + f[1], f))
    for i in range(min(D, 3 * p * p)):
        u, v = freqs[i // 3]
        conv.weight[i].zero_()
        conv.weight[i, i % 3] = (gain * (1 + u + v) / t * torch.outer(basis[u], basis[v])).float()
    conv.bias.zero_()


@torch.no_grad()
def _init(m):
    """Upstream's init of one module: truncated normal 0.02 and zero biases, unit LayerNorms."""
    if isinstance(m, (nn.Linear, nn.Conv3d)):
        nn.init.trunc_normal_(m.weight.view(m.weight.shape[0], -1), std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# Config and model


@dataclass
class ViTConfig:
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0  # 1b: 48/11 -> 6144 hidden
    patch_size: int = 14
    tubelet_size: int = 1  # frames per token; InternVideo2 uses 1
    num_frames: int = 8
    img_size: int = 224
    pool_heads: int = 16  # heads of the attention pooling
    pool_dim: int = 768  # pooled feature size (the feature InternVQA aligns)
    num_outputs: int = 1  # 1 = a quality score; official classifiers have 400 / 710
    init_values: float = 1e-5  # LayerScale init; from-scratch training on little data wants more
    drop_path: float = 0.0  # stochastic depth at the last block, linear from 0 at the first
    head_dropout: float = 0.0
    grad_checkpointing: bool = False  # recompute block activations in backward to save memory
    fused_attn: bool = True  # F.scaled_dot_product_attention, else the manual reference
    # "dct": a whitened 2-D DCT basis, for training from scratch on little data
    patch_init: str = "normal"


CONFIGS = {
    # 0.1M: tests, smoke runs
    "tiny": ViTConfig(embed_dim=64, depth=2, num_heads=2, pool_heads=4, pool_dim=64),
    "small": ViTConfig(embed_dim=384, depth=12, num_heads=6),  # ~22.5M params (+0.7M pool/head)
    "base": ViTConfig(embed_dim=768, depth=12, num_heads=12),  # ~86M
    "large": ViTConfig(embed_dim=1024, depth=24, num_heads=16),  # ~304M
    "1b": ViTConfig(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),  # ~1.0B
}


class VideoViT(nn.Module):
    SCORE_BIAS = "head.bias"  # the parameter a fresh head's mean score is set by (train.py)

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        assert cfg.embed_dim % cfg.num_heads == 0 and cfg.embed_dim % cfg.pool_heads == 0, cfg
        assert cfg.img_size % cfg.patch_size == 0 and cfg.num_frames % cfg.tubelet_size == 0, cfg
        self.cfg = cfg
        self.feature_dim = cfg.pool_dim
        D, p = cfg.embed_dim, cfg.patch_size
        # (t, h, w)
        self.grid = (cfg.num_frames // cfg.tubelet_size, cfg.img_size // p, cfg.img_size // p)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(3, D, (cfg.tubelet_size, p, p),
                                          stride=(cfg.tubelet_size, p, p))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + math.prod(self.grid), D))
        hidden = round(D * cfg.mlp_ratio)
        # linear in depth
        dpr = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, hidden, cfg.init_values, dpr[i], cfg.fused_attn)
            for i in range(cfg.depth))
        self.clip_projector = AttentionPool(D, cfg.pool_heads, cfg.pool_dim, cfg.fused_attn)
        self.fc_norm = nn.LayerNorm(cfg.pool_dim)
        self.fc_dropout = nn.Dropout(cfg.head_dropout) if cfg.head_dropout > 0 else nn.Identity()
        self.head = nn.Linear(cfg.pool_dim, cfg.num_outputs)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        for m in self.modules():  # upstream: truncated normal 0.02, zero biases, unit norms
            _init(m)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.cfg.patch_init == "dct":
            dct_patch_init(self.patch_embed.proj)
        self.pos_embed.copy_(sincos_pos_embed(self.cfg.embed_dim, *self.grid)[None])
        for i, blk in enumerate(self.blocks, 1):  # upstream rescales residual outputs by depth
            blk.attn.proj.weight.div_(math.sqrt(2.0 * i))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * i))
        self.head.weight.mul_(1e-3)  # upstream's head init_scale: start from a near-constant score

    @torch.no_grad()
    def materialise(self):
        """After a file was loaded into a model built on the meta device: the parts it did not hold
        (fc_norm and a fresh head, as load_internvideo2 reports them) get memory and their init."""
        for part in (self.fc_norm, self.head):
            if any(p.is_meta for p in part.parameters()):
                part.to_empty(device=self.cls_token.device)
                _init(part)
                if part is self.head:
                    part.weight.mul_(1e-3)
        left = [n for n, p in self.named_parameters() if p.is_meta]
        if left:
            raise ValueError(f"built on the meta device, but the file did not hold {left[:8]}")

    def embed(self, x):
        """(B, 3, T, H, W) video -> (B, 1 + T*h*w, D) tokens, time first, cls token in front."""
        cfg = self.cfg
        if (x.ndim != 5 or x.shape[1] != 3
                or tuple(x.shape[2:]) != (cfg.num_frames, cfg.img_size, cfg.img_size)):
            raise ValueError(f"expected (B, 3, {cfg.num_frames}, {cfg.img_size}, {cfg.img_size}) "
                             f"(B, channels, frames, height, width), got {tuple(x.shape)}")
        x = self.patch_embed.proj(x.to(self.patch_embed.proj.weight.dtype))  # (B, D, t, h, w)
        x = x.flatten(2).transpose(1, 2)  # (B, t*h*w, D): frame 0 row-major, then frame 1, ...
        # (B, 1 + t*h*w, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        return x + self.pos_embed.to(x.dtype)

    def run_blocks(self, x, blocks):
        """Each block reads the residual stream in its own weights' dtype, as embed and pool do:
        so a bf16 frozen prefix (distill.Distiller's teacher_dtype) hands over to an fp32 tail in
        every forward, training, evaluation and predict.py alike."""
        for blk in blocks:
            x = x.to(blk.norm1.weight.dtype)
            if self.cfg.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def pool(self, x):
        """(B, N, D) raw residual stream (no final norm) -> (B, pool_dim) feature after fc_norm."""
        return self.fc_norm(self.clip_projector(x.to(self.fc_norm.weight.dtype)))

    def forward_features(self, x):
        return self.pool(self.run_blocks(self.embed(x), self.blocks))

    def forward_head(self, feat):
        """(B, pool_dim) -> (B,) score (or (B, num_outputs) for a classifier head). In the head's
        own dtype (float32) even under autocast: bf16 keeps 8 bits of a score near 0.5, far coarser
        than a fresh head's spread, so every score would tie."""
        with torch.autocast(feat.device.type, enabled=False):
            out = self.head(self.fc_dropout(feat.to(self.head.weight.dtype)))
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# Cost


def flops_per_clip(cfg: ViTConfig, frames=None, img_size=None):
    """Forward FLOPs (2 per multiply-add) of the matmuls and convolutions for one clip;
    norms, softmax and GELU are left out (under 1%). Training costs about 3x this."""
    D, p = cfg.embed_dim, cfg.patch_size
    t = (frames or cfg.num_frames) // cfg.tubelet_size
    s = (img_size or cfg.img_size) // p
    n = t * s * s  # patch tokens
    N = n + 1
    hidden = round(D * cfg.mlp_ratio)
    macs = n * 3 * cfg.tubelet_size * p * p * D  # patch embedding
    macs += cfg.depth * (N * 4 * D * D + 2 * N * N * D + 2 * N * D * hidden)  # qkv+proj, attn, mlp
    # pool
    macs += 2 * N * D * D + D * D + 2 * N * D + D * cfg.pool_dim + cfg.pool_dim * cfg.num_outputs
    return 2 * macs


# ---------------------------------------------------------------------------------------------
# Loading the official checkpoints (layouts: docs/reference.md, section 2)

PREFIXES = ("module.", "vision_encoder.", "backbone.", "encoder.")  # stripped, repeatedly
DROPPED = ("clip_decoder.", "final_clip_decoder.", "text_encoder.", "vision_proj.", "text_proj.",
           "itm_head.", "img_pos_embed", "clip_pos_embed", "clip_img_pos_embed", "temp")  # prefixes
OPTIONAL = ("head.", "fc_norm.")  # may be absent or of another shape: they stay at init


def remap_state_dict(sd):
    """Official file contents -> (state dict in this model's names, list of dropped keys).

    Unwraps `module` / `model` / `state_dict` nesting, strips the prefixes above and drops the
    stage-2 decoders, text tower and extra position tables, and anything that is not a tensor.
    """
    while isinstance(sd, dict) and not any(torch.is_tensor(v) for v in sd.values()):
        inner = [sd[k] for k in ("module", "model", "state_dict") if isinstance(sd.get(k), dict)]
        if not inner:
            break
        sd = inner[0]
    if not isinstance(sd, dict):
        raise ValueError(f"expected a state dict, got {type(sd).__name__}")
    def strip(name):
        while name.startswith(PREFIXES):
            name = name.split(".", 1)[1]
        return name
    return rename_keys(sd, strip, DROPPED)


def rename_keys(sd, rename, dropped_prefixes):  # twin of fastvqa.rename_keys: fastvqa copies alone
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


def checkpoint_grid(n_tokens, saved_grid=None, frames=None):
    """The (T, h, w) patch grid of a position table with `n_tokens` rows (cls included), never
    guessed: the grid saved with the weights, else the official files' 16 x 16 per frame (224 px,
    patch 14) when the count allows it, else `frames` when given, else the one square-grid reading
    of the count if it has only one. A count with several readings is an error that lists them."""
    n = n_tokens - 1
    if saved_grid is not None:
        if math.prod(saved_grid) != n:
            raise ValueError(f"pos_embed has {n} patch rows, but the saved geometry "
                             f"{tuple(saved_grid)} needs {math.prod(saved_grid)}")
        return tuple(saved_grid)
    if n % 256 == 0:
        return n // 256, 16, 16
    if frames:
        side = math.isqrt(n // frames)
        if frames * side * side != n:
            raise ValueError(f"a pos_embed of {n} patch rows is not {frames} frames of a "
                             f"square grid")
        return frames, side, side
    readings = [(n // (s * s), s, s) for s in range(2, math.isqrt(n) + 1) if n % (s * s) == 0]
    if len(readings) == 1:
        return readings[0]
    raise ValueError(f"a pos_embed of {n_tokens} tokens is not the official 16 x 16 per frame, and "
                     f"no geometry came with it; it reads as "
                     f"{' or '.join(' x '.join(map(str, r)) for r in readings) or 'no square grid'}"
                     f" (frames x h x w): give its frame count (train.py / predict.py "
                     f"--ckpt-frames)")


def resize_pos_embed(pos, grid, src_grid):
    """(1, 1 + T*h*w, D) on `src_grid` (T, h, w) -> (1, 1 + t*h'*w', D) on `grid` (t, h', w'):
    linear in time, then bicubic in space per frame, both with align_corners False; the cls row is
    kept."""
    t, h, w = grid
    cls, patch = pos[:, :1], pos[:, 1:].float()
    D = pos.shape[-1]
    T0, h0, w0 = src_grid
    x = patch.reshape(1, T0, h0 * w0, D).permute(0, 2, 3, 1).reshape(1, h0 * w0 * D, T0)
    if T0 != t:
        x = F.interpolate(x, size=t, mode="linear", align_corners=False)
    x = x.reshape(h0, w0, D, t).permute(3, 2, 0, 1)  # (t, D, h0, w0)
    if (h0, w0) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    x = x.permute(0, 2, 3, 1).reshape(1, t * h * w, D)
    return torch.cat([cls, x.to(pos.dtype)], dim=1)


def own_tensor(t):
    """t, or a copy of it when it is a view into a larger storage (shared with other keys, or with
    dropped decoders): the weights of a model built on the meta device become the file's tensors,
    so they must not tie parameters together nor keep a dropped part in memory."""
    return t if t.untyped_storage().nbytes() == t.numel() * t.element_size() else t.clone()


def read_checkpoint(path, trust=False):  # twin of fastvqa.read_checkpoint: fastvqa.py copies alone
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


def load_internvideo2(model, ckpt, strict=True, trust=False, grid=None, frames=None):
    """Load weights into `model`, a VideoViT, and return a report; the one loader of this file.

    ckpt: a path or an already read dict: an official InternVideo2 file in any published wrapping
    (read with weights_only=True; one that needs full unpickling raises unless trust=True), or a
    state dict of this model. Every backbone key must load: anything missing, unexpected or
    mis-shaped raises one error listing all of them (strict=False: reported instead). `head.*` and
    `fc_norm.*` may be absent or of another shape (a 710-class head): they stay at init. The
    position table is resized from its real grid (checkpoint_grid: `grid` saved with the weights,
    `frames` its frame count). A model built on the meta device (no memory, no random init) takes
    the file's tensors as its parameters; what stays at init is then initialised. Returns
    dict(loaded, dropped, resized, left_at_init) (and, with strict=False, missing / unexpected /
    mismatched).
    """
    where = ckpt if isinstance(ckpt, str) else "state dict"
    if not isinstance(ckpt, dict):
        ckpt = read_checkpoint(ckpt, trust)
    sd, dropped = remap_state_dict(ckpt)
    own = model.state_dict()
    report = dict(loaded=[], dropped=dropped, resized=[], left_at_init=[])
    missing = [k for k in own if k not in sd and not k.startswith(OPTIONAL)]
    unexpected = [k for k in sd if k not in own]
    mismatched = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in sd
                  if k in own and sd[k].shape != own[k].shape and not k.startswith(OPTIONAL)
                  and not (k == "pos_embed" and sd[k].shape[-1] == own[k].shape[-1])]  # resized
    report["left_at_init"] = [k for k in own if k.startswith(OPTIONAL)
                              and (k not in sd or sd[k].shape != own[k].shape)]
    problems = [f"missing: {k}" for k in missing] + [f"unexpected: {k}" for k in unexpected] + \
               [f"mis-shaped: {m}" for m in mismatched]
    if problems and strict:
        raise ValueError(f"{where} does not fit {type(model).__name__}({model.cfg}):\n  "
                         + "\n  ".join(problems))
    if problems:
        report.update(missing=missing, unexpected=unexpected, mismatched=mismatched)
    if "pos_embed" in sd and sd["pos_embed"].shape[-1] == own["pos_embed"].shape[-1]:
        old = tuple(sd["pos_embed"].shape)
        src = checkpoint_grid(old[1], grid, frames)
        if tuple(src) != model.grid:
            sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], model.grid, src)
            report["resized"].append(f"pos_embed {old} on a {' x '.join(map(str, src))} grid -> "
                                     f"{tuple(sd['pos_embed'].shape)}")
    sd = {k: own_tensor(v.to(own[k].dtype)) for k, v in sd.items()
          if k in own and v.shape == own[k].shape}  # a bf16 file trains in the model's dtype
    on_meta = any(p.is_meta for p in model.parameters())
    # assign: the tensors become the weights
    model.load_state_dict(sd, strict=False, assign=on_meta)
    if on_meta:
        model.materialise()
    report["loaded"] = sorted(sd)
    return report

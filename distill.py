"""Teacher-student wiring of InternVQA: the frozen teacher, the three-term loss, the optimizer.

Follows Guan et al. 2025, "InternVQA: Advancing Compressed Video Quality Assessment with
Distilling Large Foundation Model" (arXiv 2502.19026):

    L_total = L2(teacher score, MOS) + L2(student score, MOS)
              + SmoothL1(LN(student feature), LN(teacher feature))      (beta 2.0)

On videos nobody rated (an addition to the paper, as the field distils in practice: E-VQA at NTIRE
2025, SSL-VQA) the same formula holds, with its weights, the teacher's score in place of the MOS
and no teacher term, the whole weighed by w_unlabeled:

    L_unlabeled = w_student L2(student score, teacher score) + w_align SmoothL1(LN(f_s), LN(f_t))

The teacher (InternVideo2-1B) keeps its last block and quality head trainable; its other 39
blocks are frozen and run without gradients, so they cost forward time and no activation
memory. The features are the 768-d pooled vectors after fc_norm, each through a LayerNorm
without affine parameters. The heterogeneous student, FAST-VQA (fastvqa.py), sees fragments of
the same moment (a view of its own); its feature is the space-time mean of its final 768-channel
map, which needs no projection (a student of another width would get a linear one).

    teacher = freeze_teacher(VideoViT(CONFIGS["1b"]))
    distiller = Distiller(teacher, VideoViT(CONFIGS["small"]))
    out = distiller(clips, targets)          # dict: loss, loss_teacher, loss_student, loss_align
    out = distiller((clips, fragments), targets)  # a FAST-VQA student: two views
    out = distiller(clips, targets, unrated_clips)  # + loss_unlabeled: the teacher's score as MOS
    out["loss"].backward()
    opt = build_optimizer([distiller.student, distiller.teacher, distiller.align], lr=1e-4)

A student is any module with `forward_features(x)` (a (B, F) feature or a (B, F, t, h, w) map),
`forward_head(feature) -> (B,)`, `head` (its quality head) and `feature_dim`: VideoViT and
fastvqa.FastVQA both are.
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

TRAINABLE = ("last", "last+embed", "none", "all")


def freeze_teacher(model, trainable="last"):
    """Choose what of a VideoViT teacher trains; returns the model.

    last        the paper: the last block, attention pooling, fc_norm and head train; every
                other block and the embeddings are frozen and run under torch.no_grad().
    last+embed  the authors' released code: patch embedding, cls token and pos_embed train too.
                Gradients must then flow back through all 40 blocks, so every frozen block keeps
                its activations for backward: about 40x the teacher's activation memory of
                "last" (an estimate, not measured here: ~19 saved tensors of 2049 x 1408 per
                1b block at batch 8 on 8x224x224 in bf16 is ~0.9 GB a block, ~35 GB for 39).
    none        nothing trains (its L2 term then teaches nothing); all: everything trains.
    """
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {TRAINABLE}, got {trainable!r}")
    model.requires_grad_(trainable == "all")
    if trainable in ("last", "last+embed"):
        for m in (model.blocks[-1], model.clip_projector, model.fc_norm, model.head):
            m.requires_grad_(True)
    if trainable == "last+embed":
        for p in (model.patch_embed.proj.weight, model.patch_embed.proj.bias, model.cls_token,
                  model.pos_embed):
            p.requires_grad_(True)
    return model


def _trains(module_or_param):
    ps = ([module_or_param] if isinstance(module_or_param, nn.Parameter)
          else module_or_param.parameters())
    return any(p.requires_grad for p in ps)


def frozen_prefix(teacher):
    """How many leading blocks can run under no_grad: all blocks before the first one that
    trains, provided the embeddings are frozen too (else gradients must flow through them)."""
    if _trains(teacher.patch_embed) or _trains(teacher.cls_token) or _trains(teacher.pos_embed):
        return 0
    return next((i for i, b in enumerate(teacher.blocks) if _trains(b)), len(teacher.blocks))


def teacher_features(teacher, x):
    """The teacher's pooled feature; its frozen prefix runs without building a graph (and, stored
    in bf16, hands over to the fp32 tail inside VideoViT.run_blocks, as in every other forward)."""
    n = frozen_prefix(teacher)
    if n:
        with torch.no_grad():
            h = teacher.run_blocks(teacher.embed(x), teacher.blocks[:n])
    else:
        h = teacher.embed(x)
    return teacher.pool(teacher.run_blocks(h, teacher.blocks[n:]))


def teacher_runs(w_teacher, w_align, with_student=True, w_unlabeled=0.0):
    """Whether the teacher runs at all: its own L2 term is on, or the alignment with a student, or
    its scores are a student's targets on unlabeled videos (w_unlabeled, when there are any). The
    rule train.py and the teacher stage follow to build a teacher; a Distiller runs it on the
    labelled clips by the first two and on unlabeled clips whenever they are passed."""
    return w_teacher != 0 or (with_student and (w_align != 0 or w_unlabeled != 0))


def pooled(feature):
    """The student's feature for the alignment term: a ViT's pooled (B, 768) as it is; FAST-VQA's
    final map (B, 768, t, h, w) averaged over space and time (no projection: both are 768-d)."""
    return feature.flatten(2).mean(-1) if feature.ndim == 5 else feature


class Distiller(nn.Module):
    """Teacher and student on the same moment of the same videos, with the three-term loss.

    w_teacher, w_student, w_align weigh the terms; a weight of 0 removes its term. When no term
    uses the teacher (teacher_runs) it is not run: the non-distilled baseline. With student=None
    the teacher trains alone. detach_teacher=True keeps the alignment gradient away from the
    teacher, which then learns only from its own L2 term; False reproduces the authors' code.
    teacher_dtype (e.g. torch.bfloat16) stores and runs the teacher's frozen prefix in that dtype;
    its trainable tail keeps its own. forward(x, y) takes one clip batch that both see, or a pair
    (teacher's clips, student's clips) when the student has a view of its own (FAST-VQA).
    forward(x, y, x_unlabeled) adds clips of videos without labels (the same view or views): the
    teacher's score, detached, is their target, weighed by w_unlabeled.
    """

    TERMS = ("loss_teacher", "loss_student", "loss_align", "loss_unlabeled")  # out[...] when on

    def __init__(self, teacher, student, w_teacher=1.0, w_student=1.0, w_align=1.0, beta=2.0,
                 detach_teacher=True, teacher_dtype=None, w_unlabeled=1.0):
        super().__init__()
        if teacher is None and student is None:
            raise ValueError("Distiller needs a teacher, a student or both")
        self.teacher, self.student = teacher, student
        self.w_teacher, self.w_student, self.w_align = w_teacher, w_student, w_align
        self.beta, self.detach_teacher, self.w_unlabeled = beta, detach_teacher, w_unlabeled
        self.aligning = teacher is not None and student is not None and w_align != 0
        self.use_teacher = teacher is not None and teacher_runs(w_teacher, w_align,
                                                                student is not None)
        if not ((student is not None and w_student != 0) or (teacher is not None and w_teacher != 0)
                or self.aligning):
            raise ValueError(f"every loss term is off (weights {w_teacher}, {w_student}, "
                             f"{w_align}): nothing to train")
        # A score whose term is off gets no gradient: its head is frozen, so that no optimizer
        # step (eager, compiled or under DDP) touches it and every trainable part has a gradient.
        for m, w in ((student, w_student), (teacher, w_teacher)):
            if m is not None and w == 0:
                m.head.requires_grad_(False)
        # A projection only when the widths differ; an Identity adds no keys.
        widths_differ = self.aligning and student.feature_dim != teacher.feature_dim
        self.align = (nn.Linear(student.feature_dim, teacher.feature_dim) if widths_differ
                      else nn.Identity())
        if teacher is not None and teacher_dtype is not None:
            for m in self._frozen_teacher_parts():
                m.to(teacher_dtype)

    @property
    def teacher_learns(self):
        """No gradient reaches the teacher when its own term is off and alignment is detached."""
        return _trains(self.teacher) and (self.w_teacher != 0 or not self.detach_teacher)

    def _frozen_teacher_parts(self):
        t = self.teacher
        n = frozen_prefix(t)
        return ([t.patch_embed] if n else []) + [b for b in t.blocks[:n]]

    def train(self, mode=True):
        super().train(mode)
        if self.teacher is not None:  # frozen teacher blocks always run in eval mode (no drop-path)
            for m in [self.teacher.patch_embed, *self.teacher.blocks]:
                if not _trains(m):
                    m.eval()
        return self

    def forward(self, x, y, x_unlabeled=None):
        """{"loss": the weighted sum, and each term that is on (loss_teacher, loss_student,
        loss_align, loss_unlabeled) with the labelled clips' scores (score_teacher,
        score_student)}. Labelled and unlabeled clips run as one batch: rows n: are unlabeled."""
        n = len(y)
        if x_unlabeled is not None:
            if self.student is None or self.teacher is None or not self.w_unlabeled:
                raise ValueError("unlabeled clips need a student, a teacher and w_unlabeled != 0: "
                                 "the teacher's score is their target")
            x = _cat_views(x, x_unlabeled)
        x_teacher, x_student = x if isinstance(x, (tuple, list)) else (x, x)
        y = y.float()
        out, loss = {}, 0.0
        if self.student is not None:
            feat_s = self.student.forward_features(x_student)
            if self.w_student or x_unlabeled is not None:
                score_s = self.student.forward_head(feat_s).float()
        if self.use_teacher or x_unlabeled is not None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.teacher_learns):
                feat_t = teacher_features(self.teacher, x_teacher)
                if self.w_teacher or x_unlabeled is not None:
                    score_t = self.teacher.forward_head(feat_t).float()
        if self.aligning:  # LN(student feature), LN(teacher feature): no affine LN
            target = feat_t.detach() if self.detach_teacher else feat_t
            f_s = F.layer_norm(self.align(pooled(feat_s)).float(), (target.shape[-1],))
            f_t = F.layer_norm(target.float(), (target.shape[-1],))
        if self.student is not None and self.w_student:  # L2(student score, MOS)
            out["score_student"] = score_s[:n]
            out["loss_student"] = F.mse_loss(score_s[:n], y)
            loss = loss + self.w_student * out["loss_student"]
        if self.use_teacher and self.w_teacher:  # L2(teacher score, MOS)
            out["score_teacher"] = score_t[:n]
            out["loss_teacher"] = F.mse_loss(score_t[:n], y)
            loss = loss + self.w_teacher * out["loss_teacher"]
        if self.aligning:  # SmoothL1(LN(student feature), LN(teacher feature))
            out["loss_align"] = F.smooth_l1_loss(f_s[:n], f_t[:n], beta=self.beta)
            loss = loss + self.w_align * out["loss_align"]
        if x_unlabeled is not None:  # the same on unrated videos, the teacher's score as the MOS
            unlabeled = self.w_student * F.mse_loss(score_s[n:], score_t[n:].detach())
            if self.aligning:
                unlabeled = unlabeled + self.w_align * F.smooth_l1_loss(f_s[n:], f_t[n:],
                                                                        beta=self.beta)
            out["loss_unlabeled"] = unlabeled
            loss = loss + self.w_unlabeled * unlabeled
        out["loss"] = loss
        return out


def _cat_views(x, x_unlabeled):
    """Labelled then unlabeled clips in one batch, per view (a FAST-VQA student has two)."""
    if isinstance(x, (tuple, list)):
        return tuple(torch.cat(pair) for pair in zip(x, x_unlabeled))
    return torch.cat([x, x_unlabeled])


# ---------------------------------------------------------------------------------------------
# Optimizer


def _no_decay(name, p):
    # biases, norm weights, LayerScale gammas and the pooling's q/k/v biases are all 1-D; position
    # tables, like Swin's relative bias tables (as its official recipe has it), get none either
    return p.ndim <= 1 or name.split(".")[-1] in ("cls_token", "pos_embed",  # and Swin's tables
                                                  "relative_position_bias_table",
                                                  "fragment_position_bias_table")


def _layer_id(name, depth):
    """ViT layer index for layer-wise lr decay: embeddings 0, block i -> i + 1, the rest
    depth + 1."""
    if name.startswith(("patch_embed.", "cls_token", "pos_embed")):
        return 0
    m = re.match(r"blocks\.(\d+)\.", name)
    return int(m.group(1)) + 1 if m else depth + 1


def param_groups(modules, weight_decay, layer_decay=None):
    """AdamW groups over parameters that require grad: no weight decay on 1-D parameters, cls
    token and pos_embed; with layer_decay, a ViT's layer l gets lr x layer_decay ** (depth + 1 - l)
    (modules without `blocks`, such as FAST-VQA or the projection, get the full lr)."""
    groups = {}
    for module in modules if isinstance(modules, (list, tuple)) else [modules]:
        depth = len(module.blocks) if hasattr(module, "blocks") else None
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            scale = 1.0
            if layer_decay is not None and depth is not None:
                scale = layer_decay ** (depth + 1 - _layer_id(name, depth))
            wd = 0.0 if _no_decay(name, p) else weight_decay
            g = groups.setdefault((wd, scale),
                                  dict(params=[], names=[], weight_decay=wd, lr_scale=scale))
            g["params"].append(p)
            g["names"].append(name)
    return list(groups.values())


def build_optimizer(modules, lr, weight_decay=0.05, betas=(0.9, 0.999), layer_decay=None,
                    fused=None):
    """AdamW over what requires grad. Each group's lr is lr x its lr_scale; a scheduler should
    multiply, not overwrite (torch's LambdaLR does). fused=None: torch's fused kernel (one for the
    whole update: 74 -> 21 ms a ViT-S step on 2 CPU cores) where every parameter is on a CPU or a
    CUDA device, which have it; the same math, rounded differently."""
    groups = param_groups(modules, weight_decay, layer_decay)
    if not groups:
        raise ValueError("no parameter requires grad: nothing to optimize")
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if fused is None:
        fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)

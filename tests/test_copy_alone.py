"""Each single-file module works when copied alone into another project (STYLE.md, README
"Copying a file"): model.py, fastvqa.py and distill.py with only torch, metrics.py with only numpy
and scipy, data.py with video.py beside it. Each is copied into an empty folder and used there in
a child process (cwd that folder, no PYTHONPATH, so nothing else of this repository can be
imported): a tiny forward and a loading round-trip for the models, a loss and an optimizer step
for distill.py, the correlations for metrics.py, fragments for data.py.

    python -m pytest -q tests/test_copy_alone.py     # about 20 s
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every snippet first checks that the repository is out of reach.
ISOLATED = """
import importlib.util
assert importlib.util.find_spec("train") is None, "the repository is importable"
"""

USES = {
    "model.py": """
        from dataclasses import replace
        import torch
        from model import CONFIGS, VideoViT, load_internvideo2
        cfg = replace(CONFIGS["tiny"], num_frames=2, img_size=28)
        torch.manual_seed(0)
        model = VideoViT(cfg).eval()
        x = torch.randn(2, 3, 2, 28, 28)
        score = model(x)
        assert score.shape == (2,), score.shape
        torch.save({"module": model.state_dict()}, "ckpt.pth")
        other = VideoViT(cfg).eval()
        load_internvideo2(other, "ckpt.pth")
        assert torch.equal(other(x), score)
    """,
    "fastvqa.py": """
        import torch
        from fastvqa import FastVQA, FastVQAConfig, load_fastvqa
        cfg = FastVQAConfig(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                            head_hidden=4)
        torch.manual_seed(0)
        model = FastVQA(cfg).eval()
        x = torch.randn(2, 3, 4, 32, 32)
        score = model(x)
        assert score.shape == (2,), score.shape
        torch.save({"state_dict": model.state_dict()}, "ckpt.pth")
        other = FastVQA(cfg).eval()
        load_fastvqa(other, "ckpt.pth")
        assert torch.equal(other(x), score)
    """,
    "distill.py": """
        import torch
        import torch.nn as nn
        from distill import Distiller, build_optimizer

        class Tiny(nn.Module):
            # the teacher's interface distill.py reads (a VideoViT's), on 12 numbers a clip
            def __init__(self, dim):
                super().__init__()
                self.feature_dim = dim
                self.patch_embed = nn.Linear(12, dim)
                self.cls_token = nn.Parameter(torch.zeros(dim))
                self.pos_embed = nn.Parameter(torch.zeros(dim))
                self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
                self.head = nn.Linear(dim, 1)

            def embed(self, x):
                return self.patch_embed(x.flatten(1)) + self.pos_embed

            def run_blocks(self, h, blocks):
                for block in blocks:
                    h = torch.relu(block(h))
                return h

            def pool(self, h):
                return h

            def forward_features(self, x):
                return self.pool(self.run_blocks(self.embed(x), self.blocks))

            def forward_head(self, feature):
                return self.head(feature).squeeze(-1)

        torch.manual_seed(0)
        teacher, student = Tiny(16), Tiny(8)
        teacher.requires_grad_(False)
        teacher.blocks[-1].requires_grad_(True)
        teacher.head.requires_grad_(True)
        d = Distiller(teacher, student)
        x, y = torch.randn(4, 3, 2, 2), torch.rand(4)
        out = d(x, y)
        assert set(out) >= {"loss", "loss_teacher", "loss_student", "loss_align"}, set(out)
        out["loss"].backward()
        assert d.align.weight.grad is not None and teacher.blocks[0].weight.grad is None
        opt = build_optimizer([student, teacher, d.align], lr=1e-2)
        before = student.head.weight.detach().clone()
        opt.step()
        assert not torch.equal(before, student.head.weight)
    """,
    "metrics.py": """
        from metrics import evaluate
        r = evaluate([1, 2, 3, 4, 5], [1, 3, 2, 5, 4])
        # by hand: rank differences 0, 1, 1, 1, 1; 2 of 10 pairs discordant; Pearson 8 / 10
        assert abs(r["srcc"] - (1 - 6 * 4 / 120)) < 1e-12, r
        assert abs(r["krcc"] - (8 - 2) / 10) < 1e-12 and abs(r["plcc_raw"] - 0.8) < 1e-12, r
    """,
    "data.py": """
        import numpy as np
        from data import fragment_clip, normalise, to_tensor
        clip = np.random.default_rng(0).integers(0, 256, (4, 64, 80, 3), dtype=np.uint8)
        frags = fragment_clip(clip, 32, grid=2)
        assert frags.shape == (4, 32, 32, 3), frags.shape
        x = normalise(to_tensor(frags))
        assert tuple(x.shape) == (3, 4, 32, 32), tuple(x.shape)
    """,
}
NEEDS = {"data.py": ["video.py"]}  # what data.py says it needs beside it


@pytest.mark.parametrize("name", list(USES))
def test_a_file_works_copied_alone(tmp_path, name):
    for f in [name, *NEEDS.get(name, [])]:
        shutil.copy(os.path.join(ROOT, f), tmp_path / f)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1")
    code = ISOLATED + textwrap.dedent(USES[name])
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name} copied alone:\n{proc.stderr[-3000:]}"

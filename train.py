"""Train and evaluate InternVQA: distil an InternVideo2 teacher into a small student.

    python train.py --student small                       # the paper in miniature, on 2 CPU cores
    python train.py --student small --data waterloo4k --data-root /data/ivc4k \
        --teacher-ckpt 1B_ft_k710_f8.pth --student-ckpt S14_ft_k710_f8.pth   # the paper's setting
    torchrun --nproc_per_node 2 train.py ...               # DistributedDataParallel

The method (Guan et al. 2025, arXiv 2502.19026; its wiring: docs/reference.md, section 3): a
large teacher that already knows video, frozen except its last block and quality head, and a
small student see the same clips, and learn from L2(teacher score, MOS) + L2(student score, MOS)
+ SmoothL1(student feature, teacher feature) (distill.py). Each evaluation scores both on test
videos of contents never trained on; OUT/ gets last.pt (for --resume), best.pt (the best student
by SRCC), predictions.csv and scatter.png.

With no data and no weights (--data toy, the default) it is the paper in miniature: the toy set
is generated (toy.py); a teacher is first trained alone on a corpus of other synthetic contents
(the teacher stage: this script with --student none, cached); then it is distilled into the
student on the toy set's training contents. With --student none the teacher trains alone and
best.pt is the best teacher. Options not given come from a profile, quick for --data toy and
paper otherwise (`--help` shows both; the first log line, what runs). Processes, stops,
checkpoints and reports are runtime.py's, so that this file reads as the method.
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, replace

import torch

import data
import datasets
import metrics
import runtime
import toy
from distill import TRAINABLE, Distiller, build_optimizer, freeze_teacher
from model import CONFIGS, ConvVQA, VideoViT, flops_per_clip
from runtime import print0

# The quick profile fits 2 CPU cores and ~10 minutes, models from scratch: tiny clips (2 frames of
# 84 x 84: 73 tokens) at native resolution (the toy videos are 176 x 144; shrinking a frame to 84
# would blur away what the labels measure), a short cosine schedule, and the two inits that made
# ViTs learn at all at this budget (LayerScale 0.1, a DCT-basis patch embedding). The paper
# profile resizes the short side to the clip size, then crops, and derives lr from the batch.
QUICK = dict(teacher="small", pretrain=200, frames=2, size=84, stride=2, resize=False, test_clips=1,
             fragments=0, epochs=2, batch_size=8, lr=3e-4, layer_decay=None, warmup=0.2,
             drop_path=0.0, init_values=0.1, patch_init="dct", dtype="fp32", teacher_dtype="fp32",
             workers=1, log_every=10, split="official")
PAPER = dict(teacher="1b", pretrain=0, frames=8, size=224, stride=4, resize=True, test_clips=4,
             fragments=0, epochs=30, batch_size=8, lr=None, layer_decay=0.75, warmup=5.0,
             drop_path=0.1, init_values=1e-5, patch_init="normal", dtype="bf16",
             teacher_dtype="bf16", workers=8, log_every=20, split="official")
# The teacher stage: this script, the teacher alone on the corpus, with the run's model settings.
STAGE = ["--profile", "quick", "--student", "none", "--pretrain", "0", "--epochs", "1",
         "--warmup", "0.1", "--log-every", "50"]
TO_STAGE = ("teacher", "frames", "size", "stride", "init_values", "patch_init", "dtype", "seed")
NEEDS = {"csv": ["labels"], "waterloo4k": ["data_root"],
         "bvihd": ["data_root", "labels", "yuv_fps", "yuv_bit_depth"]}
# What changes a run's result: --resume refuses a checkpoint saved with other values of these.
RESUME_SAME = ("student", "teacher", "teacher_ckpt", "student_ckpt", "data", "data_root", "labels",
               "split", "split_seed", "test_fraction", "toy_variant", "toy_sources", "frames",
               "size", "stride", "resize", "fragments", "epochs", "batch_size", "grad_accum", "lr",
               "warmup", "weight_decay", "layer_decay", "clip_grad", "drop_path", "dtype",
               "teacher_dtype", "seed", "w_teacher", "w_student", "w_align", "teacher_trainable",
               "align_to_teacher", "pretrain", "label_range", "ckpt_frames")


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one; options without one say in their help what
    happens when they are not given."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=Help)
    add = p.add_argument

    def profiled(name, help, **kw):  # the default comes from the profile; --help shows both values
        key = name[2:].replace("-", "_")
        paper = "1e-3 x effective batch / 256" if key == "lr" else PAPER[key]
        add(name, default=argparse.SUPPRESS, help=f"{help} [quick: {QUICK[key]}; paper: {paper}]",
            **kw)

    add("--profile", choices=["quick", "paper"],
        help="where options not given come from (not given: quick for --data toy, else paper)")
    # models
    add("--student", default="small", choices=[*CONFIGS, "conv", "none"],
        help="student network (tiny: for tests; none: the teacher alone)")
    profiled("--teacher", "teacher size", choices=[*CONFIGS, "none"])
    add("--teacher-ckpt", help="official InternVideo2 file or a checkpoint of this project (its "
        "teacher) (not given: the teacher stage's with --pretrain, else a random initialisation)")
    add("--student-ckpt", help="official InternVideo2 file or a checkpoint of this project (its "
        "student) (not given: a random initialisation)")
    profiled("--pretrain", "contents of the corpus the teacher first learns alone when no "
             "--teacher-ckpt is given (toy data only; 0: none)", type=int)
    add("--ckpt-frames", type=int, help="frame count of a checkpoint position table with several "
        "readings (not given: such a table is an error)")
    add("--trust-ckpt", action="store_true", help="allow full unpickling of checkpoint files")
    add("--teacher-trainable", default="last", choices=TRAINABLE,
        help="what of the teacher trains (last: its last block and head; a teacher without a "
        "file trained alone, --student none: all of it)")
    profiled("--init-values", "LayerScale init of models not loaded from a file", type=float)
    profiled("--patch-init", "patch embedding init of ViTs not loaded from a file",
             choices=["normal", "dct"])
    profiled("--drop-path", "stochastic depth of the student", type=float)
    add("--grad-checkpointing", action="store_true",
        help="recompute the ViTs' block activations in backward (less memory, more time)")
    # loss: a weight of 0 removes its term
    add("--w-teacher", type=float, default=1.0, help="weight of L2(teacher score, MOS)")
    add("--w-student", type=float, default=1.0, help="weight of L2(student score, MOS)")
    add("--w-align", type=float, default=1.0, help="weight of SmoothL1(student, teacher feature)")
    add("--align-to-teacher", action="store_true",
        help="let the alignment gradient reach the teacher (the authors' code)")
    # data
    add("--data", default="toy", choices=["toy", "csv", "bvihd", "waterloo4k"])
    add("--data-root", help="dataset folder (not given: data/toy for the toy set)")
    add("--labels", help="the CSV list (csv), the DMOS file (bvihd), scores.txt or the CSV "
        "(waterloo4k; not given: DATA_ROOT/scores.txt)")
    add("--yuv-fps", type=float, help="bvihd: frame rate from the dataset's instructions")
    add("--yuv-bit-depth", type=int, help="bvihd: bit depth from the dataset's instructions")
    add("--toy-sources", help="build the toy set from your own videos in this folder "
        "(not given: the built-in synthetic contents)")
    add("--toy-variant", default="default", choices=["default", "tiny"], help="tiny: for tests")
    profiled("--split", "official: the fixed test sources (toy, and a CSV with a split column: "
             "that column); random: by --split-seed (the default with --toy-sources)",
             choices=["official", "random"])
    add("--split-seed", type=int, default=0, help="seed of the random content split")
    add("--test-fraction", type=float, default=0.25,
        help="share of sources a random split holds out")
    add("--test-labels", help="evaluate on this CSV list, its sources seen in training left out "
        "(not given: the split's test videos)")
    add("--label-range", type=float, nargs=2, metavar=("LO", "HI"), help="the label scale that "
        "maps to targets 0..1 (not given: 0..100 for toy, bvihd, waterloo4k; a CSV's min..max)")
    # clips
    profiled("--frames", "frames per clip", type=int)
    profiled("--size", "crop size in pixels (multiple of 14)", type=int)
    profiled("--stride", "frame stride within a clip", type=int)
    profiled("--resize", "resize the short side to --size, then crop (else native-resolution "
             "crops)", action=argparse.BooleanOptionalAction)
    profiled("--test-clips", "evenly spaced clips per video at test", type=int)
    profiled("--fragments", "FAST-VQA fragments on a GRID x GRID grid instead of one crop "
             "(no GRID: 7; 0: a crop)", type=int, nargs="?", const=7, metavar="GRID")
    add("--cache", help="decode each video once, at the clip geometry, into this folder (needs "
        "--resize; not given: every clip decoded from its video)")
    # optimisation
    profiled("--epochs", "training epochs", type=int)
    profiled("--batch-size", "clips per step per process", type=int)
    add("--grad-accum", type=int, default=1, help="steps accumulated per optimizer update")
    profiled("--lr", "peak learning rate", type=float)
    add("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    profiled("--layer-decay", "layer-wise lr decay of ViTs", type=float)
    profiled("--warmup", "warm-up epochs (linear), then cosine decay", type=float)
    add("--clip-grad", type=float, default=5.0,
        help="max gradient norm, per model (0: no clipping)")
    profiled("--dtype", "autocast dtype", choices=["fp32", "bf16", "fp16"])
    profiled("--teacher-dtype", "dtype of the frozen teacher blocks (not given on a CPU: fp32, "
             "which has no fast bf16)",
             choices=["fp32", "bf16"])
    add("--compile", action="store_true", help="torch.compile the models")
    add("--deterministic", action="store_true", help="deterministic kernels, slower (needed for "
        "an exact resume on CUDA; a CPU run is deterministic without it)")
    add("--seed", type=int, default=0)
    # running
    add("--device", help="cuda, cuda:1 or cpu (not given: cuda when usable, else cpu; the paper "
        "profile on a CPU needs --device cpu)")
    profiled("--workers", "DataLoader worker processes", type=int)
    add("--worker-start", choices=["fork", "spawn", "forkserver"],
        help="start method of the workers (not given: the platform's)")
    add("--out", default="out", help="output folder")
    add("--resume", action="store_true", help="continue from OUT/last.pt")
    add("--eval-only", action="store_true", help="evaluate (OUT/last.pt with --resume, or the "
        "ckpts) and stop")
    profiled("--log-every", "optimizer steps between log lines", type=int)
    add("--save-every", type=int, default=0, help="also write last.pt every N optimizer steps "
        "(0: at epoch ends only)")
    add("--max-steps", type=int,
        help="stop after this many optimizer steps (not given: all epochs)")
    args = p.parse_args(argv)
    error = lambda message: p.exit(2, f"train.py: error: {message}\n")  # one line, no usage

    quick = args.profile == "quick" or (args.profile is None and args.data == "toy")
    given = set(vars(args))
    for k, v in (QUICK if quick else PAPER).items():
        if k not in given:
            setattr(args, k, v)
    if args.toy_sources and "split" not in given:
        args.split = "random"  # own sources have no fixed test contents
    missing = [f"--{k.replace('_', '-')}" for k in NEEDS.get(args.data, [])
               if getattr(args, k) is None]
    if missing:
        error(f"--data {args.data} needs {', '.join(missing)}")
    if args.toy_sources and args.data != "toy":
        error("--toy-sources needs --data toy")
    if args.cache and (not args.resize or args.fragments):
        error("--cache holds resized frames: it needs --resize and no --fragments")
    if args.data != "toy" and "pretrain" not in given:
        args.pretrain = 0  # the quick profile on other data: no corpus of toy contents
    if args.pretrain and args.data != "toy":
        error("--pretrain builds its corpus at the toy set's geometry: it needs --data toy")
    if args.label_range and not args.label_range[1] > args.label_range[0]:
        error(f"--label-range {args.label_range[0]:g} {args.label_range[1]:g}: HI must exceed LO")
    vits = [n for n in (args.student, args.teacher) if n in CONFIGS]
    if vits and args.size % CONFIGS[vits[0]].patch_size:
        error(f"--size {args.size} is not a multiple of the ViT patch size "
              f"({CONFIGS[vits[0]].patch_size})")
    if args.fragments and args.size % args.fragments:
        error(f"--fragments {args.fragments} needs a --size that is a multiple of it, got "
              f"{args.size}")
    for k in ("teacher_ckpt", "student_ckpt"):  # absolute: a checkpoint names it; read anywhere
        if getattr(args, k):
            setattr(args, k, os.path.abspath(getattr(args, k)))
    cuda = torch.cuda.is_available()
    if args.device is None and not cuda and not quick:
        error(f"the paper profile needs a GPU and torch {torch.__version__} sees none "
              f"(torch.cuda.is_available() is False); pass --device cpu to run it on the CPU")
    args.device = args.device or ("cuda" if cuda else "cpu")
    if args.device.startswith("cuda") and not cuda:
        error(f"--device {args.device}: torch {torch.__version__} sees no usable CUDA device")
    if "teacher_dtype" not in given and not args.device.startswith("cuda"):
        args.teacher_dtype = "fp32"  # a CPU has no fast bf16 matmul (tools/bench.py)
    return args, "quick (CPU-sized)" if quick else "paper"


# -----------------------------------------------------------------------------------------------
# Data: labels read, videos listed, split by content


def toy_root(args):
    """Where the toy set lives (built there when it is not): --data-root, else under data/."""
    name = os.path.basename(os.path.normpath(args.toy_sources)) if args.toy_sources else None
    return args.data_root or os.path.join(
        "data", f"toy-{name}" if name else "toy" if args.toy_variant == "default" else "toy-tiny")


def read_items(args):
    """(train items, test items, the split's own test items) of the chosen data; the test items
    are --test-labels' when it is given."""
    if args.data == "toy":
        kind = dict(sources=args.toy_sources) if args.toy_sources else \
            dict(tiny=args.toy_variant == "tiny")
        with runtime.master_first():  # rank 0 builds it (once); the others find it built
            items = datasets.load_csv(toy.make_toy_dataset(toy_root(args), log=print0, **kind))
    elif args.data == "csv":
        items = datasets.load_csv(args.labels)
    elif args.data == "waterloo4k":
        items = datasets.waterloo4k_index(args.data_root, args.labels)
    else:
        items = datasets.bvihd_index(args.data_root, args.labels, fps=args.yuv_fps,
                                     bit_depth=args.yuv_bit_depth)
    if args.split == "official":
        train_items, test_items = datasets.official_split(items, args.data)
    else:
        train_items, test_items = datasets.split_by_source(items, args.test_fraction,
                                                           args.split_seed)
    split_test = test_items
    if args.test_labels:
        seen = {it["source"] for it in train_items}
        test_items = [it for it in datasets.load_csv(args.test_labels) if it["source"] not in seen]
    if len(test_items) < 4 or not train_items:
        fix = "other --test-labels" if args.test_labels else \
            "more sources, or another --test-fraction"
        raise ValueError(f"the split leaves {len(train_items)} train and {len(test_items)} test "
                         f"videos: metrics need at least 4 test videos ({fix})")
    return train_items, test_items, split_test


# -----------------------------------------------------------------------------------------------
# The teacher stage: what the teacher knows before it meets the student's labels


def needs_stage(args):
    """A toy run that distils (or resumes one), with no teacher file: its teacher is the stage's.
    Not for a teacher trained alone (--student none trains it from scratch), one no loss term uses,
    or a plain --eval-only (it evaluates the files it is given)."""
    used = args.teacher != "none" and (args.w_teacher or args.w_align)
    return bool(args.pretrain and not args.teacher_ckpt and used and args.student != "none"
                and (args.resume or not args.eval_only))


def teacher_stage(args, test_items):
    """The checkpoint of a teacher trained alone (`train.py --student none`) on a corpus of
    args.pretrain synthetic contents the toy set does not hold, scored on `test_items` (the toy
    split's) at its end: trained once, then found by the hash of what makes its weights."""
    beside = os.path.dirname(os.path.abspath(toy_root(args)))  # the corpus and the teacher: data/
    with runtime.master_first():
        corpus = toy.make_corpus(os.path.join(beside, f"corpus-{args.pretrain}"),
                                 contents=args.pretrain, log=print0)
    stage = [*STAGE, *(f"--{k.replace('_', '-')}={getattr(args, k)}" for k in TO_STAGE),
             *(["--resize"] if args.resize else []),  # the run's clips, where not the default
             *([f"--fragments={args.fragments}"] if args.fragments else []),
             "--data", "csv", "--labels", str(corpus), "--split", "official",
             "--label-range", "0", "100"]  # VMAF, as the toy set's
    inputs = dict(stage=stage, corpus=(corpus.parent / toy.MARKER).read_text())
    key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()  # any change: another teacher
    command = [sys.executable, os.path.abspath(__file__), *stage, f"--device={args.device}",
               f"--workers={args.workers}"]
    with runtime.master_first():  # rank 0 trains it; the others find it trained
        path = toy.train_once(os.path.join(beside, f"teacher-{args.teacher}-{key[:12]}"), key,
                              command, test_items, log=print0)
    print0(f"teacher: pre-trained alone on {args.pretrain} synthetic contents the toy set does not "
           f"hold, labelled by VMAF\n  (a stand-in for pre-training on millions of natural "
           f"videos, which the official weights are): {path}")
    return str(path)


# -----------------------------------------------------------------------------------------------
# Models


def vit(args, name, init_values, drop_path, from_file):
    """A VideoViT at the run's clip geometry; built on the meta device when a file will fill it."""
    cfg = replace(CONFIGS[name], num_frames=args.frames, img_size=args.size,
                  init_values=init_values, drop_path=drop_path, patch_init=args.patch_init,
                  grad_checkpointing=args.grad_checkpointing)
    with torch.device("meta" if from_file else "cpu"):
        return VideoViT(cfg)


def load(model, path, who, args):
    """Weights from a file, the report printed; True when the head stays fresh (a 710-class one)."""
    try:
        report = runtime.load_weights(model, path, who, trust=args.trust_ckpt,
                                      frames=args.ckpt_frames)
    except ValueError as e:
        raise SystemExit(f"{who}: {e}")
    print0(f"{who}: {path}\n  " + runtime.format_report(report).replace("\n", "\n  "))
    return "head.bias" in report["left_at_init"]


def build_models(args, mean_target):
    """(teacher or None, student or None), built and loaded; the teacher frozen as the paper has
    it; every fresh head starts at the mean training target, so the first steps learn ranking."""
    teacher = student = None
    fresh = []
    if args.teacher != "none" and (args.w_teacher or args.w_align or args.student == "none"):
        teacher = vit(args, args.teacher, args.init_values, 0.0, bool(args.teacher_ckpt))
        if not args.teacher_ckpt or load(teacher, args.teacher_ckpt, "teacher", args):
            fresh.append(teacher)
        if not args.teacher_ckpt and args.student != "none":
            print0("teacher: NO CHECKPOINT, randomly initialised. Its frozen blocks are random\n"
                   "  features, so distillation transfers no prior knowledge; it is a regularizer\n"
                   "  at best. Pass --teacher-ckpt (official InternVideo2) or, on toy data,\n"
                   "  --pretrain.")
        alone = args.student == "none" and not args.teacher_ckpt  # trained from scratch: all
        trainable = "all" if alone else args.teacher_trainable
        freeze_teacher(teacher, "none" if args.w_teacher == 0 and not args.align_to_teacher
                       else trainable)  # no gradient can reach it
    if args.student != "none":  # the CNN is small: built as it is, then loaded
        student = ConvVQA() if args.student == "conv" else \
            vit(args, args.student, args.init_values, args.drop_path, bool(args.student_ckpt))
        if not args.student_ckpt or load(student, args.student_ckpt, "student", args):
            fresh.append(student)
    with torch.no_grad():
        for m in fresh:
            m.head.bias.fill_(mean_target)
    for name, m in (("teacher", teacher), ("student", student)):
        if m is not None:
            n_train = sum(q.numel() for q in m.parameters() if q.requires_grad)
            n_all = sum(q.numel() for q in m.parameters())
            cost = f", {flops_per_clip(m.cfg) / 1e9:.1f} GFLOPs/clip" \
                if isinstance(m, VideoViT) else ""
            print0(f"{name}: {getattr(args, name)}, {n_all / 1e6:.1f}M params "
                   f"({n_train / 1e6:.1f}M trainable){cost}")
    return teacher, student


# -----------------------------------------------------------------------------------------------
# Evaluation: deterministic clips; a video's score is the mean over its clips


def loader(dataset, args, device, **kw):
    kw.setdefault("generator", torch.Generator().manual_seed(args.seed))  # never the global RNG:
    return torch.utils.data.DataLoader(  # an evaluation then leaves no trace in a resumed run
        dataset, num_workers=args.workers, worker_init_fn=runtime.leave_signals_to_main,
        multiprocessing_context=args.worker_start if args.workers else None,
        pin_memory=device.type == "cuda", **kw)


def autocast(args, device):
    dtype = runtime.DTYPES[args.dtype]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@torch.no_grad()
def evaluate(models, test_set, args, device, label_range):
    """{name: the score of every test video, in test order, on the label scale} of models {name:
    module}, in eval mode. Each process scores every world-th video; each gets all the scores."""
    rank, world = runtime.rank_and_world()
    lo, hi = label_range
    for m in models.values():  # BatchNorm statistics: every process scores with rank 0's
        runtime.sync_buffers(m)
        m.eval()  # the caller puts them back in training mode
    mine = torch.utils.data.Subset(test_set, range(rank, len(test_set), world))  # each video once
    rows, t0, shown = [], time.time(), time.time()
    for clips, _, index in loader(mine, args, device, batch_size=max(1, args.batch_size // 2)):
        B, N = clips.shape[:2]
        x = data.normalise(clips.flatten(0, 1).to(device, non_blocking=True))  # (B*N, 3, T, S, S)
        with autocast(args, device):
            scores = torch.stack([m(x).float().view(B, N).mean(1) for m in models.values()], 1)
        rows += zip(index.tolist(), (lo + (hi - lo) * scores).double().cpu().tolist())
        if time.time() - shown > 10:  # a long evaluation says how far it is
            print0(f"  evaluating: {len(rows) * world}/{len(test_set)} videos, "
                   f"{time.time() - t0:.0f}s")
            shown = time.time()
    rows = sorted(runtime.gather(rows))
    return {name: [r[1][j] for r in rows] for j, name in enumerate(models)}


def cosine_with_warmup(warmup_steps, total_steps):
    def lr_lambda(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr_lambda


# -----------------------------------------------------------------------------------------------


def main(argv=None):
    args, profile_name = parse_args(argv)
    try:
        return train(args, profile_name)
    finally:
        runtime.teardown()


def train(args, profile_name):
    # -------------------------------------------------------------------------------------------
    # Processes, device and seeds
    rank, world, device = runtime.init_distributed(args.device)
    if args.deterministic:  # before any CUDA work: cuBLAS reads its workspace setting at start
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    batch_total = args.batch_size * args.grad_accum * world
    rule = ""
    if args.lr is None:  # the authors' rule, on the effective batch
        args.lr = 1e-3 * batch_total / 256
        rule = f" (1e-3 x {args.batch_size} x {args.grad_accum} x {world} / 256)"
    print0(f"profile: {profile_name}; " + " ".join(f"{k}={getattr(args, k)}" for k in QUICK) +
           f"{rule} clip_grad={args.clip_grad} effective_batch={batch_total}")
    print0(f"device {device} x{world}, dtype {args.dtype}, torch {torch.__version__}, "
           f"{torch.get_num_threads()} threads")

    # -------------------------------------------------------------------------------------------
    # Data
    try:  # a bad label file, video or split: one message naming the file, not a traceback
        train_items, test_items, split_test = read_items(args)
        lo, hi = args.label_range or datasets.label_range(args.data, train_items)
        memo = os.path.join(args.cache or args.out, "probes.json")  # unchanged files: read once
        t0 = time.time()
        probes = runtime.on_master(lambda: data.check_videos(train_items + test_items, memo=memo))
        info = {it["path"]: p for it, p in zip(train_items + test_items, probes)}
        count = lambda its: f"{len(its)} videos ({len({it['source'] for it in its})} sources)"
        print0(f"data: {args.data}, train {count(train_items)}, test {count(test_items)}, labels "
               f"{lo:g}..{hi:g} -> targets 0..1; every video checked in {time.time() - t0:.0f}s")
        if needs_stage(args):
            args.teacher_ckpt = teacher_stage(args, split_test)
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: ffmpeg's, in a toy build
        raise SystemExit(f"train.py: {e}") from None
    geometry = dict(frames=args.frames, size=args.size, stride=args.stride, label_range=(lo, hi),
                    fragments=args.fragments, resize=args.resize, cache=args.cache, info=info)
    train_set = data.VideoDataset(train_items, train=True, seed=args.seed, **geometry)
    test_set = data.VideoDataset(test_items, train=False, clips=args.test_clips, **geometry)
    if args.cache:
        (a, n_a), (b, n_b) = train_set.cache_cost(), test_set.cache_cost()
        print0(f"cache: {args.cache}, up to {max(a, b) / 1e3:.0f} kB a frame, about "
               f"{(n_a + n_b) / 1e9:.1f} GB for the {len(info)} videos (written on first read)")
    steps_per_epoch = len(train_set) // batch_total
    if not steps_per_epoch:
        raise SystemExit(f"train.py: {len(train_set)} training videos do not fill one optimizer "
                         f"step of {batch_total} clips (batch size x grad-accum x processes): "
                         f"lower --batch-size or --grad-accum")
    baseline = metrics.baseline_metrics(train_items, test_items)  # what the settings alone predict

    # -------------------------------------------------------------------------------------------
    # Models: every process builds the same weights; training randomness then differs per process
    torch.manual_seed(args.seed)
    teacher, student = build_models(args, sum((it["mos"] - lo) / (hi - lo) for it in train_items)
                                    / len(train_items))
    if teacher is None and student is None:
        raise SystemExit("nothing to train: --student none needs a teacher")
    if world > 1 and device.type == "cuda" and isinstance(student, ConvVQA):
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)  # global batch statistics
    low = torch.bfloat16 if args.teacher_dtype == "bf16" else None  # the frozen prefix's dtype
    model = Distiller(teacher, student, args.w_teacher, args.w_student, args.w_align,
                      detach_teacher=not args.align_to_teacher, teacher_dtype=low).to(device)
    ddp_model = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None)
    train_model = torch.compile(ddp_model) if args.compile else ddp_model  # DDP first, then compile
    model.train()  # and the frozen teacher blocks in eval mode (Distiller.train)
    torch.manual_seed(args.seed + 1000 * rank)

    # -------------------------------------------------------------------------------------------
    # Optimizer, schedule, checkpoints
    total_steps = args.epochs * steps_per_epoch
    parts = [m for m in (student, teacher, model.align) if m is not None]
    opt = build_optimizer(parts, args.lr, args.weight_decay, layer_decay=args.layer_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_with_warmup(int(args.warmup * steps_per_epoch), total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == "fp16")
    models = {k: m for k, m in (("teacher", teacher), ("student", student)) if m is not None}
    partial = bool(args.teacher_ckpt) and teacher is not None and \
        not all(q.requires_grad for q in teacher.parameters())  # its file holds what stays frozen
    ckpts = runtime.Checkpoints(
        args.out, {**models, "align": model.align}, opt, sched, scaler, device, partial,
        config=vars(args), label_range=(lo, hi), world=world,
        student_config=asdict(student.cfg) if isinstance(student, VideoViT) else None,
        teacher_config=asdict(teacher.cfg) if teacher is not None else None)
    loop = dict(step=0, best=None, history=[])
    if args.resume:
        loop = ckpts.resume(args, RESUME_SAME)
        print0(f"resumed from {args.out}/last.pt at step {loop['step']}/{total_steps}")

    shown = dict(items=test_items, baseline=baseline, out=args.out)  # what each report shows
    if args.eval_only:
        scores = evaluate(models, test_set, args, device, (lo, hi))
        result = runtime.report(scores, **shown, header=f"eval ({len(test_items)} test videos x "
                                f"{args.test_clips} clips)", first=True)
        print0(runtime.best_line(result, baseline))
        return 0

    # -------------------------------------------------------------------------------------------
    # The loop. An optimizer step is grad_accum micro-steps; an evaluation and last.pt per epoch.
    # One way out: the last step, --max-steps, or a stop every process agrees on (runtime.Stopper:
    # SIGTERM, Ctrl-C, or a loss or gradient that is not finite; the stopped step is not applied).
    stopper = runtime.Stopper(device)
    key = "student" if student is not None else "teacher"  # the model whose SRCC picks best.pt
    end = min(total_steps, args.max_steps or total_steps)
    t_start, step0, code, bad_step = time.time(), loop["step"], 0, None
    try:
        while loop["step"] < end and not code:
            epoch, skip = divmod(loop["step"], steps_per_epoch)  # resumed mid-epoch: skip done
            log, t_ready = new_log(), time.time()
            for i, (x, y, _) in enumerate(epoch_batches(train_set, args, device, epoch, skip,
                                                        steps_per_epoch)):
                log["waited"] += time.time() - t_ready  # the loop stood still for data
                if i % args.grad_accum == 0:  # a stop saves the RNG and BatchNorm statistics
                    step_rng, loss_sum = runtime.rng_state(device), 0  # as this step found them
                    step_buffers = {k: b.clone() for k, b in model.named_buffers()}
                last_micro = (i + 1) % args.grad_accum == 0
                if world > 1:  # DDP reduces the gradients of the last micro-step only
                    ddp_model.require_backward_grad_sync = last_micro
                x = data.normalise(x.to(device, non_blocking=True))  # uint8 until here
                y = y.to(device, non_blocking=True)
                with autocast(args, device):
                    out = train_model(x, y)
                scaler.scale(out["loss"] / args.grad_accum).backward()  # outside autocast
                terms = torch.stack([out[k].detach() for k in ("loss", *Distiller.TERMS)])
                loss_sum, log["sums"] = loss_sum + terms[0], log["sums"] + terms / args.grad_accum
                log["clips"] += x.shape[0] * world
                t_ready = time.time()
                if not last_micro:
                    continue
                code = optimizer_step(opt, sched, scaler, parts, loss_sum, args.clip_grad, stopper)
                if code:
                    bad_step = loop["step"] + 1
                    break
                loop["step"] += 1
                log["steps"] += 1
                step = loop["step"]
                if step % args.log_every == 0 or step == end:
                    eta = (time.time() - t_start) / (step - step0) * (end - step)
                    print0(log_line(log, epoch, args.epochs, step, total_steps, sched, eta))
                    log = new_log()
                if args.save_every and step % args.save_every == 0 and step % steps_per_epoch:
                    code, bad_step = (0, None) if ckpts.save("last.pt", loop) else (3, step)
                if code or step == end:
                    break
            if code:
                break
            if loop["step"] % steps_per_epoch == 0 or loop["step"] == end:
                t_eval = time.time()
                scores = evaluate(models, test_set, args, device, (lo, hi))
                model.train()  # Distiller.train: the frozen teacher blocks stay in eval mode
                header = (f"eval after epoch {epoch + 1} ({len(test_items)} test videos x "
                          f"{args.test_clips} clips, {time.time() - t_eval:.0f}s)")
                result = runtime.report(scores, **shown, header=header, first=not loop["history"])
                if not all(math.isfinite(v) for s in scores.values() for v in s):
                    code, bad_step = 3, loop["step"]  # the weights went non-finite: save nothing
                    break
                loop["history"].append(dict(step=loop["step"], **result))
                score, best = result.get(key, {}).get("srcc", math.nan), loop["best"]
                if math.isfinite(score) and (best is None or score > best[key]["srcc"]):
                    loop["best"] = result  # a NaN never becomes the best
                    ckpts.save("best.pt", loop)
            code, bad_step = (0, None) if ckpts.save("last.pt", loop) else (3, loop["step"])
    finally:
        stopper.close()

    if code == 3:
        print0(f"STOP: the loss, a gradient or the weights are not finite at step {bad_step} (lr "
               f"{sched.get_last_lr()[0]:.2e}). Nothing was saved after the last good checkpoint "
               f"{args.out}/last.pt; lower --lr or try --dtype fp32.")
        return 1
    if code:  # the stopped step is not applied: its BatchNorm updates are undone too
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(step_buffers[k])
        saved = ckpts.save("last.pt", loop, rng=step_rng)
        print0(f"{runtime.Stopper.NAMES[code]}: " + (
            f"saved {args.out}/last.pt at step {loop['step']}; continue with --resume" if saved
            else f"nothing saved (the weights are not finite); {args.out}/last.pt is the last "
                 f"good one"))
        return 130 if code == 2 else 143
    print0(f"done in {(time.time() - t_start) / 60:.1f} min")
    print0(runtime.best_line(loop["best"], baseline))
    return 0


def epoch_batches(train_set, args, device, epoch, skip, steps_per_epoch):
    """This process's batches of one epoch from optimizer step `skip` on: a permutation seeded
    by (seed, epoch), every world-th clip of it, so that a resumed epoch goes on where it was."""
    rank, world = runtime.rank_and_world()
    train_set.set_epoch(epoch)  # the crops too are seeded by (seed, epoch, index)
    per_step = args.batch_size * args.grad_accum
    order = torch.randperm(len(train_set),
                           generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
    order = order[rank::world][skip * per_step:steps_per_epoch * per_step].tolist()
    return loader(train_set, args, device, batch_size=args.batch_size, sampler=order)


def optimizer_step(opt, sched, scaler, parts, loss_sum, clip_grad, stopper):
    """Clip each model's gradient norm (after unscaling: a large teacher gradient does not shrink
    the student's step), agree with every process whether to go on, and step; returns the stop
    code (0: the step was taken; else nothing of it is applied and --resume redoes it)."""
    scaler.unscale_(opt)
    norms = [torch.nn.utils.clip_grad_norm_([q for q in m.parameters() if q.grad is not None],
                                            clip_grad or math.inf) for m in parts]
    finite = torch.isfinite(loss_sum)  # fp16: the scaler skips non-finite gradients itself
    if not scaler.is_enabled():
        finite = finite & torch.isfinite(torch.stack(norms)).all()
    code = stopper.check(finite)  # the step's one host sync
    if not code:
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sched.step()
    return code


def new_log():
    return dict(t=time.time(), clips=0, waited=0.0, sums=0, steps=0)


def log_line(log, epoch, epochs, step, total_steps, sched, eta):
    """One line per logging step: the losses averaged since the last line, lr, clips/s, the share
    of the time spent waiting for data (the loader keeps up when it stays near 0%), time left."""
    dt = time.time() - log["t"]
    loss, *terms = (log["sums"] / log["steps"]).tolist()  # the step's one extra host sync
    named = " ".join(f"{k[5:]} {v:.4f}" for k, v in zip(Distiller.TERMS, terms)
                     if not math.isnan(v))
    return (f"epoch {epoch + 1}/{epochs} step {step}/{total_steps} | loss {loss:.4f} ({named}) | "
            f"lr {sched.get_last_lr()[0]:.2e} | {log['clips'] / dt:.1f} clips/s | "
            f"wait {100 * log['waited'] / dt:.0f}% | eta {eta / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())

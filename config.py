"""train.py's options: the two profiles, the command line, and its checks (as nanoGPT's
configurator and MAE's get_args_parser sit beside their training scripts).

    args, profile = parse_args()             # sys.argv; or parse_args(["--student", "base"])
    python train.py --help                   # every option, with the value of each profile

Options not given come from a profile: quick (2 CPU cores, about 10 minutes, models from
scratch on the toy set) for --data toy, paper (the paper's geometry and recipe, one GPU)
otherwise. The first log line of train.py prints what runs. A mistake in the options is one
line, `train.py: error: ...`, before any data or model is touched.
"""
import argparse
import os

import torch

from distill import TRAINABLE
from model import CONFIGS

# The quick profile fits 2 CPU cores and ~10 minutes, models from scratch: tiny clips (2 frames of
# 84 x 84: 73 tokens) at native resolution (the toy videos are 176 x 144; shrinking a frame to 84
# would blur away what the labels measure), a short cosine schedule, and the two inits that made
# ViTs learn at all at this budget (LayerScale 0.1, a DCT-basis patch embedding). The paper
# profile resizes the short side to the clip size, then crops, and derives lr from the batch.
# fastvqa_*: the FAST-VQA student's own view, fragments of 32 px on a (size / 32)^2 grid (paper:
# FAST-VQA-B's 32 frames at stride 2, 7 x 7 fragments; quick: what 2 cores afford, README).
# dtype None: on a GPU the profile's GPU_DTYPE, on a CPU fp32 (CPU_TRAINING).
QUICK = dict(teacher="small", pretrain=200, frames=2, size=84, stride=2, resize=False, test_clips=1,
             fragments=0, fastvqa_frames=8, fastvqa_size=96, fastvqa_stride=2, epochs=2,
             batch_size=8, lr=3e-4, layer_decay=None, warmup=0.2, drop_path=0.0, init_values=0.1,
             patch_init="dct", dtype=None, teacher_dtype=None, workers=1, log_every=10,
             split="official")
PAPER = dict(teacher="1b", pretrain=0, frames=8, size=224, stride=4, resize=True, test_clips=4,
             fragments=0, fastvqa_frames=32, fastvqa_size=224, fastvqa_stride=2, epochs=30,
             batch_size=8, lr=None, layer_decay=0.75, warmup=5.0, drop_path=0.1,
             init_values=1e-5, patch_init="normal", dtype=None, teacher_dtype=None, workers=8,
             log_every=20, split="official")
GPU_DTYPE = dict(quick="fp32", paper="bf16")  # --dtype not given, on a GPU
# On a CPU training stays fp32 even where bf16 is fast (runtime.default_dtype, which predict.py
# follows): on a Zen 4 the quick start in bf16 left the fp32 seed spread (EXPERIMENTS.md).
CPU_TRAINING = ("a CPU trains in fp32: bf16 moved the quick start outside its seed spread; "
                "predict.py scores in bf16 where this CPU multiplies it fast")
STUDENTS = [*CONFIGS, "fastvqa", "none"]
NEEDS = {"csv": ["labels"], "waterloo4k": ["data_root"], "kvq": ["data_root"],
         "bvihd": ["data_root", "labels", "yuv_fps", "yuv_bit_depth"]}
# What changes a run's result: --resume refuses a checkpoint saved with other values of these.
RESUME_SAME = ("student", "teacher", "teacher_ckpt", "student_ckpt", "data", "data_root", "labels",
               "split", "split_seed", "test_fraction", "toy_variant", "toy_sources", "frames",
               "size", "stride", "resize", "fragments", "fastvqa_frames", "fastvqa_size",
               "fastvqa_stride", "epochs", "batch_size", "grad_accum", "lr", "warmup",
               "weight_decay", "layer_decay", "clip_grad", "drop_path", "dtype", "teacher_dtype",
               "seed", "w_teacher", "w_student", "w_align", "teacher_trainable",
               "align_to_teacher", "pretrain", "label_range", "ckpt_frames", "unlabeled",
               "unlabeled_batch_size", "w_unlabeled", "labelled_sources", "steps_per_epoch")
# Settings added since checkpoints were first saved: their value in a checkpoint saved without them.
RESUME_ADDED = dict(unlabeled=None, unlabeled_batch_size=None, w_unlabeled=1.0,
                    labelled_sources=None, steps_per_epoch=None)


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one; options without one say in their help what
    happens when they are not given."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def get_args_parser():
    p = argparse.ArgumentParser(prog="train.py", formatter_class=Help,
                                description="Train and evaluate InternVQA: distil an InternVideo2 "
                                "teacher into a small student.")
    add = p.add_argument

    def profiled(name, help, **kw):  # the default comes from the profile; --help shows both values
        key = name[2:].replace("-", "_")
        shown = dict(lr="1e-3 x effective batch / 256", dtype="bf16 on a GPU",
                     teacher_dtype="as --dtype")
        paper, quick = shown.get(key, PAPER[key]), QUICK[key]
        quick = dict(dtype="fp32 on a GPU", teacher_dtype="as --dtype").get(key, quick)
        add(name, default=argparse.SUPPRESS, help=f"{help} [quick: {quick}; paper: {paper}]",
            **kw)

    add("--profile", choices=["quick", "paper"],
        help="where options not given come from (not given: quick for --data toy, else paper)")
    # models
    add("--student", default="small", choices=STUDENTS, help="student network (tiny: for tests; "
        "fastvqa: FAST-VQA-B, the heterogeneous student; none: the teacher alone)")
    profiled("--teacher", "teacher size", choices=[*CONFIGS, "none"])
    add("--teacher-ckpt", help="official InternVideo2 file or a checkpoint of this project (its "
        "teacher) (not given: the teacher stage's with --pretrain, else a random initialisation)")
    add("--student-ckpt", help="official InternVideo2 or FAST-VQA file (FAST_VQA_B_1_4.pth, the "
        "Kinetics Swin-T), or a checkpoint of this project (its student) (not given: random)")
    profiled("--pretrain", "contents of the corpus the teacher first learns alone when no "
             "--teacher-ckpt is given (toy data only; 0: none)", type=int)
    add("--ckpt-frames", type=int, help="frame count of a checkpoint position table with several "
        "readings (not given: such a table is an error)")
    add("--trust-ckpt", action="store_true", help="allow full unpickling of checkpoint files")
    add("--teacher-trainable", default="last", choices=TRAINABLE,
        help="what of the teacher trains (last: its last block and head; a teacher without a "
        "file trained alone, --student none: all of it)")
    profiled("--init-values", "LayerScale init of ViTs not loaded from a file", type=float)
    profiled("--patch-init", "patch embedding init of ViTs not loaded from a file",
             choices=["normal", "dct"])
    profiled("--drop-path", "stochastic depth of the student", type=float)
    add("--grad-checkpointing", action="store_true",
        help="recompute the ViTs' block activations in backward (less memory, more time)")
    # loss: a weight of 0 removes its term
    add("--w-teacher", type=float, default=1.0, help="weight of L2(teacher score, MOS); 0 "
        "freezes the teacher whole (with few labels and unlabeled videos, a teacher that already "
        "scores quality keeps its ranking: README, 'Videos nobody rated')")
    add("--w-student", type=float, default=1.0, help="weight of L2(student score, MOS)")
    add("--w-align", type=float, default=1.0, help="weight of SmoothL1(student, teacher feature)")
    add("--align-to-teacher", action="store_true",
        help="let the alignment gradient reach the teacher (the authors' code)")
    add("--w-unlabeled", type=float, default=1.0, help="weight of the unlabeled videos' term: "
        "the paper's loss with the teacher's score as the MOS, w_student x L2(student score, "
        "teacher score) + w_align x SmoothL1 alignment (0: unlabeled videos unused)")
    # data
    add("--data", default="toy", choices=["toy", "csv", "bvihd", "waterloo4k", "kvq"],
        help="kvq: the NTIRE challenges' set, its split files in --data-root (README, KVQ)")
    add("--data-root", help="dataset folder (not given: data/toy for the toy set)")
    add("--labels", help="the CSV list (csv), the DMOS file (bvihd), scores.txt or the CSV "
        "(waterloo4k; not given: DATA_ROOT/scores.txt)")
    add("--yuv-fps", type=float, help="bvihd: frame rate from the dataset's instructions")
    add("--yuv-bit-depth", type=int, help="bvihd: bit depth from the dataset's instructions")
    add("--toy-sources", help="build the toy set from your own videos in this folder "
        "(not given: the built-in synthetic contents)")
    add("--toy-variant", default="default", choices=["default", "tiny"],
        help="tiny: a toy set built in seconds, to check an install or for tests")
    profiled("--split", "official: the fixed test sources (toy, and a CSV with a split column: "
             "that column); random: by --split-seed (the default with --toy-sources)",
             choices=["official", "random"])
    add("--split-seed", type=int, default=0, help="seed of the random content split")
    add("--test-fraction", type=float, default=0.25,
        help="share of sources a random split holds out")
    add("--test-labels", help="evaluate on this CSV list, its sources (in any case) and files seen "
        "in training left out (not given: the split's test videos)")
    add("--unlabeled", help="a CSV list of videos without labels (`path`, optional `source`; a "
        "`mos` column is ignored): each step also takes a batch of them, the teacher's score "
        "their target (none of them may be a video or a source of the test split)")
    add("--unlabeled-batch-size", type=int, help="unlabeled clips per step per process (not "
        "given: --batch-size)")
    add("--labelled-sources", type=int, metavar="N", help="a label budget: keep the labels of N "
        "training contents (drawn by --split-seed); the other training contents' videos train "
        "as unlabeled ones (not given: every label)")
    add("--label-range", type=float, nargs=2, metavar=("LO", "HI"), help="the label scale that "
        "maps to targets 0..1 (not given: 0..100 for toy, bvihd, waterloo4k; 1..5 for kvq; a "
        "CSV's min..max)")
    # clips
    profiled("--frames", "frames per clip (the ViTs')", type=int)
    profiled("--size", "crop size in pixels (multiple of 14)", type=int)
    profiled("--stride", "frame stride within a clip", type=int)
    profiled("--resize", "resize the short side to --size, then crop (else native-resolution "
             "crops)", action=argparse.BooleanOptionalAction)
    profiled("--test-clips", "evenly spaced clips per video at test", type=int)
    profiled("--fragments", "FAST-VQA fragments on a GRID x GRID grid instead of one crop, for "
             "the ViTs (no GRID: 7; 0: a crop)", type=int, nargs="?", const=7, metavar="GRID")
    profiled("--fastvqa-frames", "frames of the FAST-VQA student's clip", type=int)
    profiled("--fastvqa-size", "FAST-VQA's fragment frame (a multiple of 32: fragments of 32 px "
             "on a SIZE/32 grid)", type=int)
    profiled("--fastvqa-stride", "frame stride of the FAST-VQA student's clip", type=int)
    add("--cache", help="decode each video once, at the clip geometry, into this folder (needs "
        "--resize; not given: every clip decoded from its video)")
    # optimisation
    profiled("--epochs", "training epochs", type=int)
    profiled("--batch-size", "clips per step per process", type=int)
    add("--grad-accum", type=int, default=1, help="steps accumulated per optimizer update")
    add("--steps-per-epoch", type=int, help="optimizer steps per epoch, the labelled videos "
        "cycled as needed (not given: one pass over them)")
    profiled("--lr", "peak learning rate", type=float)
    add("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    profiled("--layer-decay", "layer-wise lr decay of ViTs", type=float)
    profiled("--warmup", "warm-up epochs (linear), then cosine decay", type=float)
    add("--clip-grad", type=float, default=5.0,
        help="max gradient norm, per model (0: no clipping)")
    profiled("--dtype", "autocast dtype (not given on a CPU: fp32, as bf16 training left the "
             "quick start's seed spread)", choices=["fp32", "bf16", "fp16"])
    profiled("--teacher-dtype", "dtype of the frozen teacher blocks (not given: bf16 when the "
             "autocast dtype is, else fp32)", choices=["fp32", "bf16"])
    add("--compile", action="store_true", help="torch.compile the models")
    add("--deterministic", action="store_true", help="deterministic kernels, slower (needed for "
        "an exact resume on CUDA; a CPU run is deterministic without it)")
    add("--seed", type=int, default=0)
    # running
    add("--device", help="cuda, cuda:1 or cpu (not given: cuda when usable, else cpu; the paper "
        "profile on a CPU needs --device cpu)")
    profiled("--workers", "DataLoader worker processes", type=int)
    add("--out", default="out", help="output folder")
    add("--resume", action="store_true", help="continue from OUT/last.pt")
    add("--eval-only", action="store_true", help="evaluate (OUT/last.pt with --resume, or the "
        "ckpts) and stop")
    profiled("--log-every", "optimizer steps between log lines", type=int)
    add("--save-every", type=int, default=0, help="also write last.pt every N optimizer steps "
        "(0: at epoch ends only)")
    add("--max-steps", type=int,
        help="stop after this many optimizer steps (not given: all epochs)")
    return p


def parse_args(argv=None):
    """(args, the profile's name): the command line, the profile's values for what it does not
    give, and every check that needs no file; a failed check exits with one line."""
    p = get_args_parser()
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
    if (args.unlabeled or args.labelled_sources) and args.w_unlabeled and (
            args.teacher == "none" or args.student == "none"):
        what = "--unlabeled" if args.unlabeled else "--labelled-sources"
        error(f"{what} trains the student on the teacher's scores of unlabeled videos: it needs "
              f"a teacher and a student (or --w-unlabeled 0, which leaves them unused)")
    lonely = [f for f, v in (("--unlabeled-batch-size", args.unlabeled_batch_size),
                             ("--w-unlabeled", args.w_unlabeled))
              if v != p.get_default(f[2:].replace("-", "_"))]
    if lonely and not (args.unlabeled or args.labelled_sources):  # an option that does nothing
        error(f"{' and '.join(lonely)} set the unlabeled batch: they need --unlabeled or "
              f"--labelled-sources")
    for k in ("unlabeled_batch_size", "labelled_sources", "steps_per_epoch"):
        if getattr(args, k) is not None and getattr(args, k) < 1:
            error(f"--{k.replace('_', '-')} must be at least 1, got {getattr(args, k)}")
    vits = [n for n in (args.student, args.teacher) if n in CONFIGS]
    if vits and args.size % CONFIGS[vits[0]].patch_size:
        error(f"--size {args.size} is not a multiple of the ViT patch size "
              f"({CONFIGS[vits[0]].patch_size})")
    if args.fragments and args.size % args.fragments:
        error(f"--fragments {args.fragments} needs a --size that is a multiple of it, got "
              f"{args.size}")
    if args.student == "fastvqa" and (args.fastvqa_size % 32 or args.fastvqa_size < 32
                                      or args.fastvqa_frames % 2 or args.fastvqa_frames < 4):
        error(f"--fastvqa-size {args.fastvqa_size} must be a multiple of 32 and --fastvqa-frames "
              f"{args.fastvqa_frames} even and at least 4 (FAST-VQA: 32 px fragments, 2-frame "
              f"patches, and a window of 8 x 7 x 7 at 32 x 224 x 224 that scales with the clip)")
    for k in ("teacher_ckpt", "student_ckpt", "unlabeled"):  # absolute: a checkpoint names it
        if getattr(args, k):
            setattr(args, k, os.path.abspath(getattr(args, k)))
    cuda = torch.cuda.is_available()
    if args.device is None and not cuda and not quick:
        error(f"the paper profile needs a GPU and torch {torch.__version__} sees none "
              f"(torch.cuda.is_available() is False); pass --device cpu to run it on the CPU")
    args.device = args.device or ("cuda" if cuda else "cpu")
    if args.device.startswith("cuda") and not cuda:
        error(f"--device {args.device}: torch {torch.__version__} sees no usable CUDA device")
    profile = "quick" if quick else "paper"
    args.dtype_reason = "--dtype"
    if args.dtype is None:  # a GPU takes the profile's; a CPU trains in fp32 (CPU_TRAINING)
        args.dtype, args.dtype_reason = (GPU_DTYPE[profile], f"the {profile} profile's on a GPU") \
            if args.device.startswith("cuda") else ("fp32", CPU_TRAINING)
    if args.teacher_dtype is None:  # the frozen teacher blocks: bf16 when the run is
        args.teacher_dtype = "bf16" if args.dtype == "bf16" else "fp32"
    return args, "quick (CPU-sized)" if quick else "paper"


def describe(args, profile_name, world, device, lr_rule):
    """train.py's first two log lines: what runs (the profile and its values), and where."""
    shown = [k for k in QUICK if args.student == "fastvqa" or not k.startswith("fastvqa_")]
    rule = f" (1e-3 x {args.batch_size} x {args.grad_accum} x {world} / 256)" if lr_rule else ""
    return (f"profile: {profile_name}; " + " ".join(f"{k}={getattr(args, k)}" for k in shown) +
            f"{rule} clip_grad={args.clip_grad} effective_batch="
            f"{args.batch_size * args.grad_accum * world}\n"
            f"device {device} x{world}, dtype {args.dtype} ({args.dtype_reason}), torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads")

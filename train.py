"""Train and evaluate InternVQA: distil an InternVideo2 teacher into a small student.

    python train.py --student small                       # toy set, quick CPU profile
    python train.py --student small --data waterloo4k --data-root /data/ivc4k \
        --teacher-ckpt 1B_ft_k710_f8.pth --student-ckpt S14_ft_k710_f8.pth   # the paper's setting
    torchrun --nproc_per_node 2 train.py ...               # DistributedDataParallel

Follows Guan et al. 2025 (arXiv 2502.19026) and the authors' released wiring (REFERENCE
section 3). Every evaluation scores teacher and student on the content-disjoint test split
with several deterministic clips per video; out/ receives last.pt (the latest state, for
--resume), best.pt (the best student by SRCC), predictions.csv and scatter.png. Without data
(the default, --data toy) the built-in toy set is generated first; its labels are VMAF, not
human opinion. Options left unset come from a profile: quick for --data toy, paper otherwise
(`--help` shows both values; the first log line shows what runs).
"""
import argparse
import csv
import math
import os
import signal
import sys
import time
from dataclasses import asdict, replace

import torch
import torch.distributed as dist

import data
import datasets
import metrics
import toy
from distill import Distiller, build_optimizer, freeze_teacher
from model import CONFIGS, ConvVQA, VideoViT, flops_per_clip, format_report, load_weights

# The quick profile is sized for 2 CPU cores and ~10 minutes, models trained from scratch: tiny clips
# (2 frames of 84 x 84: 73 tokens), a short cosine schedule, and the two inits that made ViTs learn at
# all at this budget in our runs (LayerScale 0.1 rather than 1e-5; a DCT-basis patch embedding). It
# keeps native-resolution crops: the toy videos are 176 x 144, and shrinking a whole frame to 84 px
# would blur away most of the compression artefacts the labels measure. The paper profile resizes the
# short side to the clip size, then crops (the authors' geometry), and derives lr from the batch.
QUICK = dict(teacher="small", frames=2, size=84, stride=2, resize=False, test_clips=1, fragments=0, epochs=2,
             batch_size=8, lr=3e-4, layer_decay=None, warmup=0.2, drop_path=0.0, init_values=0.1, patch_init="dct",
             dtype="fp32", teacher_dtype="fp32", workers=1, log_every=10, split="official")
PAPER = dict(teacher="1b", frames=8, size=224, stride=4, resize=True, test_clips=4, fragments=0, epochs=30,
             batch_size=8, lr=None, layer_decay=0.75, warmup=5.0, drop_path=0.1, init_values=1e-5,
             patch_init="normal", dtype="bf16", teacher_dtype="bf16", workers=8, log_every=20, split="official")
NEEDS = {"csv": ["labels"], "waterloo4k": ["data_root"], "bvihd": ["data_root", "labels", "yuv_fps", "yuv_bit_depth"]}
STOPS = {1: "SIGTERM", 2: "Ctrl-C", 3: "NaN"}  # agreed across processes by the largest code


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    def add(name, help, **kw):  # an option whose default comes from the profile; --help shows both
        key = name[2:].replace("-", "_")
        paper = "1e-3 x effective batch / 256" if key == "lr" else PAPER[key]
        p.add_argument(name, default=argparse.SUPPRESS, help=f"{help} [quick: {QUICK[key]}; paper: {paper}]", **kw)

    p.add_argument("--student", default="small", choices=[*CONFIGS, "conv", "none"],
                   help="student network ('tiny': tests and smoke runs); 'none' trains the teacher alone")
    add("--teacher", "teacher size", choices=[*CONFIGS, "none"])
    p.add_argument("--teacher-ckpt", help="official InternVideo2 file, or a checkpoint of this project")
    p.add_argument("--student-ckpt", help="official InternVideo2 file, or a checkpoint of this project")
    p.add_argument("--ckpt-frames", type=int, help="frame count of a checkpoint whose position table is ambiguous")
    p.add_argument("--trust-ckpt", action="store_true", help="allow full unpickling of checkpoint files")
    p.add_argument("--data", default="toy", choices=["toy", "csv", "bvihd", "waterloo4k"],
                   help="toy: the built-in set, quick profile; the others: the paper profile")
    p.add_argument("--data-root", help="dataset folder (toy: where the toy set is built)")
    p.add_argument("--labels", help="label file: the CSV list for csv, the DMOS file for bvihd, scores.txt/CSV "
                                    "for waterloo4k (DATA_ROOT/scores.txt when not given)")
    p.add_argument("--yuv-fps", type=float, help="bvihd: frame rate from the dataset's instructions")
    p.add_argument("--yuv-bit-depth", type=int, help="bvihd: bit depth from the dataset's instructions")
    p.add_argument("--toy-sources", help="build the toy set from your own source videos in this folder")
    p.add_argument("--toy-variant", default="default", choices=["default", "tiny"], help="tiny: the test-suite toy set")
    add("--split", "official: the authors' test sources (toy: its split column); random: by --split-seed "
                   "(the default with --toy-sources)", choices=["official", "random"])
    p.add_argument("--split-seed", type=int, default=0, help="seed of the random content split")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of sources held out (random split)")
    p.add_argument("--test-labels", help="evaluate on this CSV list instead (its sources seen in training are dropped)")
    add("--frames", "frames per clip", type=int)
    add("--size", "crop size in pixels (multiple of 14)", type=int)
    add("--stride", "frame stride within a clip", type=int)
    add("--resize", "resize the short side to --size, then crop (else native-resolution crops)",
        action=argparse.BooleanOptionalAction)
    add("--test-clips", "evenly spaced clips per video at test", type=int)
    add("--fragments", "FAST-VQA fragments on a GRID x GRID grid instead of one crop (no GRID: 7; 0: a crop)",
        type=int, nargs="?", const=7, metavar="GRID")
    p.add_argument("--cache", help="decode each video once, at the clip geometry, into this folder (needs --resize)")
    add("--epochs", "training epochs", type=int)
    add("--batch-size", "clips per step per process", type=int)
    p.add_argument("--grad-accum", type=int, default=1, help="steps accumulated per optimizer update")
    add("--lr", "peak learning rate", type=float)
    p.add_argument("--weight-decay", type=float, default=0.05)
    add("--layer-decay", "layer-wise lr decay of ViTs", type=float)
    add("--warmup", "warm-up epochs (linear), then cosine decay", type=float)
    p.add_argument("--clip-grad", type=float, default=5.0, help="max gradient norm, per model (0: no clipping)")
    add("--drop-path", "stochastic depth of the student", type=float)
    add("--init-values", "LayerScale init of models not loaded from a file", type=float)
    add("--patch-init", "patch embedding init of ViTs not loaded from a file (dct: model.py)", choices=["normal", "dct"])
    p.add_argument("--w-teacher", type=float, default=1.0, help="weight of L2(teacher score, MOS)")
    p.add_argument("--w-student", type=float, default=1.0, help="weight of L2(student score, MOS)")
    p.add_argument("--w-align", type=float, default=1.0, help="weight of SmoothL1(student feature, teacher feature)")
    p.add_argument("--align-to-teacher", action="store_true", help="let the alignment gradient reach the teacher")
    p.add_argument("--teacher-trainable", default="last", choices=["last", "last+embed", "none", "all"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add("--dtype", "autocast dtype", choices=["fp32", "bf16", "fp16"])
    add("--teacher-dtype", "dtype of the frozen teacher blocks (bf16 on a GPU only)", choices=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute student activations in backward")
    add("--workers", "DataLoader worker processes", type=int)
    p.add_argument("--worker-start", choices=["fork", "spawn", "forkserver"], help="start method of the workers "
                                                                                  "(default: the platform's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--eval-only", action="store_true", help="evaluate (OUT/last.pt with --resume, or the ckpts), stop")
    add("--log-every", "optimizer steps between log lines", type=int)
    p.add_argument("--save-every", type=int, default=0, help="also write last.pt every N optimizer steps (0: per epoch)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (smoke tests)")
    args = p.parse_args(argv)

    profile, given = (QUICK if args.data == "toy" else PAPER), set(vars(args))
    for k, v in profile.items():
        if k not in given:
            setattr(args, k, v)
    if args.toy_sources and "split" not in given:
        args.split = "random"  # own sources have no fixed test contents
    if "teacher_dtype" not in given and not args.device.startswith("cuda"):
        args.teacher_dtype = "fp32"  # a CPU has no fast bf16 matmul (bench.py)
    missing = [f"--{k.replace('_', '-')}" for k in NEEDS.get(args.data, []) if getattr(args, k) is None]
    problem = (f"--data {args.data} needs {', '.join(missing)}" if missing else
               "--toy-sources needs --data toy" if args.toy_sources and args.data != "toy" else
               "--split official exists for toy, bvihd and waterloo4k; use --split random with --data csv"
               if args.data == "csv" and args.split == "official" else
               "--cache holds resized frames: it needs --resize and no --fragments"
               if args.cache and (not args.resize or args.fragments) else None)
    if problem:
        p.exit(2, f"train.py: error: {problem}\n")
    return args, ("quick (toy set, CPU-sized)" if profile is QUICK else "paper")


def read_items(args, log, ddp, master):
    """(train items, test items) of the chosen data: labels read, videos listed, split by content."""
    if args.data == "toy":
        name = os.path.basename(os.path.normpath(args.toy_sources)) if args.toy_sources else None
        root = args.data_root or os.path.join("data", f"toy-{name}" if name else
                                              "toy" if args.toy_variant == "default" else "toy-tiny")
        t0 = time.time()
        if ddp and not master:
            dist.barrier()  # the master builds it (once); the others then find it cached
        kind = dict(sources=args.toy_sources) if args.toy_sources else dict(tiny=args.toy_variant == "tiny")
        labels = toy.make_toy_dataset(root, log=log, **kind)
        if ddp and master:
            dist.barrier()
        log(f"toy set: {labels} ({time.time() - t0:.0f}s; labels are VMAF against the source, not human opinion)")
        items = datasets.load_csv(labels)
    elif args.data == "csv":
        items = datasets.load_csv(args.labels)
    elif args.data == "waterloo4k":
        items = datasets.waterloo4k_index(args.data_root, args.labels)
    else:
        items = datasets.bvihd_index(args.data_root, args.labels, fps=args.yuv_fps, bit_depth=args.yuv_bit_depth)
    if args.split == "official":
        train_items, test_items = datasets.official_split(items, args.data)
    else:
        train_items, test_items = datasets.split_by_source(items, args.test_fraction, args.split_seed)
    if args.test_labels:
        seen = {it["source"] for it in train_items}
        test_items = [it for it in datasets.load_csv(args.test_labels) if it["source"] not in seen]
    if len(test_items) < 4 or not train_items:
        raise ValueError(f"the split leaves {len(train_items)} train and {len(test_items)} test videos: metrics "
                         f"need at least 4 test videos (more sources, or another --test-fraction)")
    return train_items, test_items


def leave_signals_to_main(_):
    """DataLoader workers ignore Ctrl-C and SIGTERM (a terminal or a scheduler sends them to every
    process): the main process finishes its step and saves, and then stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main(argv=None):
    args, profile_name = parse_args(argv)

    # -------------------------------------------------------------------------------------------
    # Processes, device and seeds

    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if ddp:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(args.device)
    else:
        rank, world = 0, 1
    master = rank == 0
    device = torch.device(args.device)
    log = print if master else (lambda *a, **k: None)
    torch.manual_seed(args.seed)  # model init: every process builds the same weights
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    batch_total = args.batch_size * args.grad_accum * world
    lr_note = "" if args.lr is not None else f" (1e-3 x {args.batch_size} x {args.grad_accum} x {world} / 256)"
    if args.lr is None:
        args.lr = 1e-3 * batch_total / 256  # the authors' rule, on the effective batch
    log(f"profile: {profile_name}; " + " ".join(f"{k}={getattr(args, k)}" for k in QUICK) + lr_note +
        f" clip_grad={args.clip_grad} effective_batch={batch_total}")
    log(f"device {device} x{world}, dtype {args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    # -------------------------------------------------------------------------------------------
    # Data

    try:  # a bad label file, video or split is one message naming the file, not a traceback
        train_items, test_items = read_items(args, log, ddp, master)
        lo, hi = datasets.label_range(args.data, train_items)
        n_src = lambda its: len({it["source"] for it in its})
        log(f"data: {args.data}, {len(train_items)} train videos ({n_src(train_items)} sources), "
            f"{len(test_items)} test videos ({n_src(test_items)} sources), labels {lo:g}..{hi:g} -> targets 0..1")
        geometry = dict(frames=args.frames, size=args.size, stride=args.stride, label_range=(lo, hi),
                        fragments=args.fragments, resize=args.resize, cache=args.cache)
        train_set = data.VideoDataset(train_items, train=True, seed=args.seed, check=True, **geometry)
        test_set = data.VideoDataset(test_items, train=False, clips=args.test_clips, check=True, **geometry)
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: the toy build's (ffmpeg) errors
        sys.exit(f"train.py: {e}")
    if args.cache:
        per_frame, total = train_set.cache_cost()
        per_frame_t, total_t = test_set.cache_cost()
        log(f"cache: {args.cache}, up to {max(per_frame, per_frame_t) / 1e3:.0f} kB a frame, about "
            f"{(total + total_t) / 1e9:.1f} GB for the {len(train_items) + len(test_items)} videos (written on first read)")
    steps_per_epoch = len(train_set) // batch_total
    if not steps_per_epoch:
        sys.exit(f"train.py: {len(train_set)} training videos do not fill one optimizer step of {batch_total} clips "
                 f"(batch size x grad-accum x processes): lower --batch-size or --grad-accum")
    baseline = metrics.baseline_metrics(train_items, test_items)  # what the settings alone predict

    # -------------------------------------------------------------------------------------------
    # Models

    def vit(name, init_values, drop_path):
        return VideoViT(replace(CONFIGS[name], num_frames=args.frames, img_size=args.size, init_values=init_values,
                                drop_path=drop_path, patch_init=args.patch_init,
                                grad_checkpointing=args.grad_checkpointing))

    def load(m, path, who):
        """Weights from a file, the report printed; True when the head stays fresh (a 710-class one)."""
        if not path:
            return True
        try:
            report = load_weights(m, path, who, trust=args.trust_ckpt, frames=args.ckpt_frames)
        except ValueError as e:
            sys.exit(f"{who}: {e}")
        log(f"{who}: {path}\n  " + format_report(report).replace("\n", "\n  "))
        return "head.bias" in report["left_at_init"]

    teacher = student = None
    fresh = []
    if args.teacher != "none":
        teacher = vit(args.teacher, args.init_values, 0.0)
        if load(teacher, args.teacher_ckpt, "teacher"):
            fresh.append(teacher)
        if not args.teacher_ckpt:
            log("teacher: NO CHECKPOINT, randomly initialised. Its frozen blocks are random features, so\n"
                "  distillation transfers no prior knowledge here; it is a regularizer at best. For the\n"
                "  paper's setting pass --teacher-ckpt (official InternVideo2), or train a teacher first\n"
                "  with --student none and pass its out/best.pt.")
        trainable = "all" if args.student == "none" else args.teacher_trainable
        if args.w_teacher == 0 and not args.align_to_teacher:
            trainable = "none"  # no gradient can reach it
        freeze_teacher(teacher, trainable)
    if args.student != "none":
        student = ConvVQA() if args.student == "conv" else vit(args.student, args.init_values, args.drop_path)
        if load(student, args.student_ckpt, "student"):
            fresh.append(student)
    if student is None and teacher is None:
        sys.exit("nothing to train: --student none needs a teacher")
    teacher_dtype = torch.bfloat16 if args.teacher_dtype == "bf16" else None
    model = Distiller(teacher, student, args.w_teacher, args.w_student, args.w_align,
                      detach_teacher=not args.align_to_teacher, teacher_dtype=teacher_dtype).to(device)
    with torch.no_grad():  # start every fresh head at the mean target: the first steps then learn ranking
        mean_target = sum((it["mos"] - lo) / (hi - lo) for it in train_items) / len(train_items)
        for m in fresh:
            m.head.bias.fill_(mean_target)
    for name, m in (("teacher", teacher), ("student", student)):
        if m is not None:
            n_train = sum(q.numel() for q in m.parameters() if q.requires_grad)
            n_all = sum(q.numel() for q in m.parameters())
            gf = f", {flops_per_clip(m.cfg) / 1e9:.1f} GFLOPs/clip" if isinstance(m, VideoViT) else ""
            log(f"{name}: {args.teacher if name == 'teacher' else args.student}, {n_all / 1e6:.1f}M params "
                f"({n_train / 1e6:.1f}M trainable){gf}")
    train_model = torch.compile(model) if args.compile else model
    if ddp:  # a term switched off leaves parameters without gradients (the student's head at w_student 0)
        unused = 0 in (args.w_teacher, args.w_student, args.w_align)
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=unused)

    torch.manual_seed(args.seed + 1000 * rank)  # training randomness (drop-path) differs between processes

    # -------------------------------------------------------------------------------------------
    # Optimizer and schedule

    total_steps = args.epochs * steps_per_epoch
    warmup_steps = int(args.warmup * steps_per_epoch)
    parts = [m for m in (student, teacher, model.align) if m is not None]
    opt = build_optimizer(parts, args.lr, args.weight_decay, layer_decay=args.layer_decay)

    def lr_lambda(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == "fp16")

    # -------------------------------------------------------------------------------------------
    # Checkpoints: plain dicts, written atomically (a temporary file, then a rename), by rank 0.

    partial_teacher = (teacher is not None and bool(args.teacher_ckpt)  # the file holds what stays frozen
                       and any(not q.requires_grad for q in teacher.parameters()))

    def saved_state(m):
        """A teacher loaded from a file is saved by its trainable part (the rest is in that file)."""
        sd = m.state_dict()
        if m is teacher and partial_teacher:
            names = {n for n, q in m.named_parameters() if q.requires_grad}
            sd = {k: v for k, v in sd.items() if k in names}
        return sd

    def rng_state():
        return dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None)

    def save(name, step, best, history, rng=None):
        """Every process calls it: the replicas are checked equal first (DDP must keep them so), and
        every process's RNG state is kept (rng: this one's, taken earlier)."""
        rngs = [rng or rng_state()]
        if ddp:
            rngs = [None] * world
            dist.all_gather_object(rngs, rng or rng_state())
        if ddp:
            mine = torch.stack([q.detach().double().sum() for q in model.parameters()])
            every = [torch.empty_like(mine) for _ in range(world)]
            dist.all_gather(every, mine)
            if not all(torch.equal(e, mine) for e in every):
                raise RuntimeError("the model weights differ between processes: DDP lost sync")
        if master:
            ckpt = dict(student=None if student is None else saved_state(student),
                        teacher=None if teacher is None else saved_state(teacher),
                        align=model.align.state_dict(), teacher_partial=partial_teacher,
                        optimizer=opt.state_dict(), scheduler=sched.state_dict(), scaler=scaler.state_dict(),
                        step=step, best=best, history=history, config=vars(args), label_range=(lo, hi),
                        student_config=asdict(student.cfg) if isinstance(student, VideoViT) else None,
                        teacher_config=asdict(teacher.cfg) if teacher is not None else None,
                        rng=rngs, world=world)
            path = os.path.join(args.out, name)
            torch.save(ckpt, f"{path}.tmp{os.getpid()}")
            os.replace(f"{path}.tmp{os.getpid()}", path)
        if ddp:
            dist.barrier()  # nobody exits (or reads it) before rank 0 has written it

    def load_exact(m, saved, who, path):
        """Resume loads every saved tensor: the saved key set must be exactly what this run saves."""
        want, have = set(saved_state(m)), set(saved)
        if want != have:
            sys.exit(f"{path}: the saved {who} does not fit this run: missing {sorted(want - have)[:8]}, "
                     f"unexpected {sorted(have - want)[:8]}")
        m.load_state_dict(saved, strict=not (m is teacher and partial_teacher))

    RESUME_SAME = ("student", "teacher", "teacher_ckpt", "student_ckpt", "data", "data_root", "labels", "split",
                   "split_seed", "frames", "size", "stride", "resize", "epochs", "batch_size", "grad_accum", "lr",
                   "seed", "w_teacher", "w_student", "w_align", "teacher_trainable", "align_to_teacher", "toy_sources",
                   "fragments", "weight_decay", "layer_decay")
    os.makedirs(args.out, exist_ok=True)
    step, best, history = 0, None, []
    if args.resume:
        path = os.path.join(args.out, "last.pt")
        if not os.path.exists(path):
            sys.exit(f"--resume: {path} does not exist")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        changed = [f"--{k.replace('_', '-')} {ckpt['config'].get(k)} -> {getattr(args, k)}" for k in RESUME_SAME
                   if ckpt["config"].get(k) != getattr(args, k)]
        if ckpt.get("world", 1) != world:
            changed.append(f"processes {ckpt.get('world', 1)} -> {world}")
        if changed:
            sys.exit(f"--resume with other settings than the saved run would not continue it: {', '.join(changed)}")
        for m, who in ((student, "student"), (teacher, "teacher"), (model.align, "align")):
            if m is not None:
                load_exact(m, ckpt[who], who, path)
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        step, best, history = ckpt["step"], ckpt["best"], ckpt["history"]
        rng = ckpt["rng"][rank]
        torch.set_rng_state(rng["torch"])
        if device.type == "cuda" and rng["cuda"] is not None:
            torch.cuda.set_rng_state(rng["cuda"], device)
        log(f"resumed from {path} at step {step}/{total_steps}")

    # -------------------------------------------------------------------------------------------
    # Evaluation: deterministic clips, the score of a video is the mean over its clips.

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def loader(dataset, **kw):
        kw.setdefault("generator", torch.Generator().manual_seed(args.seed))  # not the global RNG: resume is exact
        return torch.utils.data.DataLoader(dataset, num_workers=args.workers, worker_init_fn=leave_signals_to_main,
                                           multiprocessing_context=args.worker_start if args.workers else None,
                                           pin_memory=device.type == "cuda", **kw)

    @torch.no_grad()
    def evaluate():
        model.eval()
        mine = torch.utils.data.Subset(test_set, range(rank, len(test_set), world))  # each video once
        rows, t0, shown = [], time.time(), time.time()
        for clips, _, index in loader(mine, batch_size=max(1, args.batch_size // 2)):
            B, N = clips.shape[:2]
            x = clips.flatten(0, 1).to(device, non_blocking=True)  # (B * N, 3, T, S, S)
            with autocast():
                score = {name: m(x).float().view(B, N).mean(1).cpu() if m is not None else None
                         for name, m in (("teacher", teacher), ("student", student))}
            rows += [(i, *(None if score[k] is None else lo + (hi - lo) * score[k][j].item()
                           for k in ("teacher", "student"))) for j, i in enumerate(index.tolist())]
            if time.time() - shown > 10:  # a long evaluation says how far it is
                log(f"  evaluating: {len(rows) * world}/{len(test_set)} videos, {time.time() - t0:.0f}s")
                shown = time.time()
        if ddp:
            gathered = [None] * world
            dist.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        rows.sort()
        mos = [test_items[i]["mos"] for i, _, _ in rows]
        sources = [test_items[i]["source"] for i, _, _ in rows]
        result = {}
        for col, name in ((1, "teacher"), (2, "student")):
            if rows and rows[0][col] is not None:
                pred = [r[col] for r in rows]
                if all(map(math.isfinite, pred)):
                    result[name] = metrics.evaluate(pred, mos)
                    result[name]["within"] = metrics.within_source_srcc(pred, mos, sources)
                else:  # weights gone non-finite: reported as NaN (never best); the next step's loss stops the run
                    nan = math.nan
                    result[name] = dict(srcc=nan, krcc=nan, plcc=nan, rmse=nan, plcc_raw=nan, n=len(pred),
                                        fit="none: non-finite predictions", within=dict(srcc=nan, n_sources=0))
        model.train()
        return result, rows

    def publish(result, rows, header):
        """The evaluation's block in the log, predictions.csv and scatter.png (rank 0)."""
        log(header)
        for name, r in result.items():
            w = r["within"]
            log(f"  {name:8s} {metrics.format_metrics(r)}  (raw PLCC {r['plcc_raw']:.3f}, n={r['n']}, fit {r['fit']}; "
                f"within-source SRCC {w['srcc']:.3f} over {w['n_sources']} sources)")
        if baseline:
            log(f"  settings baseline ({', '.join(baseline['keys'])}: mean training label per cell, no pixels) "
                f"{metrics.format_metrics(baseline)}")
        if not master:
            return
        with open(os.path.join(args.out, "predictions.csv.tmp"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "mos", "teacher", "student"])
            for i, t, s in rows:  # 9 digits: metrics recomputed from this file equal the logged ones
                w.writerow([test_items[i]["path"], test_items[i]["mos"], *("" if v is None else f"{v:.9g}" for v in (t, s))])
        os.replace(os.path.join(args.out, "predictions.csv.tmp"), os.path.join(args.out, "predictions.csv"))
        preds = {k: [r[c] for r in rows] for c, k in ((1, "teacher"), (2, "student"))
                 if k in result and all(math.isfinite(r[c]) for r in rows)}
        if preds and not metrics.scatter_plot(os.path.join(args.out, "scatter.png"), [test_items[i]["mos"] for i, *_ in rows],
                                    preds, title=header) and not history:
            log("  (pip install matplotlib to get out/scatter.png, predicted score against MOS)")

    def best_line(best):
        def part(name):
            r = (best or {}).get(name)
            return f"{name} srcc={r['srcc']:.3f} plcc={r['plcc']:.3f}" if r else f"{name} n/a"
        within = " ".join(f"{k}={r['within']['srcc']:.3f}" for k, r in (best or {}).items())
        base = f" | settings baseline srcc={baseline['srcc']:.3f} plcc={baseline['plcc']:.3f}" if baseline else ""
        return f"best: {part('student')} {part('teacher')} | within-source srcc {within or 'n/a'}{base}"

    if args.eval_only:
        result, rows = evaluate()
        publish(result, rows, f"eval ({len(rows)} test videos, {args.test_clips} clips each)")
        log(best_line(result))
        return 0

    # -------------------------------------------------------------------------------------------
    # Training loop. One way out: the loop ends at the last step, at --max-steps, or at a stop
    # (Ctrl-C, SIGTERM, a NaN loss) that every process agrees on at the same micro-step.

    signalled = []
    signal.signal(signal.SIGTERM, lambda *_: signalled.append(1))
    signal.signal(signal.SIGINT, lambda *_: signalled.append(2))

    def agree(code):
        """The largest stop code of all processes (0: go on), one small all_reduce a micro-step."""
        if not ddp:
            return code
        t = torch.tensor([code], device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    key = "student" if student is not None else "teacher"  # the model whose SRCC picks best.pt
    end = min(total_steps, args.max_steps or total_steps)
    model.train()
    t_start, step0, stop = time.time(), step, 0
    while step < end and not stop:
        epoch, skip = divmod(step, steps_per_epoch)  # resume mid-epoch: skip what was done
        train_set.set_epoch(epoch)
        order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        per_step = args.batch_size * args.grad_accum
        order = order[rank::world][skip * per_step:steps_per_epoch * per_step].tolist()
        batches = loader(train_set, batch_size=args.batch_size, sampler=order, drop_last=True)
        t_log, clips_log, waited, sums, n_sums = time.time(), 0, 0.0, {}, 0
        t_ready = time.time()
        for i, (x, y, _) in enumerate(batches):
            waited += time.time() - t_ready  # the loop stood still for data
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            last_micro = (i + 1) % args.grad_accum == 0
            if i % args.grad_accum == 0:
                step_rng = rng_state()  # a stop inside this step saves the RNG as the step found it
            with train_model.no_sync() if ddp and not last_micro else torch.enable_grad():
                with autocast():
                    out = train_model(x, y)
                stop = agree(3 if not math.isfinite(out["loss"].item()) else max(signalled, default=0))
                if stop:  # a partly accumulated step is dropped; --resume redoes it
                    break
                scaler.scale(out["loss"] / args.grad_accum).backward()  # outside autocast
            for k in ("loss", "loss_teacher", "loss_student", "loss_align"):
                sums[k] = sums.get(k, 0.0) + out[k].item() / args.grad_accum
            clips_log += x.shape[0] * world
            if last_micro:
                scaler.unscale_(opt)
                for m in parts:  # per model: a large teacher gradient does not shrink the student's step
                    if args.clip_grad > 0:
                        torch.nn.utils.clip_grad_norm_([q for q in m.parameters() if q.grad is not None], args.clip_grad)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                sched.step()
                step, n_sums = step + 1, n_sums + 1
                if step % args.log_every == 0 or step == end:
                    dt = time.time() - t_log
                    eta = (time.time() - t_start) / (step - step0) * (end - step)
                    terms = " ".join(f"{k[5:]} {v / n_sums:.4f}" for k, v in sums.items()
                                     if k != "loss" and not math.isnan(v))
                    log(f"epoch {epoch + 1}/{args.epochs} step {step}/{total_steps} | loss {sums['loss'] / n_sums:.4f} "
                        f"({terms}) | lr {sched.get_last_lr()[0]:.2e} | {clips_log / dt:.1f} clips/s | "
                        f"wait {100 * waited / dt:.0f}% | eta {eta / 60:.1f} min")
                    t_log, clips_log, waited, sums, n_sums = time.time(), 0, 0.0, {}, 0
                if args.save_every and step % args.save_every == 0 and step % steps_per_epoch:
                    save("last.pt", step, best, history)
                if step == end:
                    break
            t_ready = time.time()
        if stop:
            break
        if step % steps_per_epoch == 0 or step == end:
            t_eval = time.time()
            result, rows = evaluate()
            publish(result, rows, f"eval after epoch {epoch + 1} ({len(rows)} test videos x {args.test_clips} clips, "
                                  f"{time.time() - t_eval:.0f}s)")
            if not all(math.isfinite(v) for r in rows for v in r[1:] if v is not None):
                stop = 3  # the weights went non-finite: save nothing (every process sees the same rows)
                break
            history.append(dict(step=step, **result))
            score = result.get(key, {}).get("srcc", math.nan)
            if math.isfinite(score) and (best is None or score > best[key]["srcc"]):  # a NaN never becomes best
                best = result
                save("best.pt", step, best, history)
        save("last.pt", step, best, history)

    if stop == 3:
        log(f"STOP: the loss or the predictions are not finite at step {step + 1} (lr {sched.get_last_lr()[0]:.2e}). "
            f"Nothing was saved after the last good checkpoint {args.out}/last.pt; lower --lr or try --dtype fp32.")
        return 1
    if stop:
        save("last.pt", step, best, history, rng=step_rng)
        log(f"{STOPS[stop]}: saved {args.out}/last.pt at step {step}; continue with --resume")
        return 130 if stop == 2 else 143
    log(f"done in {(time.time() - t_start) / 60:.1f} min")
    log(best_line(best))
    if ddp:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

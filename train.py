"""Train and evaluate InternVQA: distil an InternVideo2 teacher into a small student.

    python train.py --student small                       # toy set, quick CPU profile
    python train.py --student small --data waterloo4k --data-root /data/ivc4k \
        --teacher-ckpt 1B_ft_k710_f8.pth --student-ckpt S14_ft_k710_f8.pth   # the paper's setting
    torchrun --nproc_per_node 2 train.py ...               # DistributedDataParallel

Follows Guan et al. 2025 (arXiv 2502.19026) and the authors' released wiring (REFERENCE
section 3). Every evaluation scores teacher and student on the content-disjoint test split
with several deterministic clips per video; out/ receives last.pt (the latest state, for
--resume), best.pt (the best student by SRCC) and predictions.csv. Without data (the default,
--data toy) the built-in toy set is generated first; its labels are VMAF, not human opinion.
"""
import argparse
import contextlib
import csv
import math
import os
import pickle
import signal
import sys
import time
from dataclasses import asdict, replace

import torch
import torch.distributed as dist
import torch.nn.functional as F

import data
import datasets
import metrics
import toy
from distill import Distiller, build_optimizer, freeze_teacher
from model import CONFIGS, ConvVQA, VideoViT, ViTConfig, count_params, flops_per_clip, format_report, load_internvideo2

# -----------------------------------------------------------------------------------------------
# Arguments. None means "from the profile": the quick toy profile or the paper's setting.

p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
p.add_argument("--student", default="small", choices=["small", "base", "large", "conv", "none"],
               help="student network; 'none' trains the teacher alone (all of it trainable)")
p.add_argument("--teacher", default=None, choices=[*CONFIGS, "none"], help="teacher size (paper: 1b)")
p.add_argument("--teacher-ckpt", help="official InternVideo2 file, or a checkpoint of this project")
p.add_argument("--student-ckpt", help="official InternVideo2 file, or a checkpoint of this project")
p.add_argument("--trust-ckpt", action="store_true", help="allow full unpickling of checkpoint files")
p.add_argument("--data", default="toy", choices=["toy", "csv", "bvihd", "waterloo4k"])
p.add_argument("--data-root", help="dataset folder (toy: where the toy set is built)")
p.add_argument("--labels", help="label file: the CSV list for --data csv, the DMOS file for bvihd")
p.add_argument("--yuv-fps", type=float, default=None, help="bvihd: frame rate from the dataset's instructions")
p.add_argument("--yuv-bit-depth", type=int, default=None, help="bvihd: bit depth from the dataset's instructions")
p.add_argument("--split", default=None, choices=["official", "random"],
               help="official: the authors' test sources (toy: its split column); random: --split-seed")
p.add_argument("--split-seed", type=int, default=0, help="seed of the random content split")
p.add_argument("--test-fraction", type=float, default=0.25, help="share of sources held out (random split)")
p.add_argument("--test-labels", help="evaluate on this CSV list instead (its sources seen in training are dropped)")
p.add_argument("--frames", type=int, default=None, help="frames per clip")
p.add_argument("--size", type=int, default=None, help="crop size in pixels (multiple of 14)")
p.add_argument("--stride", type=int, default=None, help="frame stride within a clip")
p.add_argument("--test-clips", type=int, default=None, help="evenly spaced clips per video at test")
p.add_argument("--fragments", type=int, nargs="?", const=7, default=None, metavar="GRID",
               help="FAST-VQA fragments on a GRID x GRID grid instead of one crop (no GRID: 7; 0: a crop)")
p.add_argument("--epochs", type=int, default=None)
p.add_argument("--batch-size", type=int, default=None, help="clips per step per process")
p.add_argument("--grad-accum", type=int, default=1, help="steps accumulated per optimizer update")
p.add_argument("--lr", type=float, default=None, help="peak learning rate")
p.add_argument("--weight-decay", type=float, default=0.05)
p.add_argument("--layer-decay", type=float, default=None, help="layer-wise lr decay of ViTs (paper: 0.75)")
p.add_argument("--warmup", type=float, default=None, help="warm-up epochs (linear), then cosine decay")
p.add_argument("--drop-path", type=float, default=None, help="stochastic depth of the student")
p.add_argument("--init-values", type=float, default=None, help="LayerScale init of models not loaded from a file")
p.add_argument("--patch-init", default=None, choices=["normal", "dct"],
               help="patch embedding init of ViTs not loaded from a file (dct: a whitened DCT basis, model.py)")
p.add_argument("--w-teacher", type=float, default=1.0, help="weight of L2(teacher score, MOS)")
p.add_argument("--w-student", type=float, default=1.0, help="weight of L2(student score, MOS)")
p.add_argument("--w-align", type=float, default=1.0, help="weight of SmoothL1(student feature, teacher feature)")
p.add_argument("--align-to-teacher", action="store_true", help="let the alignment gradient reach the teacher")
p.add_argument("--teacher-trainable", default="last", choices=["last", "last+embed", "none", "all"])
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"], help="autocast dtype")
p.add_argument("--compile", action="store_true", help="torch.compile the models")
p.add_argument("--grad-checkpointing", action="store_true", help="recompute student activations in backward")
p.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="out", help="output folder")
p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
p.add_argument("--eval-only", action="store_true", help="evaluate (OUT/last.pt with --resume, or the ckpts) and stop")
p.add_argument("--log-every", type=int, default=None, help="optimizer steps between log lines")
p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (smoke tests)")
p.add_argument("--toy-variant", default="default", choices=["default", "tiny"], help="tiny: the test-suite toy set")
args = p.parse_args()

# The quick profile is sized for 2 CPU cores and ~10 minutes, models trained from scratch: tiny clips
# (2 frames of 84 x 84: 73 tokens), a short cosine schedule, and the two inits that made ViTs learn at
# all at this budget in our runs (LayerScale 0.1 rather than 1e-5; a DCT-basis patch embedding).
QUICK = dict(teacher="small", frames=2, size=84, stride=2, test_clips=1, fragments=0, epochs=2, batch_size=8,
             lr=3e-4, layer_decay=None, warmup=0.2, drop_path=0.0, init_values=0.1, patch_init="dct",
             dtype="fp32", workers=1, log_every=10, split="official")
PAPER = dict(teacher="1b", frames=8, size=224, stride=4, test_clips=4, fragments=0, epochs=30, batch_size=8,
             lr=1e-3 * 8 / 256, layer_decay=0.75, warmup=5.0, drop_path=0.1, init_values=1e-5, patch_init="normal",
             dtype="bf16", workers=8, log_every=20, split="official")
profile_name, profile = ("quick (toy set, CPU-sized)", QUICK) if args.data == "toy" else ("paper", PAPER)
for k, v in profile.items():
    if getattr(args, k) is None:
        setattr(args, k, v)
if args.data == "csv" and args.split == "official":
    sys.exit("--split official exists for bvihd and waterloo4k only; use --split random with --data csv")

# -----------------------------------------------------------------------------------------------
# Device, processes and seeds

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
log(f"profile: {profile_name}; " + " ".join(f"{k}={getattr(args, k)}" for k in profile))
log(f"device {device} x{world}, dtype {args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads")

# -----------------------------------------------------------------------------------------------
# Data

if args.data == "toy":
    root = args.data_root or os.path.join("data", "toy" if args.toy_variant == "default" else "toy-tiny")
    t0 = time.time()
    if ddp and not master:
        dist.barrier()  # the master builds it (once); the others then find it cached
    labels = toy.make_toy_dataset(root, tiny=args.toy_variant == "tiny")
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
    sys.exit(f"the split leaves {len(train_items)} train and {len(test_items)} test videos: metrics need at "
             f"least 4 test videos (more sources, or another --test-fraction)")
lo, hi = datasets.label_range(args.data, train_items)
n_src = lambda its: len({it["source"] for it in its})
log(f"data: {args.data}, {len(train_items)} train videos ({n_src(train_items)} sources), "
    f"{len(test_items)} test videos ({n_src(test_items)} sources), labels {lo:g}..{hi:g} -> targets 0..1")
geometry = dict(frames=args.frames, size=args.size, stride=args.stride, label_range=(lo, hi), fragments=args.fragments)
train_set = data.VideoDataset(train_items, train=True, seed=args.seed, check=True, **geometry)
test_set = data.VideoDataset(test_items, train=False, clips=args.test_clips, check=True, **geometry)

# -----------------------------------------------------------------------------------------------
# Models


def load_weights(model, path, who):
    """An official InternVideo2 file, or a checkpoint of this project (its `student` / `teacher`
    entry), through load_internvideo2: loud about what does not fit, and the report printed."""
    ckpt = path
    with contextlib.suppress(pickle.UnpicklingError):  # load_internvideo2 explains that case
        ckpt = torch.load(path, map_location="cpu", weights_only=not args.trust_ckpt)
    if isinstance(ckpt, dict) and "config" in ckpt:  # this project's checkpoint
        if not ckpt.get(who):
            sys.exit(f"{path} holds no {who} weights")
        if ckpt.get(f"{who}_partial"):
            sys.exit(f"{path} holds only the trainable part of its {who}; the rest came from "
                     f"{ckpt['config'].get(who + '_ckpt')}: load that file instead")
        ckpt = ckpt[who]
        if not isinstance(model, VideoViT):
            model.load_state_dict(ckpt)
            log(f"{who}: loaded {len(ckpt)} tensors from {path}")
            return
    report = load_internvideo2(model, ckpt, trust=args.trust_ckpt)
    log(f"{who}: {path}\n  " + format_report(report).replace("\n", "\n  "))


def vit_config(name, init_values, drop_path):
    return replace(CONFIGS[name], num_frames=args.frames, img_size=args.size, init_values=init_values,
                   drop_path=drop_path, patch_init=args.patch_init, grad_checkpointing=args.grad_checkpointing)


teacher = student = None
teacher_name = "none" if args.teacher == "none" else args.teacher
if teacher_name != "none":
    teacher = VideoViT(vit_config(teacher_name, args.init_values, 0.0))
    if args.teacher_ckpt:
        load_weights(teacher, args.teacher_ckpt, "teacher")
    else:
        log("teacher: NO CHECKPOINT, randomly initialised. Its frozen blocks are random features, so\n"
            "  distillation transfers no prior knowledge here; it is a regularizer at best. For the\n"
            "  paper's setting pass --teacher-ckpt (official InternVideo2), or train a teacher first\n"
            "  with --student none and pass its out/best.pt.")
    trainable = "all" if args.student == "none" else args.teacher_trainable
    if args.w_teacher == 0 and not args.align_to_teacher:
        trainable = "none"  # no gradient can reach it
    freeze_teacher(teacher, trainable)
if args.student in CONFIGS:
    student = VideoViT(vit_config(args.student, args.init_values, args.drop_path))
elif args.student == "conv":
    student = ConvVQA()
if student is not None and args.student_ckpt:
    load_weights(student, args.student_ckpt, "student")
if student is None and teacher is None:
    sys.exit("nothing to train: --student none needs a teacher")
model = Distiller(teacher, student, args.w_teacher, args.w_student, args.w_align,
                  detach_teacher=not args.align_to_teacher).to(device)
with torch.no_grad():  # start every fresh head at the mean target: the first steps then learn ranking
    mean_target = sum((it["mos"] - lo) / (hi - lo) for it in train_items) / len(train_items)
    for m, ckpt in ((student, args.student_ckpt), (teacher, args.teacher_ckpt)):
        if m is not None and not ckpt:
            m.head.bias.fill_(mean_target)
for name, m in (("teacher", teacher), ("student", student)):
    if m is not None:
        n_train = sum(p.numel() for p in m.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in m.parameters())
        gf = f", {flops_per_clip(m.cfg) / 1e9:.1f} GFLOPs/clip" if isinstance(m, VideoViT) else ""
        log(f"{name}: {args.teacher if name == 'teacher' else args.student}, {n_all / 1e6:.1f}M params "
            f"({n_train / 1e6:.1f}M trainable){gf}")
train_model = model
if args.compile:
    train_model = torch.compile(model)
if ddp:
    train_model = torch.nn.parallel.DistributedDataParallel(train_model, device_ids=[device] if device.type == "cuda" else None)

# -----------------------------------------------------------------------------------------------
# Optimizer and schedule

steps_per_epoch = max(1, len(train_set) // (args.batch_size * world * args.grad_accum))
total_steps = args.epochs * steps_per_epoch
warmup_steps = int(args.warmup * steps_per_epoch)
opt = build_optimizer([m for m in (student, teacher, model.align) if m is not None], args.lr,
                      args.weight_decay, layer_decay=args.layer_decay)


def lr_lambda(step):
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == "fp16")

# -----------------------------------------------------------------------------------------------
# Checkpoints: plain dicts, written atomically (a temporary file, then a rename).


def trainable_state(m):
    """A teacher loaded from a file is saved by its trainable part (the rest is in that file);
    anything else whole."""
    if m is None or m is student or not args.teacher_ckpt:
        return None if m is None else m.state_dict()
    names = {n for n, q in m.named_parameters() if q.requires_grad}
    return {k: v for k, v in m.state_dict().items() if k in names}


def save(path, step, best, history):
    if not master:
        return
    ckpt = dict(student=trainable_state(student), teacher=trainable_state(teacher), align=model.align.state_dict(),
                teacher_partial=teacher is not None and bool(args.teacher_ckpt),
                optimizer=opt.state_dict(), scheduler=sched.state_dict(), scaler=scaler.state_dict(), step=step,
                best=best, history=history, config=vars(args), label_range=(lo, hi),
                student_config=asdict(student.cfg) if isinstance(student, VideoViT) else None,
                teacher_config=asdict(teacher.cfg) if teacher is not None else None,
                rng=dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all()))
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


RESUME_SAME = ("student", "teacher", "teacher_ckpt", "student_ckpt", "data", "data_root", "labels", "split",
               "split_seed", "frames", "size", "stride", "epochs", "batch_size", "grad_accum", "lr", "seed",
               "w_teacher", "w_student", "w_align", "teacher_trainable", "align_to_teacher")
os.makedirs(args.out, exist_ok=True)
step, best, history = 0, None, []
if args.resume:
    ckpt = torch.load(os.path.join(args.out, "last.pt"), map_location="cpu", weights_only=True)
    changed = [f"--{k.replace('_', '-')} {ckpt['config'][k]} -> {getattr(args, k)}" for k in RESUME_SAME
               if ckpt["config"].get(k) != getattr(args, k)]
    if changed:
        sys.exit(f"--resume with other settings than the saved run would not continue it: {', '.join(changed)}")
    for m, key in ((student, "student"), (teacher, "teacher")):
        if m is not None:
            m.load_state_dict(ckpt[key], strict=False)
    model.align.load_state_dict(ckpt["align"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    step, best, history = ckpt["step"], ckpt["best"], ckpt["history"]
    torch.set_rng_state(ckpt["rng"]["torch"])
    if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    log(f"resumed from {args.out}/last.pt at step {step}/{total_steps}")

# -----------------------------------------------------------------------------------------------
# Evaluation: deterministic clips, the score of a video is the mean over its clips.


def autocast():
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def leave_signals_to_main(_):
    """DataLoader workers ignore Ctrl-C and SIGTERM (a terminal or a scheduler sends them to every
    process): the main process finishes its step and saves, and then stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@torch.no_grad()
def evaluate():
    model.eval()
    mine = list(range(rank, len(test_set), world))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(test_set, mine), batch_size=max(1, args.batch_size // 2),
                                         num_workers=args.workers, worker_init_fn=leave_signals_to_main,
                                         generator=torch.Generator().manual_seed(0))
    rows = []
    for clips, _, index in loader:
        B, N = clips.shape[:2]
        x = clips.flatten(0, 1).to(device, non_blocking=True)  # (B * N, 3, T, S, S)
        with autocast():
            score = {name: m(x).float().view(B, N).mean(1).cpu() if m is not None else None
                     for name, m in (("student", student), ("teacher", teacher))}
        for j, i in enumerate(index.tolist()):
            rows.append((i, *(lo + (hi - lo) * score[k][j].item() if score[k] is not None else None
                              for k in ("teacher", "student"))))
    if ddp:
        gathered = [None] * world
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    rows.sort()
    mos = [test_items[i]["mos"] for i, _, _ in rows]
    result = {}
    for col, name in ((1, "teacher"), (2, "student")):
        if rows and rows[0][col] is not None:
            result[name] = metrics.evaluate([r[col] for r in rows], mos)
    model.train()
    return result, rows


def write_predictions(rows):
    if not master:
        return
    tmp = os.path.join(args.out, "predictions.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "mos", "teacher", "student"])
        for i, t, s in rows:
            # 9 significant digits: every distinct float32 score stays distinct, so metrics computed
            # from this file (compare.py does) equal the logged ones even for near-constant scores
            w.writerow([test_items[i]["path"], test_items[i]["mos"], "" if t is None else f"{t:.9g}",
                        "" if s is None else f"{s:.9g}"])
    os.replace(tmp, os.path.join(args.out, "predictions.csv"))


def report(result, header):
    log(header)
    for name in ("teacher", "student"):
        if name in result:
            r = result[name]
            log(f"  {name:8s} {metrics.format_metrics(r)}  (raw PLCC {r['plcc_raw']:.3f}, n={r['n']}, fit {r['fit']})")


def best_line(best):
    def part(name):
        r = (best or {}).get(name)
        return f"{name} srcc={r['srcc']:.3f} plcc={r['plcc']:.3f}" if r else f"{name} n/a"
    return f"best: {part('student')} {part('teacher')}"


# -----------------------------------------------------------------------------------------------
# Training loop

if args.eval_only:
    result, rows = evaluate()
    report(result, f"eval ({len(rows)} test videos, {args.test_clips} clips each)")
    write_predictions(rows)
    log(best_line(result))
    sys.exit(0)

stop = []  # Ctrl-C and SIGTERM finish the current step, save last.pt and exit
signal.signal(signal.SIGTERM, lambda *_: stop.append("SIGTERM"))
signal.signal(signal.SIGINT, lambda *_: stop.append("Ctrl-C"))


key = "student" if student is not None else "teacher"  # the model whose SRCC picks best.pt
model.train()
t_start, step0 = time.time(), step
while step < total_steps and not stop:
    epoch, skip = divmod(step, steps_per_epoch)  # resume mid-epoch: skip what was done
    train_set.set_epoch(epoch)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
    per_step = args.batch_size * args.grad_accum
    order = order[rank::world][skip * per_step:steps_per_epoch * per_step].tolist()
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, sampler=order, drop_last=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         worker_init_fn=leave_signals_to_main, generator=torch.Generator().manual_seed(args.seed))
    t_log, clips_log, sums, n_sums = time.time(), 0, {}, 0
    for i, (x, y, _) in enumerate(loader):
        if stop:  # a partly accumulated step is dropped; --resume redoes it
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        last_micro = (i + 1) % args.grad_accum == 0
        sync = train_model.no_sync() if ddp and not last_micro else torch.enable_grad()
        with sync, autocast():
            out = train_model(x, y)
            scaler.scale(out["loss"] / args.grad_accum).backward()
        for k in ("loss", "loss_teacher", "loss_student", "loss_align"):
            sums[k] = sums.get(k, 0.0) + out[k].item() / args.grad_accum
        clips_log += x.shape[0] * world
        if not last_micro:
            continue
        if not math.isfinite(sums["loss"]):
            log(f"STOP: the loss is {sums['loss']} at step {step + 1} (lr {sched.get_last_lr()[0]:.2e}). Nothing was "
                f"saved after the last good checkpoint {args.out}/last.pt; lower --lr or try --dtype fp32.")
            sys.exit(1)
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_([q for g in opt.param_groups for q in g["params"]], 5.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sched.step()
        step += 1
        n_sums += 1
        n_logged = step - step0
        if step % args.log_every == 0 or step == total_steps:
            dt = time.time() - t_log
            eta = (time.time() - t_start) / n_logged * (total_steps - step)
            terms = " ".join(f"{k[5:]} {v / n_sums:.4f}" for k, v in sums.items() if k != "loss" and not math.isnan(v))
            log(f"epoch {epoch + 1}/{args.epochs} step {step}/{total_steps} | loss {sums['loss'] / n_sums:.4f} "
                f"({terms}) | lr {sched.get_last_lr()[0]:.2e} | {clips_log / dt:.1f} clips/s | eta {eta / 60:.1f} min")
            t_log, clips_log, sums, n_sums = time.time(), 0, {}, 0
        if stop or step == args.max_steps:
            break
    if stop:
        break
    if step % steps_per_epoch == 0 or step == args.max_steps:
        t_eval = time.time()
        result, rows = evaluate()
        report(result, f"eval after epoch {epoch + 1} ({len(rows)} test videos x {args.test_clips} clips, "
                       f"{time.time() - t_eval:.0f}s)")
        write_predictions(rows)
        history.append(dict(step=step, **result))
        if key in result and (best is None or result[key]["srcc"] > best[key]["srcc"]):
            best = result
            save(os.path.join(args.out, "best.pt"), step, best, history)
    save(os.path.join(args.out, "last.pt"), step, best, history)
    if step == args.max_steps:
        break

if stop:
    save(os.path.join(args.out, "last.pt"), step, best, history)
    log(f"{stop[0]}: saved {args.out}/last.pt at step {step}; continue with --resume")
    sys.exit(130 if stop[0] == "Ctrl-C" else 143)
log(f"done in {(time.time() - t_start) / 60:.1f} min")
log(best_line(best))
if ddp:
    dist.destroy_process_group()

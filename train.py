"""Train and evaluate InternVQA: distil an InternVideo2 teacher into a small student.

    python train.py --student small                       # the paper in miniature, on 2 CPU cores
    python train.py --student small --data waterloo4k --data-root /data/ivc4k \
        --teacher-ckpt 1B_ft_k710_f8.pth --student-ckpt S14_ft_k710_f8.pth   # the paper's setting
    python train.py --student fastvqa --student-ckpt FAST_VQA_B_1_4.pth ... # the heterogeneous one
    python train.py ... --unlabeled unrated.csv           # + videos nobody rated
    torchrun --nproc_per_node 2 train.py ...               # DistributedDataParallel

The method (Guan et al. 2025, arXiv 2502.19026; its wiring: docs/reference.md, section 3): a
large teacher that already knows video, frozen except its last block and quality head, and a
small student see the same moment of the same videos, and learn from L2(teacher score, MOS) +
L2(student score, MOS) + SmoothL1(student feature, teacher feature) (distill.py); on unlabeled
videos the teacher's score stands in for the MOS. A ViT student sees the teacher's clips;
FAST-VQA its own fragments of the same frames. Each evaluation scores both on test videos of
contents never trained on; OUT/ gets last.pt (--resume), best.pt (the best student by SRCC),
predictions.csv and scatter.png. With no data and no weights (--data toy) it is the paper in
miniature: the toy set is generated, a teacher first learns alone on other synthetic contents
(toy.pretrained_teacher, cached), then is distilled into the student. Options: config.py
(`--help`); processes, stops and checkpoints: runtime.py.
"""
import math
import os
import sys
import time
from dataclasses import replace

import torch

import config
import data
import datasets
import metrics
import runtime
import toy
from config import RESUME_ADDED, RESUME_SAME, parse_args
from distill import Distiller, build_optimizer, freeze_teacher, teacher_runs
from fastvqa import FASTVQA_CONFIGS, FastVQA
from model import CONFIGS, VideoViT
from runtime import Stop, print0


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
    runtime.keep_freed_memory()  # each step reuses the memory the last one freed: no page faults
    if args.deterministic:
        runtime.deterministic_kernels()
    batch_total = args.batch_size * args.grad_accum * world
    lr_rule = args.lr is None
    if lr_rule:  # the authors' rule, on the effective batch
        args.lr = 1e-3 * batch_total / 256
    print0(config.describe(args, profile_name, world, device, lr_rule))

    # -------------------------------------------------------------------------------------------
    # Data (and on toy data the teacher stage: a teacher that knows more than the student's data)
    train_items, unlabeled_items, test_items, label_range, probes, pairs = read_data(args)
    args.data_digest = datasets.digest(train_items + unlabeled_items)  # --resume: the same lists
    steps_per_epoch = args.steps_per_epoch or len(train_items) // batch_total
    if not steps_per_epoch:
        raise SystemExit(f"train.py: {len(train_items)} training videos do not fill one optimizer "
                         f"step of {batch_total} clips (batch size x grad-accum x processes): "
                         f"lower --batch-size or --grad-accum, or set --steps-per-epoch")
    baseline = metrics.baseline_metrics(train_items, test_items)  # what the settings alone predict

    # -------------------------------------------------------------------------------------------
    # Models: every process builds the same weights; training randomness then differs per process
    torch.manual_seed(args.seed)
    teacher, student = build_models(args, mean_target(train_items, label_range),
                                    bool(unlabeled_items))
    prefix_dtype = torch.bfloat16 if args.teacher_dtype == "bf16" else None  # frozen blocks'
    raw_model = Distiller(teacher, student, args.w_teacher, args.w_student, args.w_align,
                          detach_teacher=not args.align_to_teacher, teacher_dtype=prefix_dtype,
                          w_unlabeled=args.w_unlabeled).to(device)  # what is saved and evaluated
    model = torch.compile(raw_model) if args.compile else raw_model  # what the step calls
    if world > 1:  # compile, then DDP (as nanoGPT)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    raw_model.train()  # and the frozen teacher blocks in eval mode (Distiller.train)
    torch.manual_seed(args.seed + 1000 * rank)
    train_set, unlabeled_set, test_set = clip_sets(args, train_items, unlabeled_items,
                                                   test_items, label_range, probes, teacher,
                                                   student)

    # -------------------------------------------------------------------------------------------
    # Optimizer, schedule, checkpoints
    total_steps = args.epochs * steps_per_epoch
    trained = [m for m in (student, teacher, raw_model.align) if m is not None]
    opt = build_optimizer(trained, args.lr, args.weight_decay, layer_decay=args.layer_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_with_warmup(int(args.warmup * steps_per_epoch), total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=args.dtype == "fp16")
    scored = {k: m for k, m in (("teacher", teacher), ("student", student)) if m is not None}
    ckpts = runtime.Checkpoints.of_run(args, scored, raw_model.align, opt, sched, scaler, device,
                                       label_range, world)
    loop_state = dict(step=0, best=None, history=[])  # all a resumed run needs besides ckpts'
    if args.resume:
        loop_state = ckpts.resume(args, RESUME_SAME, RESUME_ADDED)
        print0(f"resumed from {args.out}/last.pt at step {loop_state['step']}/{total_steps}")
    report_context = dict(items=test_items, baseline=baseline, out=args.out, pairs=pairs)
    if args.eval_only:
        result, _ = report_scores(scored, test_set, args, device, label_range, report_context,
                                  f"eval ({len(test_items)} test videos x {args.test_clips} clips)")
        print0(runtime.best_line(result, baseline))
        return 0

    # -------------------------------------------------------------------------------------------
    # The loop. An optimizer step is grad_accum micro-steps; an evaluation and last.pt per epoch.
    # It ends at the last step, --max-steps, or a stop that every process agrees on
    # (runtime.Stopper: SIGTERM, Ctrl-C, a loss or gradient that is not finite).
    stopper, stop = runtime.Stopper(device), Stop.NONE
    end = min(total_steps, args.max_steps or total_steps)
    t_start, step0, batches = time.time(), loop_state["step"], None
    try:
        while loop_state["step"] < end:
            epoch, done = divmod(loop_state["step"], steps_per_epoch)
            if batches is None:  # an epoch starts, or goes on where a resumed run left it
                meter = runtime.Meter(Distiller.TERMS)  # this epoch's steps only
                batches = meter.timed(epoch_batches(train_set, unlabeled_set, args, device,
                                                    epoch, done, steps_per_epoch))
            # ---- one optimizer step
            step_rng = runtime.rng_state(device)  # a stopped step is saved as it found the RNG
            loss_sum = 0
            for micro_step in range(args.grad_accum):
                x, y, x_unlabeled = next(batches)  # x_unlabeled: None without --unlabeled
                x, y = to_device(x, device), y.to(device, non_blocking=True)
                x_unlabeled = to_device(x_unlabeled, device)
                if world > 1:  # DDP reduces the gradients of the last micro-step only
                    model.require_backward_grad_sync = micro_step == args.grad_accum - 1
                with autocast(args.dtype, device):
                    out = model(x, y) if x_unlabeled is None else model(x, y, x_unlabeled)
                scaler.scale(out["loss"] / args.grad_accum).backward()  # outside autocast
                loss_sum = loss_sum + out["loss"].detach()
                meter.add(out, len(y) * world, args.grad_accum,
                          len(x_unlabeled[0] if isinstance(x_unlabeled, tuple) else x_unlabeled)
                          * world if x_unlabeled is not None else 0)
            scaler.unscale_(opt)  # clip each model's true gradient: a large teacher gradient
            norms = [torch.nn.utils.clip_grad_norm_(  # does not shrink the student's step
                [q for q in m.parameters() if q.grad is not None], args.clip_grad or math.inf)
                for m in trained]
            finite = torch.isfinite(loss_sum)  # fp16: the scaler skips non-finite gradients itself
            if not scaler.is_enabled():
                finite = finite & torch.isfinite(torch.stack(norms)).all()
            stop, bad_step = stopper.check(finite), loop_state["step"] + 1  # the one host sync
            if stop:  # nothing of this step is applied; --resume redoes it
                break
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            loop_state["step"] = step = loop_state["step"] + 1
            # ---- logging, evaluation (an epoch's end), checkpoints
            if step % args.log_every == 0 or step == end:
                eta = (time.time() - t_start) / (step - step0) * (end - step)
                print0(meter.line(epoch, args.epochs, step, total_steps, sched, eta))
            epoch_end, good = step % steps_per_epoch == 0 or step == end, True
            if epoch_end:
                batches = None
                good = evaluate_and_keep_best(scored, test_set, args, device, label_range,
                                              loop_state, ckpts, report_context,
                                              f"eval after epoch {epoch + 1}")
                raw_model.train()  # Distiller.train: the frozen teacher blocks stay in eval mode
            if good and (epoch_end or (args.save_every and step % args.save_every == 0)):
                good = ckpts.save("last.pt", loop_state)
            if not good:  # non-finite scores or weights: nothing more is saved
                stop, bad_step = Stop.NAN, step
                break
    finally:
        stopper.close()
    return runtime.finish(stop, bad_step if stop else None, step_rng if stop else None,
                          ckpts, loop_state, sched, baseline, args.out, t_start)


# -----------------------------------------------------------------------------------------------
# Data: labels read, videos listed, split by content; each model's view of a video


def read_data(args):
    """(train items, unlabeled items, test items, label range, {path: probe}, KVQ's rank pairs or
    None): the data read and every video checked, and on toy data the teacher stage run
    (args.teacher_ckpt becomes its checkpoint); a bad label file, video or split is one message
    naming the file, not a traceback."""
    try:
        with runtime.master_first():  # rank 0 builds the toy set (once); the others find it built
            toy_csv = toy.make_toy_dataset(toy.toy_root(args), log=print0, **(
                dict(sources=args.toy_sources) if args.toy_sources else
                dict(tiny=args.toy_variant == "tiny"))) if args.data == "toy" else None
        train_items, test_items, split_test = datasets.read_split(args, toy_csv)
        train_items, unlabeled_items = datasets.split_unlabeled(args, train_items,
                                                                split_test + test_items)
        lo, hi = args.label_range or datasets.label_range(args.data, train_items)
        memo = os.path.join(args.cache or args.out, "probes.json")  # unchanged files: read once
        t0 = time.time()
        videos = train_items + unlabeled_items + test_items
        probes = runtime.on_master(lambda: data.check_videos(videos, memo=memo))
        probes = {it["path"]: p for it, p in zip(videos, probes)}
        count = lambda its: f"{len(its)} videos ({len({it['source'] for it in its})} sources)"
        unlabeled = f", unlabeled {count(unlabeled_items)} (the teacher's score their target: " \
            f"loss term 'unlabeled')" if unlabeled_items else ""
        print0(f"data: {args.data}, train {count(train_items)}, test {count(test_items)}"
               f"{unlabeled}, labels {lo:g}..{hi:g} -> targets 0..1; every video checked in "
               f"{time.time() - t0:.0f}s")
        pairs = datasets.kvq_pairs(args.data_root) if args.data == "kvq" else None  # its score
        with runtime.master_first():  # rank 0 trains it; the others find it trained
            args.teacher_ckpt = args.teacher_ckpt or toy.pretrained_teacher(args, split_test,
                                                                            log=print0)
    except (OSError, ValueError, RuntimeError, ImportError) as e:  # ffmpeg's; openpyxl missing
        raise SystemExit(f"train.py: {e}") from None
    return train_items, unlabeled_items, test_items, (lo, hi), probes, pairs


# -----------------------------------------------------------------------------------------------
# Models


def mean_target(train_items, label_range):
    """The mean training target (labels mapped to 0..1): where every fresh quality head starts."""
    lo, hi = label_range
    return sum((it["mos"] - lo) / (hi - lo) for it in train_items) / len(train_items)


def build_models(args, start_score, with_unlabeled=False):
    """(teacher or None, student or None), built and loaded; the teacher frozen as the paper has
    it, and built only when a loss term uses it; every fresh head starts at the mean training
    target, so the first steps learn ranking."""
    teacher = student = None
    fresh_heads = []
    teacher_alone = args.student == "none"
    if args.teacher != "none" and teacher_runs(args.w_teacher, args.w_align, not teacher_alone,
                                               args.w_unlabeled * with_unlabeled):
        teacher = vit(args, args.teacher, args.init_values, 0.0, args.teacher_ckpt, "teacher")
        if not args.teacher_ckpt or teacher.SCORE_BIAS in load_file(  # a backbone-only file
                teacher, args.teacher_ckpt, "teacher", args)["left_at_init"]:
            fresh_heads.append(teacher)
        if not args.teacher_ckpt and not teacher_alone:
            print0("teacher: NO CHECKPOINT, randomly initialised. Its frozen blocks are random\n  "
                   "features: distillation transfers no prior knowledge. Pass --teacher-ckpt\n  "
                   "(official InternVideo2) or, on toy data, --pretrain.")
        trainable = "all" if teacher_alone and not args.teacher_ckpt else args.teacher_trainable
        freeze_teacher(teacher, "none" if args.w_teacher == 0 and not args.align_to_teacher
                       else trainable)  # no gradient can reach it
    if args.student == "fastvqa":
        student = FastVQA(replace(FASTVQA_CONFIGS["b"], drop_path=args.drop_path))
    elif not teacher_alone:
        student = vit(args, args.student, args.init_values, args.drop_path, args.student_ckpt)
    if student is not None and (not args.student_ckpt or student.SCORE_BIAS in load_file(
            student, args.student_ckpt, "student", args)["left_at_init"]):
        fresh_heads.append(student)
    if teacher is None and student is None:
        raise SystemExit("nothing to train: --student none needs a teacher")
    if teacher in fresh_heads and args.w_teacher == 0 and args.w_unlabeled and with_unlabeled:
        raise SystemExit("--w-teacher 0 with unlabeled videos: the teacher's quality head is "
                         "untrained (not in --teacher-ckpt) and frozen, so its scores, the "
                         "unlabeled videos' targets, mean nothing; load a teacher that scores "
                         "quality or let --w-teacher train its head")
    with torch.no_grad():
        for m in fresh_heads:
            m.get_parameter(m.SCORE_BIAS).fill_(start_score)
    for who, m in (("teacher", teacher), ("student", student)):
        if m is not None:
            print0(f"{who}: {getattr(args, who)}, " + runtime.model_size(
                m, fastvqa_clip=(args.fastvqa_frames, args.fastvqa_size)))
    return teacher, student


def vit(args, name, init_values, drop_path, path=None, which="student"):
    """A VideoViT at the run's clip geometry, with the tubelet of the file that will fill it (the
    authors' KVQ weight: 2) and then built on the meta device."""
    tubelet = runtime.file_tubelet(path, which, args.trust_ckpt, args.frames) if path else 1
    cfg = replace(CONFIGS[name], num_frames=args.frames, img_size=args.size, tubelet_size=tubelet,
                  init_values=init_values, drop_path=drop_path, patch_init=args.patch_init,
                  grad_checkpointing=args.grad_checkpointing)
    with torch.device("meta" if path else "cpu"):
        return VideoViT(cfg)


def load_file(model, path, who, args):
    """Weights from a file into the model; returns the load report, which it prints."""
    try:
        report = runtime.load_weights(model, path, who, trust=args.trust_ckpt,
                                      frames=args.ckpt_frames)
    except ValueError as e:
        raise SystemExit(f"{who}: {e}")
    print0(f"{who}: {path}\n  " + runtime.format_report(report).replace("\n", "\n  "))
    return report


def clip_sets(args, train_items, unlabeled_items, test_items, label_range, probes, teacher,
              student):
    """The training, unlabeled (None without them) and test VideoDatasets, each model's view in
    them (clip_views)."""
    views = clip_views(args, teacher, student)
    train_set = data.VideoDataset(train_items, train=True, seed=args.seed, info=probes,
                                  label_range=label_range, **views)
    unlabeled_set = data.VideoDataset(  # crops of their own: another seed
        unlabeled_items, train=True, seed=10**6 + args.seed, info=probes, label_range=label_range,
        **views) if unlabeled_items else None
    test_set = data.VideoDataset(test_items, train=False, clips=args.test_clips, info=probes,
                                 label_range=label_range, **views)
    if args.cache:
        costs = [s.cache_cost() for s in (train_set, unlabeled_set, test_set) if s is not None]
        print0(f"cache: {args.cache}, up to {max(c[0] for c in costs) / 1e3:.0f} kB a frame, "
               f"about {sum(c[1] for c in costs) / 1e9:.1f} GB for the {len(probes)} videos "
               f"(written on first read)")
    return train_set, unlabeled_set, test_set


def clip_views(args, teacher, student):
    """VideoDataset's keyword arguments: the ViTs' clip, or FAST-VQA's fragments; both (the
    teacher's first) when a teacher and a FAST-VQA student see the same moment."""
    vit_view = dict(frames=args.frames, size=args.size, stride=args.stride, resize=args.resize,
                    fragments=args.fragments, cache=args.cache)
    fast = dict(frames=args.fastvqa_frames, size=args.fastvqa_size, stride=args.fastvqa_stride,
                fragments=args.fastvqa_size // 32)
    if not isinstance(student, FastVQA):
        return vit_view
    return dict(vit_view, student_view=fast) if teacher is not None else dict(fast, resize=False)


def cosine_with_warmup(warmup_steps, total_steps):
    def lr_lambda(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr_lambda


# -----------------------------------------------------------------------------------------------
# Evaluation: deterministic clips; a video's score is the mean over its clips


@torch.no_grad()
def predict_scores(models, test_set, args, device, label_range):
    """{name: the score of every test video, in test order, on the label scale} of models {name:
    module}, in eval mode. With two views the teacher scores the first, the student the second.
    Each process scores every world-th video; each gets all the scores."""
    rank, world = runtime.rank_and_world()
    lo, hi = label_range
    for m in models.values():
        m.eval()  # the caller puts them back in training mode
    mine = torch.utils.data.Subset(test_set, range(rank, len(test_set), world))  # each video once
    rows, t0, shown = [], time.time(), time.time()
    for clips, _, index in loader(mine, args, device, batch_size=max(1, args.batch_size // 2)):
        views = clips if isinstance(clips, (tuple, list)) else (clips, clips)
        B, N = views[0].shape[:2]
        x = dict(teacher=views[0], student=views[-1])  # each (B, N clips, 3, T, S, S)
        with autocast(args.dtype, device):
            scores = torch.stack([m(to_device(x[k].flatten(0, 1), device)).float().view(B, N)
                                  .mean(1) for k, m in models.items()], 1)
        rows += zip(index.tolist(), (lo + (hi - lo) * scores).double().cpu().tolist())
        if time.time() - shown > 10:  # a long evaluation says how far it is
            print0(f"  evaluating: {len(rows) * world}/{len(test_set)} videos, "
                   f"{time.time() - t0:.0f}s")
            shown = time.time()
    rows = sorted(runtime.gather(rows))
    return {name: [r[1][j] for r in rows] for j, name in enumerate(models)}


def loader(dataset, args, device, **kw):
    kw.setdefault("generator", torch.Generator().manual_seed(args.seed))  # never the global RNG:
    return torch.utils.data.DataLoader(  # an evaluation then leaves no trace in a resumed run
        dataset, num_workers=args.workers, worker_init_fn=runtime.leave_signals_to_main,
        pin_memory=device.type == "cuda", **kw)


def autocast(dtype, device):
    dtype = runtime.DTYPES[dtype]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def to_device(x, device):
    """uint8 clips (or a pair of views) -> normalised float clips on the device; None stays."""
    if x is None:
        return None
    if isinstance(x, (tuple, list)):
        return tuple(to_device(v, device) for v in x)
    return data.normalise(x.to(device, non_blocking=True))


def report_scores(scored, test_set, args, device, label_range, report_context, header,
                  first=True):
    """Score the test set and print the report (metrics, within-source SRCC, the settings
    baseline; predictions.csv and scatter.png in OUT); returns the report's {name: metrics}."""
    t0 = time.time()
    scores = predict_scores(scored, test_set, args, device, label_range)
    header = f"{header} ({len(test_set)} test videos x {args.test_clips} clips, " \
             f"{time.time() - t0:.0f}s)"
    return runtime.report(scores, **report_context, header=header, first=first), scores


def evaluate_and_keep_best(scored, test_set, args, device, label_range, loop_state, ckpts,
                           report_context, header):
    """An epoch's evaluation: the report, its metrics in the loop state's history, and best.pt
    when the student's SRCC (else the teacher's) is the highest yet; a NaN is never the best.
    False, saving nothing, when a score is not finite."""
    result, scores = report_scores(scored, test_set, args, device, label_range, report_context,
                                   header, first=not loop_state["history"])
    if not all(math.isfinite(v) for s in scores.values() for v in s):
        return False
    loop_state["history"].append(dict(step=loop_state["step"], **result))
    key = "student" if "student" in scored else "teacher"
    srcc, best = result[key]["srcc"], loop_state["best"]
    if math.isfinite(srcc) and (best is None or srcc > best[key]["srcc"]):
        loop_state["best"] = result
        ckpts.save("best.pt", loop_state)
    return True


# -----------------------------------------------------------------------------------------------
# The loop's batches


def epoch_batches(train_set, unlabeled_set, args, device, epoch, skip, steps_per_epoch):
    """This process's batches of one epoch from optimizer step `skip` on, as (clips, targets,
    unlabeled clips or None): each set in an order seeded by (seed, epoch) (epoch_order), so that
    a resumed epoch goes on where it was, its unlabeled videos too."""
    seed = args.seed * 1000 + epoch
    train_set.set_epoch(epoch)  # the crops too are seeded by (seed, epoch, index)
    order = epoch_order(len(train_set), args.batch_size * args.grad_accum, seed, skip,
                        steps_per_epoch)
    batches = loader(train_set, args, device, batch_size=args.batch_size, sampler=order)
    if unlabeled_set is None:
        return ((x, y, None) for x, y, _ in batches)
    unlabeled_set.set_epoch(epoch)
    batch = args.unlabeled_batch_size or args.batch_size
    order = epoch_order(len(unlabeled_set), batch * args.grad_accum, 10**9 + seed, skip,
                        steps_per_epoch)
    unlabeled = loader(unlabeled_set, args, device, batch_size=batch, sampler=order)
    return ((x, y, x_unlabeled) for (x, y, _), (x_unlabeled, _, _) in zip(batches, unlabeled))


def epoch_order(n, per_step, seed, skip, steps):
    """This process's share of an epoch's clips for optimizer steps skip..steps: permutations of
    range(n) drawn one after another from a generator seeded by `seed` (more than one when an
    epoch needs more than a pass; pass k's indices are offset by k n, so that VideoDataset draws
    other crops for a video's second visit), every world-th index of them."""
    rank, world = runtime.rank_and_world()
    g = torch.Generator().manual_seed(seed)
    need = steps * per_step * world
    order = torch.cat([k * n + torch.randperm(n, generator=g) for k in range(-(-need // n))])
    return order[rank::world][skip * per_step:steps * per_step].tolist()


if __name__ == "__main__":
    sys.exit(main())

"""The machinery that makes train.py safe at scale, in a room of its own so that train.py reads
as the method.

- Processes (torchrun): init_distributed() / teardown(), print0() (rank 0 speaks), master_first()
  (rank 0 builds something shared, such as the toy set; the others then find it built),
  on_master() (rank 0 computes, every process gets the result), sync_buffers(), check_replicas().
- The stop protocol: Stopper. SIGTERM, Ctrl-C and a non-finite loss or gradient on any process
  stop every process at the same optimizer step, agreed by one small all_reduce per step.
- Checkpoints of this project: Checkpoints.save() writes plain dicts atomically on rank 0 and
  never a non-finite weight; Checkpoints.resume() continues a run exactly (the same settings,
  exactly the saved tensors, every process's RNG); load_weights() and read_model() read a
  checkpoint of this project or an official InternVideo2 file (through model.load_internvideo2)
  for train.py and predict.py; config_of() names the size of an official file.
- Reporting an evaluation: report() (the log block, predictions.csv, scatter.png), best_line().

    rank, world, device = init_distributed("cuda")
    stopper = Stopper(device)
    ...
    code = stopper.check(torch.isfinite(loss))     # 0: go on; the same answer on every process

Needs torch, model.py and metrics.py.
"""
import contextlib
import csv
import math
import os
import signal
from dataclasses import replace
from datetime import timedelta

import torch
import torch.distributed as dist

import metrics
from model import (CONFIGS, ConvVQA, VideoViT, ViTConfig, load_internvideo2, read_checkpoint,
                   remap_state_dict)

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # --dtype: autocast's

# -----------------------------------------------------------------------------------------------
# Processes


def init_distributed(device):
    """(rank, world size, torch.device) of this process. Under torchrun (WORLD_SIZE > 1) it joins
    the process group: NCCL on CUDA, one GPU a process (LOCAL_RANK), else gloo on the CPU. The
    long timeout lets rank 0 build a toy set or train a teacher stage while the others wait."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device(device)
    cuda = str(device).startswith("cuda")
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    if cuda:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), torch.device(device)


def teardown():
    if dist.is_initialized():
        dist.destroy_process_group()


def collective_device(device):
    """Where small tensors for a collective live: the GPU under NCCL, the CPU under gloo."""
    return device if device.type == "cuda" else torch.device("cpu")


def rank_and_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def is_master():
    return rank_and_world()[0] == 0


def gather(items):
    """Every process's list of picklable items, concatenated in rank order, on every process."""
    if not dist.is_initialized():
        return list(items)
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def print0(*args, **kwargs):
    """print on rank 0 only, flushed at once: a log read through a pipe shows each line as it
    happens."""
    if is_master():
        print(*args, **kwargs, flush=True)


@contextlib.contextmanager
def master_first():
    """Rank 0 runs the body first; the others wait, then run it and find its result cached (a toy
    set, a corpus, a teacher stage: builders that return at once when their marker is there). If
    rank 0 fails inside, torchrun stops the waiting processes."""
    ddp = dist.is_initialized()
    if ddp and dist.get_rank() != 0:
        dist.barrier()
    yield
    if ddp and dist.get_rank() == 0:
        dist.barrier()


def on_master(fn):
    """fn() on rank 0 only, its result (or its exception) on every process: one process reads
    every video at start-up, not each of them."""
    if not dist.is_initialized():
        return fn()
    box = [None]
    if dist.get_rank() == 0:
        try:
            box = [(fn(), None)]
        except Exception as e:  # every process raises it, so every process stops with its message
            box = [(None, e)]
    dist.broadcast_object_list(box, src=0)
    result, error = box[0]
    if error is not None:
        raise error
    return result


def sync_buffers(model):
    """Every process takes rank 0's buffers (BatchNorm running statistics, which each process
    updates from its own batches), so evaluation and checkpoints see one model."""
    if dist.is_initialized():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def check_replicas(model):
    """Raise if the parameters or buffers differ between processes: DDP must keep them equal."""
    if not dist.is_initialized() or not model.state_dict():
        return
    mine = torch.stack([t.detach().double().sum() for t in model.state_dict().values()])
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    if not all(torch.equal(e, mine) for e in every):
        raise RuntimeError("the model's weights or buffers differ between processes: DDP lost sync")


def leave_signals_to_main(_):
    """DataLoader workers ignore Ctrl-C and SIGTERM (a terminal or a scheduler sends them to every
    process): the main process finishes its step and saves, and then stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# -----------------------------------------------------------------------------------------------
# The stop protocol


class Stopper:
    """Why the training loop stops, the same answer on every process. Signal handlers only note
    the signal; check() combines it with this process's verdict on its loss and gradients and
    takes the largest code over all processes: one all_reduce and one host sync per step.
    Codes: 0 go on, 1 SIGTERM, 2 Ctrl-C, 3 a non-finite loss, gradient or weight (NaN). A
    signal is acted on at the end of the optimizer step (an evaluation under way finishes first);
    a second Ctrl-C stops at once, saving nothing."""

    NAMES = {1: "SIGTERM", 2: "Ctrl-C", 3: "NaN"}

    def __init__(self, device):
        self.signalled = 0
        self.device = collective_device(device)
        self._old = {s: signal.signal(s, self._note) for s in (signal.SIGTERM, signal.SIGINT)}

    def _note(self, signum, frame):
        if signum == signal.SIGINT and self.signalled == 2:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now, without waiting for the step
        self.signalled = max(self.signalled, 1 if signum == signal.SIGTERM else 2)

    def check(self, finite):
        """finite: a bool tensor (any device), False when this process's loss or gradients are
        not finite."""
        code = torch.where(finite.to(self.device), 0, 3).clamp(min=self.signalled)
        if dist.is_initialized():
            dist.all_reduce(code, op=dist.ReduceOp.MAX)
        return int(code.item())

    def close(self):
        """The handlers that were there before (a test calling train.main gets its own back)."""
        for s, handler in self._old.items():
            signal.signal(s, handler)


# -----------------------------------------------------------------------------------------------
# Checkpoints: save and resume


def rng_state(device):
    return dict(torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def trainable_state(model, partial):
    """The state dict to save; partial (a teacher loaded from a file and frozen in part): only the
    parameters that train, since the rest is in that file (a 1B teacher is saved as 33M)."""
    sd = model.state_dict()
    if partial:
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        sd = {k: v for k, v in sd.items() if k in names}
    return sd


def weights_finite(model):
    return all(torch.isfinite(t).all() for t in model.state_dict().values()
               if t.is_floating_point())


class Checkpoints:
    """The checkpoints of one run, OUT/last.pt and OUT/best.pt: plain dicts that torch.load(...,
    weights_only=True) reads, with every model's weights (a teacher loaded from a file and frozen
    in part: its trainable part, with the size and time of the file the rest is in), optimizer,
    scheduler, scaler, the loop state (step, best, history), the fields of `meta` (config, label
    range, model configs, world) and every process's RNG state.

    save() is called by every process: their RNG states are gathered and their copies of the
    models checked equal, then rank 0 writes a temporary file and renames it, so a crash never
    leaves half a checkpoint; it returns False, writing nothing, when a weight is not finite, so no
    save replaces a good checkpoint with a broken one. resume() continues a run exactly."""

    def __init__(self, out, models, opt, sched, scaler, device, partial=False, **meta):
        os.makedirs(out, exist_ok=True)
        self.out, self.models, self.opt, self.sched, self.scaler = out, models, opt, sched, scaler
        self.device, self.partial, self.meta = device, partial, meta

    def _weights(self, name):
        return trainable_state(self.models[name], self.partial and name == "teacher")

    def save(self, name, loop, rng=None):
        """rng: this process's RNG state taken earlier (a stopped step's, as the step found it)."""
        for m in self.models.values():
            sync_buffers(m)  # BatchNorm statistics: rank 0's on every process
        ok = torch.tensor(all(map(weights_finite, self.models.values())),
                          device=collective_device(self.device))
        rngs = [rng or rng_state(self.device)]
        if dist.is_initialized():
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
            rngs = [None] * dist.get_world_size()
            dist.all_gather_object(rngs, rng or rng_state(self.device))
        if not ok:
            return False
        for m in self.models.values():
            check_replicas(m)
        if is_master():
            base = self.meta["config"].get("teacher_ckpt") if self.partial else None
            ckpt = dict({k: self._weights(k) for k in self.models}, teacher_partial=self.partial,
                        teacher_file=file_stamp(base) if base else None,
                        optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(),
                        scaler=self.scaler.state_dict(), **loop, **self.meta, rng=rngs)
            path = os.path.join(self.out, name)
            torch.save(ckpt, f"{path}.tmp{os.getpid()}")
            os.replace(f"{path}.tmp{os.getpid()}", path)
        if dist.is_initialized():
            dist.barrier()  # nobody exits (or reads it) before rank 0 has written it
        return True

    def resume(self, args, same):
        """The loop state of OUT/last.pt, after loading everything it holds; a SystemExit naming
        what differs when it was saved with other values of the settings `same`, another number of
        processes, or other tensors than this run saves (a mistyped flag never starts a new run
        silently from an old one's weights)."""
        path = os.path.join(self.out, "last.pt")
        if not os.path.exists(path):
            raise SystemExit(f"--resume: {path} does not exist")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        saved, world = ckpt["config"], self.meta["world"]
        changed = [f"--{k.replace('_', '-')} {saved.get(k)} -> {getattr(args, k)}" for k in same
                   if saved.get(k) != getattr(args, k)]
        if ckpt.get("world", 1) != world:
            changed.append(f"processes {ckpt.get('world', 1)} -> {world}")
        base = saved.get("teacher_ckpt")
        if ckpt.get("teacher_file") and ckpt["teacher_file"] != file_stamp(base):
            changed.append(f"{base} has changed since (its frozen teacher blocks came from it)")
        if changed:
            raise SystemExit(f"--resume with other settings than the saved run would not continue "
                             f"it: {', '.join(changed)}")
        for name, m in self.models.items():
            want, have = set(self._weights(name)), set(ckpt[name])
            if want != have:
                raise SystemExit(f"{path}: the saved {name} does not fit this run: missing "
                                 f"{sorted(want - have)[:8]}, unexpected {sorted(have - want)[:8]}")
            m.load_state_dict(ckpt[name], strict=not (self.partial and name == "teacher"))
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"][dist.get_rank() if dist.is_initialized() else 0]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng["cuda"] is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        return dict(step=ckpt["step"], best=ckpt["best"], history=ckpt["history"])


# -----------------------------------------------------------------------------------------------
# Reading weights: a checkpoint of this project, or an official file


def file_stamp(path):
    """[size, modification time in ns] of a file: what tells that it is still the same file."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def is_ours(ckpt):
    """A training checkpoint of this project: a dict with `config` and `student` / `teacher`."""
    return isinstance(ckpt, dict) and "config" in ckpt and ("student" in ckpt or "teacher" in ckpt)


def saved_grid(cfg):
    """The (T, h, w) patch grid of a saved ViTConfig's fields."""
    side = cfg["img_size"] // cfg["patch_size"]
    return cfg["num_frames"] // cfg["tubelet_size"], side, side


def load_weights(model, path, which="student", trust=False, frames=None, ckpt=None):
    """The one way train.py and predict.py load a file into `model` (a VideoViT, or ConvVQA):
    an official InternVideo2 file in any published wrapping, or a checkpoint of this project (its
    `which` entry, with the geometry it saved; a teacher saved by its trainable part is completed
    from the file it came from). frames: the frame count of an official-looking position table
    that has no geometry (--ckpt-frames); ckpt: the file's contents when already read. Returns
    model.load_internvideo2's report; anything that does not fit is a ValueError naming the file."""
    try:
        ckpt = read_checkpoint(path, trust) if ckpt is None else ckpt
        if not is_ours(ckpt):
            if not isinstance(model, VideoViT):
                raise ValueError("is not a checkpoint of this project; only those hold a CNN "
                                 "student")
            return load_internvideo2(model, ckpt, frames=frames)
        if ckpt.get(which) is None:
            other = "student" if which == "teacher" else "teacher"
            hint = f" (it holds a {other}: --which {other})" if ckpt.get(other) is not None else ""
            raise ValueError(f"holds no {which} weights{hint}")
        if isinstance(model, ConvVQA):  # its own keys, strictly, in the model's dtypes
            own = model.state_dict()
            sd = {k: v.to(own[k].dtype) if k in own else v for k, v in ckpt[which].items()}
            model.load_state_dict(sd, assign=any(p.is_meta for p in model.parameters()))
            return dict(loaded=sorted(sd), dropped=[], resized=[], left_at_init=[])
        cfg = ckpt.get(f"{which}_config")
        if ckpt.get(f"{which}_partial"):  # the frozen part first, from where it came
            base = ckpt["config"].get(f"{which}_ckpt")
            if not base or not os.path.exists(base):
                raise ValueError(f"holds only the trainable part of its {which}; the rest is in "
                                 f"{base}, which is not there")
            stamp = ckpt.get(f"{which}_file")
            if stamp and stamp != file_stamp(base):
                raise ValueError(f"holds only the trainable part of its {which}; the rest was in "
                                 f"{base}, which has changed since (size or time)")
            report = load_weights(model, base, which, trust, ckpt["config"].get("ckpt_frames"))
            extra = set(ckpt[which]) - set(model.state_dict())
            if extra:
                raise ValueError(f"its {which} part has keys the model lacks: {sorted(extra)[:8]}")
            model.load_state_dict(ckpt[which], strict=False)
            return dict(report, loaded=sorted(set(report["loaded"]) | set(ckpt[which])),
                        left_at_init=[k for k in report["left_at_init"] if k not in ckpt[which]])
        return load_internvideo2(model, ckpt[which], grid=saved_grid(cfg) if cfg else None)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None


def read_model(path, which="student", trust=False, frames=None, **shape):
    """(model, its file's contents) built and loaded from `path`: this project's checkpoint at its
    saved config, or an official file at the named size its width and depth match (config_of).
    shape: ViTConfig fields to override (num_frames, img_size). Built on the meta device, so no
    random init is spent on weights the file replaces."""
    ckpt = read_checkpoint(path, trust)
    cfg = ckpt.get(f"{which}_config") if is_ours(ckpt) else None
    try:
        base = ViTConfig(**cfg) if cfg else None if is_ours(ckpt) else config_of(ckpt)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if base is None:
        model = ConvVQA()
    else:
        with torch.device("meta"):
            model = VideoViT(replace(base, **shape))
    report = load_weights(model, path, which, trust, frames, ckpt)
    return model, ckpt, report


def config_of(sd, **overrides):
    """The named size (CONFIGS) whose width and depth match an official state dict, with
    `overrides`."""
    sd, _ = remap_state_dict(sd)
    if "cls_token" not in sd:
        raise ValueError(f"no cls_token: not an InternVideo2 vision encoder (keys: "
                         f"{sorted(sd)[:5]} ...)")
    dim = sd["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for cfg in CONFIGS.values():
        if (cfg.embed_dim, cfg.depth) == (dim, depth):
            return replace(cfg, **overrides)
    raise ValueError(f"no known InternVideo2 size has width {dim} and depth {depth}")


def format_report(report):
    """A load report as a few readable lines, for the log."""
    lines = [f"loaded {len(report['loaded'])} tensors, dropped {len(report['dropped'])} keys"]
    lines += [f"resized {r}" for r in report["resized"]]
    if report["left_at_init"]:
        lines.append("left at init (trained from scratch): " + ", ".join(report["left_at_init"]))
    for kind in ("missing", "unexpected", "mismatched"):
        if report.get(kind):
            lines.append(f"NOT LOADED ({kind}): " + ", ".join(report[kind]))
    return "\n".join(lines)


# -----------------------------------------------------------------------------------------------
# Reporting an evaluation


def report(scores, items, baseline, out, header, first=False):
    """{name: metrics.evaluate(...) with "within" (the within-source SRCC)} of `scores` ({name:
    score of each of `items`, in order}); the block in the log, and on rank 0 OUT/predictions.csv
    (9 digits: metrics recomputed from it equal the log's) and OUT/scatter.png (with matplotlib).
    Non-finite scores get NaN metrics: they never become the best."""
    mos, sources = [it["mos"] for it in items], [it["source"] for it in items]
    result = {}
    for name, pred in scores.items():
        if all(map(math.isfinite, pred)):
            result[name] = dict(metrics.evaluate(pred, mos),
                                within=metrics.within_source_srcc(pred, mos, sources))
        else:
            nan = math.nan
            result[name] = dict(srcc=nan, krcc=nan, plcc=nan, rmse=nan, plcc_raw=nan, n=len(pred),
                                fit="none: non-finite predictions",
                                within=dict(srcc=nan, n_sources=0))
    print0(header)
    for name, r in result.items():
        print0(f"  {name:8s} {metrics.format_metrics(r)}  (raw PLCC {r['plcc_raw']:.3f}, "
               f"n={r['n']}, fit {r['fit']}; within-source SRCC {r['within']['srcc']:.3f} over "
               f"{r['within']['n_sources']} sources)")
    if baseline:
        print0(f"  settings baseline ({', '.join(baseline['keys'])}: mean training label per cell, "
               f"no pixels) {metrics.format_metrics(baseline)}")
    if not is_master():
        return result
    path = os.path.join(out, "predictions.csv")
    with open(f"{path}.tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "mos", "teacher", "student"])
        for i, it in enumerate(items):
            w.writerow([it["path"], it["mos"], *(f"{scores[k][i]:.9g}" if k in scores else ""
                                                 for k in ("teacher", "student"))])
    os.replace(f"{path}.tmp", path)
    finite = {k: v for k, v in scores.items() if all(map(math.isfinite, v))}
    if finite and not metrics.scatter_plot(os.path.join(out, "scatter.png"), mos, finite, header) \
            and first:
        print0("  (pip install matplotlib to get out/scatter.png, predicted score against MOS)")
    return result


def best_line(best, baseline):
    """The run's last line: the best evaluation's student and teacher, beside the baseline."""
    def part(name):
        r = (best or {}).get(name)
        return f"{name} srcc={r['srcc']:.3f} plcc={r['plcc']:.3f}" if r else f"{name} n/a"
    within = " ".join(f"{k}={r['within']['srcc']:.3f}" for k, r in (best or {}).items())
    base = f" | settings baseline srcc={baseline['srcc']:.3f} plcc={baseline['plcc']:.3f}" \
        if baseline else ""
    return f"best: {part('student')} {part('teacher')} | within-source srcc {within or 'n/a'}{base}"

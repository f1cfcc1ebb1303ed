"""The machinery that makes train.py safe at scale, in a room of its own so that train.py reads
as the method.

- Processes (torchrun): init_distributed() / teardown(), print0() (rank 0 speaks), master_first()
  (rank 0 builds something shared, such as the toy set; the others then find it built),
  on_master() (rank 0 computes, every process gets the result), check_replicas();
  keep_freed_memory() (no page fault a step for memory freed by the last one).
- The stop protocol: Stopper and its answer, a Stop (NONE, SIGTERM, CTRL_C, NAN, each with its
  exit code). SIGTERM, Ctrl-C and a non-finite loss or gradient on any process stop every process
  at the same optimizer step, agreed by one small all_reduce per step.
- Checkpoints of this project: Checkpoints.save() writes plain dicts atomically on rank 0 and
  never a non-finite weight; Checkpoints.resume() continues a run exactly (the same settings,
  exactly the saved tensors, every process's RNG); load_weights() and read_model() read a
  checkpoint of this project, an official InternVideo2 file (model.load_internvideo2) or an
  official FAST-VQA file (fastvqa.load_fastvqa) for train.py and predict.py, and refuse a file of
  the other family; config_of() names the size of an official InternVideo2 file.
- Reporting an evaluation: report() (the log block, predictions.csv, scatter.png; on KVQ the
  challenge's score, kvq_lines()), best_line().
- predict.py's dtype when --dtype is not given: default_dtype(device); on a CPU cpu_dtype(), bf16
  where a short timed matmul at start-up finds this CPU multiplies bf16 clearly faster;
  cpu_features().

    rank, world, device = init_distributed("cuda")
    stopper = Stopper(device)
    ...
    stop = stopper.check(torch.isfinite(loss))     # Stop.NONE: go on; the same on every process

Needs torch, model.py, fastvqa.py and metrics.py.
"""
import contextlib
import csv
import ctypes
import enum
import functools
import math
import os
import platform
import signal
import time
from dataclasses import asdict, replace
from datetime import timedelta

import torch
import torch.distributed as dist

import metrics
from fastvqa import (FastVQA, FastVQAConfig, fastvqa_config_of, is_fastvqa_state, load_fastvqa)
from fastvqa import flops_per_clip as fastvqa_flops
from model import (CONFIGS, VideoViT, ViTConfig, load_internvideo2, read_checkpoint,
                   remap_state_dict)
from model import flops_per_clip as vit_flops

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


def deterministic_kernels():
    """Deterministic kernels (slower): what an exact resume on CUDA needs. Call it before any CUDA
    work: cuBLAS reads its workspace setting at start."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def keep_freed_memory():
    """Let glibc keep freed memory for the next allocation instead of handing it back to the
    system at once. By default a freed block of an activation's size (over 128 KiB, up to 32 MiB)
    goes back (munmap, or a heap trim) and the next step maps fresh pages, one page fault each:
    75,000 faults a ViT-S forward at 8x224x224 (0.15-0.22 s of system time in a 2 s forward) and
    7,000-49,000 a quick-start step at 2 threads, against none and a few hundred with this
    (`python tools/bench.py --sections 5` counts them; --system-malloc leaves the default). Both
    thresholds are set: setting either turns glibc's adaptive mmap threshold off, and the trim
    threshold alone made it worse (285,000 faults a forward). The process keeps its peak memory
    until it exits, as caching allocators do; blocks over 32 MiB (the most glibc allows) still go
    back. True where it took effect (Linux with glibc); elsewhere nothing changes."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 1 << 25))


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


class Stop(enum.IntEnum):
    """Why training stopped: the codes every process agrees on, with the exit code of each."""
    NONE = 0
    SIGTERM = 1
    CTRL_C = 2
    NAN = 3  # a loss, gradient or weight that is not finite

    @property
    def label(self):
        return {Stop.CTRL_C: "Ctrl-C", Stop.NAN: "NaN"}.get(self, self.name)

    @property
    def exit_code(self):
        return {Stop.NONE: 0, Stop.SIGTERM: 143, Stop.CTRL_C: 130, Stop.NAN: 1}[self]


class Stopper:
    """Why the training loop stops, the same answer on every process. Signal handlers only note
    the signal; check() combines it with this process's verdict on its loss and gradients and
    takes the largest code over all processes: one all_reduce and one host sync per step.
    It answers a Stop: NONE (go on), SIGTERM, CTRL_C, NAN (a non-finite loss or gradient). A
    signal is acted on at the end of the optimizer step (an evaluation under way finishes first);
    a second Ctrl-C stops at once, saving nothing."""

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
        return Stop(int(code.item()))

    def close(self):
        """The handlers that were there before (a test calling train.main gets its own back)."""
        for s, handler in self._old.items():
            signal.signal(s, handler)


# -----------------------------------------------------------------------------------------------
# The loop's log lines and its end


class Meter:
    """What one log line reports: the loss terms averaged over the optimizer steps since the last
    line, clips/s, the share of the time spent waiting for data (the loader keeps up when it stays
    near 0%)."""

    def __init__(self, terms):
        self.terms = terms  # the loss terms' order on the line
        self.t, self.clips, self.waited, self.sums, self.steps = time.time(), 0, 0.0, {}, 0

    def timed(self, batches):
        """The batches, the time spent waiting for each added to `waited`."""
        batches = iter(batches)
        while True:
            t0 = time.time()
            batch = next(batches, None)
            self.waited += time.time() - t0
            if batch is None:
                return
            yield batch

    def add(self, out, clips, grad_accum, unlabeled_clips=0):
        for k, v in out.items():
            if k.startswith("loss"):
                self.sums[k] = self.sums.get(k, 0) + v.detach() / grad_accum
        self.clips += clips + unlabeled_clips
        self.steps += 1 / grad_accum

    def line(self, epoch, epochs, step, total_steps, sched, eta):
        dt = time.time() - self.t
        names = [k for k in ("loss", *self.terms) if k in self.sums]
        loss, *terms = (torch.stack([self.sums[k] for k in names]) / round(self.steps)).tolist()
        named = " ".join(f"{k[5:]} {v:.4f}" for k, v in zip(names[1:], terms))
        line = (f"epoch {epoch + 1}/{epochs} step {step}/{total_steps} | loss {loss:.4f} ({named}) "
                f"| lr {sched.get_last_lr()[0]:.2e} | {self.clips / dt:.1f} clips/s | "
                f"wait {100 * self.waited / dt:.0f}% | eta {eta / 60:.1f} min")
        self.__init__(self.terms)
        return line


def model_size(model, fastvqa_clip=(32, 224)):
    """'22.3M params (2.5M trainable), 3.3 GFLOPs/clip (1.6 G as fvcore counts: ...)': its size
    and the FLOPs of one clip at its geometry (FAST-VQA: at fastvqa_clip's frames and size),
    counted both ways: a multiply-add is 2 FLOPs here, 1 in fvcore (NTIRE's cap of 120 G)."""
    n_train = sum(q.numel() for q in model.parameters() if q.requires_grad)
    n_all = sum(q.numel() for q in model.parameters())
    flops = fastvqa_flops(model.cfg, *fastvqa_clip) if isinstance(model, FastVQA) else \
        vit_flops(model.cfg)
    return (f"{n_all / 1e6:.1f}M params ({n_train / 1e6:.1f}M trainable), {flops / 1e9:.1f} "
            f"GFLOPs/clip ({flops / 2e9:.1f} G as fvcore counts: a multiply-add is one)")


def finish(stop, bad_step, step_rng, ckpts, loop_state, sched, baseline, out, t_start):
    """The run's last lines and exit code: done (the best evaluation), a stop by a signal (the
    stopped step saved unapplied, for --resume) or by a value that is not finite (nothing saved)."""
    if stop == Stop.NAN:
        print0(f"STOP: the loss, a gradient or the weights are not finite at step {bad_step} (lr "
               f"{sched.get_last_lr()[0]:.2e}). Nothing was saved after the last good checkpoint "
               f"{out}/last.pt; lower --lr or try --dtype fp32.")
        return stop.exit_code
    if stop:  # a signal: the stopped step is not applied, and --resume redoes it
        saved = ckpts.save("last.pt", loop_state, rng=step_rng)
        print0(f"{stop.label}: " + (
            f"saved {out}/last.pt at step {loop_state['step']}; continue with --resume"
            if saved else f"nothing saved (the weights are not finite); {out}/last.pt is "
                          f"the last good one"))
        return stop.exit_code
    print0(f"done in {(time.time() - t_start) / 60:.1f} min")
    print0(best_line(loop_state["best"], baseline))
    return 0


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

    @classmethod
    def of_run(cls, args, scored, align, opt, sched, scaler, device, label_range, world):
        """train.py's: its models {teacher, student} and the alignment projection, the run's
        options as its config; a teacher loaded from a file and frozen in part is saved as its
        trainable part and a stamp of the file that holds the rest."""
        teacher, student = scored.get("teacher"), scored.get("student")
        teacher_in_part = bool(args.teacher_ckpt) and teacher is not None and \
            not all(q.requires_grad for q in teacher.parameters())
        return cls(args.out, {**scored, "align": align}, opt, sched, scaler, device,
                   teacher_in_part, config=vars(args), label_range=label_range, world=world,
                   student_config=asdict(student.cfg) if student is not None else None,
                   teacher_config=asdict(teacher.cfg) if teacher is not None else None)

    def _weights(self, name):
        return trainable_state(self.models[name], self.partial and name == "teacher")

    def save(self, name, loop, rng=None):
        """rng: this process's RNG state taken earlier (a stopped step's, as the step found it)."""
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

    def resume(self, args, same, added=None):
        """The loop state of OUT/last.pt, after loading everything it holds; a SystemExit naming
        what differs when it was saved with other values of the settings `same`, another number of
        processes, or other tensors than this run saves (a mistyped flag never starts a new run
        silently from an old one's weights). added: {setting: its value in a checkpoint saved
        before the setting existed}."""
        path = os.path.join(self.out, "last.pt")
        if not os.path.exists(path):
            raise SystemExit(f"--resume: {path} does not exist")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        saved, world = {**(added or {}), **ckpt["config"]}, self.meta["world"]
        changed = [f"--{k.replace('_', '-')} {saved.get(k)} -> {getattr(args, k)}" for k in same
                   if saved.get(k) != getattr(args, k)]
        if ckpt.get("world", 1) != world:
            changed.append(f"processes {ckpt.get('world', 1)} -> {world}")
        if saved.get("data_digest") not in (None, getattr(args, "data_digest", None)):
            changed.append("the training videos or their labels (a list read is not the saved "
                           "run's: an epoch would draw other clips)")
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


def saved_family(cfg):
    """The model class a saved config builds: FAST-VQA's has `depths`, a ViT's `depth`."""
    return FastVQAConfig if "depths" in cfg else ViTConfig


def load_weights(model, path, which="student", trust=False, frames=None, ckpt=None):
    """The one way train.py and predict.py load a file into `model` (a VideoViT or a FastVQA):
    an official InternVideo2 or FAST-VQA file in any published wrapping, or a checkpoint of this
    project (its `which` entry, with the geometry it saved; a teacher saved by its trainable part
    is completed from the file it came from). frames: the frame count of an official-looking
    position table that has no geometry (--ckpt-frames); ckpt: the file's contents when already
    read. Returns the loader's report (model.load_internvideo2, fastvqa.load_fastvqa); anything
    that does not fit, a file of the other family included, is a ValueError naming the file."""
    fast = isinstance(model, FastVQA)
    try:
        ckpt = read_checkpoint(path, trust) if ckpt is None else ckpt
        if not is_ours(ckpt):
            if fast:
                return load_fastvqa(model, ckpt)  # an InternVideo2 file: its one-line error
            if is_fastvqa_state(ckpt):
                raise ValueError("is a FAST-VQA checkpoint, not an InternVideo2 one: it is for "
                                 "--student fastvqa")
            return load_internvideo2(model, ckpt, frames=frames)
        if ckpt.get(which) is None:
            other = "student" if which == "teacher" else "teacher"
            hint = f" (it holds a {other}: --which {other})" if ckpt.get(other) is not None else ""
            raise ValueError(f"holds no {which} weights{hint}")
        cfg = ckpt.get(f"{which}_config")
        if cfg is None or (saved_family(cfg) is FastVQAConfig) != fast:
            what = "an earlier version's CNN" if cfg is None else \
                "a FAST-VQA" if saved_family(cfg) is FastVQAConfig else "an InternVideo2 ViT"
            raise ValueError(f"holds {what} {which}, not a {type(model).__name__}")
        if fast:
            return load_fastvqa(model, ckpt[which])
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
        return load_internvideo2(model, ckpt[which], grid=saved_grid(cfg))
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None


def read_model(path, which="student", trust=False, frames=None, **shape):
    """(model, its file's contents, the load report) built and loaded from `path`: this project's
    checkpoint at its saved config, an official FAST-VQA file at its size (B/FasterVQA or M), or
    an official InternVideo2 file at the named size its width and depth match (config_of).
    shape: ViTConfig fields to override (num_frames, img_size; FAST-VQA takes any input). A ViT
    is built on the meta device, so no random init is spent on weights the file replaces."""
    ckpt = read_checkpoint(path, trust)
    try:
        if is_ours(ckpt):
            cfg = ckpt.get(f"{which}_config")
            if cfg is None:
                raise ValueError(f"holds no {which} of a model this code builds (an earlier "
                                 f"version's CNN student, or none)")
            base = saved_family(cfg)(**cfg)
        else:
            base = fastvqa_config_of(ckpt) if is_fastvqa_state(ckpt) else config_of(ckpt)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
    if isinstance(base, FastVQAConfig):
        model = FastVQA(base)
    else:
        with torch.device("meta"):
            model = VideoViT(replace(base, **shape))
    report = load_weights(model, path, which, trust, frames, ckpt)
    return model, ckpt, report


def file_tubelet(path, which="student", trust=False, frames=None):
    """Frames per patch of the ViT in a file: its saved config, else its patch kernel (D, 3,
    tubelet, p, p) (the authors' KVQ weight: 2; every other official file: 1). Read memory-mapped
    where the file allows, so a large file is not read twice. A clip of `frames` that the tubelet
    does not divide is a SystemExit naming the file."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust, mmap=True)
    except Exception:  # a legacy (non-zip) file cannot be mapped; read_checkpoint says what's wrong
        try:
            ckpt = read_checkpoint(path, trust)
        except ValueError as e:
            raise SystemExit(f"{which}: {e}") from None
    if is_ours(ckpt):
        tubelet = (ckpt.get(f"{which}_config") or {}).get("tubelet_size", 1)
    elif is_fastvqa_state(ckpt):  # a Swin's 2-frame patches: load_weights refuses the file
        tubelet = 1
    else:
        try:
            tubelet = patch_tubelet(remap_state_dict(ckpt)[0])
        except ValueError:
            tubelet = 1  # not a state dict: load_weights says so
    if frames and frames % tubelet:
        raise SystemExit(f"{which}: {path} has a tubelet of {tubelet} frames: --frames {frames} "
                         f"is not a multiple of it")
    return tubelet


def patch_tubelet(sd):
    """Frames per patch of a state dict's patch kernel (D, 3, tubelet, p, p); 1 without one."""
    kernel = sd.get("patch_embed.proj.weight")
    return kernel.shape[2] if torch.is_tensor(kernel) and kernel.ndim == 5 else 1


def config_of(sd, **overrides):
    """The named size (CONFIGS) whose width and depth match an official state dict, with the
    tubelet of its patch kernel (the authors' KVQ weight: 2) and `overrides`."""
    sd, _ = remap_state_dict(sd)
    if "cls_token" not in sd:
        raise ValueError(f"no cls_token: not an InternVideo2 vision encoder (keys: "
                         f"{sorted(sd)[:5]} ...)")
    dim = sd["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for cfg in CONFIGS.values():
        if (cfg.embed_dim, cfg.depth) == (dim, depth):
            return replace(cfg, **{"tubelet_size": patch_tubelet(sd), **overrides})
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


def report(scores, items, baseline, out, header, first=False, pairs=None):
    """{name: metrics.evaluate(...) with "within" (the within-source SRCC)} of `scores` ({name:
    score of each of `items`, in order}); the block in the log, and on rank 0 OUT/predictions.csv
    (9 digits: metrics recomputed from it equal the log's) and OUT/scatter.png (with matplotlib).
    Non-finite scores get NaN metrics: they never become the best. pairs: the KVQ challenge's rank
    pairs (datasets.kvq_pairs), for its score beside PLCC and SRCC (kvq_lines)."""
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
    if pairs:
        kvq_lines(scores, items, pairs, result)
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


def kvq_lines(scores, items, pairs, result):
    """The NTIRE KVQ challenge's score of each model's finite scores (metrics.kvq_score, videos
    keyed by the split file's `name`), printed and kept in result[name]["kvq"]; one line saying
    why not when the pairs name videos outside this test set (a random split, --test-labels)."""
    names = [it.get("name", it["path"]) for it in items]
    truth = dict(zip(names, (it["mos"] for it in items)))
    for name, pred in scores.items():
        if not all(map(math.isfinite, pred)):
            continue
        try:
            k = result[name]["kvq"] = metrics.kvq_score(dict(zip(names, pred)), truth, pairs)
        except ValueError as e:
            print0(f"  KVQ score: n/a, the rank pairs do not fit this test set ({e})")
            return
        print0(f"  {name:8s} KVQ score {k['score']:.4f} = 0.45 SRCC {k['srcc']:.4f} + 0.45 PLCC "
               f"{k['plcc']:.4f} (raw) + 0.05 acc_nonsource {k['acc_nonsource']:.4f} + 0.05 "
               f"acc_source {k['acc_source']:.4f}")


def best_line(best, baseline):
    """The run's last line: the best evaluation's student and teacher, beside the baseline."""
    def part(name):
        r = (best or {}).get(name)
        return f"{name} srcc={r['srcc']:.3f} plcc={r['plcc']:.3f}" if r else f"{name} n/a"
    within = " ".join(f"{k}={r['within']['srcc']:.3f}" for k, r in (best or {}).items())
    base = f" | settings baseline srcc={baseline['srcc']:.3f} plcc={baseline['plcc']:.3f}" \
        if baseline else ""
    return f"best: {part('student')} {part('teacher')} | within-source srcc {within or 'n/a'}{base}"


# -----------------------------------------------------------------------------------------------
# The dtype when --dtype is not given

# bf16 only where this CPU multiplies it clearly faster than fp32. Autocast gains less than its
# matmuls: it casts at every matmul, keeps norms, softmax and GELU in fp32, and torch's CPU
# attention kernel is no faster in bf16 (ViT-S at 8x224 on one thread of a Zen 4: linear layers,
# 45% of the fp32 forward, 2.0x; the forward 1.3x). So a CPU whose matmul gains 1.5x gains some
# 1.15x a forward, and below that bf16's coarser rounding buys ever less. CPUs lie far on either
# side: without bf16 instructions torch multiplies bf16 at 0.015x (a Zen 3, EXPERIMENTS.md), with
# avx512_bf16 at ~2x (the Zen 4), with AMX faster still (not measured here); so a start-up timing
# off by a fifth on a busy machine still sorts one.
FAST_BF16 = 1.5


def cpu_features(cpuinfo="/proc/cpuinfo"):
    """This CPU's name and its bf16 instructions, from /proc/cpuinfo: "AMD EPYC (avx512_bf16)", or
    "... (no bf16 instructions)"; the platform's processor name where there is no /proc/cpuinfo."""
    name, flags = None, set()
    with contextlib.suppress(OSError):
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "model name":
                    name = name or value
                elif key in ("flags", "Features"):  # x86, ARM
                    flags |= set(value.split())
    have = [f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags]  # bf16: ARM's
    name = name or platform.processor() or "unknown CPU"
    return f"{name} ({', '.join(have) or 'no bf16 instructions'})"


def matmul_rates(n=256, rounds=10, budget_s=0.03):
    """(fp32, bf16) FLOP/s of an n x n product: the best of up to `rounds` timings of each, the
    two interleaved so that a busy machine slows both alike, after one untimed round (the first
    bf16 call builds its kernels); it stops early once budget_s have passed, so a CPU without
    bf16 (a 256^3 product in ~20 ms) spends ~40 ms, one with it ~5 ms. Timed on one thread: the
    ratio is a property of the core, and on a machine where other jobs hold the other cores each
    product of several threads waits for a time slice (measured on 2 cores beside training runs:
    0.5x to 4x over 10 runs on 2 threads, 1.8x to 2.1x over 20 on one)."""
    mats = [torch.randn(n, n).to(dtype) for dtype in (torch.float32, torch.bfloat16)]
    best, threads = [math.inf, math.inf], torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        for r in range(rounds + 1):
            for i, a in enumerate(mats):
                t0 = time.perf_counter()
                a @ a
                if r:  # round 0 warms up
                    best[i] = min(best[i], time.perf_counter() - t0)
            if r and time.perf_counter() - start > budget_s:
                break
    finally:
        torch.set_num_threads(threads)
    return tuple(2 * n ** 3 / t for t in best)


@functools.cache
def cpu_dtype(measure=None):
    """("bf16" or "fp32", why) on this CPU: bf16 where it multiplies bf16 at least FAST_BF16
    times as fast as fp32. measure() -> (fp32, bf16) FLOP/s, matmul_rates unless given (tests
    give a fixture); measured once per process."""
    fp32, bf16 = (measure or matmul_rates)()
    ratio = bf16 / fp32
    if ratio >= FAST_BF16:
        return "bf16", f"this CPU: bf16 matmul {ratio:.3g}x fp32"
    return "fp32", f"this CPU: bf16 matmul {ratio:.3g}x fp32, no fast bf16"


def default_dtype(device):
    """(autocast dtype, why) when predict.py's --dtype is not given on `device`: a GPU keeps the
    paper's bf16; a CPU takes bf16 where it is fast (cpu_dtype). (train.py trains in fp32 on a
    CPU: config.CPU_TRAINING.)"""
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16", "a GPU: the paper's bf16"
    if kind == "cpu":
        return cpu_dtype()
    return "fp32", f"{kind}: fp32"

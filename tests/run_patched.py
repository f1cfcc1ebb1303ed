"""train.main with one fault patched in at an exact optimizer step: the child process the tests of
train.py start when what they test needs a process of its own (signals, a kill, torchrun ranks).
A step is counted by the calls of runtime.Stopper.check, made once per optimizer step before the
step is applied, so "at step N" means: steps 1..N-1 were applied, step N is being decided.

    python tests/run_patched.py [FAULTS] -- TRAIN.PY ARGUMENTS
    torchrun --nproc_per_node 2 tests/run_patched.py --rank 1 --nan-loss-from 3 -- ...

--kill-at N           SIGKILL this process at step N: nothing after step N-1 can be saved
--signal-at N SIG     send SIGTERM or SIGINT (TERM, INT) at step N, to this process, or with
                      --group to its whole process group (the DataLoader workers too); the step
                      is decided after the handler has noted it; with --group and --record, what
                      signals the children (the workers) ignore is recorded first
--nan-loss-from N     add a NaN constant to the loss from step N on (gradients stay finite)
--nan-grad-from N     a hook on the student's head weight makes its gradient NaN from step N on
                      (both count forward calls: optimizer steps when --grad-accum is 1)
--rank R              the faults act only on the process with RANK=R (default: every process)
--record DIR          DIR/rank{R}.jsonl: one line per check (its code) and per save (name, step,
                      result, sha256 of the file written)
--dump-on-save DIR    DIR/rank{R}-{i}.pt: every model's state_dict after the i-th save
--dump-on-eval DIR    DIR/rank{R}-eval{i}.pt: every model's state_dict the i-th evaluation used
"""
import argparse
import hashlib
import json
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import distill  # noqa: E402
import runtime  # noqa: E402
import train  # noqa: E402


def children():
    """The pids of this process's children (the DataLoader workers)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    pids.append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def ignored(pid):
    """Which of SIGTERM and SIGINT the process ignores (its SigIgn mask): an ignored signal is
    dropped when sent, so this is what the process does with the signal about to come."""
    with open(f"/proc/{pid}/status") as f:
        mask = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
    return [name for name, s in (("TERM", signal.SIGTERM), ("INT", signal.SIGINT))
            if mask >> (s - 1) & 1]


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: run_patched.py [FAULTS] -- TRAIN.PY ARGUMENTS")
    cut = argv.index("--")
    p = argparse.ArgumentParser()
    p.add_argument("--kill-at", type=int)
    p.add_argument("--signal-at", nargs=2, metavar=("N", "SIG"))
    p.add_argument("--group", action="store_true")
    p.add_argument("--nan-loss-from", type=int)
    p.add_argument("--nan-grad-from", type=int)
    p.add_argument("--rank", type=int)
    p.add_argument("--record")
    p.add_argument("--dump-on-save")
    p.add_argument("--dump-on-eval")
    faults, train_args = p.parse_args(argv[:cut]), argv[cut + 1:]
    rank = int(os.environ.get("RANK", "0"))
    mine = faults.rank is None or faults.rank == rank
    log = os.path.join(faults.record, f"rank{rank}.jsonl") if faults.record else None

    def record(**entry):
        if log:
            with open(log, "a") as f:
                f.write(json.dumps(entry) + "\n")

    checks = [0]
    check = runtime.Stopper.check

    def patched_check(self, finite):
        checks[0] += 1
        step = checks[0]
        if mine and faults.kill_at == step:
            os.kill(os.getpid(), signal.SIGKILL)
        if mine and faults.signal_at and int(faults.signal_at[0]) == step:
            signum = {"TERM": signal.SIGTERM, "INT": signal.SIGINT}[faults.signal_at[1]]
            if faults.group:
                record(workers=[dict(pid=pid, ignores=ignored(pid)) for pid in children()])
                os.killpg(os.getpgrp(), signum)
            else:
                os.kill(os.getpid(), signum)
            end = time.time() + 30
            while not self.signalled and time.time() < end:  # the handler runs in the main thread
                time.sleep(0.01)
        code = check(self, finite)
        record(check=step, code=code)
        return code

    runtime.Stopper.check = patched_check

    calls = [0]
    forward = distill.Distiller.forward

    def patched_forward(self, x, y):
        calls[0] += 1
        out = forward(self, x, y)
        if mine and faults.nan_loss_from and calls[0] >= faults.nan_loss_from:
            out["loss"] = out["loss"] + torch.tensor(float("nan"))
        if mine and faults.nan_grad_from and calls[0] == faults.nan_grad_from:
            self.student.head.weight.register_hook(lambda g: torch.full_like(g, float("nan")))
        return out

    distill.Distiller.forward = patched_forward

    saves = [0]
    save = runtime.Checkpoints.save

    def patched_save(self, name, loop, rng=None):
        ok = save(self, name, loop, rng)
        saves[0] += 1
        path = os.path.join(self.out, name)
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest() if ok and rank == 0 else None
        record(save=name, step=loop["step"], ok=ok, sha256=digest)
        if faults.dump_on_save:
            torch.save({k: m.state_dict() for k, m in self.models.items()},
                       os.path.join(faults.dump_on_save, f"rank{rank}-{saves[0]}.pt"))
        return ok

    runtime.Checkpoints.save = patched_save

    evals = [0]
    predict_scores = train.predict_scores

    def patched_evaluate(models, *args, **kwargs):
        evals[0] += 1
        scores = predict_scores(models, *args, **kwargs)
        if faults.dump_on_eval:  # after it: in eval mode the statistics it used stay as they were
            torch.save({k: m.state_dict() for k, m in models.items()},
                       os.path.join(faults.dump_on_eval, f"rank{rank}-eval{evals[0]}.pt"))
        return scores

    train.predict_scores = patched_evaluate
    sys.exit(train.main(train_args))


if __name__ == "__main__":
    main()

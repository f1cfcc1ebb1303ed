"""The paper's comparisons and the ablations it left open, rerun on the toy set.

An experiment harness beside the method, not part of it. Run it from the repository root, as a
script or as a module; it puts the root on sys.path itself and runs the root's train.py by path.

    python tools/compare.py                    # every row, 3 seeds: 65 min on 2 CPU cores
    python tools/compare.py --rows small,small+KD --seeds 0 --extra --epochs 1
    python -m tools.compare --help             # the same tool, as a module

The rows are the comparisons of the paper (Guan et al. 2025, arXiv 2502.19026: students with
and without distillation, homologous ViT students against a heterogeneous CNN one) and
ablations of its loss.

Each row is one train.py command, run once per seed (--seed; the toy set's fixed content split,
so the spread is that of training alone). The teacher is trained first (--student none) and its
last.pt is the --teacher-ckpt of every distilled row of the same seed. A row's result is its
final evaluation (out/predictions.csv after the last epoch), never the best epoch, which would be
chosen on the test set. The cross-codec rows take the same last.pt and evaluate it on the VVC
encodes of the test contents (toy_vvc.csv: a codec no model saw in training).

Finished runs are kept under --out and reused; an interrupted one is resumed. The table
(median [min, max] over seeds of SRCC and PLCC) goes to stdout and to OUT/results.md, with the
settings baseline beside it (docs/reference.md, section 5). Relative paths (--out, --data-root)
are taken from the current folder, as train.py takes them.
"""
import os
import sys

# The tools live in tools/ but import the project's modules from the repository root, whether run
# as `python tools/compare.py` (sys.path[0] is tools/) or as `python -m tools.compare`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse
import csv
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import datasets
import metrics

TRAIN_PY = os.path.join(ROOT, "train.py")

# Reduced from the quick profile to fit ~30 runs in about an hour of a 2-core CPU: 56 x 56 crops,
# the teacher trained for 2 epochs, then every student row for 1 (about 100 steps of 8 clips).
TEACHER = ["--epochs", "1", "--teacher-ckpt", "{out}/teacher-s{seed}/last.pt"]  # the row "teacher"
ALONE = ["--epochs", "1", "--teacher", "none"]
ROWS = {  # name -> (train.py arguments, what it shows)
    "teacher": (["--student", "none", "--teacher", "small", "--epochs", "2"],
                "the teacher alone (all of it trained)"),
    "small": (["--student", "small", *ALONE], "ViT-S student, no distillation"),
    "small+KD": (["--student", "small", *TEACHER], "ViT-S distilled (the paper's loss)"),
    "base": (["--student", "base", *ALONE], "ViT-B student, no distillation"),
    "base+KD": (["--student", "base", *TEACHER], "ViT-B distilled"),
    "conv": (["--student", "conv", *ALONE], "(2+1)-D CNN student, no distillation"),
    "conv+KD": (["--student", "conv", *TEACHER], "(2+1)-D CNN distilled (heterogeneous)"),
    "small+KD -align": (["--student", "small", *TEACHER, "--w-align", "0"],
                        "ablation: no alignment term"),
    "small+KD -teacher": (["--student", "small", *TEACHER, "--w-teacher", "0"],
                          "ablation: no teacher L2 term"),
    "small+KD align->T": (["--student", "small", *TEACHER, "--align-to-teacher"],
                          "ablation: alignment gradient reaches the teacher (authors' code)"),
}
CROSS = ("teacher", "small", "small+KD", "conv", "conv+KD")  # also evaluated on the held-out VVC


def common(args):
    """The train.py arguments of every run."""
    return ["--data", "toy", "--data-root", args.data_root, "--split", "official", "--size", "56"]


def folder(args, row, seed):
    return os.path.join(args.out, f"{row.replace(' ', '_').replace('>', '')}-s{seed}")


def done(out):
    return os.path.exists(os.path.join(out, "DONE"))


def run(args, row, seed, out, *more):
    """train.py with the row's arguments into `out`, logged to out/log.txt; then out/DONE if it
    ended well."""
    row_args = [a.format(out=args.out, seed=seed) for a in ROWS[row][0]]
    cmd = [sys.executable, TRAIN_PY, *common(args), *row_args, "--seed", str(seed), "--out", out,
           *args.extra, *more]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.jobs)))
    print(f"[{time.strftime('%H:%M:%S')}] {os.path.basename(out)}: {' '.join(cmd[1:])}", flush=True)
    with open(os.path.join(out, "log.txt"), "a") as log:
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode:
            sys.exit(f"{os.path.basename(out)} failed: see {out}/log.txt")
    open(os.path.join(out, "DONE"), "w").close()


def train(args, row, seed):
    """Run, resume (an interrupted run) or reuse (a finished one) a row's training for one seed."""
    out = folder(args, row, seed)
    if not done(out):
        os.makedirs(out, exist_ok=True)
        resume = ["--resume"] if os.path.exists(os.path.join(out, "last.pt")) else []
        run(args, row, seed, out, *resume)


def cross_codec(args, row, seed):
    """Evaluate a finished run's last.pt on toy_vvc.csv, in a folder of its own."""
    out = folder(args, f"{row} on VVC", seed)
    if not done(out):
        os.makedirs(out, exist_ok=True)
        shutil.copy(os.path.join(folder(args, row, seed), "last.pt"), os.path.join(out, "last.pt"))
        vvc = os.path.join(args.data_root, "toy_vvc.csv")
        run(args, row, seed, out, "--resume", "--eval-only", "--test-labels", vvc)


def result(out, column):
    """SRCC/PLCC (logistic) of one column of a run's predictions.csv, recomputed with metrics.py."""
    with open(os.path.join(out, "predictions.csv")) as f:
        got = [(float(r["mos"]), float(r[column])) for r in csv.DictReader(f)]
    return metrics.evaluate([s for _, s in got], [m for m, _ in got])


def cell(s, key):
    return f"{s[key]['median']:.3f} [{s[key]['min']:.3f}, {s[key]['max']:.3f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--data-root", default=os.path.join("data", "toy"))
    p.add_argument("--jobs", type=int, default=2,
                   help="train.py runs at once (threads split between them)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="passed to every train.py run (last)")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = args.rows.split(",") if args.rows else list(ROWS)
    if unknown := set(rows) - set(ROWS):
        sys.exit(f"unknown rows {sorted(unknown)}; known: {list(ROWS)}")
    if any("KD" in r for r in rows) and "teacher" not in rows:
        rows.insert(0, "teacher")  # the distilled rows need it

    t0 = time.time()
    cross_rows = [r for r in CROSS if r in rows]
    slow_first = sorted(rows, key=lambda r: (r != "teacher", "base" not in r))
    first = [(r, s) for r in slow_first for s in seeds if "KD" not in r]
    distilled = [(r, s) for r in slow_first for s in seeds if "KD" in r]
    cross = [(r, s) for r in cross_rows for s in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:  # distilled rows wait for the teachers they load
        list(pool.map(lambda job: train(args, *job), first))
        list(pool.map(lambda job: train(args, *job), distilled))
        list(pool.map(lambda job: cross_codec(args, *job), cross))
    table = []
    for row in rows:
        column = "teacher" if row == "teacher" else "student"
        runs = [result(folder(args, row, s), column) for s in seeds]
        table.append((row, ROWS[row][1], metrics.summarize(runs)))
        if row in cross_rows:
            runs = [result(folder(args, f"{row} on VVC", s), column) for s in seeds]
            table.append((f"{row} on VVC", "trained on the 5 toy codecs, tested on VVC encodes of "
                                           "unseen contents", metrics.summarize(runs)))
    # The same split scored by the mean training score of each encoding-settings cell, which never
    # sees a pixel: on synthetic-distortion sets much of the ranking is free (docs/reference.md,
    # section 5, the settings baseline).
    items = datasets.load_csv(os.path.join(args.data_root, "toy.csv"))
    baseline = metrics.baseline_metrics(*datasets.official_split(items, "toy"))
    if baseline is not None:
        table.append((f"settings baseline ({', '.join(baseline['keys'])})",
                      "mean training score of each cell of encoding settings; sees no pixel",
                      metrics.summarize([baseline])))

    lines = ["| row | SRCC median [min, max] | PLCC median [min, max] | what it shows |",
             "|---|---|---|---|"]
    lines += [f"| {row} | {cell(s, 'srcc')} | {cell(s, 'plcc')} | {what} |"
              for row, what, s in table]
    lines.append(f"\n{len(seeds)} seeds ({args.seeds}); train.py "
                 f"{' '.join(common(args) + args.extra)}; "
                 f"{(time.time() - t0) / 60:.0f} min for the runs not already done")
    print("\n".join(lines))
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

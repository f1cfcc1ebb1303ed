"""The paper's comparisons and the ablations it left open, rerun on the toy set with a teacher
that knows more than the students' data.

An experiment harness beside the method, not part of it. Run it from the repository root, as a
script or as a module; it puts the root on sys.path itself and runs the root's train.py by path.

    python tools/compare.py                    # every row, 3 seeds (time: EXPERIMENTS.md)
    python tools/compare.py --rows small,small+KD --seeds 0
    python -m tools.compare --help             # the same tool, as a module

The rows are the comparisons of the paper (Guan et al. 2025, arXiv 2502.19026: students with and
without distillation, homologous ViT students against the heterogeneous FAST-VQA, which sees its
own fragments of the same frames) and ablations of its loss. Each row is one train.py command in
the quick profile (the quick start's own recipe), run once per seed (--seed; the toy set's fixed
content split, so the spread is that of training). A distilled row's teacher is the quick start's:
pre-trained alone on the corpus by the teacher stage of its seed (train.py builds it once and every
distilled row of that seed reuses it), then frozen but for its last block and head. The teacher
rows are read from the small+KD runs: the stage's own evaluation ("pre-trained") and the teacher
after distillation. The cross-codec rows evaluate the same last.pt on the VVC encodes of the test
contents (toy.make_held_out, built once when such a row is asked for: a codec no model saw).

A row's numbers are its final evaluation (out/predictions.csv after the last epoch), with the best
epoch's SRCC beside them (chosen on the test set, so read it as a ceiling). Finished runs are kept
under --out and reused; an interrupted one is resumed. The table (median [min, max] over seeds of
SRCC, within-source SRCC and PLCC) goes to stdout and to OUT/results.md, with the settings
baseline beside it (docs/reference.md, section 5). Relative paths (--out, --data-root) are taken
from the current folder, as train.py takes them.
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
import hashlib
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

import datasets
import metrics
import runtime
import toy

TRAIN_PY = os.path.join(ROOT, "train.py")

ALONE = ["--teacher", "none"]  # the same student without distillation
RUNS = {  # name -> (train.py arguments, what it shows)
    "small": (["--student", "small", *ALONE], "ViT-S student, no distillation"),
    "small+KD": (["--student", "small"], "ViT-S distilled (the paper's loss)"),
    "base": (["--student", "base", *ALONE], "ViT-B student, no distillation"),
    "base+KD": (["--student", "base"], "ViT-B distilled"),
    "fastvqa": (["--student", "fastvqa", *ALONE], "FAST-VQA-B student, no distillation"),
    "fastvqa+KD": (["--student", "fastvqa"], "FAST-VQA-B distilled (heterogeneous)"),
    "small+KD -align": (["--student", "small", "--w-align", "0"], "ablation: no alignment term"),
    "small+KD -teacher": (["--student", "small", "--w-teacher", "0"],
                          "ablation: no teacher L2 term"),
    "small+KD align->T": (["--student", "small", "--align-to-teacher"],
                          "ablation: alignment gradient reaches the teacher (authors' code)"),
}
TEACHER_ROWS = {  # name -> (what it shows); read from the small+KD runs
    "teacher pre-trained": "the teacher stage: trained alone on the corpus, no toy label seen",
    "teacher": "the teacher after distillation (last block and head trained on the 39 contents)",
}
CROSS = ("teacher", "small", "small+KD", "fastvqa", "fastvqa+KD")  # also on the held-out VVC

# The label budget: the labels of N of the 39 training contents (drawn by --split-seed 0, the same
# N for every seed), every row the same 194 optimizer steps as the quick start (2 epochs of 97). At
# N = 39 the rows are small and small+KD -teacher (nothing is left unlabeled). With a handful of
# labelled contents the teacher stays frozen whole (--w-teacher 0): its last block and head, trained
# on N contents, lose the ranking across contents the stage gave them, and its scores are the
# targets of every unlabeled video (measured at N = 4: 0.392 -> 0.24..0.34 SRCC on the held-out
# contents).
BUDGETS = (2, 4, 8)
STEPS = ["--steps-per-epoch", "97"]
FROZEN = ["--w-teacher", "0"]
for n in BUDGETS:
    budget = ["--student", "small", "--labelled-sources", str(n), *STEPS]
    RUNS.update({
        f"N={n} alone": ([*budget, *ALONE, "--w-unlabeled", "0"],
                         f"ViT-S alone on the labels of {n} contents"),
        f"N={n} KD": ([*budget, *FROZEN, "--w-unlabeled", "0"],
                      f"ViT-S distilled on the {n} labelled contents only (teacher frozen)"),
        f"N={n} KD+unlabeled": ([*budget, *FROZEN],
                                f"ViT-S distilled on the {n} labelled contents and the "
                                f"other {39 - n} unlabeled (online, teacher frozen)"),
        f"N={n} pseudo": ([*STEPS, "--student", "small", *ALONE],  # + a label list: pseudo_labels
                          f"ViT-S alone on the {n} contents' labels and the teacher's scores of "
                          f"the other {39 - n} (offline, the same frozen teacher)"),
        f"N={n} pseudo+KD": ([*STEPS, "--student", "small", *FROZEN],
                             f"ViT-S distilled on the {n} contents' labels and the teacher's "
                             f"scores of the other {39 - n} (offline targets, teacher frozen)"),
    })


def common(args):
    """The train.py arguments of every run."""
    return ["--data", "toy", "--data-root", args.data_root, "--split", "official"]


def folder(args, row, seed):
    return os.path.join(args.out, f"{row.replace(' ', '_').replace('>', '')}-s{seed}")


def done(out):
    return os.path.exists(os.path.join(out, "DONE"))


def run(args, row, seed, out, *more):
    """train.py with the row's arguments into `out`, logged to out/log.txt; then out/DONE if it
    ended well."""
    alone = ALONE if given(RUNS[row][0], "--teacher") == "none" else []  # whatever --extra says
    cmd = [sys.executable, TRAIN_PY, *common(args), *RUNS[row][0], "--seed", str(seed),
           "--out", out, *args.extra, *alone, *more]  # later options win: a pseudo row's --data csv
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.jobs)))
    line = f"[{time.strftime('%H:%M:%S')}] {os.path.basename(out)}: {' '.join(cmd[1:])}\n"
    sys.stdout.write(line)  # one write: lines from parallel jobs never interleave
    sys.stdout.flush()
    with open(os.path.join(out, "log.txt"), "a") as log:
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode:
            sys.exit(f"{os.path.basename(out)} failed: see {out}/log.txt")
    open(os.path.join(out, "DONE"), "w").close()


LOCKS, LOCKS_LOCK = {}, threading.Lock()


def lock(path):
    """The lock of a folder or file: one job at a time trains into it (or writes it). Made under a
    lock of its own, so two jobs asking for a new one at once get the same."""
    with LOCKS_LOCK:
        return LOCKS.setdefault(path, threading.Lock())


def train(args, row, seed):
    """Run, resume (an interrupted run) or reuse (a finished one) a row's training for one seed."""
    out = folder(args, row, seed)
    with lock(out):
        if done(out):
            return
        os.makedirs(out, exist_ok=True)
        resume = ["--resume"] if os.path.exists(os.path.join(out, "last.pt")) else []
        labels = pseudo_labels(args, row, seed, out) if is_pseudo(row) else []
        run(args, row, seed, out, *resume, *labels)


def is_pseudo(row):
    """A label-budget row trained on pseudo-labels (N=n pseudo, N=n pseudo+KD)."""
    return row.startswith("N=") and row.split()[1].startswith("pseudo")


def pseudo_labels(args, row, seed, out):
    """The offline path (E-VQA's): the teacher of the budget's distilled rows scores the
    n-budget's unlabeled contents once (predict.py --as-labels, into OUT/pseudo-labels/, shared by
    the seeds and rows with that teacher file); the list of the n contents' labels, those scores
    and the test contents is train.py's --data csv. That teacher is frozen whole there (FROZEN), so
    it is the file of --extra --teacher-ckpt when one is given, else the seed's stage, read from
    N=n KD's run (which builds it); the pseudo+KD row is given it as its --teacher-ckpt (--data csv
    builds no stage). The contents kept are --labelled-sources', drawn by --extra's --split-seed."""
    n, distils = int(row.split()[0][2:]), given(RUNS[row][0], "--teacher") != "none"
    teacher = given(args.extra, "--teacher-ckpt")
    if teacher is None:
        train(args, f"N={n} KD", seed)
        teacher = os.path.join(folder(args, f"N={n} KD", seed), "last.pt")
    items = datasets.load_csv(os.path.join(args.data_root, "toy.csv"))
    train_items, test_items = datasets.official_split(items, "toy")
    kept, hidden = datasets.hide_labels(train_items, n, seed=int(  # as train.py's
        given(args.extra, "--split-seed") or 0))  # --labelled-sources hides them
    unrated = os.path.join(out, "unrated.csv")
    write_list(unrated, hidden)
    # one predict.py pass per teacher file and budget, shared by the seeds and rows that use it
    size, mtime = runtime.file_stamp(teacher)
    with open(unrated, "rb") as f:
        key = f"{os.path.realpath(teacher)} {size} {mtime} ".encode() + f.read()
    scored = os.path.join(args.out, "pseudo-labels",
                          f"N={n}-{hashlib.sha1(key).hexdigest()[:12]}.csv")
    with lock(scored):
        if not os.path.exists(scored):
            os.makedirs(os.path.dirname(scored), exist_ok=True)
            tmp = f"{scored}.tmp{os.getpid()}"  # another compare.py may score it too
            with open(tmp, "w") as f, open(os.path.join(out, "log.txt"), "a") as log:
                failed = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"),
                                         "--ckpt", teacher, "--which", "teacher", "--csv", unrated,
                                         "--as-labels", "--dtype", "fp32"], stdout=f,
                                        stderr=log).returncode
            if failed:  # nothing half-written stays: the next try scores again
                os.remove(tmp)
                sys.exit(f"{os.path.basename(out)}: scoring its unlabeled videos with {teacher} "
                         f"failed: see {out}/log.txt")
            os.replace(tmp, scored)
    scores = {it["path"]: it["mos"] for it in datasets.load_csv(scored)}
    labels = os.path.join(out, "labels.csv")
    write_list(labels, kept + [dict(it, mos=scores[it["path"]]) for it in hidden] + test_items)
    # --data csv has no teacher stage: a row that distils names the teacher that scored the list
    return ["--profile", "quick", "--data", "csv", "--labels", labels, "--label-range", "0", "100",
            *(["--teacher-ckpt", teacher] if distils else [])]


def given(argv, option):
    """The value of the last `option` in an argument list (`--opt value` or `--opt=value`), or
    None: what train.py's parser would take."""
    value = None
    for i, a in enumerate(argv):
        if a == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(option + "="):
            value = a.split("=", 1)[1]
    return value


def write_list(path, items):
    """A CSV list of items (absolute paths) that datasets.load_csv reads back."""
    keys = ["path", "mos", "source", "split", "codec", "level"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(items)


def cross_codec(args, row, seed):
    """Evaluate a finished run's last.pt on toy_vvc.csv, in a folder of its own."""
    out = folder(args, f"{row} on VVC", seed)
    if not done(out):
        os.makedirs(out, exist_ok=True)
        shutil.copy(os.path.join(folder(args, row, seed), "last.pt"), os.path.join(out, "last.pt"))
        vvc = toy.make_held_out(args.data_root, log=None)  # built before the runs: found
        run(args, row, seed, out, "--resume", "--eval-only", "--test-labels", str(vvc))


def where(args, row, seed):
    """(the folder whose predictions.csv holds the row's scores, its column)."""
    vvc = row.endswith(" on VVC")
    base = row[: -len(" on VVC")] if vvc else row
    if base == "teacher pre-trained":  # the stage's folder, from the run that loaded it
        run = folder(args, "small+KD", seed)
        ckpt = torch.load(os.path.join(run, "last.pt"), map_location="cpu", weights_only=True)
        return os.path.dirname(ckpt["config"]["teacher_ckpt"]), "teacher"
    source = "small+KD" if base == "teacher" else base
    return folder(args, f"{source} on VVC" if vvc else source, seed), \
        "teacher" if base == "teacher" else "student"


def result(args, row, seed, sources):
    """evaluate() of the row's final scores, recomputed from predictions.csv, with "within" (the
    within-source SRCC; sources: {path: source}) and "best" (the best epoch's SRCC, last.pt's)."""
    out, column = where(args, row, seed)
    with open(os.path.join(out, "predictions.csv")) as f:
        got = [(float(r["mos"]), float(r[column]), sources[r["path"]])
               for r in csv.DictReader(f)]
    mos, pred, src = zip(*got)
    r = metrics.evaluate(pred, mos)
    r["within"] = metrics.within_source_srcc(pred, mos, src)["srcc"]
    history = torch.load(os.path.join(out, "last.pt"), map_location="cpu",
                         weights_only=True)["history"] \
        if not row.endswith(" on VVC") else []
    r["best"] = max((h[column]["srcc"] for h in history), default=float("nan"))
    return r


def cell(s, key):
    if s[key]["median"] != s[key]["median"]:  # NaN: no epochs (a cross-codec evaluation)
        return "-"
    return f"{s[key]['median']:.3f} [{s[key]['min']:.3f}, {s[key]['max']:.3f}]"


def summary(results):
    """metrics.summarize of the results, the within-source and best-epoch SRCC summarised too."""
    s = metrics.summarize(results)
    for key in ("within", "best"):
        s[key] = metrics.summarize([dict(r, srcc=r[key]) for r in results])["srcc"]
    return s


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rows", default=None, help="comma-separated row names (not given: all)")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--data-root", default=os.path.join("data", "toy"))
    p.add_argument("--jobs", type=int, default=2,
                   help="train.py runs at once (threads split between them)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="passed to every train.py run (last; the rows without a teacher keep "
                   "--teacher none)")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    known = [*TEACHER_ROWS, *RUNS]
    rows = args.rows.split(",") if args.rows else known
    if unknown := set(rows) - set(known):
        sys.exit(f"unknown rows {sorted(unknown)}; known: {known}")
    runs = [r for r in RUNS if r in rows or (r == "small+KD" and set(rows) & set(TEACHER_ROWS))]

    t0 = time.time()
    cross_rows = [r for r in CROSS if r in rows]
    # One queue: small+KD first (each builds its seed's teacher stage), then the rows without a
    # teacher, then the other distilled rows, which by then find their seed's stage built; the slow
    # ViT-B rows first within each group.
    group = lambda r: 0 if r == "small+KD" else 1 if r in ("small", "base", "fastvqa") else \
        3 if is_pseudo(r) else 2  # a pseudo row may need its KD row's stage
    jobs = sorted(((r, s) for r in runs for s in seeds),
                  key=lambda job: (group(job[0]), "base" not in job[0]))
    cross = [("small+KD" if r == "teacher" else r, s) for r in cross_rows for s in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: train(args, *job), jobs))
        # the toy set's test contents in VVC, built once (the toy set is built by now)
        held_out = [toy.make_held_out(args.data_root)] if cross else []
        list(pool.map(lambda job: cross_codec(args, *job), sorted(set(cross))))
    sources = {}
    for name in [os.path.join(args.data_root, "toy.csv"), *held_out]:
        sources.update({it["path"]: it["source"] for it in datasets.load_csv(name)})
    table = []
    for row in rows:
        what = TEACHER_ROWS.get(row) or RUNS[row][1]
        table.append((row, what, summary([result(args, row, s, sources) for s in seeds])))
        if row in cross_rows:
            table.append((f"{row} on VVC", "the same models, tested on VVC encodes of the test "
                          "contents", summary([result(args, f"{row} on VVC", s, sources)
                                               for s in seeds])))
    # The same split scored by the mean training score of each encoding-settings cell, which never
    # sees a pixel: on synthetic-distortion sets much of the ranking is free (docs/reference.md,
    # section 5, the settings baseline).
    items = datasets.load_csv(os.path.join(args.data_root, "toy.csv"))
    train_items, test_items = datasets.official_split(items, "toy")
    baseline = metrics.baseline_metrics(train_items, test_items)
    if baseline is not None:
        preds, _ = metrics.settings_baseline(train_items, test_items)
        baseline["within"] = metrics.within_source_srcc(
            preds, [it["mos"] for it in test_items], [it["source"] for it in test_items])["srcc"]
        baseline["best"] = float("nan")  # nothing trained: no epochs
        table.append((f"settings baseline ({', '.join(baseline['keys'])})",
                      "mean training score of each cell of encoding settings; sees no pixel",
                      summary([baseline])))

    lines = ["| row | SRCC | within-source SRCC | PLCC | SRCC, best epoch | what it shows |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {row} | {cell(s, 'srcc')} | {cell(s, 'within')} | {cell(s, 'plcc')} | "
              f"{cell(s, 'best')} | {what} |" for row, what, s in table]
    lines.append(f"\nmedian [min, max] over {len(seeds)} seeds ({args.seeds}) of the final "
                 f"evaluation; train.py {' '.join(common(args) + args.extra)}; "
                 f"{(time.time() - t0) / 60:.0f} min for the runs not already done")
    print("\n".join(lines))
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if budget_plot(os.path.join(args.out, "label_budget.png"), {row: s for row, _, s in table}):
        print(f"SRCC against the label budget: {args.out}/label_budget.png")


def budget_plot(path, summaries):
    """SRCC (median, min-max bars) against the labelled contents N of the label-budget rows found
    in `summaries` ({row: summary}); at N = 39, where no unlabeled video is left, the rows small
    (alone, pseudo) and small+KD -teacher (the distilled rows: the teacher frozen whole). Returns
    the kinds of row drawn: none, and no file, without matplotlib (optional) or without two
    budgets of a kind."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return []
    frozen = "small+KD -teacher"
    full = {"alone": "small", "KD": frozen, "KD+unlabeled": frozen, "pseudo": "small",
            "pseudo+KD": frozen}
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    drawn, ticks = [], set()
    for k, (kind, at_39) in enumerate(full.items()):
        points = [(n, summaries[f"N={n} {kind}"]["srcc"]) for n in BUDGETS
                  if f"N={n} {kind}" in summaries]
        points += [(39, summaries[at_39]["srcc"])] if at_39 in summaries else []
        if len(points) < 2:
            continue
        n, s = zip(*points)
        med = [p["median"] for p in s]
        ax.errorbar([x * (1 + 0.03 * (k - 2)) for x in n], med,  # nudged apart: bars visible
                    yerr=[[m - p["min"] for m, p in zip(med, s)],
                          [p["max"] - m for m, p in zip(med, s)]],
                    marker="o", capsize=3, label=kind)
        drawn.append(kind)
        ticks.update(n)
    if not drawn:
        return []
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [str(n) for n in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel("labelled training contents N (of 39)")
    ax.set_ylabel("SRCC on the 12 held-out contents")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=150)
    return drawn


if __name__ == "__main__":
    main()

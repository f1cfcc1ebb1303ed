"""Tests of the tools in tools/: both start as scripts and as modules from the repository root,
and compare.py runs a distilled row end to end at tiny sizes (the teacher first, each run's own
final evaluation in the table, finished runs reused). Every tool runs as a subprocess with a
timeout, in a process group of its own that is killed afterwards, whatever happened.

    python -m pytest -q tests/test_tools.py
"""
import contextlib
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, timeout):
    """(exit code, stdout, stderr) of `python ARGS` in the repository root, unbuffered."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"python {' '.join(args)}: killed at the {timeout} s timeout\n"
                             f"{out[-3000:]}\n{err[-3000:]}") from None
    finally:  # the tool's children (train.py, DataLoader workers) too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


@pytest.mark.parametrize("tool", ["bench", "compare", "gpu_check"])
def test_tools_start_as_scripts_and_as_modules(tool):
    for args in ([f"tools/{tool}.py", "--help"], ["-m", f"tools.{tool}", "--help"]):
        code, out, err = run(args, timeout=60)
        assert code == 0 and out.startswith("usage: ") and "--help" in out, out[-3000:] + err
    assert not os.path.exists(os.path.join(ROOT, f"{tool}.py"))  # moved, not copied


def test_compare_runs_the_teacher_stage_first_and_reuses_finished_runs(tmp_path):
    out, toy = tmp_path / "compare", str(tmp_path / "data" / "toy")
    tiny = ["--toy-variant", "tiny", "--teacher", "tiny", "--frames", "2", "--size", "28",
            "--stride", "1", "--test-clips", "1", "--batch-size", "2", "--workers", "0",
            "--max-steps", "1", "--pretrain", "3", "--dtype", "fp32",  # a stage on 3 contents
            "--fastvqa-frames", "4", "--fastvqa-size", "32", "--fastvqa-stride", "1"]
    args = ["tools/compare.py", "--rows", "teacher pre-trained,teacher,fastvqa+KD", "--seeds", "0",
            "--jobs", "1", "--out", str(out), "--data-root", toy, "--extra", *tiny]
    code, first, err = run(args, timeout=300)
    assert code == 0, first[-3000:] + err[-3000:]
    launched = [s.split("]")[1].split(":")[0].strip() for s in first.splitlines()
                if s.startswith("[")]
    # small+KD first: its run builds the seed's teacher stage, which fastvqa+KD then reuses
    assert launched == ["small+KD-s0", "fastvqa+KD-s0", "fastvqa+KD_on_VVC-s0",
                        "small+KD_on_VVC-s0"]
    logs = {r: (out / f"{r}-s0" / "log.txt").read_text() for r in ("small+KD", "fastvqa+KD")}
    assert ("teacher stage: python" in logs["small+KD"]
            and "teacher stage: python" not in logs["fastvqa+KD"])
    stage = [s for s in logs["fastvqa+KD"].splitlines()
             if s.startswith("teacher: ") and "last.pt" in s]
    assert stage and str(tmp_path / "data") in stage[0]  # the stage beside the toy set, reused
    table = (out / "results.md").read_text().splitlines()
    assert [row.split("|")[1].strip() for row in table[2:7]] == [
        "teacher pre-trained", "teacher", "teacher on VVC", "fastvqa+KD", "fastvqa+KD on VVC"]
    last_eval = [s for s in logs["fastvqa+KD"].splitlines() if s.strip().startswith("student ")][-1]
    srcc = float(last_eval.split("SRCC")[1].split()[0])
    within = float(last_eval.split("within-source SRCC")[1].split()[0])
    cells = [c.strip() for c in table[5].split("|")]
    # its own final eval
    assert cells[2].startswith(f"{srcc:.3f}") and cells[3].startswith(f"{within:.3f}")
    assert table[-3].split("|")[1].strip().startswith("settings baseline")
    code, second, err = run(args, timeout=120)
    assert code == 0, second[-3000:] + err[-3000:]
    assert not [s for s in second.splitlines() if s.startswith("[")]  # nothing ran again
    assert [s for s in second.splitlines() if s.startswith("|")] == \
        [s for s in first.splitlines() if s.startswith("|")]


def test_compare_pseudo_row_trains_on_its_kd_teachers_scores(tmp_path):
    """The offline label-budget rows: N=2 KD runs first; its teacher's scores of the contents left
    unlabeled (predict.py --as-labels) become their labels in the list the row trains on, beside
    the 2 kept contents' own labels and the untouched test contents. N=2 pseudo trains alone on
    it (whatever --extra says of --teacher), N=2 pseudo+KD distilled from that teacher, frozen."""
    import datasets

    out, toy = tmp_path / "compare", str(tmp_path / "data" / "toy")
    tiny = ["--toy-variant", "tiny", "--teacher", "tiny", "--frames", "2", "--size", "28",
            "--stride", "1", "--test-clips", "1", "--batch-size", "2", "--workers", "0",
            "--max-steps", "1", "--pretrain", "0", "--dtype", "fp32",
            "--w-teacher", "1"]  # no stage (--pretrain 0): the KD row's teacher head learns
    code, stdout, err = run(["tools/compare.py", "--rows", "N=2 pseudo", "--seeds", "0", "--jobs",
                             "1", "--out", str(out), "--data-root", toy, "--extra", *tiny],
                            timeout=300)
    assert code == 0, stdout[-3000:] + err[-3000:]
    launched = [s.split("]")[1].split(":")[0].strip() for s in stdout.splitlines()
                if s.startswith("[")]
    assert launched == ["N=2_KD-s0", "N=2_pseudo-s0"]
    items = datasets.load_csv(os.path.join(toy, "toy.csv"))
    train_items, test_items = datasets.official_split(items, "toy")
    kept, hidden = datasets.hide_labels(train_items, 2, seed=0)
    listed = {it["path"]: it for it in datasets.load_csv(out / "N=2_pseudo-s0" / "labels.csv")}
    assert set(listed) == {it["path"] for it in items}
    for it in kept + test_items:
        assert listed[it["path"]]["mos"] == it["mos"] and listed[it["path"]]["split"] == it["split"]
    pseudo = [listed[it["path"]]["mos"] for it in hidden]
    assert pseudo != [it["mos"] for it in hidden] and all(0 <= s <= 100 for s in pseudo)
    assert len(set(pseudo)) > 1  # scored video by video
    table = (out / "results.md").read_text().splitlines()
    assert table[2].split("|")[1].strip() == "N=2 pseudo"
    # A teacher file given (--extra --teacher-ckpt): that teacher scores the hidden contents and no
    # KD run is needed first; here it is the KD run's, so the pseudo-labels are the same numbers.
    # The pseudo+KD row trains on the same list, distilled from that teacher frozen whole.
    again, teacher = tmp_path / "again", out / "N=2_KD-s0" / "last.pt"
    frozen = [*tiny[:-2], "--w-teacher", "0"]  # the rows' own --w-teacher, not the KD row's 1
    code, stdout, err = run(["tools/compare.py", "--rows", "N=2 pseudo,N=2 pseudo+KD", "--seeds",
                             "0", "--jobs", "2", "--out", str(again), "--data-root", toy,
                             "--extra", *frozen, "--teacher-ckpt", str(teacher)], timeout=300)
    assert code == 0, stdout[-3000:] + err[-3000:]
    assert sorted(s.split("]")[1].split(":")[0].strip() for s in stdout.splitlines()
                  if s.startswith("[")) == ["N=2_pseudo+KD-s0", "N=2_pseudo-s0"]
    assert len(os.listdir(again / "pseudo-labels")) == 1  # one predict.py pass for both rows
    for row in ("N=2_pseudo-s0", "N=2_pseudo+KD-s0"):
        relisted = datasets.load_csv(again / row / "labels.csv")
        assert [(it["path"], it["mos"]) for it in relisted] == \
            [(p, it["mos"]) for p, it in listed.items()]
    import torch

    alone, distilled = (torch.load(again / row / "last.pt", map_location="cpu", weights_only=False)
                        for row in ("N=2_pseudo-s0", "N=2_pseudo+KD-s0"))
    assert "teacher" not in alone and distilled["student"].keys() == alone["student"].keys()
    # distilled from the file's teacher, frozen whole: none of its weights trained, none saved
    assert distilled["teacher_partial"] and distilled["teacher"] == {}
    assert distilled["config"]["teacher_ckpt"] == str(teacher)
    # No teacher file given: the distilled row distils from the teacher that scored its list, the
    # KD run's (--data csv builds no teacher stage, and a random teacher would be no teacher)
    code, stdout, err = run(["tools/compare.py", "--rows", "N=2 pseudo+KD", "--seeds", "0",
                             "--jobs", "1", "--out", str(out), "--data-root", toy, "--extra",
                             *frozen], timeout=300)
    assert code == 0, stdout[-3000:] + err[-3000:]
    ckpt = torch.load(out / "N=2_pseudo+KD-s0" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["config"]["teacher_ckpt"] == str(teacher)
    assert [(it["path"], it["mos"]) for it in datasets.load_csv(
        out / "N=2_pseudo+KD-s0" / "labels.csv")] == [(p, it["mos"]) for p, it in listed.items()]
    # A teacher file predict.py cannot read: the run stops naming it and its log, and leaves no
    # half-written pseudo-label list behind (a later try scores again)
    junk, broken = tmp_path / "junk.pt", tmp_path / "broken"
    junk.write_bytes(b"not a checkpoint\n" * 64)
    code, stdout, err = run(["tools/compare.py", "--rows", "N=2 pseudo", "--seeds", "0", "--jobs",
                             "1", "--out", str(broken), "--data-root", toy, "--extra", *frozen,
                             "--teacher-ckpt", str(junk)], timeout=120)
    assert code != 0 and "junk.pt" in err and "log.txt" in err, stdout[-3000:] + err[-3000:]
    assert os.listdir(broken / "pseudo-labels") == []
    assert not (broken / "N=2_pseudo-s0" / "DONE").exists()
    assert "junk.pt" in (broken / "N=2_pseudo-s0" / "log.txt").read_text()  # predict.py's error


def test_the_budget_plot_draws_each_kind_with_two_budgets(tmp_path):
    """Each kind of label-budget row is one line once it has two points; at N = 39 the alone and
    pseudo rows meet `small`, the distilled ones `small+KD -teacher` (frozen whole, as they are)."""
    pytest.importorskip("matplotlib")
    from tools import compare

    at = lambda m: {"srcc": {"median": m, "min": m - 0.01, "max": m + 0.01}}
    summaries = {"N=2 alone": at(0.1), "N=4 alone": at(0.3), "N=4 pseudo+KD": at(0.35),
                 "N=8 KD": at(0.3), "small+KD -teacher": at(0.44)}
    path = tmp_path / "budget.png"
    # KD: N = 8 and 39; KD+unlabeled: 39 only; pseudo: nothing (its 39 is `small`, absent here)
    assert compare.budget_plot(path, summaries) == ["alone", "KD", "pseudo+KD"]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert compare.budget_plot(tmp_path / "none.png", {"N=4 pseudo": at(0.3)}) == []
    assert not (tmp_path / "none.png").exists()

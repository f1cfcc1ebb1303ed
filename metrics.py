"""Video quality metrics: SRCC, KRCC, PLCC and RMSE between predicted scores and MOS.

Follows the field's conventions (VQEG; as reported by InternVQA, FAST-VQA, DOVER; collected in
docs/reference.md, section 6):
- SRCC (Spearman) and KRCC (Kendall tau-b, which handles ties) on the raw predictions;
- PLCC and RMSE after a 4-parameter logistic mapping fitted from predictions to MOS,
      f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|)),
  initial guess b = [max(MOS), min(MOS), mean(pred), std(pred) / 4]; RMSE is on the MOS scale;
- the raw (unmapped) PLCC is reported too, since FAST-VQA and DOVER report only that;
- over several random splits or seeds, report the median (`summarize`).
If the logistic fit does not converge or is degenerate, a linear least-squares mapping is used,
then the identity, and the `fit` entry says which and why.

Needs only numpy and scipy; torch tensors (any device) are accepted as inputs.

    from metrics import evaluate, summarize, format_metrics
    r = evaluate(pred, mos)   # dict: srcc, krcc, plcc, rmse, plcc_raw, n, fit
    print(format_metrics(r))  # PLCC 0.912  SRCC 0.901  KRCC 0.745  RMSE 7.12
    s = summarize([evaluate(p, m) for p, m in splits])  # s["plcc"]["median"], ...

Two yardsticks for synthetic-distortion sets (a few contents, each encoded many ways), where much
of the ranking comes from the encoding settings alone: within_source_srcc (how well the encodes of
one content are ranked) and baseline_metrics (a predictor that never sees a pixel: the mean
training MOS of each codec, resolution and level). scatter_plot draws the figure of every VQA
paper if matplotlib is installed (optional).

    b = baseline_metrics(train_items, test_items)   # evaluate() dict plus "keys", or None
    within_source_srcc(pred, mos, [it["source"] for it in test_items])  # srcc, min, max, n_sources

The NTIRE KVQ challenges rank entries by kvq_score: raw PLCC and SRCC plus the accuracy on pairs
of videos whose order the organisers annotated.

    kvq_score(pred, truth, pairs)   # {filename: score} x 2, the pairs: score, srcc, plcc, acc_...
"""
import os
import warnings

import numpy as np
from scipy import optimize, special, stats

METRICS = ("plcc", "srcc", "krcc", "rmse", "plcc_raw")


def _as_1d(x, name):
    if hasattr(x, "detach"):  # a torch tensor, on any device, maybe bf16 or requiring grad
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x, dtype=np.float64)
    while a.ndim > 1 and a.shape[-1] == 1:  # (n, 1) is a common model output: accept it
        a = a[..., 0]
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of scores, got shape {np.shape(x)}")
    bad = np.flatnonzero(~np.isfinite(a))
    if len(bad):
        raise ValueError(f"{name} contains {len(bad)} NaN or inf value(s), first at index {bad[0]}")
    return a


def _check(pred, mos):
    pred, mos = _as_1d(pred, "pred"), _as_1d(mos, "mos")
    if len(pred) != len(mos):
        raise ValueError(f"pred and mos have different lengths: {len(pred)} vs {len(mos)}")
    if len(pred) < 4:
        raise ValueError(f"need at least 4 samples (the logistic has 4 parameters), "
                         f"got {len(pred)}")
    return pred, mos


def logistic(x, b1, b2, b3, b4):
    # expit(z) = 1 / (1 + exp(-z)) without overflow for large |z|
    return b2 + (b1 - b2) * special.expit((x - b3) / np.abs(b4))


def fit_logistic(pred, mos, maxfev=10000):
    """Fit the 4-parameter logistic from pred to mos.

    Returns (params, mapped): params = np.array([b1, b2, b3, b4]) on the original pred and MOS
    scales with b4 > 0, and mapped = logistic(pred, *params), shape (n,), on the MOS scale.
    Raises RuntimeError if curve_fit does not converge or the mapping is degenerate
    (non-finite, or constant where the MOS is not).
    """
    pred, mos = _check(pred, mos)
    # Fit in standardised units so predictions with a spread of 1e-3 or 1e3 fit equally well;
    # the initial guess [max, min, mean, std / 4] becomes [max(y), min(y), 0, 1/4].
    mp, sp = pred.mean(), pred.std()
    mm, sm = mos.mean(), mos.std()
    if sp == 0 or sm == 0:
        raise RuntimeError("pred or mos is constant: nothing to fit")
    x, y = (pred - mp) / sp, (mos - mm) / sm
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # OptimizeWarning: covariance not estimable; we never use the covariance.
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        b, _ = optimize.curve_fit(logistic, x, y, p0=[y.max(), y.min(), 0.0, 0.25], maxfev=maxfev)
    params = np.array([mm + sm * b[0], mm + sm * b[1], mp + sp * b[2], sp * abs(b[3])])
    mapped = logistic(pred, *params)
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(mapped))):
        raise RuntimeError(f"non-finite fit, params {params}")
    if np.ptp(mapped) <= 1e-6 * np.ptp(mos):  # a flat curve: PLCC would be noise or nan
        raise RuntimeError(f"constant mapped output, params {params}")
    return params, mapped


def _map_to_mos(pred, mos):
    """Logistic, else linear least squares, else identity; returns (mapped, description)."""
    try:
        return fit_logistic(pred, mos)[1], "logistic"
    except RuntimeError as e:  # curve_fit raises RuntimeError when it does not converge
        why = f"logistic fit failed: {e}"
    lin = stats.linregress(pred, mos)
    if lin.slope != 0:
        return lin.intercept + lin.slope * pred, f"linear ({why})"
    return pred, f"identity ({why}; linear fit has zero slope)"


def evaluate(pred, mos):
    """Compare predicted scores with MOS (1-D lists, numpy arrays or torch tensors, length >= 4).

    Returns dict(srcc, krcc, plcc, rmse, plcc_raw: float, n: int, fit: str). plcc and rmse are
    after the mapping named in `fit` ("logistic" unless a fallback was needed); plcc keeps the
    sign of the predictions' direction, so an anti-correlated model gets a negative plcc.
    Constant pred or mos is not an error: every metric is nan and `fit` says why.
    """
    pred, mos = _check(pred, mos)
    n = len(pred)
    for name, a in (("predictions", pred), ("mos", mos)):
        if np.ptp(a) == 0:
            nan = float("nan")
            return dict(srcc=nan, krcc=nan, plcc=nan, rmse=nan, plcc_raw=nan, n=n,
                        fit=f"none: {name} are constant ({a[0]:g}), correlations are undefined")
    mapped, fit = _map_to_mos(pred, mos)
    # A fitted curve may be decreasing, which would turn an anti-correlated model's PLCC
    # positive; keep the direction of the predictions, as SRCC does.
    direction = np.sign(stats.pearsonr(mapped, pred).statistic) if np.ptp(mapped) > 0 else 1.0
    return dict(
        srcc=float(stats.spearmanr(pred, mos).statistic),
        krcc=float(stats.kendalltau(pred, mos).statistic),  # tau-b
        plcc=float(direction * stats.pearsonr(mapped, mos).statistic),
        rmse=float(np.sqrt(np.mean((mapped - mos) ** 2))),
        plcc_raw=float(stats.pearsonr(pred, mos).statistic),
        n=n,
        fit=fit,
    )


def within_source_srcc(pred, mos, sources):
    """SRCC among the videos of each source content, then the mean over contents: how well the
    encodes of one content are ranked, with the differences between contents taken out (reported
    on synthetic-distortion sets). Contents with fewer than 2 videos, or constant pred or mos, are
    left out.

    Returns dict(srcc, min, max, n_sources): the mean, lowest and highest per-content SRCC and how
    many contents were used; srcc, min and max are nan when none qualifies.
    """
    pred, mos, sources = _as_1d(pred, "pred"), _as_1d(mos, "mos"), list(sources)
    if not len(pred) == len(mos) == len(sources):
        raise ValueError(f"pred, mos and sources have different lengths: "
                         f"{len(pred)}, {len(mos)}, {len(sources)}")
    groups = {}
    for i, s in enumerate(sources):
        groups.setdefault(s, []).append(i)
    per_source = [stats.spearmanr(pred[i], mos[i]).statistic for i in map(np.array, groups.values())
                  if len(i) >= 2 and np.ptp(pred[i]) > 0 and np.ptp(mos[i]) > 0]
    if not per_source:
        return dict(srcc=np.nan, min=np.nan, max=np.nan, n_sources=0)
    return dict(srcc=float(np.mean(per_source)), min=float(np.min(per_source)),
                max=float(np.max(per_source)), n_sources=len(per_source))


def kvq_score(pred, truth, pairs):
    """The NTIRE KVQ challenges' score (their metric_score.py; docs/reference.md, section 9):
    0.45 SRCC + 0.45 PLCC + 0.05 acc_nonsource + 0.05 acc_source.

    pred and truth: {filename: score}; SRCC and PLCC (raw: no logistic) over truth's videos.
    pairs: {"source": [(name1, name2, better)], "nonsource": [...]}, better 1 or 2; a pair counts as
    predicted right when the prediction says the same, and it says 1 when score1 >= score2.
    Returns dict(score, srcc, plcc, acc_source, acc_nonsource). A video of truth or of a pair
    without a prediction is an error that names it.
    """
    named = [n for kind in ("source", "nonsource") for p in pairs[kind] for n in p[:2]]
    missing = [n for n in dict.fromkeys([*truth, *named]) if n not in pred]
    if missing:
        raise ValueError(f"{len(missing)} videos have no prediction, e.g. {missing[:3]}; "
                         f"predictions are for e.g. {list(pred)[:3]}")
    bad = [n for n in dict.fromkeys([*truth, *named]) if not np.isfinite(pred[n])]
    if bad or len(truth) < 2:
        raise ValueError(f"{len(bad)} predictions are not finite, e.g. {bad[:3]}" if bad else
                         f"SRCC and PLCC need 2 videos or more, got {len(truth)}")
    names = list(truth)
    p, t = _as_1d([pred[n] for n in names], "pred"), _as_1d([truth[n] for n in names], "truth")
    acc = {}
    for kind in ("source", "nonsource"):
        if not pairs[kind]:
            raise ValueError(f"no {kind} pairs: the accuracy would be 0 / 0")
        right = [(1 if pred[a] >= pred[b] else 2) == int(better) for a, b, better in pairs[kind]]
        acc[kind] = float(np.mean(right))
    srcc, plcc = stats.spearmanr(p, t).statistic, stats.pearsonr(p, t).statistic
    return dict(score=float(0.45 * srcc + 0.45 * plcc + 0.05 * acc["nonsource"]
                            + 0.05 * acc["source"]),
                srcc=float(srcc), plcc=float(plcc), acc_source=acc["source"],
                acc_nonsource=acc["nonsource"])


# The encoding settings of an item: the columns datasets.waterloo4k_index and the toy set write
# beside "mos" (any item dict with them works). An unseen cell drops them from the left.
SETTINGS_KEYS = ("codec", "resolution", "level")


def settings_baseline(train_items, test_items, keys=SETTINGS_KEYS):
    """Predict each test video by the mean training MOS of its cell of encoding settings: a
    predictor that never sees a pixel (on Waterloo IVC 4K's official split it reaches SRCC 0.883 /
    PLCC 0.903; docs/reference.md, section 5).

    Items are dicts with "mos" and maybe the `keys` (strings); only the keys that every train and
    test item has, non-empty, are used. A test cell unseen in training falls back to a coarser one,
    dropping keys from the left: (codec, resolution, level) -> (resolution, level) -> (level,) ->
    the mean of every training MOS. Returns (predictions, keys used): a list of floats in the order
    of test_items and a tuple of key names; None when no key is available.
    """
    if not train_items:
        raise ValueError("settings_baseline needs training items, got none")
    items = [*train_items, *test_items]
    used = tuple(k for k in keys
                 if all(it.get(k) is not None and str(it[k]).strip() for it in items))
    if not used:
        return None

    def cell(it):
        return tuple(str(it[k]).strip() for k in used)

    scores = {}  # every cell and each coarser cell it falls back to -> the training MOS in it
    for it in train_items:
        c = cell(it)
        for d in range(len(used) + 1):  # d = len(used) gives (), the cell of every training video
            scores.setdefault(c[d:], []).append(float(it["mos"]))
    mean = {c: float(np.mean(v)) for c, v in scores.items()}
    preds = []
    for it in test_items:
        c = cell(it)
        preds.append(next(mean[c[d:]] for d in range(len(used) + 1) if c[d:] in mean))
    return preds, used


def baseline_metrics(train_items, test_items, keys=SETTINGS_KEYS):
    """evaluate() of settings_baseline's predictions against the test MOS, plus "keys" (the keys
    used); None when the items carry none of `keys`. Print it beside a model's evaluation on the
    same split: a model's result on a synthetic-distortion set means little without it."""
    baseline = settings_baseline(train_items, test_items, keys)
    if baseline is None:
        return None
    preds, used = baseline
    return dict(evaluate(preds, [it["mos"] for it in test_items]), keys=used)


def summarize(results):
    """Median and spread of each metric over several evaluate() results (splits or seeds).

    Returns {metric: dict(median, iqr, min, max, n)} for metric in METRICS; iqr is the 75th minus
    the 25th percentile (the spread that goes with a median); nan results are left out and n
    counts the ones kept.
    """
    if len(results) == 0:
        raise ValueError("summarize needs at least one evaluate() result, got none")
    out = {}
    for k in METRICS:
        v = np.array([r[k] for r in results], dtype=np.float64)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            out[k] = dict(median=np.nan, iqr=np.nan, min=np.nan, max=np.nan, n=0)
            continue
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        out[k] = dict(median=float(q50), iqr=float(q75 - q25), min=float(v.min()),
                      max=float(v.max()), n=len(v))
    return out


def format_metrics(d):
    """One line from an evaluate() dict, or from a summarize() dict (median, then the iqr)."""
    parts = []
    for k, fmt in (("plcc", ".3f"), ("srcc", ".3f"), ("krcc", ".3f"), ("rmse", ".3g")):
        v = d[k]
        s = f"{v['median']:{fmt}} (iqr {v['iqr']:{fmt}})" if isinstance(v, dict) else f"{v:{fmt}}"
        parts.append(f"{k.upper()} {s}")
    return "  ".join(parts)


def scatter_plot(path, mos, preds, title=None):
    """The figure of every VQA paper: predicted score (x) against MOS (y), one panel per entry of
    preds ({name: predictions}, e.g. teacher and student), each with its fitted logistic drawn and
    its PLCC and SRCC in the legend. The format follows the extension of `path` (.png, .pdf, ...).

    matplotlib is optional and imported here: returns False, writing nothing, when it is not
    installed (or does not import); True once `path` is written (atomically: a temporary file,
    then os.replace; if writing fails, nothing is left behind and an existing `path` is kept).
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: no global state; PNG is drawn by Agg
    except ImportError:
        return False
    if not preds:
        raise ValueError("preds is empty: expected {name: predictions}")
    mos = _as_1d(mos, "mos")
    fig = Figure(figsize=(4 * len(preds), 4), layout="constrained")
    axes = fig.subplots(1, len(preds), sharey=True, squeeze=False)[0]
    for ax, (name, pred) in zip(axes, preds.items()):
        pred, _ = _check(pred, mos)
        r = evaluate(pred, mos)
        ax.scatter(pred, mos, s=12, alpha=0.6, label=f"PLCC {r['plcc']:.3f}  SRCC {r['srcc']:.3f}")
        try:
            params, _ = fit_logistic(pred, mos)
            x = np.linspace(pred.min(), pred.max(), 200)
            ax.plot(x, logistic(x, *params), color="black", linewidth=1.5, label="fitted logistic")
        except RuntimeError:
            pass  # no logistic to draw; r["fit"] says which mapping the PLCC used instead
        ax.set_xlabel(f"predicted score ({name})")
        ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MOS")
    if title:
        fig.suptitle(title)
    tmp = f"{path}.tmp"
    try:
        fig.savefig(tmp, format=os.path.splitext(str(path))[1][1:].lower() or "png", dpi=150)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # savefig failed part-way: leave nothing behind, `path` untouched
            os.remove(tmp)
    return True

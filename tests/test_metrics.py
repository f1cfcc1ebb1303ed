"""Tests for metrics.py against independent references: scipy's correlations, the logistic written
out below and fitted here with scipy's curve_fit, and hand-computed examples; then the fallbacks,
input checks, summarize, the per-content SRCC, the settings-only baseline and the scatter plot
(drawn where matplotlib is installed, an optional extra; its absence is simulated).

Run from the repository root:  python -m pytest -q tests/test_metrics.py
"""
import builtins
import math
import os
import struct
import sys
import warnings

import numpy as np
import pytest
from scipy import optimize, stats

import metrics
from metrics import (baseline_metrics, evaluate, fit_logistic, format_metrics, logistic,
                     scatter_plot, settings_baseline, summarize, within_source_srcc)


def f_ref(x, b1, b2, b3, b4):
    """The 4-parameter logistic of VQEG (docs/reference.md, section 6), written out."""
    with np.errstate(over="ignore"):  # exp overflows to inf far from b3: the term is then 0
        return b2 + (b1 - b2) / (1 + np.exp(-(x - b3) / abs(b4)))


def reference_fit(pred, mos):
    """f_ref fitted from pred to mos on their own scales from the conventional initial guess.
    Returns (mapped, params)."""
    pred, mos = np.asarray(pred, float), np.asarray(mos, float)
    p0 = [mos.max(), mos.min(), pred.mean(), pred.std() / 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        b, _ = optimize.curve_fit(f_ref, pred, mos, p0=p0, maxfev=20000)
    return f_ref(pred, *b), b


def _noisy(n=200, seed=0):
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=n)
    return pred, 50 + 10 * pred + 8 * rng.normal(size=n)


def _same_as_references(pred, mos):
    r = evaluate(pred, mos)
    assert r["srcc"] == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-12)
    assert r["krcc"] == pytest.approx(stats.kendalltau(pred, mos).statistic, abs=1e-12)
    assert r["plcc_raw"] == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=1e-12)
    mapped, _ = reference_fit(pred, mos)
    assert r["plcc"] == pytest.approx(stats.pearsonr(mapped, mos).statistic, abs=1e-5)
    assert r["rmse"] == pytest.approx(np.sqrt(np.mean((mapped - mos) ** 2)), rel=1e-5)
    assert r["n"] == len(pred) and r["fit"] == "logistic"
    return r


def test_logistic_hand_computed_values():
    # f(b3) is the midpoint; 1 + exp(-/+ln 3) = 4/3 or 4 puts f at 3/4 or 1/4 of the way from b2
    # to b1; far from b3 f is b1 or b2 without overflow. The sign of b4 does not matter (|b4|).
    b1, b2, b3 = 80.0, 20.0, 0.5
    x = b3 + 0.7 * np.array([0.0, math.log(3), -math.log(3), 2000.0, -2000.0])
    expected = [50.0, 65.0, 35.0, 80.0, 20.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for b4 in (0.7, -0.7):
            np.testing.assert_allclose(logistic(x, b1, b2, b3, b4), expected, rtol=1e-12)
    grid = np.linspace(-5, 5, 41)
    for b in [(80.0, 20.0, 0.5, 0.7), (1.0, 4.0, -0.3, 1.5), (3.0, -2.0, 1.0, -0.2)]:
        np.testing.assert_allclose(logistic(grid, *b), f_ref(grid, *b), rtol=1e-12, atol=1e-12)


def test_matches_references_on_random_data():
    _same_as_references(*_noisy())


def test_matches_references_with_ties():
    pred, mos = _noisy(seed=1)
    pred, mos = np.round(pred), np.round(mos / 10)  # a handful of distinct values each
    assert len(np.unique(pred)) < 10 and len(np.unique(mos)) < 15
    _same_as_references(pred, mos)


def test_hand_computed_example():
    # pred ranks 1..5, mos ranks 1,3,2,5,4: d = 0,-1,1,-1,1, sum d^2 = 4,
    # SRCC = 1 - 6 * 4 / (5 * 24) = 0.8. Of the 10 pairs, (2,3) and (4,5) are discordant:
    # KRCC = (8 - 2) / 10 = 0.6. Raw PLCC: centred both are (-2,-1,0,1,2) vs (-2,0,-1,2,1),
    # sum of products 8, sums of squares 10 and 10: 0.8.
    r = evaluate([1, 2, 3, 4, 5], [10, 30, 20, 50, 40])
    assert r["srcc"] == pytest.approx(0.8)
    assert r["krcc"] == pytest.approx(0.6)
    assert r["plcc_raw"] == pytest.approx(0.8)
    assert r["n"] == 5


def test_plcc_and_rmse_after_the_fit_hand_computed():
    # Three prediction values, two MOS each: the best monotone curve passes through the group
    # means 15, 45, 85 (a logistic can), so every residual is +-5: RMSE = 5. PLCC = std(mapped) /
    # std(mos): var(mapped) = (100^2 + 10^2 + 110^2) / 27 = 22200 / 27 and var(mos) adds
    # 5^2 = 675 / 27, so PLCC = sqrt(22200 / 22875) = sqrt(296 / 305).
    r = evaluate([-1, -1, 0, 0, 1, 1], [10, 20, 40, 50, 80, 90])
    assert r["fit"] == "logistic"
    assert r["rmse"] == pytest.approx(5.0, rel=1e-6)
    assert r["plcc"] == pytest.approx(math.sqrt(296 / 305), abs=1e-7)


def test_logistic_beats_raw_on_monotone_nonlinear_relation():
    rng = np.random.default_rng(2)
    pred = rng.uniform(-4, 4, size=300)
    mos = f_ref(pred, 90, 10, 0.5, 0.6) + rng.normal(scale=2, size=300)
    r = _same_as_references(pred, mos)
    assert r["plcc"] > r["plcc_raw"] + 0.02
    assert r["plcc"] > 0.98
    assert 1.8 < r["rmse"] < 2.2  # the noise std is 2 MOS points


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("b", [(80.0, 20.0, 0.5, 0.7), (1.0, 4.0, -0.3, 1.5),  # rising, falling
                               (80.0, 20.0, 0.5, -0.7)])  # a negative b4 is the same curve
def test_fit_recovers_known_parameters(scale, b):
    pred = np.linspace(-3, 3, 60) * scale
    b_true = np.array([b[0], b[1], b[2] * scale, b[3] * scale])
    mos = f_ref(pred, *b_true)
    params, mapped = fit_logistic(pred, mos)
    b_true[3] = abs(b_true[3])  # fit_logistic promises b4 > 0
    np.testing.assert_allclose(params, b_true, rtol=1e-5, atol=1e-8 * scale)
    np.testing.assert_allclose(mapped, mos, atol=1e-8 * np.ptp(mos))
    r = evaluate(pred, mos)
    # a falling curve means predictions ordered against the MOS: PLCC keeps that sign
    assert r["plcc"] == pytest.approx(np.sign(b[0] - b[1]), abs=1e-12)
    assert r["rmse"] < 1e-7 * np.ptp(mos)


def test_fit_starts_from_the_conventional_initial_guess(monkeypatch):
    # A curve_fit that returns its starting point shows the start on the original scales:
    # b = [max(MOS), min(MOS), mean(pred), std(pred) / 4].
    monkeypatch.setattr(metrics.optimize, "curve_fit",
                        lambda f, x, y, p0, **kwargs: (np.array(p0, dtype=float), None))
    pred, mos = [0.0, 1.0, 2.0, 5.0], [30.0, 10.0, 60.0, 20.0]  # mean 2, std sqrt(3.5)
    params, mapped = fit_logistic(pred, mos)
    np.testing.assert_allclose(params, [60.0, 10.0, 2.0, math.sqrt(3.5) / 4], rtol=1e-12)
    np.testing.assert_allclose(mapped, f_ref(np.array(pred), *params), rtol=1e-12)


def test_rmse_is_on_mos_scale():
    pred, mos = _noisy(seed=3)
    r = _same_as_references(pred, mos)
    assert 5 < r["rmse"] < 12  # noise std is 8 MOS points
    # MOS x 100 scales RMSE x 100; the prediction scale and offset do not matter.
    assert evaluate(pred, 100 * mos)["rmse"] == pytest.approx(100 * r["rmse"], rel=1e-4)
    assert evaluate(1e3 * pred + 7, mos)["rmse"] == pytest.approx(r["rmse"], rel=1e-4)


def test_torch_tensor_same_as_numpy():
    torch = pytest.importorskip("torch")
    pred, mos = (a.astype(np.float32) for a in _noisy(n=50, seed=4))
    expected = evaluate(pred, mos)
    t = torch.from_numpy(pred).requires_grad_(True)
    assert evaluate(t, torch.from_numpy(mos)) == expected
    assert evaluate(t[:, None], mos.tolist()) == expected  # (n, 1) and a list


@pytest.mark.parametrize("pred, mos, match", [
    ([1, 2, 3, 4, 5], [1, 2, 3, 4], r"different lengths: 5 vs 4"),
    ([1, 2, 3], [1, 2, 3], r"at least 4 samples.*got 3"),
    ([1, 2, np.nan, 4, 5], [1, 2, 3, 4, 5], r"pred contains 1 NaN or inf.*index 2"),
    ([1, 2, 3, 4, 5], [1, np.inf, 3, 4, -np.inf], r"mos contains 2 NaN or inf.*index 1"),
    (np.ones((3, 4)), np.ones(12), r"pred: expected a 1-D.*shape \(3, 4\)"),
    (np.arange(5.0), np.ones((1, 5)), r"mos: expected a 1-D.*shape \(1, 5\)"),
    (5.0, 5.0, r"expected a 1-D.*shape \(\)"),
])
def test_bad_input_raises(pred, mos, match):
    with pytest.raises(ValueError, match=match):
        evaluate(pred, mos)
    with pytest.raises(ValueError, match=match):
        fit_logistic(pred, mos)


def test_constant_input_gives_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate([3.0] * 6, [1, 2, 3, 4, 5, 6])
        r_mos = evaluate([1, 2, 3, 4, 5, 6], [7] * 6)
    for k in metrics.METRICS:
        assert np.isnan(r[k]) and np.isnan(r_mos[k])
    assert "predictions are constant" in r["fit"] and "mos are constant" in r_mos["fit"]
    assert r["n"] == 6


def test_small_and_noisy_inputs_never_crash_or_warn():
    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (4, 5, 8, 30):
            for _ in range(20):
                pred, mos = rng.normal(size=n), rng.integers(0, 5, size=n).astype(float)
                mos[:2] = 0, 4  # never constant
                r = evaluate(pred, mos)
                assert all(np.isfinite(r[k]) for k in metrics.METRICS), r
                assert -1 <= r["plcc"] <= 1 + 1e-12


def _no_convergence(*args, **kwargs):
    raise RuntimeError("Optimal parameters not found: maxfev reached")


def test_fallback_to_linear_when_fit_fails(monkeypatch):
    pred, mos = _noisy(seed=6)
    monkeypatch.setattr(metrics.optimize, "curve_fit", _no_convergence)
    r = evaluate(pred, mos)
    assert r["fit"].startswith("linear") and "maxfev" in r["fit"]
    assert r["plcc"] == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=1e-12)
    slope, intercept = np.polyfit(pred, mos, 1)  # the least-squares line, independently
    assert r["rmse"] == pytest.approx(np.sqrt(np.mean((intercept + slope * pred - mos) ** 2)))


def test_fallback_to_identity_when_the_line_is_flat(monkeypatch):
    # mos = pred^2 on a symmetric pred: covariance exactly 0, so the least-squares slope is 0.
    # The identity mapping leaves residuals pred - mos = -6, -2, 0, 0, -2: RMSE = sqrt(44 / 5).
    monkeypatch.setattr(metrics.optimize, "curve_fit", _no_convergence)
    r = evaluate([-2, -1, 0, 1, 2], [4, 1, 0, 1, 4])
    assert r["fit"].startswith("identity") and "zero slope" in r["fit"]
    assert r["rmse"] == pytest.approx(math.sqrt(44 / 5))
    assert r["plcc"] == pytest.approx(0.0, abs=1e-12)


def test_degenerate_fit_is_rejected(monkeypatch):
    pred, mos = _noisy(seed=7)
    monkeypatch.setattr(metrics.optimize, "curve_fit",
                        lambda *a, **k: (np.array([1.0, 1.0, 0, 1]), None))
    r = evaluate(pred, mos)
    assert r["fit"].startswith("linear") and "constant mapped output" in r["fit"]
    monkeypatch.setattr(metrics.optimize, "curve_fit",
                        lambda *a, **k: (np.array([np.nan, 1.0, 0, 1]), None))
    assert "non-finite" in evaluate(pred, mos)["fit"]


def test_summarize_gives_median_and_spread():
    plcc = [0.90, 0.70, 0.80, 0.95, float("nan")]
    results = [dict(plcc=p, srcc=0.5, krcc=0.4, rmse=r, plcc_raw=0.6, n=10, fit="logistic")
               for p, r in zip(plcc, [5, 1, 3, 2, 4])]
    s = summarize(results)
    assert s["plcc"]["median"] == pytest.approx(0.85) and s["plcc"]["n"] == 4  # nan left out
    assert s["plcc"]["min"] == 0.70 and s["plcc"]["max"] == 0.95
    # sorted 0.70, 0.80, 0.90, 0.95: the 25th percentile sits 3/4 of the way from 0.70 to 0.80,
    # the 75th 1/4 of the way from 0.90 to 0.95
    assert s["plcc"]["iqr"] == pytest.approx(0.9125 - 0.775)
    assert s["rmse"]["median"] == 3 and s["rmse"]["n"] == 5
    assert s["srcc"] == dict(median=0.5, iqr=0.0, min=0.5, max=0.5, n=5)
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


def test_format_metrics():
    d = dict(plcc=0.9123, srcc=0.9011, krcc=0.7449, rmse=7.1234, plcc_raw=0.8, n=10,
             fit="logistic")
    assert format_metrics(d) == "PLCC 0.912  SRCC 0.901  KRCC 0.745  RMSE 7.12"
    s = summarize([d, dict(d, plcc=0.8923)])
    assert format_metrics(s).startswith("PLCC 0.902 (iqr 0.010)  SRCC 0.901 (iqr 0.000)")


def test_plcc_keeps_the_sign_of_anti_correlated_predictions():
    rng = np.random.default_rng(3)
    mos = rng.uniform(0, 100, 60)
    pred = -np.tanh((mos - 50) / 20) + rng.normal(0, 0.05, 60)  # decreasing in mos
    r = evaluate(pred, mos)
    assert r["srcc"] < -0.9 and r["plcc_raw"] < -0.9
    # the fitted curve is decreasing: its PLCC is positive, and the sign must survive it
    mapped, _ = reference_fit(pred, mos)
    assert r["plcc"] == pytest.approx(-stats.pearsonr(mapped, mos).statistic, abs=1e-5)
    assert r["plcc"] < -0.9
    assert evaluate(-pred, mos)["plcc"] == pytest.approx(-r["plcc"], abs=1e-4)


def test_within_source_srcc_hand_computed():
    # a: perfectly ranked, 1. b: pred ranks 1,2,3 against mos ranks 3,1,2: d = -2,1,1,
    # sum d^2 = 6, SRCC = 1 - 6 * 6 / (3 * 8) = -0.5. c (one video) and d (constant mos) are
    # left out.
    pred = [1, 2, 3, 1, 2, 3, 5, 1, 2]
    mos = [10, 20, 30, 30, 10, 20, 50, 40, 40]
    r = within_source_srcc(pred, mos, ["a"] * 3 + ["b"] * 3 + ["c"] + ["d"] * 2)
    assert r == dict(srcc=pytest.approx(0.25), min=pytest.approx(-0.5), max=pytest.approx(1.0),
                     n_sources=2)


def test_within_source_srcc_matches_scipy_per_group():
    rng = np.random.default_rng(8)
    sizes = {"s1": 12, "s2": 7, "s3": 20, "s4": 2}
    sources = [s for s, n in sizes.items() for _ in range(n)]
    rng.shuffle(sources)  # the videos of one content need not be adjacent
    sources = np.array(sources)
    pred = rng.normal(size=len(sources))
    mos = pred + rng.normal(size=len(sources)) + 5 * (sources == "s3")  # s3 scores higher
    per = [stats.spearmanr(pred[sources == s], mos[sources == s]).statistic for s in sizes]
    r = within_source_srcc(pred, mos, sources)
    assert r["n_sources"] == 4
    assert r["srcc"] == pytest.approx(np.mean(per), abs=1e-12)
    assert (r["min"], r["max"]) == (pytest.approx(min(per)), pytest.approx(max(per)))
    # constant predictions within a content leave that content out, and none left gives nan
    pred[sources == "s1"] = 0.0
    assert within_source_srcc(pred, mos, sources)["srcc"] == pytest.approx(np.mean(per[1:]),
                                                                            abs=1e-12)
    r = within_source_srcc([1, 2, 3], [3, 2, 1], ["a", "b", "c"])
    assert np.isnan(r["srcc"]) and r["n_sources"] == 0
    with pytest.raises(ValueError, match="different lengths: 3, 3, 2"):
        within_source_srcc([1, 2, 3], [3, 2, 1], ["a", "b"])


def _items(rows, **more):
    return [dict(path=f"{i}.mp4", mos=m, codec=c, resolution=r, level=l, **more)
            for i, (c, r, l, m) in enumerate(rows)]


TRAIN = _items([("h264", "1080", "1", 10.0), ("h264", "1080", "1", 20.0),
                ("h264", "1080", "2", 40.0), ("hevc", "540", "1", 30.0),
                ("hevc", "1080", "1", 50.0)])


def test_settings_baseline_cells_and_fallbacks():
    test = _items([("h264", "1080", "1", 0.0),   # its own cell: (10 + 20) / 2
                   ("vp9", "1080", "1", 0.0),    # unseen codec: (1080, 1) = (10 + 20 + 50) / 3
                   ("vp9", "2160", "2", 0.0),    # unseen codec and resolution: level 2 = 40
                   ("av1", "720", "3", 0.0)])    # unseen level too: all training MOS, 150 / 5
    preds, keys = settings_baseline(TRAIN, test)
    assert keys == ("codec", "resolution", "level")
    assert preds == pytest.approx([15.0, 80 / 3, 40.0, 30.0])
    # keys are used only where every train and test item has them, non-empty
    test[0]["resolution"] = " "
    preds, keys = settings_baseline(TRAIN, test)
    # (h264, 1) = (10 + 20) / 2; (vp9, 1) falls back to level 1 = (10 + 20 + 30 + 50) / 4
    assert keys == ("codec", "level") and preds == pytest.approx([15.0, 27.5, 40.0, 30.0])
    assert settings_baseline(TRAIN, test, keys=("level",)) == (
        pytest.approx([27.5, 27.5, 40.0, 30.0]), ("level",))
    no_keys = [dict(path=it["path"], mos=it["mos"]) for it in TRAIN]
    assert settings_baseline(no_keys, test) is None and settings_baseline(TRAIN, no_keys) is None
    with pytest.raises(ValueError, match="needs training items"):
        settings_baseline([], test)


def test_baseline_metrics_is_evaluate_of_the_baseline():
    test = _items([("h264", "1080", "1", 12.0), ("h264", "1080", "2", 35.0),
                   ("hevc", "540", "1", 33.0), ("hevc", "1080", "1", 45.0),
                   ("vp9", "1080", "2", 41.0)])
    r = baseline_metrics(TRAIN, test)
    # the cells' training means, by hand: 15, 40, 30, 50 and (vp9 unseen) level 2 = 40
    preds, mos = [15.0, 40.0, 30.0, 50.0, 40.0], [12.0, 35.0, 33.0, 45.0, 41.0]
    assert r == dict(evaluate(preds, mos), keys=("codec", "resolution", "level"))
    assert r["srcc"] == pytest.approx(stats.spearmanr(preds, mos).statistic, abs=1e-12)
    assert format_metrics(r).startswith("PLCC ")
    assert baseline_metrics([dict(mos=1.0)], [dict(mos=2.0)] * 4) is None


# -----------------------------------------------------------------------------
# the scatter plot (matplotlib is optional: CI installs it; these skip where it is missing)

def _two_models(n=60, seed=9):
    rng = np.random.default_rng(seed)
    pred, mos = _noisy(n=n, seed=seed)
    return mos, {"teacher": pred, "student": np.tanh(pred) + 0.3 * rng.normal(size=n)}


def test_scatter_plot_draws_one_panel_per_model(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    drawn, real_savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig",
                        lambda fig, *a, **k: (drawn.append(fig), real_savefig(fig, *a, **k))[1])
    mos, preds = _two_models()
    path = tmp_path / "scatter.png"
    assert scatter_plot(str(path), mos, preds, title="toy") is True
    assert os.listdir(tmp_path) == ["scatter.png"]  # written atomically: no temporary file left

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 600)  # IHDR: 2 panels of 4 in at 150 dpi
    assert imread(str(path)).shape[:2] == (600, 1200)  # and it decodes

    (fig,) = drawn
    assert fig.get_suptitle() == "toy"
    assert [ax.get_xlabel() for ax in fig.axes] == ["predicted score (teacher)",
                                                    "predicted score (student)"]
    assert fig.axes[0].get_ylabel() == "MOS"
    for ax, pred in zip(fig.axes, preds.values()):
        np.testing.assert_array_equal(ax.collections[0].get_offsets(),
                                      np.column_stack([pred, mos]))
        mapped, b = reference_fit(pred, mos)
        plcc, srcc = stats.pearsonr(mapped, mos).statistic, stats.spearmanr(pred, mos).statistic
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            f"PLCC {plcc:.3f}  SRCC {srcc:.3f}", "fitted logistic"]
        (curve,) = ax.get_lines()
        x = curve.get_xdata()
        assert (x[0], x[-1]) == (pred.min(), pred.max())
        np.testing.assert_allclose(curve.get_ydata(), f_ref(x, *b), atol=1e-4 * np.ptp(mos))

    path3 = tmp_path / "three.png"
    assert scatter_plot(path3, mos, dict(preds, again=preds["teacher"])) is True  # a Path too
    assert struct.unpack(">II", path3.read_bytes()[16:24]) == (1800, 600)


def test_scatter_plot_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    mos, preds = _two_models()
    path = tmp_path / "scatter.png"
    path.write_bytes(b"an earlier plot")
    with pytest.raises(ValueError, match="different lengths"):  # before anything is drawn
        scatter_plot(str(path), mos, {"student": preds["student"][:10]})
    with pytest.raises(ValueError, match="preds is empty"):
        scatter_plot(str(path), mos, {})

    def half_written(fig, fname, *args, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="No space left"):
        scatter_plot(str(path), mos, preds)
    assert os.listdir(tmp_path) == ["scatter.png"] and path.read_bytes() == b"an earlier plot"


@pytest.mark.parametrize("hide", ["not installed", "broken install"])
def test_scatter_plot_without_matplotlib(tmp_path, monkeypatch, hide):
    if hide == "not installed":  # None in sys.modules: the import raises ModuleNotFoundError
        for name in ("matplotlib", "matplotlib.figure"):
            monkeypatch.setitem(sys.modules, name, None)
    else:  # it is there but does not import: a plain ImportError
        real_import = builtins.__import__

        def no_matplotlib(name, *args, **kwargs):
            if name == "matplotlib" or name.startswith("matplotlib."):
                raise ImportError(f"{name}: libfreetype.so.6 not found")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    mos, preds = _two_models(n=20, seed=10)
    assert scatter_plot(str(tmp_path / "scatter.png"), mos, preds) is False
    assert list(tmp_path.iterdir()) == []

"""A fast, fixed-seed version of bench/calibration.py (the same code: synthetic sweeps in a real SQLite
MLflow store with per-problem parquet artifacts, analysed by `build.analyze`), fewer repetitions and
bounds wide enough for them. The full run's numbers are in rlkit/report/README.md."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rlkit.report import stats

BENCH = Path(__file__).resolve().parents[2] / "bench" / "calibration.py"


def load():
    spec = importlib.util.spec_from_file_location("rlkit_bench_calibration", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def welch_p(x, y):
    """Welch's two-sided p for each row of x, y (vectorised `stats.welch`)."""
    from scipy.stats import t

    vx, vy = x.var(axis=1, ddof=1) / x.shape[1], y.var(axis=1, ddof=1) / y.shape[1]
    se = np.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx ** 2 / (x.shape[1] - 1) + vy ** 2 / (y.shape[1] - 1))
    d = x.mean(axis=1) - y.mean(axis=1)
    return 2 * t.sf(np.abs(d) / se, df), se, df


def printed_mdes(se, df, alpha, *, correct=True):
    from scipy.stats import t

    half = t.ppf(0.975, df) * se  # the Δ's 95% CI half-width: the floor
    if correct:
        return np.array([stats.comparison_mde(s, 3, 3, alpha=alpha, floor=h) for s, h in zip(se, half, strict=True)])
    return se * stats._welch_factor(3, 3, alpha, 0.8)  # the plain SE: biased low by c4(4) = 0.94


def test_detection_at_the_printed_mde_is_080():
    """Sharp and store-free: 4,000 comparisons of 3 + 3 normal seeds at Holm's first step α/3 (a family of 3).
    Planted Δ = the mean MDE the report prints on no-effect data → detection 0.80 (binomial SD 0.006 over
    4,000: the bounds are ±3.3 SD). The same procedure with the uncorrected SE detects 0.75, and the old
    pooled noncentral-t MDE 0.68: both fail these bounds."""
    rng = np.random.default_rng(11)
    alpha = 0.05 / 3
    n = 4000
    _, se0, df0 = welch_p(rng.normal(0, 1, (n, 3)), rng.normal(0, 1, (n, 3)))
    mde = printed_mdes(se0, df0, alpha).mean()
    p, _, _ = welch_p(rng.normal(mde, 1, (n, 3)), rng.normal(0, 1, (n, 3)))
    assert 0.78 <= np.mean(p < alpha) <= 0.82
    plain = printed_mdes(se0, df0, alpha, correct=False).mean()
    p, _, _ = welch_p(rng.normal(plain, 1, (n, 3)), rng.normal(0, 1, (n, 3)))
    assert np.mean(p < alpha) < 0.775


def test_calibration_small(tmp_path):
    cal = load()
    res = cal.calibrate(null=30, planted=15, arms=4, seeds=3, problems=100, k=4, seed=1, pilot=10,
                        root=str(tmp_path / "calib"), verbose=False)
    assert res["null_comparisons"] == 90 and res["planted_comparisons"] == 45
    # 90 null comparisons: a rate of 0.05 has binomial SD 0.023, so [0, 0.13] is ±3.5 SD
    assert res["fpr_paired"] <= 0.13 and res["fpr_run_welch"] <= 0.13
    assert res["fwer_paired_holm"] <= 0.2 and res["fwer_run_holm"] <= 0.2  # 30 families
    # what the report does not use, and why: a sign-flip over problems ignores the seed effect
    assert res["fpr_signflip_problems"] > 0.2
    # planted Δ = the reported MDE (80% power at α/m = 0.05/3): 45 comparisons, SD 0.06 → [0.6, 0.98] is ±3.3 SD
    assert res["mde_alpha"] == pytest.approx(0.05 / 3)
    assert 0.6 <= res["detect_paired"] <= 0.98 and res["detect_paired_holm"] >= res["detect_paired"]
    assert 0.0 < res["mde_paired"] < 0.3 and res["mde_below_ci_half"] == 0  # never below the CI half-width


def test_negative_and_positive_controls(store):
    """Synthetic controls (the tiny world's control study needs per-problem results from training runs,
    issue 13): arms from one distribution come out n.s. in every table; a planted +0.15 accuracy is
    significant in every table."""
    from rlkit.report import fake
    from rlkit.report.build import analyze
    from rlkit.report.spec import ReportSpec

    uri, client, d = store
    world = fake.World(problems=200, k=4)
    rng = np.random.default_rng(7)
    spec = ReportSpec.from_dict({"baseline": {"algo": "a0"}, "curves": [], "paired_resamples": 500})
    fake.world_sweep(client, "negative", world, rng, arms=4, seeds=3, artifact_location=str(d / "neg"))
    shift = world.shift_for(0.15)
    fake.world_sweep(client, "positive", world, rng, arms=3, seeds=3, shifts=[0.0, shift, shift],
                     artifact_location=str(d / "pos"))
    neg = analyze(uri, "negative", spec)
    pos = analyze(uri, "positive", spec)
    for r, want in ((neg, False), (pos, True)):
        cells = r.ablation.cells[~r.ablation.cells["is_baseline"]]
        assert cells["significant"].tolist() == [want] * len(cells)
        pr = r.paired[r.paired["p"].notna()]
        assert len(pr) == 2 * (len(r.ablation.rows) - 1)  # acc and pass@4 per variant
        assert pr.loc[pr["metric"] == "acc", "significant"].tolist() == [want] * (len(r.ablation.rows) - 1)
    assert not neg.paired["significant"].fillna(False).any()

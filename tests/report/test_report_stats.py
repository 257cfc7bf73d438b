"""Bootstrap CIs: expected values derived by hand, or by the 3-line procedure of the stats docstring
re-written here (never by calling the code under test)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rlkit.report import stats


def test_no_values_and_single_value_have_no_interval():
    ci = stats.mean_ci([np.nan])
    assert ci.n == 0 and math.isnan(ci.mean) and math.isnan(ci.lo)
    ci = stats.mean_ci([0.7, np.nan])
    assert (ci.mean, ci.n) == (0.7, 1)
    assert math.isnan(ci.lo) and math.isnan(ci.hi)


def test_two_and_three_seeds_give_min_max():
    # n=2: resampled means are a (p=1/4), (a+b)/2 (1/2), b (1/4): the 2.5th and 97.5th percentiles of
    # 10,000 resamples are a and b. n=3: the all-min resample alone has p = 1/27 = 3.7% > 2.5%.
    ci = stats.mean_ci([0.30, 0.34])
    assert ci.mean == pytest.approx(0.32, abs=1e-12)
    assert (ci.lo, ci.hi, ci.n) == (pytest.approx(0.30, abs=1e-12), pytest.approx(0.34, abs=1e-12), 2)
    ci = stats.mean_ci([0.5, 0.2, 0.3])
    assert ci.mean == pytest.approx(1 / 3, abs=1e-12)
    assert (ci.lo, ci.hi) == (pytest.approx(0.2, abs=1e-12), pytest.approx(0.5, abs=1e-12))


def test_four_seeds_fixed_seed_literal_and_procedure():
    x = np.array([0.30, 0.34, 0.35, 0.41])
    ci = stats.mean_ci(x, resamples=10_000, seed=0)
    assert ci.mean == pytest.approx(0.35, abs=1e-12)
    # literal from the documented procedure with default_rng(0); 0.3125 = (3 × 0.30 + 0.35) / 4
    assert (ci.lo, ci.hi) == (pytest.approx(0.3125, abs=1e-12), pytest.approx(0.3925, abs=1e-12))
    rng = np.random.default_rng(0)
    boot = x[rng.integers(0, 4, size=(10_000, 4))].mean(axis=1)
    assert (ci.lo, ci.hi) == tuple(np.percentile(boot, [2.5, 97.5]))
    # other level / resamples / seed
    ci90 = stats.mean_ci(x, resamples=500, level=0.90, seed=7)
    assert (ci90.lo, ci90.hi) == (pytest.approx(0.32, abs=1e-12), pytest.approx(0.383, abs=1e-12))
    # NaN are dropped, a cell's CI does not depend on calls made before it
    stats.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert stats.mean_ci([0.30, np.nan, 0.34, 0.35, 0.41]) == ci


def test_difference_two_by_two_by_hand():
    # each side n=2: min resampled difference = min(x) - max(y) with p = 1/16 > 2.5%, max alike
    d = stats.diff_ci([0.40, 0.44], [0.30, 0.34])
    assert d.delta == pytest.approx(0.10, abs=1e-12)
    assert (d.lo, d.hi) == (pytest.approx(0.06, abs=1e-12), pytest.approx(0.14, abs=1e-12))
    assert d.significant is True
    d = stats.diff_ci([0.35, 0.41], [0.36, 0.38])
    assert d.delta == pytest.approx(0.01, abs=1e-12)
    assert (d.lo, d.hi) == (pytest.approx(-0.03, abs=1e-12), pytest.approx(0.05, abs=1e-12))
    assert d.significant is False  # covers 0 → "n.s."


def test_difference_unequal_n_fixed_seed():
    x, y = np.array([0.30, 0.34, 0.35, 0.41]), np.array([0.20, 0.25, 0.27])
    d = stats.diff_ci(x, y, seed=0)
    assert (d.n, d.n_base) == (4, 3)
    assert d.delta == pytest.approx(0.35 - 0.24, abs=1e-12)
    assert (d.lo, d.hi) == (pytest.approx(0.06, abs=1e-12), pytest.approx(0.16166666666666668, abs=1e-12))
    rng = np.random.default_rng(0)
    ix = rng.integers(0, 4, size=(10_000, 4))
    iy = rng.integers(0, 3, size=(10_000, 3))
    assert (d.lo, d.hi) == tuple(np.percentile(x[ix].mean(1) - y[iy].mean(1), [2.5, 97.5]))


def test_difference_with_one_seed_has_delta_but_no_interval():
    d = stats.diff_ci([0.5], [0.30, 0.34])
    assert d.delta == pytest.approx(0.18, abs=1e-12)
    assert math.isnan(d.lo) and d.significant is None


def test_band_nan_aware():
    X = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])
    mean, lo, hi = stats.band(X, resamples=1000, seed=0)
    assert mean.tolist() == [2.0, 3.0, 5.0]
    assert lo[:2].tolist() == [1.0, 2.0] and hi[:2].tolist() == [3.0, 4.0]  # n=2 → [min, max]
    assert math.isnan(lo[2]) and math.isnan(hi[2])  # one run only at the last step


# ------------------------------------------------------------------------------ t intervals, Welch, corrections

def test_t_interval_on_three_values_by_hand():
    # mean 1/3, s² = (0.1667² + 0.1333² + 0.0333²) / 2 = 0.023333, se = s/√3 = 0.088192;
    # t(2) quantile in closed form: (2q − 1)/√(2q(1 − q)) = 0.95/√0.04875 = 4.302653
    ci = stats.t_ci([0.5, 0.2, 0.3])
    half = 0.95 / math.sqrt(0.04875) * math.sqrt(0.07 / 3 / 3)
    assert ci.mean == pytest.approx(1 / 3, abs=1e-12) and ci.n == 3
    assert (ci.lo, ci.hi) == (pytest.approx(1 / 3 - half, abs=1e-9), pytest.approx(1 / 3 + half, abs=1e-9))
    assert (ci.lo, ci.hi) == (pytest.approx(-0.046125, abs=1e-6), pytest.approx(0.712792, abs=1e-6))
    assert math.isnan(stats.t_ci([0.4]).lo)


def test_welch_two_by_two_closed_form():
    # equal variances, n = 2 + 2: df = 2 and the t(2) CDF is 1/2 + t/(2√(2 + t²)) → p = 1 − t/√(2 + t²)
    w = stats.welch([0.40, 0.44], [0.30, 0.34])
    t = 0.10 / math.sqrt(0.0008)
    assert (w.delta, w.se, w.df) == (pytest.approx(0.10), pytest.approx(math.sqrt(0.0008)), pytest.approx(2.0))
    assert w.p == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
    half = 0.95 / math.sqrt(0.04875) * math.sqrt(0.0008)
    assert (w.lo, w.hi) == (pytest.approx(0.10 - half, abs=1e-9), pytest.approx(0.10 + half, abs=1e-9))
    assert math.isnan(stats.welch([0.4], [0.3, 0.34]).p)
    same = stats.welch([1.0, 1.0], [1.0, 1.0])
    assert same.p == 1.0 and stats.welch([2.0, 2.0], [1.0, 1.0]).p == 0.0


def test_holm_and_bh_on_four_p_values_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06
    assert stats.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    # BH: 0.005·4/1 = 0.02, 0.01·4/2 = 0.02, 0.03·4/3 = 0.04, 0.04·4/4 = 0.04 → running min from the top
    assert stats.bh(p).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02], abs=1e-12)
    assert stats.holm([0.5, np.nan, 0.9]).tolist()[0] == pytest.approx(1.0)  # 0.5·2, capped; NaN not counted
    assert math.isnan(stats.holm([0.5, np.nan])[1]) and stats.holm([0.5, np.nan])[0] == 0.5
    assert stats.adjust(p, "none").tolist() == p
    with pytest.raises(ValueError):
        stats.adjust(p, "bonferroni")


def test_cohens_d_mde_and_seeds_needed():
    assert stats.cohens_d([1, 2, 3], [0, 1, 2]) == pytest.approx(1.0)  # Δ 1, pooled SD 1
    # MDE is the Δ at which the noncentral-t power is the target; large df → (z_.975 + z_.8) · se
    for df in (2, 4, 10):
        assert stats.power(stats.mde(0.1, df), 0.1, df) == pytest.approx(0.8, abs=1e-8)
    assert stats.mde(1.0, 1e6) == pytest.approx(1.959964 + 0.841621, abs=1e-3)
    assert stats.mde(0.0, 4) == 0.0 and math.isnan(stats.mde(0.1, 0))
    # seeds per arm for Δ = 1 SD: n = 17 (the classical two-sample answer at 80% / 0.05)
    assert stats.seeds_needed(1.0, 1.0) == 17
    # Welch's MDE at few seeds is larger than the Student formula's (its df is random and smaller), and
    # matches a direct simulation of Welch's test at the MDE: 80% power
    assert stats.welch_mde(1.0, 3, 3) > stats.mde(np.sqrt(2 / 3), 4)
    rng = np.random.default_rng(3)
    delta = stats.welch_mde(1.0, 3, 3)
    hits = [stats.welch(rng.normal(delta, 1, 3), rng.normal(0, 1, 3)).p < 0.05 for _ in range(4000)]
    assert np.mean(hits) == pytest.approx(0.8, abs=0.025)
    assert stats.seeds_needed(0.05, 0.03, extra_var=0.03 ** 2) is None  # the problem floor is above 0.05
    sd, df = stats.pooled_sd([[1.0, 3.0], [2.0, 2.0, 2.0], [5.0]])
    assert (sd, df) == (pytest.approx(math.sqrt(2 / 3)), 3)


# ------------------------------------------------------------------------------ several suites

def test_iqm_by_hand():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # drop 2 from each end: mean of 3..6
    assert stats.iqm([1, 2, 3, 100]) == 2.5  # drop 1 each end: the outlier is gone
    assert stats.iqm([[0.1, 0.9], [0.5, np.nan], [0.3, 0.7]]) == pytest.approx(0.5)  # 5 values, drop 1 each end


def test_probability_of_improvement_and_profiles_by_hand():
    # suite 1: pairs (1,1) tie ½, (1,0) 1, (2,1) 1, (2,0) 1 → 3.5/4; suite 2: 0.2 < 0.3 twice, 0.4 > 0.3 twice → ½
    x = [[1.0, 0.2], [2.0, 0.4]]
    y = [[1.0, 0.3], [0.0, 0.3]]
    assert stats.prob_improvement(x, y) == pytest.approx((0.875 + 0.5) / 2)
    assert stats.prob_improvement(y, x) == pytest.approx(1 - (0.875 + 0.5) / 2)
    prof = stats.performance_profile([[0.1, 0.5], [0.6, 0.9]], [0.2, 0.55])
    assert prof.tolist() == [pytest.approx(0.75), pytest.approx(0.5)]  # (½ + 1)/2, (½ + ½)/2


def test_stratified_bootstrap_resamples_within_suites():
    S = np.array([[0.0, 10.0], [1.0, 11.0]])
    m, lo, hi = stats.stratified_ci(lambda a: a[:, 0].mean(), [S], resamples=500, seed=0)
    assert (m, lo, hi) == (0.5, 0.0, 1.0)  # column 0 only ever holds its own values
    rng = np.random.default_rng(0)
    idx = stats.stratified_indices(rng, 2, 2, 500)
    assert idx.shape == (500, 2, 2) and set(np.unique(idx)) == {0, 1}


# ------------------------------------------------------------------------------ per-comparison MDE

def test_c4_and_se_df_by_hand():
    # c4(ν) = √(2/ν) Γ((ν+1)/2) / Γ(ν/2): ν = 2 → Γ(1.5)/Γ(1) = √π/2 = 0.886227; ν = 4 → √½ · Γ(2.5)/Γ(2) = 0.939986
    assert stats.c4(2) == pytest.approx(math.sqrt(math.pi) / 2, abs=1e-12)
    assert stats.c4(4) == pytest.approx(math.sqrt(0.5) * 0.75 * math.sqrt(math.pi), abs=1e-12)
    assert math.isnan(stats.c4(0))
    # ν of s_x²/n + s_y²/m under one variance: equal arms n + m − 2; 3 + 5: (8/15)² / (1/18 + 1/100) = 4.339
    assert stats.se_df(3, 3) == pytest.approx(4.0) and stats.se_df(2, 2) == pytest.approx(2.0)
    assert stats.se_df(3, 5) == pytest.approx((8 / 15) ** 2 / (1 / 18 + 1 / 100))
    assert stats.family_alpha(0.05, 3, "holm") == pytest.approx(0.05 / 3)
    assert stats.family_alpha(0.05, 3, "bh") == pytest.approx(0.05 / 3) and stats.family_alpha(0.05, 3, "none") == 0.05


def test_comparison_mde_by_hand_and_above_its_ci():
    """policy_loss's failure, small: four rows of 3 seeds, three of them at (or next to) the ceiling. The old MDE
    pooled the seed SD over the rows (√(0.005133 / 8) = 0.02533) and printed 0.089 for the comparison of the
    constant row b with the noisy baseline a, whose own 95% CI is ±0.125: an "MDE" the comparison cannot
    resolve. The new one uses the comparison's own SE, bias-corrected, at Holm's first step α/m."""
    a, b, d = [0.90, 0.96, 1.00], [1.0, 1.0, 1.0], [0.99, 1.0, 1.0]
    sd, df = stats.pooled_sd([a, b, b, d])
    assert (sd, df) == (pytest.approx(math.sqrt(0.0051333333 / 8), abs=1e-9), 8)
    old = stats.welch_mde(sd, 3, 3)
    t = stats.welch(b, a)
    # var(a) = ((−0.05333)² + 0.00667² + 0.04667²) / 2 = 0.0025333; SE = √(0.0025333/3 + 0) = 0.029059; Welch df = 2
    assert t.se == pytest.approx(math.sqrt(0.0025333333 / 3), abs=1e-9) and t.df == pytest.approx(2.0)
    half = (t.hi - t.lo) / 2  # t_{2, .975} · SE = 4.302653 · 0.029059 = 0.12503
    assert half == pytest.approx(4.302653 * 0.0290593, abs=1e-5)
    assert old == pytest.approx(0.0888, abs=5e-4) and old < half  # the defect
    # m = 3 comparisons (b, c, d vs a) → α/m = 0.05/3; Welch factor at 3 + 3 seeds there = 6.404 (simulated, fixed
    # seed); MDE = 0.029059 / c4(4) · 6.404 = 0.029059 / 0.939986 · 6.404 = 0.198
    f = stats._welch_factor(3, 3, 0.05 / 3, 0.8)
    assert f == pytest.approx(6.404, abs=2e-3)
    new = stats.comparison_mde(t.se, 3, 3, alpha=0.05 / 3, floor=half)
    assert new == pytest.approx(0.0290593 / 0.939986 * f, abs=1e-5) and new == pytest.approx(0.198, abs=1e-3)
    assert new > half
    # the floor binds when the CI is wider than the power formula's Δ; SE 0 (both rows constant): no MDE
    assert stats.comparison_mde(0.1, 3, 3, alpha=0.05, floor=0.5) == 0.5
    assert math.isnan(stats.comparison_mde(0.0, 3, 3)) and math.isnan(stats.comparison_mde(0.1, 1, 3))
    # a part of the SE that seeds do not reduce (τ²/P) is not bias-corrected: √((√(0.01 − 0.006)/c4(4))² + 0.006) · F
    f05 = stats._welch_factor(3, 3, 0.05, 0.8)
    assert stats.comparison_mde(0.1, 3, 3, extra_var=0.006) == pytest.approx(
        math.sqrt(0.004 / stats.c4(4) ** 2 + 0.006) * f05, abs=1e-12)


def test_comparison_mde_is_unbiased_for_the_true_mde():
    """E[SE / c4(ν)] = the true SE (normal values, one variance): the mean printed MDE over many draws matches the
    MDE computed from the true σ (`welch_mde`), where the plain SE falls short by c4(4) = 0.94."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 1, (20000, 3)), rng.normal(0, 1, (20000, 3))
    se = np.sqrt(x.var(axis=1, ddof=1) / 3 + y.var(axis=1, ddof=1) / 3)
    printed = np.array([stats.comparison_mde(s, 3, 3) for s in se[:4000]])
    true = stats.welch_mde(1.0, 3, 3)
    assert printed.mean() == pytest.approx(true, rel=0.02)
    assert (se.mean() * true / np.sqrt(2 / 3)) == pytest.approx(0.94 * true, rel=0.02)

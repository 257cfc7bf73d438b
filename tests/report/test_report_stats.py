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

"""Stratified bootstrap confidence intervals over seeds: pure functions, exact procedure stated.

The strata are the variants: seeds are resampled within one variant, never across. Every interval is a
percentile bootstrap drawn from a fresh `numpy.random.default_rng(seed)` (so a cell's interval does not
depend on which other cells the table has), with NumPy's default (linear) percentile interpolation:

    mean_ci(x):      x = the values with NaN dropped, in the given order; n = len(x)
                     idx  = rng.integers(0, n, size=(resamples, n))
                     boot = x[idx].mean(axis=1)
                     lo, hi = np.percentile(boot, [100 * a, 100 * (1 - a)]),  a = (1 - level) / 2
    diff_ci(x, y):   (x = variant, y = baseline, each NaN-dropped, n_x and n_y values)
                     ix = rng.integers(0, n_x, size=(resamples, n_x))    # drawn first
                     iy = rng.integers(0, n_y, size=(resamples, n_y))    # then these, same generator
                     boot = x[ix].mean(axis=1) - y[iy].mean(axis=1)
                     delta = x.mean() - y.mean();  lo, hi as above;  "n.s." when lo <= 0 <= hi
    band(X):         X [n_runs, T] with NaN where a run has no value at a step;
                     idx as in mean_ci; C[b, i] = how often run i is in resample b;
                     boot[b, t] = sum_i C[b,i] X[i,t] / sum_i C[b,i] [X[i,t] present]   (NaN-aware mean)
                     lo/hi = percentiles of boot over b; NaN where fewer than 2 runs have a value.

With one value there is no interval (lo = hi = NaN); a difference gets an interval only when both sides
have at least two values. With n = 2 or 3 seeds the percentile bootstrap returns [min, max] of the seeds
(the all-min resample alone has probability 1/n^n ≥ 1/27 > 2.5%): a known small-sample optimism of the
percentile bootstrap, which is why the report always says n.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0


@dataclass(frozen=True)
class CI:
    mean: float
    lo: float
    hi: float
    n: int


@dataclass(frozen=True)
class DiffCI:
    delta: float
    lo: float
    hi: float
    n: int  # variant's n
    n_base: int

    @property
    def significant(self) -> bool | None:
        """False where the interval covers 0 ("n.s."), True where it does not, None without an interval."""
        if np.isnan(self.lo) or np.isnan(self.hi):
            return None
        return not (self.lo <= 0.0 <= self.hi)


def _clean(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


def _q(level: float) -> list[float]:
    a = (1.0 - level) / 2.0
    return [100.0 * a, 100.0 * (1.0 - a)]


@lru_cache(maxsize=256)
def _indices(seed: int, resamples: int, *sizes: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    out = tuple(rng.integers(0, n, size=(resamples, n)) for n in sizes)
    for a in out:
        a.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def _counts(seed: int, resamples: int, n: int) -> np.ndarray:
    (idx,) = _indices(seed, resamples, n)
    flat = (np.arange(resamples)[:, None] * n + idx).ravel()
    C = np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(float)
    C.setflags(write=False)
    return C


def _chunks(n_items: int, resamples: int, n: int):
    step = max(1, 4_000_000 // max(resamples * n, 1))
    return range(0, n_items, step), step


def mean_cis(samples, *, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
             seed: int = DEFAULT_SEED) -> list[CI]:
    """`mean_ci` of many samples at once: samples of equal (NaN-dropped) size share the resample indices
    (they would anyway: every cell starts from `default_rng(seed)`), so they are resampled as one array."""
    xs = [_clean(v) for v in samples]
    out: list[CI | None] = [None] * len(xs)
    by_n: dict[int, list[int]] = {}
    for i, x in enumerate(xs):
        if len(x) == 0:
            out[i] = CI(np.nan, np.nan, np.nan, 0)
        elif len(x) == 1:
            out[i] = CI(float(x[0]), np.nan, np.nan, 1)
        else:
            by_n.setdefault(len(x), []).append(i)
    for n, members in by_n.items():
        (idx,) = _indices(seed, resamples, n)
        X = np.stack([xs[i] for i in members])
        starts, step = _chunks(len(members), resamples, n)
        for a in starts:
            qs = np.percentile(X[a:a + step][:, idx].mean(axis=2), _q(level), axis=1)
            for j, i in enumerate(members[a:a + step]):
                out[i] = CI(float(xs[i].mean()), float(qs[0, j]), float(qs[1, j]), n)
    return out


def mean_ci(values, *, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
            seed: int = DEFAULT_SEED) -> CI:
    """Mean and percentile-bootstrap CI of `values` (see module docstring for the exact procedure)."""
    return mean_cis([values], resamples=resamples, level=level, seed=seed)[0]


def diff_cis(pairs, *, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
             seed: int = DEFAULT_SEED) -> list[DiffCI]:
    """`diff_ci` of many (values, base_values) pairs at once (pairs of equal sizes share indices)."""
    cleaned = [(_clean(x), _clean(y)) for x, y in pairs]
    out: list[DiffCI | None] = [None] * len(cleaned)
    by_n: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(cleaned):
        if len(x) == 0 or len(y) == 0:
            out[i] = DiffCI(np.nan, np.nan, np.nan, len(x), len(y))
        elif len(x) < 2 or len(y) < 2:
            out[i] = DiffCI(float(x.mean() - y.mean()), np.nan, np.nan, len(x), len(y))
        else:
            by_n.setdefault((len(x), len(y)), []).append(i)
    for (nx, ny), members in by_n.items():
        ix, iy = _indices(seed, resamples, nx, ny)
        X = np.stack([cleaned[i][0] for i in members])
        Y = np.stack([cleaned[i][1] for i in members])
        starts, step = _chunks(len(members), resamples, max(nx, ny))
        for a in starts:
            boot = X[a:a + step][:, ix].mean(axis=2) - Y[a:a + step][:, iy].mean(axis=2)
            qs = np.percentile(boot, _q(level), axis=1)
            for j, i in enumerate(members[a:a + step]):
                x, y = cleaned[i]
                out[i] = DiffCI(float(x.mean() - y.mean()), float(qs[0, j]), float(qs[1, j]), nx, ny)
    return out


def diff_ci(values, base_values, *, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL,
            seed: int = DEFAULT_SEED) -> DiffCI:
    """mean(values) - mean(base_values) and its bootstrap CI, resampling both sides independently."""
    return diff_cis([(values, base_values)], resamples=resamples, level=level, seed=seed)[0]


def band(X, *, resamples: int = 1000, level: float = DEFAULT_LEVEL,
         seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step mean over runs and bootstrap band for a [n_runs, T] array with NaN gaps → (mean, lo, hi)."""
    X = np.asarray(X, dtype=float)
    n, T = X.shape
    present = ~np.isnan(X)
    count = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.nansum(X, axis=0) / np.maximum(count, 1), np.nan)
    lo = np.full(T, np.nan)
    hi = np.full(T, np.nan)
    if n < 2 or not (count >= 2).any():
        return mean, lo, hi
    C = _counts(seed, resamples, n)
    num = C @ np.where(present, X, 0.0)
    den = C @ present.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = num / den
    ok = count >= 2
    sub = boot[:, ok]
    if np.isnan(sub).any():
        qlo, qhi = np.nanpercentile(sub, _q(level), axis=0)
    else:
        qlo, qhi = np.percentile(sub, _q(level), axis=0)
    lo[ok], hi[ok] = qlo, qhi
    return mean, lo, hi

"""The report's statistics as small pure functions: intervals over seeds (Student-t by default, the
percentile bootstrap on request), Welch's test, Holm/BH adjustment, effect size, power/MDE/seeds needed,
and rliable's several-suite estimators (IQM, probability of improvement, profiles, stratified bootstrap).
Definitions: rlkit/report/README.md. The percentile bootstrap, exactly:

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


# ------------------------------------------------------------------------------ small-sample (t) intervals
# Why: with 2-3 seeds the percentile bootstrap returns [min, max] of the seeds (see above) and has no
# t-tail, so it under-covers; the Student-t interval has nominal coverage for normal run values at any
# n >= 2 (run-level metrics are means over hundreds of problems: close to normal).

def t_cis(samples, *, level: float = DEFAULT_LEVEL) -> list[CI]:
    """mean ± t_{n-1, 1-a/2} · s / √n per sample (s with ddof=1); n < 2 → no interval."""
    out = []
    for v in samples:
        x = _clean(v)
        n = len(x)
        if n < 2:
            out.append(CI(float(x[0]) if n else np.nan, np.nan, np.nan, n))
            continue
        half = float(_t_ppf(1 - (1 - level) / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
        m = float(x.mean())
        out.append(CI(m, m - half, m + half, n))
    return out


def t_ci(values, *, level: float = DEFAULT_LEVEL) -> CI:
    return t_cis([values], level=level)[0]


@dataclass(frozen=True)
class Test:
    """A difference with its interval, standard error, degrees of freedom and two-sided p-value."""

    delta: float
    lo: float
    hi: float
    se: float
    df: float
    p: float
    n: int
    n_base: int


def _t_ppf(q: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def t_test(delta: float, se: float, df: float, *, level: float = DEFAULT_LEVEL, n: int = 0,
           n_base: int = 0) -> Test:
    """Two-sided t-test of delta = 0 with standard error `se` and `df` degrees of freedom, and the
    matching interval. se = 0 (both sides constant): p = 0 for a non-zero delta, 1 for zero."""
    from scipy.stats import t

    if not (np.isfinite(delta) and np.isfinite(se) and np.isfinite(df)) or df <= 0:
        return Test(delta, np.nan, np.nan, se, df, np.nan, n, n_base)
    if se == 0:
        return Test(delta, delta, delta, 0.0, df, 0.0 if delta != 0 else 1.0, n, n_base)
    half = float(t.ppf(1 - (1 - level) / 2, df) * se)
    p = float(2 * t.sf(abs(delta) / se, df))
    return Test(delta, delta - half, delta + half, se, df, p, n, n_base)


def welch(values, base_values, *, level: float = DEFAULT_LEVEL) -> Test:
    """Welch's unequal-variance t-test of mean(values) - mean(base_values); df by Welch–Satterthwaite.
    Needs ≥ 2 values per side (else only delta)."""
    x, y = _clean(values), _clean(base_values)
    nx, ny = len(x), len(y)
    delta = float(x.mean() - y.mean()) if nx and ny else np.nan
    if nx < 2 or ny < 2:
        return Test(delta, np.nan, np.nan, np.nan, np.nan, np.nan, nx, ny)
    vx, vy = x.var(ddof=1) / nx, y.var(ddof=1) / ny
    se2 = vx + vy
    df = se2 ** 2 / (vx ** 2 / (nx - 1) + vy ** 2 / (ny - 1)) if se2 > 0 else float(nx + ny - 2)
    return t_test(delta, float(np.sqrt(se2)), float(df), level=level, n=nx, n_base=ny)


# ------------------------------------------------------------------------------ multiple comparisons

def _step_adjust(p, adjust_sorted) -> np.ndarray:
    """Apply `adjust_sorted` (ascending p-values -> adjusted, capped at 1) to the non-NaN p-values; NaN stay
    NaN and do not count in the family."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        out[order] = np.minimum(adjust_sorted(p[order], len(ok)), 1.0)
    return out


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (controls the family-wise error rate).
    adj_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)) over the sorted p-values."""
    return _step_adjust(p, lambda ps, m: np.maximum.accumulate((m - np.arange(m)) * ps))


def bh(p) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (controls the false discovery rate).
    adj_(i) = min_{j>=i} min(1, m p_(j) / j)."""
    return _step_adjust(p, lambda ps, m: np.minimum.accumulate((ps * m / np.arange(1, m + 1))[::-1])[::-1])


CORRECTIONS = ("holm", "bh", "none")


def adjust(p, method: str = "holm") -> np.ndarray:
    if method == "holm":
        return holm(p)
    if method == "bh":
        return bh(p)
    if method == "none":
        return np.asarray(p, dtype=float).copy()
    raise ValueError(f"correction must be one of {CORRECTIONS}, got {method!r}")


# ------------------------------------------------------------------------------ effect size and power

def cohens_d(values, base_values) -> float:
    """(mean x - mean y) / pooled SD (ddof=1 per side); NaN without 2 values a side or with zero SD."""
    x, y = _clean(values), _clean(base_values)
    nx, ny = len(x), len(y)
    if nx < 2 or ny < 2:
        return np.nan
    sp = np.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    return float((x.mean() - y.mean()) / sp) if sp > 0 else np.nan


def power(delta: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test at level alpha when the true difference is `delta` and the
    estimate has standard error `se` with `df` degrees of freedom (noncentral t, ncp = delta / se)."""
    from scipy.stats import nct, t

    if not (se > 0 and df > 0):
        return np.nan
    tc = t.ppf(1 - alpha / 2, df)
    ncp = delta / se
    pw = float(nct.sf(tc, df, ncp) + nct.cdf(-tc, df, ncp))
    if not np.isfinite(pw):  # scipy's nct fails far in the tail (huge ncp or df): the normal limit
        from scipy.stats import norm

        pw = float(norm.sf(tc - ncp) + norm.cdf(-tc - ncp))
    return pw


@lru_cache(maxsize=4096)
def _mde_factor(df: float, alpha: float, target_power: float) -> float:
    """MDE / se for a two-sided t-test: the ncp at which power = target_power (MDE is linear in se)."""
    from scipy.optimize import brentq
    from scipy.stats import t

    hi = 2 * (t.ppf(1 - alpha / 2, df) + t.ppf(target_power, df)) + 10
    return float(brentq(lambda d: power(d, 1.0, df, alpha) - target_power, 0.0, hi, xtol=1e-10))


def mde(se: float, df: float, alpha: float = 0.05, target_power: float = 0.8) -> float:
    """Minimum detectable effect: the true difference the two-sided t-test (level alpha) detects with
    probability target_power, given the comparison's standard error and df."""
    if not (np.isfinite(se) and np.isfinite(df) and se >= 0 and df > 0):
        return np.nan
    return se * _mde_factor(round(float(df), 6), alpha, target_power)


def pooled_sd(groups) -> tuple[float, int]:
    """Within-group SD pooled over groups with ≥ 2 values (the seed-to-seed SD of a metric) and its df."""
    ss, df = 0.0, 0
    for g in groups:
        x = _clean(g)
        if len(x) >= 2:
            ss += float(((x - x.mean()) ** 2).sum())
            df += len(x) - 1
    return (float(np.sqrt(ss / df)) if df else np.nan), df


WELCH_SIMS = 10_000


@lru_cache(maxsize=4096)
def _welch_factor(na: int, nb: int, alpha: float, target_power: float) -> float:
    """MDE / SE_true of Welch's test with na, nb normal values of one SD: its power averaged over the
    sample variances (simulated, fixed seed; the mean difference is independent of them), solved for Δ.
    Why not the noncentral t at df = na + nb − 2: Welch's df is random and smaller at 2–5 seeds, so that
    formula overstates power (measured: 0.68 instead of 0.8 at 3 + 3 seeds, bench/calibration.py)."""
    from scipy.optimize import brentq
    from scipy.stats import norm, t

    if na > 10 and nb > 10:  # Welch ≈ Student there (factors within 0.5% at 10 + 10)
        return _mde_factor(float(na + nb - 2), alpha, target_power)
    rng = np.random.default_rng(20_240_611)
    va = rng.chisquare(na - 1, WELCH_SIMS) / (na - 1) / na
    vb = rng.chisquare(nb - 1, WELCH_SIMS) / (nb - 1) / nb
    se_hat = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    se_true = np.sqrt(1 / na + 1 / nb)
    grid = np.linspace(df.min(), df.max(), 256)  # t quantiles on a df grid, interpolated (t.ppf per draw is slow)
    crit = np.interp(df, grid, t.ppf(1 - alpha / 2, grid)) * se_hat / se_true

    def pw(d: float) -> float:
        return float(np.mean(norm.cdf(d - crit) + norm.cdf(-d - crit)))

    return float(brentq(lambda d: pw(d) - target_power, 0.0, 200.0, xtol=1e-8))


def welch_mde(sd: float, n: int, n_base: int, *, alpha: float = 0.05, target_power: float = 0.8,
              extra_var: float = 0.0) -> float:
    """MDE of Welch's test comparing n with n_base runs whose values have SD `sd`, when the difference also
    carries `extra_var` that seeds do not reduce (treated like seed variance: slightly conservative)."""
    if not (np.isfinite(sd) and sd >= 0 and n >= 2 and n_base >= 2):
        return np.nan
    se = np.sqrt(sd ** 2 * (1 / n + 1 / n_base) + extra_var)
    return float(se * _welch_factor(int(n), int(n_base), alpha, target_power))


# Why per comparison and bias-corrected: an MDE from the SD pooled over every row of a column is smaller
# than a noisy comparison's own CI can resolve (a row whose seeds spread twice as much as the others gets the
# others' MDE), and plugging the sample SD s for σ makes the MDE biased low (E[s] = c4 σ < σ: detection at the
# printed MDE was 0.75 instead of 0.80 at 3 + 3 seeds, bench/calibration.py). The MDE below uses the
# comparison's own standard error, divided by c4 at the df that standard error has under the equal-variance
# normal model the Welch factor assumes: an unbiased estimate of the true SE, so the printed MDE is unbiased
# for the Δ the test detects with the target power.

def c4(df: float) -> float:
    """E[s] / σ when s² ~ σ² χ²_df / df: √(2/df) Γ((df+1)/2) / Γ(df/2) (0.886 at df 2, 0.940 at 4, 0.975 at 10);
    NaN for df ≤ 0."""
    from scipy.special import gammaln

    if not (np.isfinite(df) and df > 0):
        return np.nan
    return float(np.sqrt(2.0 / df) * np.exp(gammaln((df + 1) / 2) - gammaln(df / 2)))


def se_df(n: int, n_base: int) -> float:
    """Degrees of freedom of Welch's SE² = s_x²/n + s_y²/n_base when both sides share one true variance
    (Satterthwaite: (1/n + 1/n_base)² / (1/(n²(n−1)) + 1/(n_base²(n_base−1)))): n + n_base − 2 for equal arms.
    A fixed number (not the random Welch df estimate), so SE / c4(se_df) is unbiased for the true SE."""
    if n < 2 or n_base < 2:
        return np.nan
    return float((1 / n + 1 / n_base) ** 2 / (1 / (n ** 2 * (n - 1)) + 1 / (n_base ** 2 * (n_base - 1))))


def family_alpha(alpha: float, m: int, correction: str) -> float:
    """The per-comparison level of the most conservative step of a corrected family of m comparisons: α/m for
    Holm (its first step = Bonferroni) and BH (its smallest threshold), α with no correction."""
    if correction in ("holm", "bh") and m >= 1:
        return alpha / m
    return alpha


def comparison_mde(se: float, n: int, n_base: int, *, alpha: float = 0.05, target_power: float = 0.8,
                   extra_var: float = 0.0, floor: float = np.nan) -> float:
    """MDE of one Welch comparison from its own standard error `se` (of which `extra_var` is a part that
    seeds do not reduce, e.g. the problem term τ²/P, and is already estimated with many df):
    the seed part of the SE is divided by c4(se_df(n, n_base)) (unbiased for the true SE), times Welch's
    MDE factor at (n, n_base, alpha, target_power); never below `floor` (the comparison's CI half-width: a Δ
    smaller than the CI resolves is not detectable). NaN without 2 values a side or with SE = 0."""
    if not (np.isfinite(se) and se > 0 and n >= 2 and n_base >= 2):
        return np.nan
    extra = min(max(float(extra_var), 0.0), se ** 2) if np.isfinite(extra_var) else 0.0
    seed_se = np.sqrt(se ** 2 - extra) / c4(se_df(int(n), int(n_base)))
    out = float(np.sqrt(seed_se ** 2 + extra) * _welch_factor(int(n), int(n_base), alpha, target_power))
    return max(out, float(floor)) if np.isfinite(floor) else out


def seeds_needed(target_delta: float, sd: float, *, alpha: float = 0.05, target_power: float = 0.8,
                 extra_var: float = 0.0, n_max: int = 1000) -> int | None:
    """Smallest seeds per arm n (equal arms) at which Welch's test detects `target_delta` with probability
    target_power (`welch_mde` ≤ target), when one run's value has SD `sd` and the difference carries
    `extra_var` that seeds do not reduce (e.g. the problem term τ²/P). None above n_max."""
    if not (np.isfinite(sd) and sd >= 0 and target_delta != 0 and np.isfinite(target_delta)):
        return None

    def ok(n: int) -> bool:
        return bool(welch_mde(sd, n, n, alpha=alpha, target_power=target_power, extra_var=extra_var)
                    <= abs(target_delta))

    if not ok(n_max):
        return None
    lo, hi = 1, n_max  # the MDE falls with n: bisect for the first n that reaches the target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


# ------------------------------------------------------------------------------ several suites (rliable)
# Agarwal et al. 2021 ("Deep RL at the edge of the statistical precipice"); the rliable package is
# archived, so the few estimators the report needs are here. Scores are [runs, suites].

def iqm(scores) -> float:
    """Interquartile mean of all values (NaN dropped): sort, drop floor(n/4) from each end, average
    (= scipy.stats.trim_mean(x, 0.25), what rliable computes)."""
    x = np.sort(_clean(scores))
    n = len(x)
    if n == 0:
        return np.nan
    cut = int(0.25 * n)
    return float(x[cut:n - cut].mean())


def prob_improvement(x, y) -> float:
    """P(X > Y) averaged over suites: per suite the fraction of (run of x, run of y) pairs where x's run
    scores higher, ties counting 1/2 (the Mann–Whitney U / (n m)). x, y: [runs, suites]."""
    x, y = np.atleast_2d(np.asarray(x, dtype=float)), np.atleast_2d(np.asarray(y, dtype=float))
    per = []
    for j in range(x.shape[1]):
        a, b = _clean(x[:, j]), _clean(y[:, j])
        if len(a) and len(b):
            d = a[:, None] - b[None, :]
            per.append(float(((d > 0) + 0.5 * (d == 0)).mean()))
    return float(np.mean(per)) if per else np.nan


def performance_profile(scores, taus) -> np.ndarray:
    """Fraction of runs scoring above tau, averaged over suites, for each tau (rliable's run-score
    distribution). scores: [runs, suites]."""
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    taus = np.asarray(taus, dtype=float)
    present = ~np.isnan(s)
    frac = (s[None, :, :] > taus[:, None, None]).sum(axis=1) / np.maximum(present.sum(axis=0), 1)
    return frac[:, present.any(axis=0)].mean(axis=1)


def stratified_indices(rng: np.random.Generator, n_runs: int, n_suites: int, resamples: int) -> np.ndarray:
    """[resamples, n_runs, n_suites] run indices drawn with replacement independently per suite (the
    suites are the strata: rliable's StratifiedBootstrap)."""
    return rng.integers(0, n_runs, size=(resamples, n_runs, n_suites))


def stratified_ci(stat, arrays, *, resamples: int = 2000, level: float = DEFAULT_LEVEL,
                  seed: int = DEFAULT_SEED) -> tuple[float, float, float]:
    """(stat(*arrays), lo, hi): percentile interval of `stat` over stratified bootstrap resamples of
    each [runs, suites] array (arrays drawn in order from one default_rng(seed))."""
    rng = np.random.default_rng(seed)
    arrays = [np.atleast_2d(np.asarray(a, dtype=float)) for a in arrays]
    point = float(stat(*arrays))
    if resamples <= 0 or any(a.shape[0] < 2 for a in arrays):
        return point, np.nan, np.nan
    idx = [stratified_indices(rng, a.shape[0], a.shape[1], resamples) for a in arrays]
    cols = [np.arange(a.shape[1])[None, :] for a in arrays]
    boot = np.array([stat(*[a[i[b], c] for a, i, c in zip(arrays, idx, cols, strict=True)])
                     for b in range(resamples)])
    lo, hi = np.nanpercentile(boot, _q(level))
    return point, float(lo), float(hi)

"""Per-problem evaluation results → paired comparisons between arms scored on the same problems.

Artifact contract (docs/contracts.md): an evaluation of a run at step N on suite S logs
`eval/<S>/step_<N:06d>.parquet`, one row per (problem, sample): problem_id str, sample int (0..k-1),
correct bool, answer str, length int, truncated bool. Only problem_id and correct are read here.

Per run and problem: accuracy = mean of `correct` over its samples (avg@k), pass@k = the unbiased
estimator 1 - C(n-c, k)/C(n, k) (Chen et al. 2021) with n samples, c correct, k = the fewest samples any
(run, problem) of the suite has (= "any sample correct" when every problem has k samples).

A comparison of arm A (runs × problems matrix) with baseline B uses the problems every run of both arms
has. Δ = mean over those problems of (mean over A's runs − mean over B's runs) = difference of the arms'
means. Two numbers describe its uncertainty:

- the interval: a hierarchical bootstrap (`hier_boot`): per resample b, A's runs are drawn with
  replacement within A, B's within B, and one set of problems with replacement, the same set for both
  arms (so the pairing by problem is kept); Δ_b is recomputed; percentile interval. Draw order from a
  fresh `numpy.random.default_rng(seed)`: `ia = rng.integers(0, nA, (R, nA))`, `ib = rng.integers(0, nB,
  (R, nB))`, `ip = rng.integers(0, P, (R, P))`.
- the p-value: a t-test whose variance has the two components the bootstrap resamples (`crossed_t`):
  seeds — Welch's variance of the arms' run means (seed effects and the seed × problem noise), with its
  Welch df — plus problems — τ²/P, where τ² is the variance over problems of the per-problem arm
  difference beyond what run noise explains, τ² = max(0, S²_d − σ²_res (1/nA + 1/nB)), σ²_res the
  seed × problem interaction variance pooled within the arms ((nA−1)(P−1) + (nB−1)(P−1) df); df by
  Satterthwaite. Why not the bootstrap's p or a sign-flip over problems: with 2–5 seeds per arm a
  bootstrap over seeds underestimates their variance ((n−1)/n of it, no t-tail) and is anti-conservative;
  a sign-flip over problems treats problems as independent and misses the seed effect every problem of a
  run shares (both measured in bench/calibration.py). The t-test is calibrated at 2+ seeds (same file).
"""
from __future__ import annotations

import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from rlkit.paths import eval_artifact
from rlkit.report import stats
from rlkit.report.spec import REEVAL_SUFFIX

ARTIFACT = re.compile(r"^eval/(?P<suite>[^/]+)/step_(?P<step>\d+)\.parquet$")
COLUMNS = ("problem_id", "sample", "correct", "answer", "length", "truncated")
METRICS = ("acc", "pass@k")


artifact_path = eval_artifact  # (one naming rule, rlkit/paths.py)


def local_dir(artifact_uri: str | None) -> Path | None:
    """The local directory of a run's artifacts (file:// or a plain path), else None (a remote store)."""
    if not artifact_uri:
        return None
    u = urlparse(artifact_uri)
    if u.scheme in ("", "file"):
        return Path(unquote(u.path))
    return None


def list_evals(client, run_id: str, artifact_uri: str | None) -> dict[str, dict[int, str]]:
    """suite → step → file (a local path, or the artifact path of a remote store)."""
    out: dict[str, dict[int, str]] = {}
    d = local_dir(artifact_uri)
    if d is not None:
        for f in d.glob("eval/*/step_*.parquet"):
            m = ARTIFACT.match(f.relative_to(d).as_posix())
            if m:
                out.setdefault(m["suite"], {})[int(m["step"])] = str(f)
        return out
    for sd in client.list_artifacts(run_id, "eval"):
        for f in client.list_artifacts(run_id, sd.path):
            m = ARTIFACT.match(f.path)
            if m:
                out.setdefault(m["suite"], {})[int(m["step"])] = f.path
    return out


def pick_step(steps, step: str | int) -> int | None:
    """last (and mean) → the last evaluation; N → the last at or before N ("best": see `read_suites`)."""
    steps = sorted(steps)
    if not steps:
        return None
    if step in ("last", "best", "mean"):
        return steps[-1]
    ok = [s for s in steps if s <= int(step)]
    return ok[-1] if ok else None


def _read(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(problem ids, samples per problem, correct per problem) of one file."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["problem_id", "correct"])
    enc = t.column("problem_id").combine_chunks().dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    correct = t.column("correct").to_numpy(zero_copy_only=False).astype(float)
    k = len(enc.dictionary)
    return enc.dictionary.to_pylist(), np.bincount(codes, minlength=k), np.bincount(codes, correct, minlength=k)


def pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k); NaN where n < k."""
    from scipy.special import gammaln

    n, c = np.asarray(n, dtype=float), np.asarray(c, dtype=float)
    out = np.full(n.shape, np.nan)
    ok = n >= k
    fail = n - c
    some = ok & (fail >= k)
    out[ok] = 1.0
    with np.errstate(invalid="ignore"):
        logr = gammaln(fail + 1) - gammaln(fail - k + 1) - gammaln(n + 1) + gammaln(n - k + 1)
    out[some] = 1.0 - np.exp(logr[some])
    out[ok & (c == 0)] = 0.0  # exactly (exp of the log-ratio is 1 only up to rounding)
    return out


@dataclass
class Suite:
    """Per-problem results of one eval suite: rows = runs, columns = problems (NaN = not evaluated)."""

    name: str
    run_ids: list[str]
    problems: list[str]
    steps: dict[str, int]  # run_id → the evaluation step read
    n: np.ndarray  # [runs, P] samples
    c: np.ndarray  # [runs, P] correct samples
    k: int  # pass@k's k

    def metric(self, name: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            if name == "acc":
                return np.where(self.n > 0, self.c / np.maximum(self.n, 1), np.nan)
        if name == "pass@k":
            return np.where(self.n > 0, pass_at_k(self.n, self.c, self.k), np.nan)
        raise ValueError(f"per-problem metric must be one of {METRICS}, got {name!r}")

    def row(self, run_id: str) -> int:
        return self.run_ids.index(run_id)


def listings(client, runs) -> dict[str, dict[str, dict[int, str]]]:
    """run_id → `list_evals` of each run (DataFrame with run_id, artifact_uri)."""
    return {r: list_evals(client, r, a) for r, a in zip(runs["run_id"], runs["artifact_uri"], strict=True)}


def reeval_pairs(listing: dict[str, dict[str, dict[int, str]]]) -> list[str]:
    """Suites that some run also evaluated as `<suite>_reeval` (the base model's second evaluation)."""
    names = {s for v in listing.values() for s in v}
    return sorted(s for s in names if not s.endswith(REEVAL_SUFFIX) and s + REEVAL_SUFFIX in names)


def read_suites(client, runs, step: str | int = "last", *, workers: int = 4, reeval: bool = False,
                listing: dict | None = None, only: set[str] | None = None) -> dict[str, Suite]:
    """Per-problem results of every suite of `runs` (DataFrame with run_id, artifact_uri) at `step`.
    `best` = the evaluation with the highest mean accuracy per run and suite (optimistic: it selects on
    the data it reports). Local artifact stores are read in place; remote ones are downloaded first.
    `<suite>_reeval` twins are left out unless `reeval`; `only` restricts the suites read; `listing` (from
    `listings`) saves listing the artifacts again."""
    listing = listing if listing is not None else listings(client, runs)
    listing = {r: listing.get(r, {}) for r in runs["run_id"]}
    suites = sorted({s for v in listing.values() for s in v if only is None or s in only})
    if not reeval:  # `<suite>_reeval` is the base model's second evaluation, not a suite of its own
        suites = [s for s in suites if not (s.endswith(REEVAL_SUFFIX) and s[:-len(REEVAL_SUFFIX)] in suites)]
    tmp = None
    jobs: list[tuple[str, str, int, str]] = []  # (suite, run, step, file)
    for s in suites:
        for r, ev in listing.items():
            if s not in ev:
                continue
            cands = sorted(ev[s]) if step == "best" else [pick_step(ev[s], step)]
            jobs += [(s, r, st, ev[s][st]) for st in cands if st is not None]

    def fetch(job):
        nonlocal tmp
        s, r, st, f = job
        if not Path(f).is_absolute():  # a remote artifact path
            tmp = tmp or tempfile.mkdtemp(prefix="rlkit_eval_")
            f = client.download_artifacts(r, f, tmp)
        return job, _read(f)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(fetch, jobs))
    if step == "best":
        best: dict[tuple[str, str], tuple] = {}
        for (s, r, st, _), (ids, n, c) in results:
            score = c.sum() / max(n.sum(), 1)
            if (s, r) not in best or score > best[(s, r)][0]:
                best[(s, r)] = (score, (s, r, st, None), (ids, n, c))
        results = [(j, v) for _, j, v in best.values()]
    out = {}
    for s in suites:
        mine = [(j, v) for j, v in results if j[0] == s]
        run_ids = [j[1] for j, _ in mine]
        index: dict[str, int] = {}
        for _, (ids, _, _) in mine:
            for p in ids:
                index.setdefault(p, len(index))
        problems = sorted(index, key=_natural)
        col = {p: i for i, p in enumerate(problems)}
        N = np.zeros((len(run_ids), len(problems)))
        C = np.zeros_like(N)
        for i, (_, (ids, n, c)) in enumerate(mine):
            cols = np.fromiter((col[p] for p in ids), dtype=np.int64, count=len(ids))
            N[i, cols] = n
            C[i, cols] = c
        present = N[N > 0]
        out[s] = Suite(s, run_ids, problems, {j[1]: j[2] for j, _ in mine}, N, C,
                       int(present.min()) if present.size else 1)
    return out


def _natural(p: str):
    return (0, int(p), "") if p.isdigit() else (1, 0, p)


# ------------------------------------------------------------------------------ the comparison

def shared(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A and B restricted to the problems every run of both arms has a value for."""
    keep = np.isfinite(A).all(axis=0) & np.isfinite(B).all(axis=0)
    return A[:, keep], B[:, keep]


@lru_cache(maxsize=8)
def _boot_counts(seed: int, resamples: int, na: int, nb: int, p: int):
    """How often each run/problem is drawn per resample (the documented draw order)."""
    rng = np.random.default_rng(seed)
    draws = (rng.integers(0, na, (resamples, na)), rng.integers(0, nb, (resamples, nb)),
             rng.integers(0, p, (resamples, p)))
    out = []
    for idx, n in zip(draws, (na, nb, p), strict=True):
        flat = (np.arange(resamples)[:, None] * n + idx).ravel()
        C = np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(float)
        C.setflags(write=False)
        out.append(C)
    return tuple(out)


def hier_boot(A: np.ndarray, B: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Δ of each hierarchical-bootstrap resample (module docstring); A [nA, P], B [nB, P], no NaN.
    Δ_b = Σ_s Σ_p cA[b,s] cP[b,p] A[s,p] / (nA P) − the same for B, cX = draw counts."""
    (na, p), nb = A.shape, B.shape[0]
    ca, cb, cp = _boot_counts(seed, resamples, na, nb, p)
    # [R, P] resampled per-problem arm difference; einsum's own loop, not a multi-threaded BLAS call (small
    # matrices: on a busy 2-core machine BLAS threads spun 4x the CPU of the work)
    D = np.einsum("rs,sp->rp", ca, A) * (1.0 / na) - np.einsum("rs,sp->rp", cb, B) * (1.0 / nb)
    return np.einsum("rp,rp->r", D, cp) / p


@dataclass(frozen=True)
class Components:
    """Variance pieces of a paired comparison (see `crossed_t`)."""

    var_seed: float  # Welch variance of the difference of the arms' run means
    df_seed: float
    tau2: float  # per-problem arm-difference variance beyond run noise (≥ 0)
    sigma2_res: float  # seed × problem interaction variance, pooled within arms
    problems: int


def components(A: np.ndarray, B: np.ndarray) -> Components:
    na, p = A.shape
    nb = B.shape[0]
    ra, rb = A.mean(axis=1), B.mean(axis=1)
    va, vb = ra.var(ddof=1) / na, rb.var(ddof=1) / nb
    v1 = va + vb
    df1 = v1 ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1)) if v1 > 0 else float(na + nb - 2)
    ss, df = 0.0, 0
    for X in (A, B):
        R = X - X.mean(axis=1, keepdims=True) - X.mean(axis=0, keepdims=True) + X.mean()
        ss += float((R ** 2).sum())
        df += (X.shape[0] - 1) * (p - 1)
    s2 = ss / df if df else 0.0
    d = A.mean(axis=0) - B.mean(axis=0)
    tau2 = max(0.0, float(d.var(ddof=1)) - s2 * (1 / na + 1 / nb)) if p > 1 else 0.0
    return Components(float(v1), float(df1), tau2, s2, p)


def crossed_t(A: np.ndarray, B: np.ndarray, *, level: float = stats.DEFAULT_LEVEL) -> tuple[stats.Test, Components]:
    """Paired t-test of Δ with seed and problem variance components (module docstring); needs ≥ 2 runs
    per arm and ≥ 1 shared problem (no NaN in A, B)."""
    na, nb = A.shape[0], B.shape[0]
    delta = float(A.mean() - B.mean()) if A.size and B.size else np.nan
    if na < 2 or nb < 2 or A.shape[1] == 0:
        return stats.Test(delta, np.nan, np.nan, np.nan, np.nan, np.nan, na, nb), None
    c = components(A, B)
    v2 = c.tau2 / c.problems
    v = c.var_seed + v2
    df = v ** 2 / (c.var_seed ** 2 / c.df_seed + (v2 ** 2 / (c.problems - 1) if c.problems > 1 else 0.0)) \
        if v > 0 else c.df_seed
    return stats.t_test(delta, float(np.sqrt(v)), float(df), level=level, n=na, n_base=nb), c


@dataclass(frozen=True)
class Paired:
    delta: float
    lo: float  # hierarchical bootstrap interval
    hi: float
    p: float  # crossed t-test
    se: float
    df: float
    n: int
    n_base: int
    problems: int
    d: float  # standardized: Δ / pooled SD of the run means
    tau2: float


def compare(A: np.ndarray, B: np.ndarray, *, resamples: int = 2000, level: float = stats.DEFAULT_LEVEL,
            seed: int = 0) -> Paired:
    """One paired comparison of arm A with baseline B ([runs, problems], NaN = missing)."""
    A, B = shared(np.atleast_2d(A), np.atleast_2d(B))
    na, nb, p = A.shape[0], B.shape[0], A.shape[1]
    test, comp = crossed_t(A, B, level=level)
    lo = hi = np.nan
    if na >= 2 and nb >= 2 and p > 0 and resamples > 0:
        lo, hi = np.percentile(hier_boot(A, B, resamples=resamples, seed=seed), stats._q(level))
    d = stats.cohens_d(A.mean(axis=1), B.mean(axis=1)) if p else np.nan
    return Paired(test.delta, float(lo), float(hi), test.p, test.se, test.df, na, nb, p, d,
                  comp.tau2 if comp else np.nan)


def table(suites: dict[str, Suite], run_lists: dict[str, list[str]], base_of: dict[str, str | None], *,
          metrics=METRICS, resamples: int = 2000, level: float = stats.DEFAULT_LEVEL, seed: int = 0,
          alpha: float = 0.05, power: float = 0.8, correction: str = "holm", family: str = "column"):
    """Paired comparisons of every row with its baseline, per suite and per-problem metric → DataFrame
    (suite, metric, label, baseline, mean, n, delta, lo, hi, p, p_adj, significant, se, df, d, problems,
    tau2, family_m, mde_alpha, mde). mean = the arm's mean over its runs and problems; MDE = `pair_mde`, from
    the comparison's own two arms (never the spread of other rows)."""
    import pandas as pd

    recs = []
    for s, suite in suites.items():
        row_of = {r: i for i, r in enumerate(suite.run_ids)}
        for m in metrics:
            M = suite.metric(m)
            arm = {lab: M[[row_of[r] for r in runs if r in row_of]] for lab, runs in run_lists.items()}
            for lab, X in arm.items():
                b = base_of.get(lab)
                rec = {"suite": s, "metric": m if m != "pass@k" else f"pass@{suite.k}", "label": lab,
                       "baseline": b, "mean": float(np.nanmean(X)) if X.size else np.nan, "n": len(X)}
                if b is not None and b != lab and len(X) and len(arm[b]):
                    r = compare(X, arm[b], resamples=resamples, level=level, seed=seed)
                    rec.update(delta=r.delta, lo=r.lo, hi=r.hi, p=r.p, se=r.se, df=r.df, d=r.d,
                               problems=r.problems, tau2=r.tau2, n_base=r.n_base)
                recs.append(rec)
    cols = ["suite", "metric", "label", "baseline", "mean", "n", "n_base", "delta", "lo", "hi", "p", "p_adj",
            "significant", "se", "df", "d", "problems", "tau2", "family_m", "mde_alpha", "mde"]
    out = pd.DataFrame(recs).reindex(columns=cols)
    if out.empty:
        return out
    p = out["p"].to_numpy(dtype=float)
    adj = np.full(len(out), np.nan)
    fam_m = np.zeros(len(out), dtype=int)
    keys = out["suite"] + "\0" + out["metric"]
    for g in ([np.arange(len(out))] if family == "table" else [np.flatnonzero(keys == k) for k in keys.unique()]):
        adj[g] = stats.adjust(p[g], correction)
        fam_m[g] = int(np.isfinite(p[g]).sum())
    out["p_adj"] = adj
    out["significant"] = [None if np.isnan(q) else bool(q < alpha) for q in adj]
    out["family_m"] = fam_m
    out["mde_alpha"] = [stats.family_alpha(alpha, int(m), correction) for m in fam_m]
    out["mde"] = [pair_mde(c, power) for c in out.to_dict("records")]
    return out


def pair_mde(c: dict, power: float) -> float:
    """A paired comparison's MDE (`stats.comparison_mde`): its own crossed SE (seed part bias-corrected, problem
    part τ²/P as is), at its family's α/m, never below half its hierarchical-bootstrap CI."""
    if not (np.isfinite(c["p"]) and c["problems"]):
        return np.nan
    tau2 = c["tau2"] if np.isfinite(c["tau2"]) else 0.0
    return stats.comparison_mde(c["se"], int(c["n"]), int(c["n_base"]), alpha=c["mde_alpha"], target_power=power,
                                extra_var=tau2 / c["problems"], floor=(c["hi"] - c["lo"]) / 2)


# ------------------------------------------------------------------------------ the base model evaluated twice

def reeval_table(suites0: dict[str, Suite], groups: dict[str, list[str]], *, metrics=METRICS,
                 resamples: int = 2000, level: float = stats.DEFAULT_LEVEL, seed: int = 0):
    """The same checkpoint (the base model at step 0) evaluated twice, under eval seed A (`<suite>`) and B
    (`<suite>_reeval`): per suite, per-problem metric and group of runs (label → run ids, e.g. one per model),
    Δ = B − A. Per problem d_p = mean over the group's runs of (B − A) of the same run (the checkpoint cancels:
    what is left is evaluation noise); Δ = mean of d_p; CI = percentile bootstrap over problems (`resamples`
    draws `rng.integers(0, P, (R, P))` from `default_rng(seed)`); p = one-sample t-test of d_p over problems
    (df P − 1). Not part of any correction family. `suites0` = `read_suites(..., step=0, reeval=True)`.
    Columns: suite, metric, label, baseline, mean (B's), mean_a, n, n_base, delta, lo, hi, p, se, df,
    problems."""
    import pandas as pd

    recs = []
    for name, sa in suites0.items():
        sb = suites0.get(name + REEVAL_SUFFIX)
        if name.endswith(REEVAL_SUFFIX) or sb is None:
            continue
        for m in metrics:
            A, B = sa.metric(m), sb.metric(m)
            ra, rb = {r: i for i, r in enumerate(sa.run_ids)}, {r: i for i, r in enumerate(sb.run_ids)}
            col_b = {p: i for i, p in enumerate(sb.problems)}
            cols = [(i, col_b[p]) for i, p in enumerate(sa.problems) if p in col_b]
            ia, ib = np.array([c[0] for c in cols], dtype=int), np.array([c[1] for c in cols], dtype=int)
            for label, runs in groups.items():
                both = [r for r in runs if r in ra and r in rb]
                if not both or not len(cols):
                    continue
                D = B[[rb[r] for r in both]][:, ib] - A[[ra[r] for r in both]][:, ia]
                d = D[:, np.isfinite(D).all(axis=0)].mean(axis=0)
                P = len(d)
                if P == 0:
                    continue
                delta = float(d.mean())
                se = float(d.std(ddof=1) / np.sqrt(P)) if P > 1 else np.nan
                test = stats.t_test(delta, se, float(P - 1), level=level)
                lo = hi = np.nan
                if P > 1 and resamples > 0:
                    idx = np.random.default_rng(seed).integers(0, P, (resamples, P))
                    lo, hi = np.percentile(d[idx].mean(axis=1), stats._q(level))
                k_label = m if m != "pass@k" else f"pass@{min(sa.k, sb.k)}"
                recs.append({"suite": name, "metric": k_label, "label": label, "baseline": "eval seed A",
                             "mean": float(np.nanmean(B[[rb[r] for r in both]][:, ib])),
                             "mean_a": float(np.nanmean(A[[ra[r] for r in both]][:, ia])), "n": len(both),
                             "n_base": len(both), "delta": delta, "lo": float(lo), "hi": float(hi), "p": test.p,
                             "se": se, "df": float(P - 1), "problems": P})
    cols = ["suite", "metric", "label", "baseline", "mean", "mean_a", "n", "n_base", "delta", "lo", "hi", "p", "se",
            "df", "problems"]
    return pd.DataFrame(recs, columns=cols)

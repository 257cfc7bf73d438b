"""The estimators the field reports, as pure functions of per-problem sample results.

For one problem with n samples of which c are correct (Chen et al. 2021, "Evaluating Large Language
Models Trained on Code", eq. 1; lighteval and NeMo-RL use the same):

    pass@k = 1 - C(n-c, k) / C(n, k)     the probability that at least one of k samples drawn without
                                         replacement from the n is correct (unbiased; k <= n)
    pass^k = C(c, k) / C(n, k)           the probability that all k are correct (tau-bench's pass^k)
    avg@k  = c / n                       with k = n: the mean accuracy of one sample, i.e. an unbiased
                                         pass@1 with lower variance (DAPO reports avg@32 on AIME)
    maj@k  = 1 if the most frequent answer among the first k samples is correct, else 0; answers are
             grouped by the same verifier the reward uses (so `0.5` and `1/2` vote together); ties go
             to the answer seen first; samples with no extracted answer do not vote

A suite's value is the mean over problems; its standard error is the standard deviation of the
per-problem values over sqrt(number of problems) (problems are the sampling unit; Miller 2024).
MLflow keys cannot hold `@` or `^`, so they are logged as `avg_at_k`, `pass_at_k`, `pass_hat_k`, `maj_at_k`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from math import comb, sqrt

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem (n samples, c correct)."""
    _check(n, c, k)
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k (all k correct) for one problem."""
    _check(n, c, k)
    return comb(c, k) / comb(n, k)


def _check(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool],
                     same: Callable[[str, str], bool]) -> bool:
    """Whether the majority answer (grouped by `same`) is a correct one; ties go to the first seen."""
    groups: list[list[int]] = []  # indices of samples whose answers are equivalent
    for i, a in enumerate(answers):
        if a is None or a == "":
            continue
        for g in groups:
            if same(answers[g[0]], a):
                g.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return False
    best = max(groups, key=len)  # max keeps the first of equal-sized groups
    return bool(correct[best[0]])


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean over problems and its standard error (sample standard deviation / sqrt(P))."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), se


def suite_metrics(correct: Sequence[Sequence[bool]], answers: Sequence[Sequence[str | None]],
                  lengths: Sequence[Sequence[int]], truncated: Sequence[Sequence[bool]],
                  formatted: Sequence[Sequence[bool]], same: Callable[[str, str], bool]) -> dict[str, float]:
    """Every metric of one suite from per-problem lists of per-sample results (n samples each)."""
    n = len(correct[0])
    if any(len(c) != n for c in correct):
        raise ValueError("every problem needs the same number of samples")
    cs = [int(sum(c)) for c in correct]
    out: dict[str, float] = {}
    out[f"avg_at_{n}"], out[f"avg_at_{n}/se"] = mean_se([c / n for c in cs])
    for k in range(1, n + 1):
        out[f"pass_at_{k}"] = float(np.mean([pass_at_k(n, c, k) for c in cs]))
        out[f"pass_hat_{k}"] = float(np.mean([pass_hat_k(n, c, k) for c in cs]))
    for k in sorted({1, n} | {2 ** i for i in range(1, n.bit_length()) if 2 ** i <= n}):
        out[f"maj_at_{k}"] = float(np.mean([majority_correct(a[:k], c[:k], same) for a, c in zip(answers, correct)]))
    flat = lambda xs: [v for row in xs for v in row]  # noqa: E731
    ok, ln = np.array(flat(correct), dtype=bool), np.array(flat(lengths), dtype=float)
    out["length/correct"] = float(ln[ok].mean()) if ok.any() else float("nan")
    out["length/incorrect"] = float(ln[~ok].mean()) if (~ok).any() else float("nan")
    out["truncated_frac"] = float(np.mean(flat(truncated)))
    out["format_frac"] = float(np.mean(flat(formatted)))
    out["problems"] = float(len(correct))
    return out

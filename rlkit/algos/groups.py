"""Group-level diagnostics and filters: all-equal groups, all-correct / all-wrong rates, diversity.

A *group* is the G completions sampled for one prompt; ``group`` [B] int64 holds the prompt id of each
sequence (arbitrary ids, members need not be contiguous).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["distinct_frac", "group_outcomes", "uniform_groups"]


def _inverse(group: Tensor) -> tuple[Tensor, int]:
    """Dense group index [B] in 0..G-1 and the number of groups G."""
    _, inv = torch.unique(group, return_inverse=True)
    return inv, (int(inv.max().item()) + 1 if inv.numel() else 0)


def uniform_groups(scores: Tensor, group: Tensor) -> Tensor:
    """True for every member of a group whose scores are all exactly equal: scores [B], group [B] → bool [B].

    Such groups carry no learning signal under a group baseline (GRPO/RLOO advantage 0); DAPO's dynamic
    sampling (Yu et al. 2025, arXiv:2503.14476) drops them. A group of one sequence counts as uniform.
    """
    inv, n = _inverse(group)
    s = scores.detach()
    s = s if s.is_floating_point() else s.double()
    lo = torch.full((n,), float("inf"), dtype=s.dtype, device=s.device).scatter_reduce(
        0, inv, s, reduce="amin"
    )
    hi = torch.full((n,), float("-inf"), dtype=s.dtype, device=s.device).scatter_reduce(
        0, inv, s, reduce="amax"
    )
    return (lo == hi)[inv]


def group_outcomes(correct: Tensor, group: Tensor) -> tuple[float, float]:
    """(fraction of groups all correct, fraction of groups all wrong): correct [B] bool, group [B].

    The two observables Light-R1 tracked online; 1 - both = share of prompts still carrying signal.
    An empty batch gives (0.0, 0.0).
    """
    inv, n = _inverse(group)
    if n == 0:
        return 0.0, 0.0
    c = correct.to(torch.float64)
    count = torch.zeros(n, dtype=c.dtype).index_add(0, inv.cpu(), torch.ones_like(c).cpu())
    hits = torch.zeros(n, dtype=c.dtype).index_add(0, inv.cpu(), c.cpu())
    return float((hits == count).double().mean()), float((hits == 0).double().mean())


def distinct_frac(texts: list[str], group: list[int]) -> float:
    """Mean over groups of (#distinct completions / group size); 1.0 = all different, 1/G = all identical.

    Exact string equality (no normalisation). Measures the rollout-diversity collapse reported on
    Knights-and-Knaves (identical outputs across a group). An empty batch gives 0.0.
    """
    if len(texts) != len(group):
        raise ValueError(f"texts ({len(texts)}) and group ({len(group)}) differ in length")
    members: dict[int, list[str]] = {}
    for text, g in zip(texts, group, strict=True):
        members.setdefault(int(g), []).append(text)
    if not members:
        return 0.0
    return sum(len(set(ts)) / len(ts) for ts in members.values()) / len(members)

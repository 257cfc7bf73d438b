"""Placebo rewards: arms that tell whether a reward ablation's effect comes from the signal.

Spurious Rewards (arXiv 2506.10947) found that a reward independent of the answer raised Qwen2.5-Math-7B
on MATH-500 by 21 points against 29 for the true reward, and much less for other model families: a study
without a placebo arm cannot say how much of its effect is the reward's information. `reward=random`
replaces the total reward of each completion by a coin flip at the batch's own accuracy (a batch-level
transform, applied after the components are scored and logged); `reward=format_only` is a component
weighting (accuracy at weight 0, still logged).
"""
from __future__ import annotations

import random
from collections.abc import Sequence


def random_bernoulli(total: Sequence[float], correct: Sequence[bool], seed: int) -> list[float]:
    """Each completion scores 1 with probability p = the batch's share of correct answers, else 0,
    independently of what it wrote: the reward carries no information about the answer but has the true
    accuracy reward's scale and mean. Deterministic in `seed` (its own RNG: torch's stream is untouched)."""
    if len(total) != len(correct):
        raise ValueError(f"lengths differ: {len(total)} rewards, {len(correct)} correctness flags")
    if not total:
        return []
    p = sum(bool(c) for c in correct) / len(correct)
    rng = random.Random(seed)
    return [1.0 if rng.random() < p else 0.0 for _ in total]

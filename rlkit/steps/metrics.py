"""Explicit per-step timers and the step's summary metrics, each declaring how it combines over ranks."""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from rlkit import distributed
from rlkit.algos.advantages import masked_mean
from rlkit.algos.groups import distinct_frac, group_outcomes
from rlkit.rollout.base import Rollout

declare = distributed.declare
declare("max", "timing_s/")  # the slowest rank sets the pace
declare("sum", "perf/")
declare("seq-mean", "critic/score/mean", "response_length/mean", "response_length/clip_ratio", "rewards/",
        "groups/all_correct_frac", "groups/all_wrong_frac", "groups/filtered_frac", "rollout/distinct_frac",
        "rollout/correct_frac")
declare("max", "critic/score/max", "response_length/max")
declare("min", "critic/score/min", "response_length/min")
declare("token-mean", "critic/advantages/mean", "critic/returns/mean", "actor/kl_ref", "critic/values/mean")
declare("same", "actor/lr", "data/stage", "critic/vf_explained_var", "summary/")


class Timers:
    """Seconds per phase of one step, logged as `timing_s/<name>`; a phase entered twice (DAPO's extra
    generation rounds) accumulates."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

    def metrics(self) -> dict[str, float]:
        return {f"timing_s/{k}": v for k, v in self.seconds.items()}


def rollout_metrics(r: Rollout, scores: torch.Tensor, correct: torch.Tensor, uniform: torch.Tensor,
                    components: dict[str, list[float]], timed_out: torch.Tensor | None = None) -> dict[str, float]:
    """What was sampled and how it scored (verl's names, plus group outcomes and diversity)."""
    lengths = r.lengths.float()
    all_correct, all_wrong = group_outcomes(correct, r.group)
    m = {
        "critic/score/mean": float(scores.mean()),
        "critic/score/max": float(scores.max()), "critic/score/min": float(scores.min()),
        "response_length/mean": float(lengths.mean()), "response_length/max": float(lengths.max()),
        "response_length/min": float(lengths.min()),
        "response_length/clip_ratio": float(r.truncated.float().mean()),
        "groups/all_correct_frac": all_correct, "groups/all_wrong_frac": all_wrong,
        "groups/filtered_frac": float(uniform.float().mean()),
        "rollout/distinct_frac": distinct_frac(r.texts, r.group.tolist()),
        "rollout/correct_frac": float(correct.float().mean()),
    }
    m.update({f"rewards/{k}/mean": sum(v) / len(v) for k, v in components.items()})
    if timed_out is not None:  # share scored as wrong because the step's reward time budget ran out
        m["rewards/timeout_frac"] = float(timed_out.float().mean())
    return m


def advantage_metrics(adv: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None,
                      values: torch.Tensor | None, dist: distributed.Dist) -> dict[str, float]:
    m = {"critic/advantages/mean": float(masked_mean(adv, mask)), "critic/returns/mean": float(masked_mean(returns, mask))}
    if kl is not None:
        m["actor/kl_ref"] = float(masked_mean(kl, mask))
    if values is not None:
        m["critic/vf_explained_var"] = explained_variance(values, returns, mask, dist)
        m["critic/values/mean"] = float(masked_mean(values, mask))
    return m


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       dist: distributed.Dist | None = None) -> float:
    """1 - Var(returns - values) / Var(returns) over the valid tokens (of every rank: sums in float64)."""
    e = returns - values
    n, r1, r2, e1, e2 = (dist or distributed.Dist()).sum(mask.sum(), (returns * mask).sum(), (returns ** 2 * mask).sum(),
                                                         (e * mask).sum(), (e ** 2 * mask).sum())
    var_r = r2 / max(n, 1.0) - (r1 / max(n, 1.0)) ** 2
    var_e = e2 / max(n, 1.0) - (e1 / max(n, 1.0)) ** 2
    return 1.0 - var_e / var_r if var_r > 1e-12 else 0.0


# What diverges first when training does (a huge learning rate: the gradient norm, then loss and entropy).
WATCHED = ("actor/grad_norm", "actor/pg_loss", "actor/entropy", "actor/kl_loss", "actor/ppo_kl", "critic/vf_loss",
           "critic/grad_norm", "critic/values/mean")


class NonFinite(RuntimeError):
    """A watched metric is NaN or inf: the weights are garbage from here on (trainer.on_nonfinite=stop).
    Raised after the step is logged and before it is checkpointed, so the last checkpoint is the
    last finite state."""

    def __init__(self, step: int, bad: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in bad.items())
        super().__init__(f"non-finite training metrics at step {step}: {shown}; stopped without checkpointing "
                         "(lower trainer.lr or trainer.grad_clip; trainer.on_nonfinite=continue trains on)")
        self.step, self.bad = step, bad

    @property
    def diagnosis(self) -> str:
        return f"nonfinite at step {self.step}: {', '.join(self.bad)}"


def nonfinite(m: dict[str, float], keys: tuple[str, ...] = WATCHED) -> dict[str, float]:
    """The watched metrics of one step that are NaN or inf (empty: all finite)."""
    return {k: m[k] for k in keys if k in m and m[k] is not None and not math.isfinite(float(m[k]))}

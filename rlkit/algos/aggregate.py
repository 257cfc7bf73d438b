"""Loss aggregation: per-token loss [B,T] → scalar, the knob behind GRPO/DAPO/Dr.GRPO length biases.

Modes (verl's ``loss_agg_mode`` names), with L = per-token loss, m = mask, N = valid tokens,
S = sequences:

* ``token-mean``               sum(L*m) / N                           (DAPO; every token weighs the same)
* ``seq-mean-token-sum``       sum_i sum_t(L*m) / S                   (long sequences weigh more)
* ``seq-mean-token-mean``      sum_i [sum_t(L*m) / n_i] / S            (original GRPO; short sequences'
                                                                       tokens weigh more → length bias)
* ``seq-mean-token-sum-norm``  sum(L*m) / (S * constant)              (Dr.GRPO: a fixed constant, e.g. the
                                                                       max response length, in place of n_i)

Gradient accumulation: pass ``total_tokens`` (valid tokens of the whole mini-batch) and ``total_seqs``
(sequences of the whole mini-batch) to every micro-batch call; the micro-batch results then *sum* to the
full-batch value, so accumulating their gradients equals the full-batch gradient. Without totals the
micro-batch's own counts are used (a mean over that micro-batch).

Deviation from verl: verl's ``seq-mean-token-sum-norm`` divides by ``mask.shape[-1]`` (the padded width,
which changes with the batch) and not by the number of sequences; rlkit divides by ``S * constant`` with
the constant pinned in ``conf/algo`` (Dr.GRPO's paper form), so the loss scale is independent of both
padding and batch size.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MODES", "aggregate"]

MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-mean",
    "seq-mean-token-sum-norm",
)


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    mode: str,
    *,
    total_tokens: float | Tensor | None = None,
    total_seqs: float | Tensor | None = None,
    constant: float | None = None,
) -> Tensor:
    """Aggregate ``per_token`` [B,T] under ``mask`` [B,T] into a scalar according to ``mode``.

    Padded positions never contribute (even if they hold inf/NaN). Every row of the batch counts as a
    sequence for ``S`` (pass ``total_seqs`` to override). Empty denominators are clamped to 1 (loss 0).
    """
    if mode not in MODES:
        raise ValueError(f"unknown aggregation mode={mode!r}; valid modes: {', '.join(MODES)}")
    masked = torch.where(mask > 0, per_token * mask, torch.zeros_like(per_token))  # [B,T]
    n_seqs = per_token.shape[0] if total_seqs is None else total_seqs
    if mode == "token-mean":
        n_tok = mask.sum() if total_tokens is None else total_tokens
        return masked.sum() / _at_least_one(n_tok)
    if mode == "seq-mean-token-sum":
        return masked.sum() / _at_least_one(n_seqs)
    if mode == "seq-mean-token-mean":
        per_seq = masked.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)  # [B]
        return per_seq.sum() / _at_least_one(n_seqs)
    if constant is None or constant <= 0:
        raise ValueError(
            f"aggregation {mode!r} needs a positive constant (algo.agg_constant), got {constant!r}"
        )
    return masked.sum() / (_at_least_one(n_seqs) * constant)


def _at_least_one(x: float | Tensor) -> float | Tensor:
    return x.clamp(min=1) if isinstance(x, Tensor) else max(float(x), 1.0)

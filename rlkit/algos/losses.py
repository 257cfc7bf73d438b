"""Per-token policy and value losses (PPO family). Aggregate them with ``rlkit.algos.aggregate``.

Sign convention: these are *losses* to minimise. For a token with advantage A and importance ratio
r = exp(logp - old_logp), the unclipped loss is -A * r, so a positive advantage raises the token's
probability. Padded positions (mask == 0) are returned as exactly 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algos.advantages import masked_mean

__all__ = ["ppo_clip", "value_loss"]


def ppo_clip(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate (Schulman et al. 2017, arXiv:1707.06347), per token.

    logp, old_logp, advantages, mask: [B,T] → (per_token_loss [B,T], {"pg_clipfrac", "ppo_kl"} scalars).

    loss = max(-A * r, -A * clip(r, 1 - clip_low, 1 + clip_high)). Asymmetric bounds are DAPO's
    clip-higher (Yu et al. 2025, arXiv:2503.14476: clip_high 0.28 > clip_low 0.2 leaves room for
    low-probability tokens to rise). ``dual_clip = c > 1`` (Ye et al. 2020, arXiv:1912.09729) caps the loss
    of negative-advantage tokens at -A * c, i.e. loss = min(that, -A * c) where A < 0 (verl convention);
    ``None`` disables it (verl always applies c = 3.0; rlkit makes it opt-in).

    As verl, log r is clamped to [-20, 20] before the exp. Metrics (detached, token means over the mask, verl
    definitions): ``pg_clipfrac`` = share of tokens where the clipped term is the larger (i.e. the ratio
    clip is active, dual clip not counted); ``ppo_kl`` = mean of (old_logp - logp), the k1 estimate of
    KL(old || new).
    """
    log_ratio = torch.clamp(logp - old_logp, min=-20.0, max=20.0)  # [B,T]
    ratio = torch.exp(log_ratio)
    loss_unclipped = -advantages * ratio
    loss_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(loss_unclipped, loss_clipped)
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * dual_clip), loss)
    loss = torch.where(mask > 0, loss, torch.zeros_like(loss))
    with torch.no_grad():
        metrics = {
            "pg_clipfrac": masked_mean((loss_clipped > loss_unclipped).to(logp.dtype), mask),
            "ppo_kl": masked_mean(-log_ratio, mask),
        }
    return loss, metrics


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    *,
    clip: float | None,
) -> Tensor:
    """Clipped value loss (PPO2 / verl ``compute_value_loss``), per token: [B,T] → [B,T].

    v_clip = old_values + clamp(values - old_values, -clip, clip);
    loss = 0.5 * max((values - returns)^2, (v_clip - returns)^2). ``clip=None`` → 0.5 * (values - returns)^2.
    The 0.5 factor is verl's (applied outside its aggregation; the same thing for a linear aggregation).
    Padded positions are 0.
    """
    loss = (values - returns).square()
    if clip is not None:
        v_clip = old_values + torch.clamp(values - old_values, min=-clip, max=clip)
        loss = torch.maximum(loss, (v_clip - returns).square())
    return torch.where(mask > 0, 0.5 * loss, torch.zeros_like(loss))

"""Rollout/training mismatch: how far the policy that sampled a batch (the *behaviour* policy: the
generator's own log-probs, or a k-step-old policy under ``trainer.staleness``) is from the policy the
trainer scores it with, and the importance-sampling corrections for that gap.

A correction is a pure function ``fn(train_logp, rollout_logp, mask, **params) -> (weights [B,T],
metrics)``, chosen by ``algo.correction._target_`` (any importable function with that signature).
``train_logp`` is the trainer's log-prob of each sampled token before the update (the proximal policy of
decoupled PPO: the policy loss's ``old_logp``), ``rollout_logp`` the behaviour policy's. The weights are
detached and multiply the per-token policy loss; a weight of 0 drops the token (its denominators stay:
the loss is scaled, not renormalised). Metrics are token shares over ``mask``: ``capped_frac`` (weight
truncated at the cap) and ``masked_frac`` (token dropped). Ratios are exp(clamp(train - rollout, ±20)).

References: truncated IS for the vLLM/FSDP gap, Yao et al. 2025 ("Your efficient RL framework secretly
brings you off-policy RL training", fengyao.notion.site); masked IS / IcePop (Ling team 2025, Ring-1T,
arXiv:2510.18855); sequence-level IS (verl ``rollout_is: sequence``; Zheng et al. 2025, GSPO).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algos.advantages import masked_mean
from rlkit.algos.kl import kl_estimate

__all__ = ["mismatch", "mis", "no_correction", "seq_geometric_mean", "seq_tis", "tis"]


def _ratio(train_logp: Tensor, rollout_logp: Tensor) -> Tensor:
    return torch.exp(torch.clamp(train_logp - rollout_logp, min=-20.0, max=20.0)).detach()


def _fracs(mask: Tensor, capped: Tensor | None = None, masked: Tensor | None = None) -> dict[str, Tensor]:
    zero = torch.zeros((), dtype=mask.dtype, device=mask.device)
    return {"capped_frac": zero if capped is None else masked_mean(capped.to(mask.dtype), mask),
            "masked_frac": zero if masked is None else masked_mean(masked.to(mask.dtype), mask)}


def no_correction(train_logp: Tensor, rollout_logp: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Weights 1: train on the behaviour policy's samples as if they were the trainer's (today's default)."""
    return torch.ones_like(train_logp), _fracs(mask)


def tis(train_logp: Tensor, rollout_logp: Tensor, mask: Tensor, *, cap: float = 2.0
        ) -> tuple[Tensor, dict[str, Tensor]]:
    """Token-level truncated IS (TIS): w = min(pi_train / pi_rollout, cap). Bounded variance at the price
    of a bias where the ratio exceeds the cap (Yao et al. 2025 use cap 2). ``capped_frac``: ratio > cap."""
    ratio = _ratio(train_logp, rollout_logp)
    return torch.clamp(ratio, max=cap), _fracs(mask, capped=ratio > cap)


def mis(train_logp: Tensor, rollout_logp: Tensor, mask: Tensor, *, low: float = 0.5, high: float = 2.0
        ) -> tuple[Tensor, dict[str, Tensor]]:
    """Masked IS (IcePop-style): w = ratio inside [low, high], 0 outside, so a token the two policies
    disagree on is dropped rather than down-weighted. ``masked_frac``: tokens outside the band."""
    ratio = _ratio(train_logp, rollout_logp)
    keep = (ratio >= low) & (ratio <= high)
    return torch.where(keep, ratio, torch.zeros_like(ratio)), _fracs(mask, masked=~keep)


def seq_tis(train_logp: Tensor, rollout_logp: Tensor, mask: Tensor, *, cap: float = 2.0
            ) -> tuple[Tensor, dict[str, Tensor]]:
    """Sequence-level truncated IS: one weight per sequence, min(prod_t ratio_t, cap) (the full sequence
    likelihood ratio, unbiased for sequence rewards below the cap), on every token of it. The log-ratio
    sum is clamped at ±20 before the exp. ``capped_frac``: tokens of sequences whose weight was capped."""
    log_w = torch.where(mask > 0, train_logp - rollout_logp, torch.zeros_like(train_logp)).sum(-1, keepdim=True)
    w = torch.exp(torch.clamp(log_w, min=-20.0, max=20.0)).detach()
    weights = torch.clamp(w, max=cap).expand_as(train_logp)
    return weights, _fracs(mask, capped=(w > cap).expand_as(train_logp))


def seq_geometric_mean(weights: Tensor, mask: Tensor) -> Tensor:
    """Token weights [B,T] -> each sequence's geometric mean over `mask`, on every token [B,T]: how verl's
    ``geo_mean`` (GMPO) folds token-level IS weights into its sequence loss (its epsilons included: a
    masked-out weight 0 counts as 1e-10). Arithmetic means differ once the weights spread (one case:
    verl's loss 0.0141 where the arithmetic mean gave -0.1384)."""
    n = mask.sum(-1, keepdim=True)
    log_w = (torch.log(weights + 1e-10) * mask).sum(-1, keepdim=True) / (n + 1e-8)
    return torch.exp(log_w).expand_as(weights)


def mismatch(train_logp: Tensor, rollout_logp: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """How far the trainer's token log-probs are from the sampler's, over ``mask`` (detached scalars):
    ``kl`` = mean k3 estimate of KL(rollout || train) (samples come from the rollout policy; clamped as
    ``rlkit.algos.kl``), ``ratio_mean`` / ``ratio_max`` of pi_train / pi_rollout. An empty mask gives
    kl 0, ratio_mean 0 and ratio_max 1."""
    with torch.no_grad():
        ratio = _ratio(train_logp, rollout_logp)
        k3 = kl_estimate(rollout_logp, train_logp, "k3")
        valid = mask > 0
        top = ratio[valid].max() if bool(valid.any()) else torch.ones((), dtype=ratio.dtype)
        return {"kl": masked_mean(k3, mask), "ratio_mean": masked_mean(ratio, mask), "ratio_max": top}

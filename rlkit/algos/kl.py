"""Per-token KL estimators between the policy and the reference model (Schulman 2020,
http://joschu.net/blog/kl-approx.html), from sampled-token log-probabilities only.

With x ~ pi (the sampled token) and log r = ref_logp - logp:

* ``k1`` = logp - ref_logp = -log r            unbiased for KL(pi || ref), high variance, can be < 0
* ``k2`` = 0.5 * (logp - ref_logp)^2            biased, low variance, >= 0
* ``k3`` = exp(log r) - log r - 1               unbiased, low variance, >= 0 ("low_var_kl"; GRPO's choice)

``k3`` follows verl's ``low_var_kl``: log r is clamped to [-20, 20] before the exp and the result to
[-10, 10] (so one far-off token cannot dominate the loss; it also makes k3's gradient zero beyond the
clamp). k1/k2 are not clamped (verl).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KL_KINDS", "kl_estimate"]

KL_KINDS: tuple[str, ...] = ("k1", "k2", "k3")


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str) -> Tensor:
    """Per-token KL estimate: logp [B,T], ref_logp [B,T] (sampled-token log-probs) → [B,T].

    Differentiable w.r.t. ``logp`` (use in the loss) or call on detached old log-probs (use in the reward).
    Padded positions are not masked here; aggregate with the mask.
    """
    if kind == "k1":
        return logp - ref_logp
    if kind == "k2":
        return 0.5 * (logp - ref_logp).square()
    if kind == "k3":
        log_r = torch.clamp(ref_logp - logp, min=-20.0, max=20.0)
        return torch.clamp(torch.exp(log_r) - log_r - 1.0, min=-10.0, max=10.0)
    raise ValueError(f"unknown KL estimator kind={kind!r}; valid kinds: {', '.join(KL_KINDS)}")

"""Advantage estimators: outcome rewards → per-token advantages and returns.

Every estimator has the same signature so the loop never branches on an algorithm's name::

    fn(token_rewards [B,T], mask [B,T], group [B] int64, values [B,T] | None = None, **params)
        -> (advantages [B,T], returns [B,T])

Conventions shared by all estimators (the loop relies on them):

* ``token_rewards`` holds the outcome score on the last valid token plus, when the KL placement is
  ``reward``, ``-coef * KL`` on every valid token. Entries where ``mask == 0`` are ignored.
* A sequence's *score* is the sum of its valid token rewards (verl's ``token_level_rewards.sum(-1)``).
* Advantages and returns are exactly ``0.0`` on every padded position (``mask == 0``), whatever the
  estimator (verl leaves whitened non-zero values on padding; we zero them, so a consumer that forgets the
  mask still sees no signal there).
* Sign: a positive advantage makes the loss push the token's log-probability *up* (loss = -A * ratio).
* Everything runs under ``torch.no_grad``; outputs carry no graph.
* ``group`` holds arbitrary int64 prompt ids (not necessarily ``0..P-1``); members of a group need not be
  contiguous.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algos.groups import uniform_groups

__all__ = [
    "gae",
    "grpo",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "reinforce_pp",
    "rloo",
]


# ----------------------------------------------------------------------------------------------- helpers
def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``values`` over positions where ``mask > 0`` (weighted by ``mask``).

    ``values`` [B,T], ``mask`` [B,T] → scalar (``dim=None``) or [B] / [T] along ``dim``.
    Padded entries never contribute, even if they hold inf/NaN. An empty mask gives 0 (verl gives NaN).
    """
    masked = torch.where(mask > 0, values * mask, torch.zeros_like(values))
    if dim is None:
        total, count = masked.sum(), mask.sum()
    else:
        total, count = masked.sum(dim=dim), mask.sum(dim=dim)
    return torch.where(count > 0, total / count.clamp(min=1e-12), torch.zeros_like(total))


def masked_var(values: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance over all valid positions of the whole tensor (token-weighted), like verl's ``masked_var``.

    ``unbiased=True`` applies Bessel's correction n/(n-1) with n = number of valid tokens (verl's default;
    OpenRLHF uses the biased form). With n <= 1 the correction is skipped (verl divides by zero) → 0.
    Returns a scalar.
    """
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = torch.where(n > 1, var * n / (n - 1).clamp(min=1.0), var)
    return var


def masked_whiten(values: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """(values - mean) / sqrt(var + 1e-8) with token-weighted statistics of the whole batch (verl).

    ``values``, ``mask`` [B,T] → [B,T]. Statistics use every valid token of every sequence, so a long
    sequence weighs more than a short one (verl/OpenRLHF convention). Unlike verl the result is multiplied
    by ``mask`` (padding → 0). ``shift_mean=False`` adds the mean back (rescale only).
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return torch.where(mask > 0, out, torch.zeros_like(out))


def _scores(token_rewards: Tensor, mask: Tensor) -> Tensor:
    """Sum of valid token rewards per sequence: [B,T] → [B]."""
    return torch.where(mask > 0, token_rewards, torch.zeros_like(token_rewards)).sum(dim=-1)


def _group_stats(scores: Tensor, group: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample group size, group mean and unbiased group std (each [B]) for ``scores`` [B]."""
    _, inv = torch.unique(group, return_inverse=True)  # inv [B] in 0..G-1
    n_groups = int(inv.max().item()) + 1 if inv.numel() else 0
    zeros = torch.zeros(n_groups, dtype=scores.dtype, device=scores.device)
    count = zeros.index_add(0, inv, torch.ones_like(scores))  # [G]
    mean = zeros.index_add(0, inv, scores) / count  # [G]
    sq = zeros.index_add(0, inv, (scores - mean[inv]) ** 2)  # [G]
    std = torch.sqrt(sq / (count - 1).clamp(min=1.0))  # [G] torch.std (unbiased)
    return count[inv], mean[inv], std[inv]


def _broadcast(per_seq: Tensor, mask: Tensor) -> Tensor:
    """[B] → [B,T] on valid tokens, 0 on padding."""
    return torch.where(mask > 0, per_seq.unsqueeze(-1).expand_as(mask), torch.zeros_like(mask))


def _return_to_go(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Discounted return-to-go over valid tokens only: [B,T] → [B,T] (0 on padding).

    Masked positions are skipped (the running return is carried over them, not reset), which equals
    verl's/OpenRLHF's loop for right padding and is the GAE(lam=1, V=0) convention for interior holes.
    """
    ret = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        running = torch.where(m > 0, rewards[:, t] + gamma * running, running)
        ret[:, t] = torch.where(m > 0, running, torch.zeros_like(running))
    return ret


# ---------------------------------------------------------------------------------------------- estimators
@torch.no_grad()
def grpo(
    token_rewards: Tensor,
    mask: Tensor,
    group: Tensor,
    values: Tensor | None = None,
    *,
    eps: float = 1e-6,
    norm_by_std: bool = True,
) -> tuple[Tensor, Tensor]:
    """GRPO group-normalised outcome advantage (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300).

    a_i = (s_i - mean_g(s)) / (std_g(s) + eps) broadcast over the valid tokens of sequence i, where s_i is
    the sum of its token rewards and std is the unbiased sample std (``torch.std``), as verl's
    ``compute_grpo_outcome_advantage``. ``norm_by_std=False`` gives Dr.GRPO (Liu et al. 2025,
    arXiv:2503.20783): a_i = s_i - mean_g(s).

    Deviations / edge cases: a group of size 1 uses mean 0, std 1 (verl). A group whose scores are all
    exactly equal gets advantage exactly 0 (explicitly zeroed: float round-off in mean/std can otherwise
    leave ~1e-3 after dividing by eps). Returns == advantages (verl). ``values`` is ignored.
    """
    scores = _scores(token_rewards, mask)  # [B]
    count, mean, std = _group_stats(scores, group)  # [B] each
    single = count < 2
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)
    adv = scores - mean
    if norm_by_std:
        adv = adv / (std + eps)
    adv = torch.where(uniform_groups(scores, group) & ~single, torch.zeros_like(adv), adv)
    adv = _broadcast(adv, mask)  # [B,T]
    return adv, adv.clone()


@torch.no_grad()
def rloo(
    token_rewards: Tensor,
    mask: Tensor,
    group: Tensor,
    values: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024, arXiv:2402.14740).

    a_i = s_i - mean_{j != i, j in g} s_j, broadcast over valid tokens (verl's
    ``compute_rloo_outcome_advantage``; s = sum of token rewards, so a KL placed in the reward enters the
    score). A group of size 1 keeps its raw score as advantage (verl). All-equal groups → exactly 0.
    Returns == advantages. No whitening (as verl; OpenRLHF's rloo does not whiten either).
    """
    scores = _scores(token_rewards, mask)  # [B]
    count, mean, _ = _group_stats(scores, group)
    n = count
    loo = (scores - mean) * n / (n - 1).clamp(min=1.0)  # s_i - (sum - s_i)/(n-1)
    adv = torch.where(n > 1, loo, scores)
    adv = torch.where(uniform_groups(scores, group) & (n > 1), torch.zeros_like(adv), adv)
    adv = _broadcast(adv, mask)
    return adv, adv.clone()


@torch.no_grad()
def reinforce_pp(
    token_rewards: Tensor,
    mask: Tensor,
    group: Tensor,
    values: Tensor | None = None,
    *,
    gamma: float = 1.0,
    group_baseline: bool = False,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++ (Hu 2025, arXiv:2501.03262): per-token discounted return-to-go, whitened over the batch.

    returns[b,t] = sum_{s>=t, valid} gamma^(#valid steps between) * r[b,s]; advantages =
    masked_whiten(returns) with token-weighted mean/var over every valid token of the whole batch (verl's
    ``compute_reinforce_plus_plus_outcome_advantage``).

    ``group_baseline=True`` is REINFORCE++-baseline: before the return-to-go, the group mean of the
    sequence scores is subtracted from the reward on each sequence's last valid token. This is OpenRLHF's
    ``reinforce_baseline`` (outcome - group mean, then per-token KL reward, cumulative return, batch
    whitening), with one documented difference: our baseline is the group mean of the *whole score*
    (outcome + summed in-reward KL, verl's definition of the score) because the contract hands us the
    summed token rewards, not the outcome alone; it is a per-group constant, so it stays a valid baseline,
    and with no KL in the reward it equals OpenRLHF exactly. verl's
    ``compute_reinforce_plus_plus_baseline_outcome_advantage`` instead broadcasts (score - mean) to every
    token without a return-to-go; for gamma = 1 and no in-reward KL all three coincide. A group of size 1
    gets baseline 0 (verl); an all-equal group's centred outcome is exactly 0.

    Returns are the (un-whitened) returns-to-go after the optional baseline, 0 on padding.
    """
    rewards = torch.where(mask > 0, token_rewards, torch.zeros_like(token_rewards))  # [B,T]
    if group_baseline:
        scores = _scores(rewards, mask)  # [B]
        count, mean, _ = _group_stats(scores, group)
        baseline = torch.where(count > 1, mean, torch.zeros_like(mean))
        baseline = torch.where(uniform_groups(scores, group) & (count > 1), scores, baseline)  # [B]
        T = mask.shape[1]
        positions = torch.arange(T, device=mask.device).expand_as(mask)
        last = torch.where(mask > 0, positions, torch.full_like(positions, -1)).amax(dim=1)  # [B]
        has_valid = last >= 0
        rows = torch.nonzero(has_valid).squeeze(-1)
        rewards = rewards.clone()
        rewards[rows, last[rows]] -= baseline[rows]
    returns = _return_to_go(rewards, mask, gamma)  # [B,T]
    return masked_whiten(returns, mask), returns


@torch.no_grad()
def gae(
    token_rewards: Tensor,
    mask: Tensor,
    group: Tensor,
    values: Tensor | None = None,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten: bool = True,
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, arXiv:1506.02438) for PPO with a critic.

    delta_t = r_t + gamma * V_{t'} - V_t and A_t = delta_t + gamma * lam * A_{t'}, where t' is the next
    *valid* position (masked positions are skipped, carrying V and A across them, as verl's
    ``compute_gae_advantage_return``; a sequence's last valid token bootstraps from 0). Works for right
    padding, left padding and interior holes alike. returns = A + V (before whitening). With
    ``whiten=True`` the advantages are ``masked_whiten``-ed over the whole batch (verl). Advantages and
    returns are 0 on padding. ``group`` is ignored; ``values`` [B,T] is required.
    """
    if values is None:
        raise ValueError("gae needs `values` (a critic); set algo.critic")
    next_value = torch.zeros_like(values[:, 0])  # [B]
    next_adv = torch.zeros_like(values[:, 0])  # [B]
    adv = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        valid = mask[:, t] > 0
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        a_t = delta + gamma * lam * next_adv
        next_adv = torch.where(valid, a_t, next_adv)
        next_value = torch.where(valid, values[:, t], next_value)
        adv[:, t] = torch.where(valid, a_t, torch.zeros_like(a_t))
    returns = torch.where(mask > 0, adv + values, torch.zeros_like(adv))
    if whiten:
        adv = masked_whiten(adv, mask)
    return adv, returns


gae.needs_values = True  # the loop builds a critic for it (rlkit.algos.validate reads this, not a name list)

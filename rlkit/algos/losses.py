"""Per-token policy and value losses. Aggregate them with ``rlkit.algos.aggregate``.

Sign convention: these are *losses* to minimise. For a token with advantage A and importance ratio
r = exp(logp - old_logp), the unclipped loss is -A * r, so a positive advantage raises the token's
probability. Padded positions (mask == 0) are returned as exactly 0.

Every policy loss has one signature, ``fn(logp, old_logp, advantages, mask, **params) -> (per_token_loss
[B,T], metrics)``, and is chosen by ``algo.policy_loss._target_`` (any importable function with that
signature: ``rlkit.algos.validate`` binds its params, there is no list to register in). Its parameters and
their defaults live in ``conf/algo/policy_loss/<name>.yaml``; their valid ranges are declared on the function
(``@ranges``, rlkit.algos.params) and checked before compute. ``metrics`` holds detached scalars, each logged
as ``actor/<name>`` (a token-weighted mean over the update; ``pg_clipfrac`` and ``ppo_kl`` always, 0 when absent).
Sequence-level losses (GSPO's ratio, GMPO) still return a [B,T] tensor: aggregated with
``seq-mean-token-mean`` they give the paper's mean over sequences.

On-policy (one optimizer step per batch: ratio 1) every loss here has PPO's gradient -A * grad(logp)
(up to aggregation); they differ once the batch is reused (algo.mini_batches or epochs > 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlkit.algos.advantages import masked_mean
from rlkit.algos.params import NUMBER, POSITIVE, Range, ranges

__all__ = ["clip_cov", "cispo", "gmpo", "gspo", "kl_cov", "ppo_clip", "sapo", "value_loss"]


@ranges(clip_low=Range(0.0, 1.0, meaning="the ratio is clipped below at 1 - clip_low"), clip_high=POSITIVE,
        dual_clip=Range(low=1.0, nullable=True, meaning="e.g. 3.0; null disables it"))
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


def _log_ratio(logp: Tensor, old_logp: Tensor) -> Tensor:
    """log r clamped to [-20, 20] before the exp: verl does so in vanilla PPO and SAPO only (and rlkit in
    CISPO, whose weight is detached and clipped anyway, so the clamp cannot change its gradient)."""
    return torch.clamp(logp - old_logp, min=-20.0, max=20.0)


def _zero_pad(loss: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask > 0, loss, torch.zeros_like(loss))


def _seq_mean(x: Tensor, mask: Tensor) -> Tensor:
    """[B,T] -> [B]: each row's mean over its valid tokens (0 for an empty row)."""
    return torch.where(mask > 0, x * mask, torch.zeros_like(x)).sum(-1) / mask.sum(-1).clamp(min=1.0)


@ranges(clip_low=Range(0.0, 1.0, meaning="the ratio is clipped below at 1 - clip_low"), clip_high=POSITIVE)
def gspo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO, Group Sequence Policy Optimization (Zheng et al. 2025, arXiv:2507.18071), "GSPO-token" form.

    The ratio is the sequence's length-normalised likelihood ratio s_i = exp(mean_t log r_{i,t}), clipped
    at [1 - clip_low, 1 + clip_high] (the paper's 3e-4 / 4e-4: a sequence ratio moves far less than a
    token's). Per token: s_{i,t} = sg(s_i) * pi(y_t) / sg(pi(y_t)), so its value is s_i and its gradient
    is s_i * grad(logp_t) (equal to the paper's sequence gradient when A is per sequence); loss =
    max(-A * s_{i,t}, -A * clip(s_{i,t})). As verl, the token log-ratios are not clamped and log s_{i,t} is
    clamped at 10 before the exp.
    Aggregate with seq-mean-token-mean (the paper's 1/G sum_i 1/|y_i| sum_t).
    Metrics: ``pg_clipfrac`` share of valid tokens whose clipped term is the larger; ``ppo_kl`` token k1.
    """
    log_ratio = logp - old_logp  # unclamped, as verl's gspo
    seq = _seq_mean(log_ratio, mask).detach().unsqueeze(-1)  # [B,1] log s_i
    ratio = torch.exp(torch.clamp(logp - logp.detach() + seq, max=10.0))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = _zero_pad(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        metrics = {"pg_clipfrac": masked_mean((clipped > unclipped).to(logp.dtype), mask),
                   "ppo_kl": masked_mean(-log_ratio, mask)}
    return loss, metrics


@ranges(clip_low=Range(0.0, 1.0, nullable=True, meaning="null: no lower bound"), clip_high=POSITIVE)
def cispo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float | None = None,
    clip_high: float = 0.28,
) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO, Clipped IS-weight Policy Optimization (MiniMax-M1, MiniMax 2025, arXiv:2506.13585).

    loss = -sg(clip(r, 1 - clip_low, 1 + clip_high)) * A * logp: the importance weight is clipped and
    detached, so no token's gradient is dropped (PPO's clip zeroes the gradient of clipped tokens; CISPO
    only bounds its weight). ``clip_low=None`` is the paper's choice (no lower bound). Metrics:
    ``pg_clipfrac`` share of valid tokens whose weight was clipped; ``ppo_kl`` token k1.
    """
    log_ratio = _log_ratio(logp, old_logp)
    ratio = torch.exp(log_ratio).detach()
    weight = torch.clamp(ratio, min=None if clip_low is None else 1.0 - clip_low, max=1.0 + clip_high)
    loss = _zero_pad(-weight * advantages * logp, mask)
    with torch.no_grad():
        metrics = {"pg_clipfrac": masked_mean((weight != ratio).to(logp.dtype), mask),
                   "ppo_kl": masked_mean(-log_ratio, mask)}
    return loss, metrics


@ranges(tau_pos=POSITIVE, tau_neg=POSITIVE)
def sapo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SAPO, Soft Adaptive Policy Optimization (Gao et al. 2025, Qwen, arXiv:2511.20347).

    A smooth gate in place of the hard clip: loss = -A * f(r), f(r) = (4 / tau) * sigmoid(tau * (r - 1)),
    tau = tau_pos where A > 0 else tau_neg (negative tokens decay faster: tau_neg > tau_pos). f'(1) = 1,
    so on-policy it is PPO's gradient; away from r = 1 the gradient fades smoothly instead of dropping to
    0 at a clip boundary. Metrics: ``pg_clipfrac`` share of valid tokens whose gate weight
    f'(r) * r = 4 s (1 - s) r (s = sigmoid(tau (r - 1))) has fallen below 0.5; ``ppo_kl`` token k1.
    """
    log_ratio = _log_ratio(logp, old_logp)
    ratio = torch.exp(log_ratio)
    tau = torch.where(advantages > 0, torch.full_like(ratio, tau_pos), torch.full_like(ratio, tau_neg))
    gate = torch.sigmoid(tau * (ratio - 1.0))
    loss = _zero_pad(-advantages * gate * (4.0 / tau), mask)
    with torch.no_grad():
        weight = 4.0 * gate * (1.0 - gate) * ratio
        metrics = {"pg_clipfrac": masked_mean((weight < 0.5).to(logp.dtype), mask),
                   "ppo_kl": masked_mean(-log_ratio, mask)}
    return loss, metrics


def _covariance(logp: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """Per-token centred product (A - mean A)(logp - mean logp) over the valid tokens (detached) [B,T]."""
    lp, adv = logp.detach(), advantages.detach()
    return (adv - masked_mean(adv, mask)) * (lp - masked_mean(lp, mask))


@ranges(clip_low=Range(0.0, 1.0, meaning="the ratio is clipped below at 1 - clip_low"), clip_high=POSITIVE, clip_cov_ratio=Range(0.0, 1.0, high_open=False),
        clip_cov_lb=NUMBER, clip_cov_ub=NUMBER)
def clip_cov(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clip-Cov (Cui et al. 2025, The Entropy Mechanism of RL for Reasoning LMs, arXiv:2505.22617).

    Entropy collapses through tokens whose log-prob and advantage covary strongly. PPO-clip's loss, then
    among the valid tokens not already clipped whose covariance (A - mean A)(logp - mean logp) lies in
    (clip_cov_lb, clip_cov_ub), max(1, int(clip_cov_ratio * valid tokens)) are drawn at random (the
    global torch RNG: reproducible under the run's seed and resume) and their gradient is detached.
    Means are over this call's tokens (a micro-batch, as verl). Deviation from verl: the loss *value* of
    the chosen tokens is kept (verl multiplies it by 0); the gradient is the same.
    Metrics: ``pg_clipfrac`` share of valid tokens ratio-clipped or detached; ``ppo_kl`` token k1.
    """
    log_ratio = logp - old_logp  # unclamped, as verl's clip_cov
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    by_clip = (clipped > unclipped) & (mask > 0)
    cov = _covariance(logp, advantages, mask)
    band = (cov > clip_cov_lb) & (cov < clip_cov_ub) & (mask > 0) & ~by_clip
    candidates = band.flatten().nonzero().squeeze(-1)
    n = max(int(clip_cov_ratio * float(mask.sum())), 1)
    chosen = torch.zeros_like(band).flatten()
    if len(candidates):
        chosen[candidates[torch.randperm(len(candidates))[:n]]] = True
    chosen = chosen.view_as(band)
    loss = _zero_pad(torch.where(chosen, loss.detach(), loss), mask)
    with torch.no_grad():
        metrics = {"pg_clipfrac": masked_mean((by_clip | chosen).to(logp.dtype), mask),
                   "ppo_kl": masked_mean(-log_ratio, mask)}
    return loss, metrics


@ranges(kl_cov_ratio=Range(0.0, 1.0, high_open=False), ppo_kl_coef=Range(low=0.0, low_open=False))
def kl_cov(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    kl_cov_ratio: float = 2e-3,
    ppo_kl_coef: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """KL-Cov (Cui et al. 2025, arXiv:2505.22617): the unclipped surrogate -A * r, plus
    ppo_kl_coef * |log r| on the max(1, int(kl_cov_ratio * valid tokens)) valid tokens of largest
    covariance (A - mean A)(logp - mean logp) (means over this call's tokens, as verl). No ratio clip
    (the paper's form). On-policy |log r| = 0 with zero gradient (torch's d|x|/dx at 0), so the penalty
    acts from the second update on a batch. Metrics: ``pg_clipfrac`` share of valid tokens penalised;
    ``ppo_kl`` token k1 (verl logs the mean |log r| there)."""
    log_ratio = logp - old_logp  # unclamped, as verl's kl_cov
    loss = -advantages * torch.exp(log_ratio)
    cov = torch.where(mask > 0, _covariance(logp, advantages, mask), torch.full_like(logp, -torch.inf))
    n = min(max(int(kl_cov_ratio * float(mask.sum())), 1), int(mask.sum()))
    chosen = torch.zeros_like(mask, dtype=torch.bool).flatten()
    if n:
        chosen[torch.topk(cov.flatten(), n).indices] = True
    chosen = chosen.view_as(mask)
    loss = _zero_pad(torch.where(chosen, loss + ppo_kl_coef * log_ratio.abs(), loss), mask)
    with torch.no_grad():
        metrics = {"pg_clipfrac": masked_mean(chosen.to(logp.dtype), mask),
                   "ppo_kl": masked_mean(-log_ratio, mask)}
    return loss, metrics


@ranges(clip_low=POSITIVE, clip_high=POSITIVE)  # log-space bounds
def gmpo(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.4,
    clip_high: float = 0.4,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GMPO, Geometric-Mean Policy Optimization (Zhao et al. 2025, arXiv:2507.20673; verl ``geo_mean``).

    The sequence's ratio is the geometric mean of its token ratios, each clipped in log space (the
    paper's wider range, log r in [-0.4, 0.4]) on the side that limits the update: log r above clip_high
    for A > 0, below -clip_low for A < 0 (like PPO's pessimistic max). Sequence loss = -mean_t(A) *
    exp(mean_t clipped log r), written on each valid token, so seq-mean-token-mean aggregation gives the
    paper's mean over sequences. As verl, log r is not clamped. ``gmpo.sequence_weights``: an off-policy
    correction's token weights enter as their per-sequence geometric mean (verl's ``geo_mean`` with
    ``rollout_is_weights``), applied by the update step. Metrics: ``pg_clipfrac`` share of valid tokens whose
    clip is active; ``ppo_kl`` token k1.
    """
    log_ratio = logp - old_logp  # unclamped, as verl's geo_mean
    sign = torch.sign(advantages)
    bounded = torch.clamp(log_ratio, -clip_low, clip_high)
    used = sign * torch.minimum(sign * log_ratio, sign * bounded)
    seq_loss = -_seq_mean(advantages, mask) * torch.exp(_seq_mean(used, mask))  # [B]
    loss = _zero_pad(seq_loss.unsqueeze(-1).expand_as(logp), mask)
    with torch.no_grad():
        metrics = {"pg_clipfrac": masked_mean(((used != log_ratio) & (sign != 0)).to(logp.dtype), mask),
                   "ppo_kl": masked_mean(-log_ratio, mask)}
    return loss, metrics


gmpo.sequence_weights = True  # a per-sequence loss: token IS weights become one geometric mean per sequence


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

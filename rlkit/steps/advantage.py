"""From a scored batch to advantages: the no-grad passes (old and reference logprobs, values), the
token rewards (outcome score on the last token, minus KL when KL is a reward) and the algorithm's
advantage estimator over the global batch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rlkit.algos.groups import uniform_groups
from rlkit.algos.kl import kl_estimate
from rlkit.rollout.logprobs import sequence_inputs, token_logprobs
from rlkit.steps.metrics import Timers, advantage_metrics
from rlkit.steps.sample import Batch

if TYPE_CHECKING:
    from rlkit.steps.parts import RunParts


@dataclass
class Scored:
    """Everything the update reads besides the batch ([B, T] tensors; None when not computed)."""

    old_logp: torch.Tensor | None
    ref_logp: torch.Tensor | None
    values: torch.Tensor | None
    advantages: torch.Tensor
    returns: torch.Tensor
    loss_mask: torch.Tensor       # response mask, zeroed on all-equal groups with algo.group_filter=mask
    uniform: torch.Tensor         # [B] bool: the row's group scored all equal


def critic_values(critic: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                  response_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """[B, T] value of each response position."""
    ids, mask, pos = sequence_inputs(prompt_ids, prompt_mask, response_ids, response_mask)
    p, t = prompt_ids.shape[1], response_ids.shape[1]
    return critic(ids, mask, pos)[:, p - 1: p - 1 + t]


def forward_batch(p: RunParts, batch: Batch, need_old: bool, timers: Timers
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """No-grad passes before the update, micro-batched: old logprobs (timing_s/old_log_prob), reference
    logprobs (timing_s/ref), values (timing_s/values). With one epoch of one mini-batch the update's own
    logprobs *are* the old ones (ratio = 1, verl's on-policy shortcut), so that pass is skipped unless KL
    goes into the reward (it must be known before the advantage)."""
    r, temperature = batch.rollout, p.cfg.rollout.temperature
    critic = p.critic.model if p.critic else None
    old, refs, vals = [], [], []
    with torch.no_grad():
        for s in range(0, len(batch.problems), p.cfg.trainer.micro_batch_size):
            sl = slice(s, s + p.cfg.trainer.micro_batch_size)
            args = (r.prompt_ids[sl], r.prompt_mask[sl], r.response_ids[sl], r.response_mask[sl])
            if need_old:
                with timers("old_log_prob"):
                    old.append(token_logprobs(p.actor.model, *args, temperature=temperature)[0])
            if p.ref is not None:
                with timers("ref"):
                    refs.append(token_logprobs(p.ref, *args, temperature=temperature)[0])
            if critic is not None:
                with timers("values"):
                    vals.append(critic_values(critic, *args))
    cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
    return cat(old), cat(refs), cat(vals)


def token_rewards(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None, coef: float) -> torch.Tensor:
    """The outcome score on each sequence's last valid token, minus coef*KL per token if KL is a reward."""
    rewards = torch.zeros_like(mask)
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] = scores
    if kl is not None:
        rewards = rewards - coef * kl * mask
    return rewards


def advantages(p: RunParts, batch: Batch, timers: Timers) -> tuple[Scored, dict[str, float]]:
    """The no-grad passes, then token rewards and advantages over the global batch (timing_s/adv)."""
    a, r = p.cfg.algo, batch.rollout
    mask = r.response_mask
    uniform = uniform_groups(batch.scores, r.group)
    loss_mask = mask * (~uniform).float().unsqueeze(-1) if a.group_filter == "mask" else mask
    on_policy = a.epochs == 1 and a.mini_batches == 1
    old_logp, ref_logp, values = forward_batch(p, batch, not on_policy or a.kl.placement == "reward", timers)
    with timers("adv"):
        kl_tok = None
        if ref_logp is not None and old_logp is not None:
            kl_tok = kl_estimate(old_logp, ref_logp, a.kl.estimator)
        rewards = token_rewards(batch.scores, mask, kl_tok if a.kl.placement == "reward" else None, a.kl.coef)
        adv, returns = p.dist.advantages(p.advantage_fn, rewards, mask, r.group, values)  # over the global batch
    scored = Scored(old_logp, ref_logp, values, adv, returns, loss_mask, uniform)
    return scored, advantage_metrics(adv, returns, mask, kl_tok, values, p.dist)

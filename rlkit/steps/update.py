"""The update: epochs x mini-batches of optimizer steps; micro-batches accumulate to each mini-batch.

Token and sequence counts are summed over ranks, so each rank's loss is its share of the global
mini-batch loss (and the backend sums the gradients)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig

from rlkit import distributed
from rlkit.algos.aggregate import aggregate
from rlkit.algos.kl import kl_estimate
from rlkit.algos.losses import value_loss
from rlkit.algos.offpolicy import mismatch, seq_geometric_mean
from rlkit.backends import Trained
from rlkit.rollout.base import Rollout
from rlkit.rollout.logprobs import token_logprobs
from rlkit.steps.advantage import Scored, critic_values
from rlkit.steps.sample import Batch

if TYPE_CHECKING:
    from rlkit.steps.parts import RunParts

# per-rank values are shares of the global value (global denominators): summed over ranks
distributed.declare("sum", "actor/pg_loss", "actor/kl_loss", "actor/entropy", "actor/pg_clipfrac", "actor/ppo_kl",
                    "critic/vf_loss")
distributed.declare("same", "actor/grad_norm")  # computed after the gradients were summed
# rollout/training mismatch over the generated tokens (shares of the global token count), and its max
distributed.declare("sum", "rollout/mismatch_kl", "rollout/mismatch_ratio_mean", "rollout/is_capped_frac",
                    "rollout/is_masked_frac")
distributed.declare("max", "rollout/mismatch_ratio_max")
MAX_KEYS = ("rollout/mismatch_ratio_max",)
LOSS_METRICS = ("pg_clipfrac", "ppo_kl")  # logged for every loss (0 when it returns none)
LOOP_METRICS = ("pg_loss", "kl_loss", "entropy", "grad_norm")  # actor/ names the loop itself writes  # combined by max over micro-batches and updates, not summed


@dataclass
class Totals:
    """One mini-batch's denominators summed over ranks."""

    tokens: float   # loss tokens (at least 1)
    seqs: float
    resp: float     # generated tokens (at least 1), for entropy over every generated token


def update(p: RunParts, batch: Batch, s: Scored) -> dict[str, float]:
    """algo.epochs passes of algo.mini_batches optimizer steps; metrics averaged over the steps."""
    a = p.cfg.algo
    B = len(batch.problems)
    skip = idle_rows(p.cfg, p.actor, s.advantages, s.loss_mask, s.ref_logp)
    sums: dict[str, float] = {}
    n_updates = 0
    for _ in range(a.epochs):
        perm = torch.randperm(B) if a.mini_batches > 1 else torch.arange(B)
        for mb in perm.chunk(a.mini_batches):
            _add(sums, minibatch_step(p, batch, s, mb, skip))
            n_updates += 1
    return {k: v if k in MAX_KEYS else v / n_updates for k, v in sums.items()}


def minibatch_step(p: RunParts, batch: Batch, s: Scored, mb: torch.Tensor, skip: torch.Tensor | None
                   ) -> dict[str, float]:
    """One optimizer step of the actor (and critic) on rows `mb`, micro-batch by micro-batch."""
    r, grad_clip = batch.rollout, p.cfg.trainer.grad_clip
    tokens, seqs, resp = p.dist.sum(s.loss_mask[mb].sum(), len(mb), r.response_mask[mb].sum())
    tot = Totals(max(tokens, 1.0), seqs, max(resp, 1.0))
    p.actor.zero_grad()
    if p.critic:
        p.critic.zero_grad()
    stats = dict.fromkeys(("actor/pg_loss", "actor/entropy", "actor/pg_clipfrac", "actor/ppo_kl"), 0.0)
    for idx in mb.split(p.cfg.trainer.micro_batch_size):
        if p.critic is not None:
            _add(stats, critic_micro(p, batch, s, idx, tot))
        if skip is not None:  # rows whose loss is exactly 0: entropy (a metric) from a no-grad pass
            _add(stats, idle_entropy(p, batch, s, idx[skip[idx]], tot))
            idx = idx[~skip[idx]]
        if len(idx):
            _add(stats, actor_micro(p, batch, s, idx, tot))
    stats["actor/grad_norm"] = p.actor.step(grad_clip)  # (clips, then steps)
    if p.critic:
        p.critic.step(grad_clip)
    return stats


def _add(stats: dict[str, float], parts: dict[str, float]) -> None:
    for k, v in parts.items():
        stats[k] = max(stats.get(k, v), v) if k in MAX_KEYS else stats.get(k, 0.0) + v


def _rows(r: Rollout, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return r.prompt_ids[idx], r.prompt_mask[idx], r.response_ids[idx], r.response_mask[idx]


def critic_micro(p: RunParts, batch: Batch, s: Scored, idx: torch.Tensor, tot: Totals) -> dict[str, float]:
    """The clipped value loss of rows `idx`, backpropagated into the critic."""
    c = p.cfg.algo.critic
    v = critic_values(p.critic.model, *_rows(batch.rollout, idx))
    vl = aggregate(value_loss(v, s.values[idx], s.returns[idx], s.loss_mask[idx], clip=c.value_clip),
                   s.loss_mask[idx], "token-mean", total_tokens=tot.tokens)
    p.critic.backward(c.coef * vl)
    return {"critic/vf_loss": vl.item()}


def idle_entropy(p: RunParts, batch: Batch, s: Scored, idle: torch.Tensor, tot: Totals) -> dict[str, float]:
    """Entropy and mismatch of skipped rows (metrics only): a no-grad pass."""
    if not len(idle):
        return {}
    r = batch.rollout
    with torch.no_grad():
        logp, ent = token_logprobs(p.actor.model, *_rows(r, idle), temperature=p.cfg.rollout.temperature,
                                   with_entropy=True)
    old = logp if s.old_logp is None else s.old_logp[idle]
    return {"actor/entropy": float((ent * r.response_mask[idle]).sum()) / tot.resp,
            **offpolicy(p, batch, idle, old, tot)[1]}


def offpolicy(p: RunParts, batch: Batch, idx: torch.Tensor, train_logp: torch.Tensor, tot: Totals
              ) -> tuple[torch.Tensor | None, dict[str, float]]:
    """The correction's per-token weights for rows `idx` (None when the engine gave no behaviour
    log-probs) and the mismatch metrics, as shares of the mini-batch's generated tokens. `train_logp`:
    the trainer's log-probs before this update (the loss's old_logp), detached."""
    r = batch.rollout
    if r.logprobs is None:
        return None, {}
    resp, behaviour, train_logp = r.response_mask[idx], r.logprobs[idx], train_logp.detach()
    weights, cm = p.correction(train_logp, behaviour, resp)
    mm = mismatch(train_logp, behaviour, resp)
    w = float(resp.sum()) / tot.resp
    return weights, {"rollout/mismatch_kl": float(mm["kl"]) * w, "rollout/mismatch_ratio_mean": float(mm["ratio_mean"]) * w,
                     "rollout/mismatch_ratio_max": float(mm["ratio_max"]),
                     "rollout/is_capped_frac": float(cm.get("capped_frac", 0.0)) * w,
                     "rollout/is_masked_frac": float(cm.get("masked_frac", 0.0)) * w}


class StaleWeights(RuntimeError):
    """The generator's log-probs left the trainer's band: its weights are likely not the policy's."""


def mismatch_breach(metrics: dict[str, float], max_kl: float | None, max_ratio_dev: float | None) -> str | None:
    """The stale-weights guard (trainer.max_mismatch_kl / max_mismatch_ratio_dev): why this step's
    rollout/training mismatch is out of band, or None. A rollout engine that kept old weights (a skipped
    or failed push, a woken engine without the update: huggingface/trl#5312) samples from another policy
    while loss and reward look plausible; only the mismatch shows it. On-policy it is at rounding level
    (fp32: ~1e-9 here), so any band well above that and below the staleness the run asks for will do."""
    kl, ratio = metrics.get("rollout/mismatch_kl"), metrics.get("rollout/mismatch_ratio_mean")
    if max_kl is not None and kl is not None and not kl <= max_kl:
        return f"rollout/mismatch_kl={kl:.3g} > trainer.max_mismatch_kl={max_kl:g}"
    if max_ratio_dev is not None and ratio is not None and not abs(ratio - 1.0) <= max_ratio_dev:
        return f"|rollout/mismatch_ratio_mean - 1|={abs(ratio - 1.0):.3g} > trainer.max_mismatch_ratio_dev={max_ratio_dev:g}"
    return None


def _capability(fn, name: str) -> bool:
    """An attribute the loss function declares (through functools.partial as Hydra binds it)."""
    return bool(getattr(getattr(fn, "func", fn), name, False))


def actor_micro(p: RunParts, batch: Batch, s: Scored, idx: torch.Tensor, tot: Totals) -> dict[str, float]:
    """Policy loss (+ KL in the loss, - entropy bonus) of rows `idx`, backpropagated into the actor."""
    a, r = p.cfg.algo, batch.rollout
    m = s.loss_mask[idx]
    logp, entropy = token_logprobs(p.actor.model, *_rows(r, idx), temperature=p.cfg.rollout.temperature,
                                   with_entropy=True)
    old = logp.detach() if s.old_logp is None else s.old_logp[idx]
    pg, pm = p.policy_loss(logp, old, s.advantages[idx], m)  # algo.policy_loss
    weights, parts = offpolicy(p, batch, idx, old, tot)  # algo.correction: behaviour vs trainer log-probs
    if weights is not None:
        if _capability(p.policy_loss, "sequence_weights"):  # GMPO: one geometric-mean weight per sequence
            weights = seq_geometric_mean(weights, m)
        pg = pg * weights
    agg = dict(total_tokens=tot.tokens, total_seqs=tot.seqs, constant=a.agg_constant)
    loss = aggregate(pg, m, a.aggregation, **agg)
    parts["actor/pg_loss"] = loss.item()
    if s.ref_logp is not None and a.kl.placement == "loss":
        kl = aggregate(kl_estimate(logp, s.ref_logp[idx], a.kl.estimator), m, a.aggregation, **agg)
        loss = loss + a.kl.coef * kl
        parts["actor/kl_loss"] = kl.item()
    if a.entropy_coef:
        loss = loss - a.entropy_coef * aggregate(entropy, m, a.aggregation, **agg)
    p.actor.backward(loss)
    w = float(m.sum()) / tot.tokens  # token share, to average per-token metrics over micro-batches
    resp = r.response_mask[idx]  # entropy over every generated token, whatever the loss mask/aggregation
    parts["actor/entropy"] = float((entropy.detach() * resp).sum()) / tot.resp
    parts.update(loss_metrics(pm, w))
    return parts


def loss_metrics(pm: dict[str, torch.Tensor | float], w: float) -> dict[str, float]:
    """Every metric the policy loss returned, as `actor/<name>` times this micro-batch's token share `w`
    (summed over micro-batches and ranks: a token-weighted mean). pg_clipfrac and ppo_kl are always there
    (0 when a loss does not return them), so every algorithm logs them."""
    out = {f"actor/{k}": float(pm.get(k, 0.0)) * w for k in LOSS_METRICS}
    for k, v in pm.items():
        if k in LOOP_METRICS:
            raise ValueError(f"the policy loss returned a metric {k!r}: actor/{k} is the loop's own; rename it")
        if f"actor/{k}" not in out:
            distributed.declare("sum", f"actor/{k}")  # a loss's own metric: token shares, summed over ranks
            out[f"actor/{k}"] = float(v) * w
    return out


def idle_rows(cfg: DictConfig, actor: Trained, adv: torch.Tensor, loss_mask: torch.Tensor, ref_logp: torch.Tensor | None
              ) -> torch.Tensor | None:
    """[B] rows the actor's forward/backward can skip because their loss is exactly 0, or None.

    A row whose advantage is 0 on every loss token (a GRPO group that was all right or all wrong, or a
    masked group) adds 0 to the policy loss and its gradient; the global token/sequence denominators
    are computed before, so the gradient is the same without it. Only when nothing else reads the
    row: one on-policy update (ratio 1, so clip fraction and PPO-KL are 0 there), no KL or entropy
    term in the loss, and the torch backend (DeepSpeed ZeRO needs the same passes on every rank). With
    LoRA dropout the skipped rows draw no dropout masks, so later random draws differ from a full pass."""
    a = cfg.algo
    if not cfg.trainer.skip_idle_rows or a.epochs != 1 or a.mini_batches != 1 or a.entropy_coef:
        return None
    if (ref_logp is not None and a.kl.placement == "loss" and a.kl.coef) or not getattr(actor, "can_skip_rows", False):
        return None
    return ~((adv != 0) & (loss_mask > 0)).any(-1).cpu()  # indexes the CPU row ids of the micro-batches

"""The RL loop: one function read top to bottom, calling small named steps.

Algorithms differ only in the pure pieces bound from conf/algo (advantage estimator, KL estimator
and placement, clip range, aggregation); the loop branches on capabilities (critic or not, where KL
goes, group filtering), never on an algorithm's name.

Scale (rlkit/distributed.py, rlkit/backends/, rlkit/models/lora.py): under torchrun or a multi-task
SLURM job each rank generates and trains on its share of the same global batch; advantages, loss
denominators, gradients and metrics are reduced over ranks, and only rank 0 logs and writes rlkit's
state. `actor` (and `critic`) wrap the module and its optimizer for the chosen backend (torch or
DeepSpeed ZeRO); with one process they are the plain AdamW path.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from rlkit import checkpoint, distributed
from rlkit.algos.advantages import masked_mean
from rlkit.algos.aggregate import aggregate
from rlkit.algos.groups import distinct_frac, group_outcomes, uniform_groups
from rlkit.algos.kl import kl_estimate
from rlkit.algos.losses import ppo_clip, value_loss
from rlkit.backends import make_backend
from rlkit.data.stream import DataGroup, PromptStream
from rlkit.data.templates import render
from rlkit.models.load import Critic, load_policy, reference
from rlkit.models.lora import MergedForGeneration, hf_model, is_lora
from rlkit.rewards.base import RewardContext
from rlkit.rewards.compose import build_components, score
from rlkit.rollout.base import Rollout, SamplingParams
from rlkit.rollout.logprobs import sequence_inputs, token_logprobs


@dataclass
class Batch:
    """A scored rollout ready for the update (B = P*G sequences, T response positions)."""

    rollout: Rollout
    scores: torch.Tensor        # [B] total reward
    correct: torch.Tensor       # [B] bool, the data group's correctness rule
    components: dict[str, list[float]]
    problems: list[Any]


@contextmanager
def timer(metrics: dict[str, float], key: str):
    t = time.perf_counter()
    yield
    metrics[key] = metrics.get(key, 0.0) + time.perf_counter() - t


def make_engine(cfg: DictConfig, model, tokenizer):
    if cfg.rollout.engine == "vllm":
        from rlkit.rollout.vllm import VLLMEngine  # optional extra, imported only when chosen

        return VLLMEngine(cfg, tokenizer)
    from rlkit.rollout import fast
    from rlkit.rollout.hf import HFEngine

    base = hf_model(model)  # (LoRA: the transformers model with its adapter layers)
    engine = fast.FastEngine(base, tokenizer) if cfg.rollout.engine == "fast" and fast.supports(base) \
        else HFEngine(base, tokenizer)
    if is_lora(model):
        engine = MergedForGeneration(engine, model)  # samples from base + adapter
    return distributed.PerPromptSeeds(engine) if cfg.rollout.get("seed_per_prompt") else engine


def prompt_ids(tokenizer, cache: dict, template: str, problems) -> list[list[int]]:
    out = []
    for p in problems:
        if p.id not in cache:
            text = tokenizer.apply_chat_template(render(template, p), tokenize=False, add_generation_prompt=True)
            cache[p.id] = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(cache[p.id])
    return out


def response_budget(cfg: DictConfig, prompts: list[list[int]]) -> int:
    """The length group's budget, clamped so prompt + response fit the model's context."""
    context = int(cfg.model.get("context_length") or 10**9)
    return max(1, min(int(cfg.length.max_response_tokens), context - max(map(len, prompts))))


def generate_scored(cfg, engine, tokenizer, cache, group: DataGroup, problems, n: int, params: SamplingParams,
                    components, step: int) -> Batch:
    rollout = engine.generate(prompt_ids(tokenizer, cache, group.template, problems), n, params)
    expanded = [p for p in problems for _ in range(n)]
    lengths = rollout.lengths.tolist()
    ctxs = [RewardContext(lengths[i], params.max_new_tokens, bool(rollout.truncated[i]), step, cfg.trainer.steps)
            for i in range(len(expanded))]
    total, per = score(components, rollout.texts, expanded, ctxs)
    correct = torch.tensor([bool(group.correct(t, p)) for t, p in zip(rollout.texts, expanded)])
    return Batch(rollout, torch.tensor(total, dtype=torch.float32), correct, per, expanded)


def concat(batches: list[Batch], keep_groups: list[torch.Tensor]) -> Batch:
    """Join the kept groups of several generation rounds into one batch (DAPO dynamic sampling)."""
    from rlkit.rollout.hf import left_pad

    rows = [(b, i) for b, keep in zip(batches, keep_groups) for i in range(len(b.problems)) if keep[i]]
    prompts = [b.rollout.prompt_ids[i][b.rollout.prompt_mask[i].bool()].tolist() for b, i in rows]
    p_ids, p_mask = left_pad(prompts, 0)  # padded positions are masked out, any id will do
    width = max(int(b.rollout.response_ids.shape[1]) for b, _ in rows)
    r_ids = torch.zeros((len(rows), width), dtype=torch.long)
    r_mask = torch.zeros((len(rows), width))
    for k, (b, i) in enumerate(rows):
        w = b.rollout.response_ids.shape[1]
        r_ids[k, :w], r_mask[k, :w] = b.rollout.response_ids[i], b.rollout.response_mask[i]
    group_keys = [(id(b), int(b.rollout.group[i])) for b, i in rows]
    remap = {g: j for j, g in enumerate(dict.fromkeys(group_keys))}
    rollout = Rollout(p_ids, p_mask, r_ids, r_mask, torch.stack([b.rollout.truncated[i] for b, i in rows]),
                      [b.rollout.texts[i] for b, i in rows], torch.tensor([remap[g] for g in group_keys]))
    comps = {k: [b.components[k][i] for b, i in rows] for k in batches[0].components}
    return Batch(rollout, torch.stack([b.scores[i] for b, i in rows]), torch.stack([b.correct[i] for b, i in rows]),
                 comps, [b.problems[i] for b, i in rows])


def dynamic_sample(first: Batch, regenerate, per_step: int, group_size: int, max_rounds: int,
                   mean_over_ranks=float) -> tuple[Batch, int]:
    """Drop groups whose rewards are all equal and generate more prompts until the batch is full
    again or `max_rounds` extra rounds are spent (DAPO); returns the batch and rounds used.
    `per_step` is this rank's share of the prompts; the decision to go on uses the mean over ranks,
    so every rank runs the same number of rounds."""
    batches, keeps, rounds = [first], [~uniform_groups(first.scores, first.rollout.group)], 0
    while mean_over_ranks(sum(int(k.sum()) for k in keeps)) < per_step * group_size and rounds < max_rounds:
        b = regenerate()
        batches.append(b)
        keeps.append(~uniform_groups(b.scores, b.rollout.group))
        rounds += 1
    kept = sum(int(k.sum()) for k in keeps)
    if kept == 0:  # nothing informative at all: train on the first batch (zero advantage) rather than crash
        return first, rounds
    # trim to at most per_step groups
    budget = per_step * group_size
    for k in keeps:
        idx = k.nonzero().flatten()
        take = min(len(idx), budget)
        k[idx[take:]] = False
        budget -= take
    return concat(batches, keeps), rounds


def forward_batch(policy, critic, ref, batch: Batch, temperature: float, micro: int, need_old: bool):
    """No-grad passes before the update: old logprobs, reference logprobs, values (micro-batched).
    With one epoch of one mini-batch the update's own logprobs *are* the old ones (ratio = 1, as in
    verl's on-policy shortcut), so that pass is skipped unless KL goes into the reward (it must be
    known before the advantage)."""
    r = batch.rollout
    old, refs, vals = [], [], []
    with torch.no_grad():
        for s in range(0, len(batch.problems), micro):
            sl = slice(s, s + micro)
            args = (r.prompt_ids[sl], r.prompt_mask[sl], r.response_ids[sl], r.response_mask[sl])
            if need_old:
                old.append(token_logprobs(policy, *args, temperature=temperature)[0])
            if ref is not None:
                refs.append(token_logprobs(ref, *args, temperature=temperature)[0])
            if critic is not None:
                vals.append(critic_values(critic, *args))
    cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
    return cat(old), cat(refs), cat(vals)


def critic_values(critic, prompt_ids, prompt_mask, response_ids, response_mask) -> torch.Tensor:
    ids, mask, pos = sequence_inputs(prompt_ids, prompt_mask, response_ids, response_mask)
    p, t = prompt_ids.shape[1], response_ids.shape[1]
    return critic(ids, mask, pos)[:, p - 1: p - 1 + t]


def token_rewards(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None, coef: float) -> torch.Tensor:
    """The outcome score on each sequence's last valid token, minus coef*KL per token if KL is a reward."""
    rewards = torch.zeros_like(mask)
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] = scores
    if kl is not None:
        rewards = rewards - coef * kl * mask
    return rewards


def update(cfg, actor, critic, batch: Batch, old_logp, ref_logp, old_values, adv, returns, loss_mask,
           dist) -> dict[str, float]:
    """epochs x mini-batches of optimizer steps; micro-batches accumulate to each mini-batch.
    Token and sequence counts are summed over ranks, so each rank's loss is its share of the global
    mini-batch loss (and the backend sums the gradients)."""
    a, r = cfg.algo, batch.rollout
    B = len(batch.problems)
    skip = idle_rows(cfg, actor, adv, loss_mask, ref_logp)
    sums: dict[str, float] = {}
    n_updates = 0
    for _ in range(a.epochs):
        perm = torch.randperm(B) if a.mini_batches > 1 else torch.arange(B)
        for mb in perm.chunk(a.mini_batches):
            total_tokens, total_seqs, total_resp = dist.sum(loss_mask[mb].sum(), len(mb), r.response_mask[mb].sum())
            total_tokens, total_resp = max(total_tokens, 1.0), max(total_resp, 1.0)
            actor.zero_grad()
            if critic:
                critic.zero_grad()
            stats = dict.fromkeys(("actor/pg_loss", "actor/entropy", "actor/pg_clipfrac", "actor/ppo_kl"), 0.0)
            for idx in mb.split(cfg.trainer.micro_batch_size):
                if critic is not None:
                    args = (r.prompt_ids[idx], r.prompt_mask[idx], r.response_ids[idx], r.response_mask[idx])
                    v = critic_values(critic.model, *args)
                    vl = aggregate(value_loss(v, old_values[idx], returns[idx], loss_mask[idx], clip=a.critic.value_clip),
                                   loss_mask[idx], "token-mean", total_tokens=total_tokens)
                    critic.backward(a.critic.coef * vl)
                    stats["critic/vf_loss"] = stats.get("critic/vf_loss", 0.0) + vl.item()
                if skip is not None:  # rows whose loss is exactly 0: entropy (a metric) from a no-grad pass
                    idle = idx[skip[idx]]
                    if len(idle):
                        with torch.no_grad():
                            ent = token_logprobs(actor.model, r.prompt_ids[idle], r.prompt_mask[idle],
                                                 r.response_ids[idle], r.response_mask[idle],
                                                 temperature=cfg.rollout.temperature, with_entropy=True)[1]
                        stats["actor/entropy"] = stats.get("actor/entropy", 0.0) + float(
                            (ent * r.response_mask[idle]).sum()) / total_resp
                    idx = idx[~skip[idx]]
                    if not len(idx):
                        continue
                args = (r.prompt_ids[idx], r.prompt_mask[idx], r.response_ids[idx], r.response_mask[idx])
                m = loss_mask[idx]
                logp, entropy = token_logprobs(actor.model, *args, temperature=cfg.rollout.temperature,
                                                  with_entropy=True)
                old = logp.detach() if old_logp is None else old_logp[idx]
                pg, pm = ppo_clip(logp, old, adv[idx], m, clip_low=a.clip_low, clip_high=a.clip_high,
                                  dual_clip=a.dual_clip)
                agg = dict(total_tokens=total_tokens, total_seqs=total_seqs, constant=a.agg_constant)
                loss = aggregate(pg, m, a.aggregation, **agg)
                parts = {"actor/pg_loss": loss.item()}
                if ref_logp is not None and a.kl.placement == "loss":
                    kl = aggregate(kl_estimate(logp, ref_logp[idx], a.kl.estimator), m, a.aggregation, **agg)
                    loss = loss + a.kl.coef * kl
                    parts["actor/kl_loss"] = kl.item()
                if a.entropy_coef:
                    loss = loss - a.entropy_coef * aggregate(entropy, m, a.aggregation, **agg)
                actor.backward(loss)
                w = float(m.sum()) / total_tokens  # token share, to average per-token metrics over micro-batches
                resp = r.response_mask[idx]  # entropy over every generated token, whatever the loss mask/aggregation
                parts["actor/entropy"] = float((entropy.detach() * resp).sum()) / total_resp
                parts["actor/pg_clipfrac"] = float(pm["pg_clipfrac"]) * w
                parts["actor/ppo_kl"] = float(pm["ppo_kl"]) * w
                for k, v in parts.items():
                    stats[k] = stats.get(k, 0.0) + v
            stats["actor/grad_norm"] = actor.step(cfg.trainer.grad_clip)  # (clips, then steps)
            if critic:
                critic.step(cfg.trainer.grad_clip)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            n_updates += 1
    return {k: v / n_updates for k, v in sums.items()}


def idle_rows(cfg, actor, adv: torch.Tensor, loss_mask: torch.Tensor, ref_logp) -> torch.Tensor | None:
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


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, dist=None) -> float:
    """1 - Var(returns - values) / Var(returns) over the valid tokens (of every rank: sums in float64)."""
    e = returns - values
    n, r1, r2, e1, e2 = (dist or distributed.Dist()).sum(mask.sum(), (returns * mask).sum(), (returns ** 2 * mask).sum(),
                                                         (e * mask).sum(), (e ** 2 * mask).sum())
    var_r = r2 / max(n, 1.0) - (r1 / max(n, 1.0)) ** 2
    var_e = e2 / max(n, 1.0) - (e1 / max(n, 1.0)) ** 2
    return 1.0 - var_e / var_r if var_r > 1e-12 else 0.0


@torch.no_grad()
def evaluate(cfg, engine, tokenizer, cache, groups: list[DataGroup], components, step: int,
             dist: distributed.Dist | None = None) -> tuple[dict, list[str]]:
    """Greedy (or sampled) held-out accuracy per data group; `val/acc` is the first group's.
    Each rank answers its share of the held-out problems; the answers are gathered in order."""
    dist = dist or distributed.Dist()
    metrics: dict[str, float] = {}
    samples: list[str] = []
    for gi, g in enumerate(groups):
        params = SamplingParams(response_budget(cfg, prompt_ids(tokenizer, cache, g.template, g.val)),
                                cfg.rollout.temperature, cfg.rollout.top_p, greedy=cfg.rollout.val_greedy)
        val = dist.shard(g.val)
        prompts = prompt_ids(tokenizer, cache, g.template, val)
        outs = [engine.generate(prompts[i:i + 256], 1, params) for i in range(0, len(prompts), 256)]
        texts = [t for o in outs for t in o.texts]
        lengths = torch.tensor(dist.gather_list([int(n) for o in outs for n in o.lengths])).float()
        correct = dist.gather_list([bool(g.correct(t, p)) for t, p in zip(texts, val)])
        texts = dist.gather_list(texts)
        prefix = "val" if gi == 0 else f"val/{g.name}"
        metrics[f"{prefix}/acc"] = sum(correct) / len(correct)
        metrics[f"{prefix}/response_length/mean"] = float(lengths.mean())
        if len(groups) > 1:
            metrics[f"val/{g.name}/acc"] = metrics[f"{prefix}/acc"]
        by_ctx: dict[str, list[bool]] = {}
        for c, p in zip(correct, g.val):
            for ctx in p.meta.get("flaws", None) or (["none"] if "flaws" in p.meta else []):
                by_ctx.setdefault(ctx, []).append(c)
        for ctx, cs in by_ctx.items():
            metrics[f"val_ctx/{ctx}/acc"] = sum(cs) / len(cs)  # accuracy per flaw context of the tiny default
        samples += [f"### step {step} {g.name} [{'correct' if c else 'wrong'}]\nQ: {p.question}\nA: {t}\n"
                    for t, p, c in list(zip(texts, g.val, correct))[: cfg.tracking.log_samples]]
    return metrics, samples


def torch_threads(cfg, env=None) -> int:
    """trainer.threads, else RLKIT_THREADS (set by the parallel launchers), else the CPUs this process
    may use (its affinity: a SLURM/cgroup cpuset) shared by the processes of a torchrun on this node.
    Oversubscribing hurts: two 2-thread processes on 2 cores ran up to 4.9x slower than 1 thread each."""
    import os

    env = os.environ if env is None else env
    if cfg.trainer.get("deterministic"):
        return 1  # a 2-thread CPU reduction is not bitwise reproducible (README)
    chosen = cfg.trainer.threads or int(env.get("RLKIT_THREADS") or 0)
    if chosen:
        return max(1, chosen)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // max(1, int(env.get("LOCAL_WORLD_SIZE", 1) or 1)))


def set_threads(cfg) -> None:
    torch.set_num_threads(torch_threads(cfg))
    if cfg.trainer.get("deterministic"):  # bit-identical reruns: deterministic kernels (CUDA: cuBLAS workspace too)
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def train(cfg: DictConfig, tracker, ckpt_dir: Path, groups: list[DataGroup], stage_steps: list[int | None],
          held_out: list[DataGroup] | None = None) -> dict:
    """Run cfg.trainer.steps RL steps (resuming from ckpt_dir if a checkpoint is there). Evaluation scores
    `held_out` (the first group is `val/acc`; rlkit.run.load_data chooses them), else the last data group."""
    t_entry = time.time()
    set_threads(cfg)
    torch.manual_seed(cfg.seed)
    a, t = cfg.algo, cfg.trainer
    dist = distributed.current()  # this process's rank (world 1 unless launched by torchrun / SLURM tasks)
    backend = make_backend(cfg, dist)  # torch | deepspeed (ZeRO)
    policy, tokenizer = load_policy(cfg.model)  # with LoRA adapters when model.lora.rank > 0
    use_ref = a.kl.placement != "none" and a.kl.coef > 0
    ref = backend.frozen(reference(policy)) if use_ref else None  # a frozen copy, or LoRA's adapter switched off
    critic = backend.trainer(Critic(policy), lr=a.critic.lr, weight_decay=0.01) if a.critic else None
    actor = backend.trainer(policy, lr=t.lr, weight_decay=t.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(actor.optimizer, lambda s: min(1.0, (s + 1) / max(1, t.warmup_steps)))
    engine = make_engine(cfg, policy, tokenizer)
    components = build_components(cfg.reward.components)
    advantage_fn = instantiate(a.advantage)
    stream = PromptStream(list(zip(groups, stage_steps)), t.prompts_per_step, cfg.seed)  # the global batch
    cache: dict[str, list[int]] = {}
    start, stage, prior_wall = 0, 0, 0.0
    dist.reseed(cfg.seed)  # ranks > 0 sample from their own streams

    state = checkpoint.load(ckpt_dir)
    if state:  # resume: everything the next step depends on
        actor.load(ckpt_dir, state, "policy", "opt")
        sched.load_state_dict(state["sched"])
        if ref is not None and state.get("ref") is not None:
            ref.load_state_dict(state["ref"])
        if critic is not None:
            critic.load(ckpt_dir, state, "critic", "critic_opt")
        stream.cursor = state["cursor"]
        dist.set_rng_states(state["rng"])
        start, stage = state["step"] + 1, state["stage"]
        prior_wall = float(state.get("wall_s", 0.0))  # the attempts before this one, up to their checkpoint
        with actor.gathered():
            engine.sync_weights(policy)

    def save(step: int) -> None:  # every rank calls it (DeepSpeed writes shards); rank 0 writes state.pt
        state = {**actor.save(ckpt_dir, step, "policy", "opt"), "sched": sched.state_dict(),
                 "ref": ref.state_dict() if ref is not None and cfg.curriculum.reset_ref else None,
                 **(critic.save(ckpt_dir, step, "critic", "critic_opt") if critic else {"critic": None, "critic_opt": None}),
                 "cursor": stream.cursor, "rng": dist.rng_states(), "step": step, "stage": stage, "run_id": tracker.run_id,
                 "last_val": last_val,  # (a job killed after its final checkpoint still returns its val/acc)
                 "wall_s": prior_wall + time.time() - t_entry}
        if dist.is_main:
            checkpoint.save(ckpt_dir, state)

    eval_groups = held_out or groups[-1:]
    if start == 0:
        with actor.gathered():
            m, samples = evaluate(cfg, engine, tokenizer, cache, eval_groups, components, 0, dist)
        tracker.log(m, 0)
        last_val = m.get("val/acc", float("nan"))
    else:
        last_val = float(state.get("last_val", float("nan")))
    bar = tqdm(range(start, t.steps), initial=start, total=t.steps, desc=f"{a.name}", unit="step", dynamic_ncols=True,
               disable=not dist.is_main)
    for step in bar:
        m: dict[str, float] = {}
        t_step = time.perf_counter()
        policy.eval()
        new_stage, problems = stream.next(step)  # the same global batch on every rank; each keeps its share
        if new_stage != stage and cfg.curriculum.reset_ref and ref is not None:
            ref.load_state_dict(policy.state_dict())  # what the KK report did by reloading between stages
        stage = new_stage
        group = stream.stages[stage][0]
        prompts = prompt_ids(tokenizer, cache, group.template, problems)
        params = SamplingParams(response_budget(cfg, prompts), cfg.rollout.temperature, cfg.rollout.top_p,
                                seed=distributed.step_seed(cfg.seed, step) if cfg.rollout.seed_per_prompt else None)
        with timer(m, "timing_s/gen"), actor.gathered():
            batch = generate_scored(cfg, engine, tokenizer, cache, group, dist.shard(problems), t.group_size, params,
                                    components, step)
            if a.group_filter == "resample":
                def regen(step=step, group=group, params=params) -> Batch:
                    return generate_scored(cfg, engine, tokenizer, cache, group, dist.shard(stream.next(step)[1]),
                                           t.group_size, params, components, step)

                batch, rounds = dynamic_sample(batch, regen, len(dist.shard(problems)), t.group_size,
                                               a.max_resample_rounds, dist.mean)
                m["groups/resample_rounds"] = rounds
        batch = distributed.to_device(batch, dist.device)
        r = batch.rollout
        mask = r.response_mask
        uniform = uniform_groups(batch.scores, r.group)
        loss_mask = mask * (~uniform).float().unsqueeze(-1) if a.group_filter == "mask" else mask
        with timer(m, "timing_s/old_log_prob"):
            on_policy = a.epochs == 1 and a.mini_batches == 1
            old_logp, ref_logp, values = forward_batch(actor.model, critic.model if critic else None, ref, batch,
                                                       cfg.rollout.temperature, t.micro_batch_size,
                                                       not on_policy or a.kl.placement == "reward")
        with timer(m, "timing_s/adv"):
            kl_tok = None
            if ref_logp is not None and old_logp is not None:
                kl_tok = kl_estimate(old_logp, ref_logp, a.kl.estimator)
            rewards = token_rewards(batch.scores, mask, kl_tok if a.kl.placement == "reward" else None, a.kl.coef)
            adv, returns = dist.advantages(advantage_fn, rewards, mask, r.group, values)  # over the global batch
        policy.train()
        with timer(m, "timing_s/update_actor"):
            m.update(update(cfg, actor, critic, batch, old_logp, ref_logp, values, adv, returns, loss_mask, dist))
        sched.step()
        with actor.gathered():
            engine.sync_weights(policy)

        lengths = r.lengths.float()
        all_correct, all_wrong = group_outcomes(batch.correct, r.group)
        m.update({
            "critic/score/mean": float(batch.scores.mean()),
            "critic/score/max": float(batch.scores.max()), "critic/score/min": float(batch.scores.min()),
            "response_length/mean": float(lengths.mean()), "response_length/max": float(lengths.max()),
            "response_length/min": float(lengths.min()),
            "response_length/clip_ratio": float(r.truncated.float().mean()),
            "groups/all_correct_frac": all_correct, "groups/all_wrong_frac": all_wrong,
            "groups/filtered_frac": float(uniform.float().mean()),
            "rollout/distinct_frac": distinct_frac(r.texts, r.group.tolist()),
            "rollout/correct_frac": float(batch.correct.float().mean()),
            "critic/advantages/mean": float(masked_mean(adv, mask)),
            "critic/returns/mean": float(masked_mean(returns, mask)),
            "actor/lr": sched.get_last_lr()[0], "data/stage": stage,
        })
        m.update({f"rewards/{k}/mean": sum(v) / len(v) for k, v in batch.components.items()})
        if kl_tok is not None:
            m["actor/kl_ref"] = float(masked_mean(kl_tok, mask))
        if values is not None:
            m["critic/vf_explained_var"] = explained_variance(values, returns, mask, dist)
            m["critic/values/mean"] = float(masked_mean(values, mask))
        m["timing_s/step"] = time.perf_counter() - t_step  # the RL step alone; evaluation is timing_s/eval
        m["perf/throughput"] = float(lengths.sum()) / m["timing_s/step"]
        if (step + 1) % t.eval_every == 0 or step + 1 == t.steps:
            policy.eval()
            with timer(m, "timing_s/eval"), actor.gathered():
                vm, samples = evaluate(cfg, engine, tokenizer, cache, eval_groups, components, step + 1, dist)
            m.update(vm)
            last_val = vm.get("val/acc", last_val)
            tracker.log_text("\n".join(samples), f"samples/step_{step + 1:05d}.md")
        m = dist.reduce_metrics(m, n_seqs=len(batch.problems), n_tokens=float(mask.sum()))  # (world 1: as is)
        tracker.log(m, step + 1)
        bar.set_postfix(reward=f"{m['critic/score/mean']:.3f}", len=f"{m['response_length/mean']:.1f}",
                        val=f"{last_val:.3f}")
        stop = checkpoint.stop_requested(dist)  # SIGTERM/SIGUSR2 under rlkit.run: checkpoint now and stop
        if (step + 1) % t.checkpoint_every == 0 or step + 1 == t.steps or stop:
            save(step)
        if stop and step + 1 < t.steps:
            raise checkpoint.Preempted(stop, step + 1)
    bar.close()
    return {"val/acc": last_val, "wall_time_s": prior_wall + time.time() - t_entry}

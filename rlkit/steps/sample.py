"""Sample and score: a step's prompts -> G rollouts each -> reward components and correctness.

DAPO's dynamic sampling (algo.group_filter=resample) drops all-equal groups and samples more prompts
until the batch is full again or `max_resample_rounds` extra rounds are spent."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from rlkit import distributed
from rlkit.algos.groups import uniform_groups
from rlkit.data.problem import Problem
from rlkit.data.stream import DataGroup
from rlkit.data.templates import render
from rlkit.rewards.base import RewardContext
from rlkit.rewards.compose import score
from rlkit.rollout.base import Rollout, SamplingParams, cat_rollouts
from rlkit.rollout.seeded import step_seed

if TYPE_CHECKING:
    from rlkit.steps.metrics import Timers
    from rlkit.steps.parts import RunParts

distributed.declare("same", "groups/resample_rounds")



@dataclass
class Batch:
    """A scored rollout ready for the update (B = P*G sequences, T response positions)."""

    rollout: Rollout
    scores: torch.Tensor        # [B] total reward
    correct: torch.Tensor       # [B] bool, the data group's correctness rule
    components: dict[str, list[float]]
    problems: list[Problem]


def prompt_ids(tokenizer: Any, cache: dict[str, list[int]], template: str, problems: list[Problem]) -> list[list[int]]:
    """Each problem's chat-templated prompt tokens, tokenized once per run (`cache` by problem id)."""
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


def sampling_params(cfg: DictConfig, prompts: list[list[int]], step: int) -> SamplingParams:
    seed = step_seed(cfg.seed, step) if cfg.rollout.seed_per_prompt else None
    return SamplingParams(response_budget(cfg, prompts), cfg.rollout.temperature, cfg.rollout.top_p, seed=seed)


def generate_scored(p: RunParts, group: DataGroup, problems: list[Problem], params: SamplingParams, step: int,
                    timers: Timers) -> Batch:
    """G samples of each problem (timing_s/gen), scored by the reward components and the data group's
    correctness rule (timing_s/reward)."""
    n = p.cfg.trainer.group_size
    with timers("gen"):
        rollout = p.engine.generate(p.prompt_ids(group.template, problems), n, params)
    with timers("reward"):
        expanded = [x for x in problems for _ in range(n)]
        lengths = rollout.lengths.tolist()
        ctxs = [RewardContext(lengths[i], params.max_new_tokens, bool(rollout.truncated[i]), step, p.cfg.trainer.steps)
                for i in range(len(expanded))]
        total, per = score(p.components, rollout.texts, expanded, ctxs)
        correct = torch.tensor([bool(group.correct(t, x)) for t, x in zip(rollout.texts, expanded)])
    return Batch(rollout, torch.tensor(total, dtype=torch.float32), correct, per, expanded)


def sample(p: RunParts, step: int, timers: Timers) -> tuple[Batch, dict[str, float]]:
    """This step's batch on this rank (its share of the global prompts) and the sampling metrics."""
    cfg, dist = p.cfg, p.dist
    new_stage, problems = p.stream.next(step)  # the same global batch on every rank; each keeps its share
    if new_stage != p.stage and cfg.curriculum.reset_ref and p.ref is not None:
        p.ref.load_state_dict(p.policy.state_dict())  # what the KK report did by reloading between stages
    p.stage = new_stage
    group = p.stream.stages[p.stage][0]
    params = sampling_params(cfg, p.prompt_ids(group.template, problems), step)
    m: dict[str, float] = {}
    with p.actor.gathered():
        batch = generate_scored(p, group, dist.shard(problems), params, step, timers)
        if cfg.algo.group_filter == "resample":
            def regen() -> Batch:
                return generate_scored(p, group, dist.shard(p.stream.next(step)[1]), params, step, timers)

            batch, m["groups/resample_rounds"] = dynamic_sample(
                batch, regen, len(dist.shard(problems)), cfg.trainer.group_size, cfg.algo.max_resample_rounds, dist.mean)
    return batch, m


def concat(batches: list[Batch], keep_groups: list[torch.Tensor]) -> Batch:
    """Join the kept rows of several generation rounds into one batch (DAPO dynamic sampling)."""
    rollout = cat_rollouts([b.rollout for b in batches], keep_groups)
    rows = [(b, i) for b, keep in zip(batches, keep_groups) for i in range(len(b.problems)) if keep[i]]
    comps = {k: [b.components[k][i] for b, i in rows] for k in batches[0].components}
    return Batch(rollout, torch.stack([b.scores[i] for b, i in rows]), torch.stack([b.correct[i] for b, i in rows]),
                 comps, [b.problems[i] for b, i in rows])


def dynamic_sample(first: Batch, regenerate: Callable[[], Batch], per_step: int, group_size: int, max_rounds: int,
                   mean_over_ranks: Callable[[float], float] = float) -> tuple[Batch, int]:
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
    budget = per_step * group_size  # trim to at most per_step groups
    for k in keeps:
        idx = k.nonzero().flatten()
        take = min(len(idx), budget)
        k[idx[take:]] = False
        budget -= take
    return concat(batches, keeps), rounds

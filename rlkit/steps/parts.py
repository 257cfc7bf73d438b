"""The run's moving parts in one object, built once by `build()`; `restore()`/`save()` put them in and
out of a checkpoint.

Build order is part of the behaviour: each model's initialisation draws from the global torch RNG
(LoRA adapters, the critic's head), so the order below must not change."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from rlkit import checkpoint, distributed
from rlkit.backends import Trained, make_backend
from rlkit.config import ConfigError, vllm_device, vllm_sleep
from rlkit.data.problem import Problem
from rlkit.data.stream import DataGroup, PromptStream
from rlkit.eval.suite import Suite, load_suite
from rlkit.models.load import Critic, load_policy, reference
from rlkit.models.lora import MergedForGeneration, hf_model, is_lora
from rlkit.rewards.compose import RewardFn, build_components
from rlkit.rollout.base import Engine
from rlkit.rollout.own_weights import OwnWeights
from rlkit.rollout.seeded import PerPromptSeeds
from rlkit.steps import sample


@dataclass
class RunParts:
    """Everything a step reads or moves: built by `build()`; tests may fill only what they use."""

    cfg: DictConfig
    dist: distributed.Dist
    actor: Trained
    policy: torch.nn.Module | None = None     # the raw policy module (generation, weight pushes, train/eval)
    tokenizer: Any = None
    critic: Trained | None = None
    ref: torch.nn.Module | None = None        # frozen reference (None without KL)
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    engine: Engine | None = None
    components: Mapping[str, tuple[float, RewardFn]] = field(default_factory=dict)
    advantage_fn: Callable | None = None
    stream: PromptStream | None = None
    eval_groups: list[DataGroup] = field(default_factory=list)
    cache: dict[str, list[int]] = field(default_factory=dict)  # problem id -> prompt tokens
    stage: int = 0                            # the curriculum stage of the last step
    last_val: float = float("nan")            # the last held-out accuracy (the sweep objective)
    suite: Suite | None = None                # the eval suite (conf/eval): step 0, the end, every eval.every
    prior_wall: float = 0.0                   # seconds of the attempts before this one (up to their checkpoints)
    policy_loss: Callable | None = None       # algo.policy_loss bound to its params (rlkit.algos.losses)
    correction: Callable | None = None        # algo.correction bound to its params (rlkit.algos.offpolicy)
    in_flight: list = field(default_factory=list)  # trainer.staleness: generated batches not yet trained on
    worker: ThreadPoolExecutor | None = None  # trainer.overlap: the thread that generates beside the update
    reward_transform: Callable | None = None  # reward.transform: (total, correct, seed) -> total (placebos)

    def prompt_ids(self, template: str, problems: list[Problem]) -> list[list[int]]:
        return sample.prompt_ids(self.tokenizer, self.cache, template, problems)


def build(cfg: DictConfig, groups: list[DataGroup], stage_steps: list[int | None],
          held_out: list[DataGroup] | None = None) -> RunParts:
    """Seed, threads, ranks, models (policy, reference, critic) on the chosen backend, the LR schedule,
    the rollout engine, reward components, the advantage estimator and the prompt stream."""
    suite = load_suite(cfg.eval, cfg) if cfg.get("eval") and cfg.eval.groups else None  # (reads its files first)
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
    parts = RunParts(cfg, dist, actor, policy, tokenizer, critic, ref, sched, make_engine(cfg, policy, tokenizer),
                     build_components(cfg.reward.components), instantiate(a.advantage),
                     PromptStream(list(zip(groups, stage_steps)), t.prompts_per_step, cfg.seed),  # the global batch
                     held_out or groups[-1:], suite=suite, policy_loss=instantiate(a.policy_loss),
                     correction=instantiate(a.correction), reward_transform=instantiate(cfg.reward.get("transform")),
                     worker=ThreadPoolExecutor(1, thread_name_prefix="rlkit-generate") if t.get("overlap") else None)
    dist.reseed(cfg.seed)  # ranks > 0 sample from their own streams
    return parts


def make_engine(cfg: DictConfig, model: torch.nn.Module, tokenizer: Any) -> Engine:
    """rollout.engine: the lean decode loop (fast), HF generate (hf) or vLLM; LoRA and per-prompt seeds wrap it."""
    if cfg.rollout.engine == "vllm":
        from rlkit.rollout.vllm import VLLMEngine  # optional extra, imported only when chosen

        device = vllm_device(cfg)
        dtype = cfg.rollout.vllm.get("dtype")  # null: the policy's own (a bf16 rollout of an fp32 policy is a mismatch)
        return VLLMEngine(cfg, tokenizer, device=device, sleep=vllm_sleep(cfg, device),
                          dtype=getattr(torch, dtype) if dtype else next(model.parameters()).dtype)
    from rlkit.rollout import fast
    from rlkit.rollout.hf import HFEngine

    base = hf_model(model)  # (LoRA: the transformers model with its adapter layers)

    def over(m: torch.nn.Module) -> Engine:
        return fast.FastEngine(m, tokenizer) if cfg.rollout.engine == "fast" and fast.supports(m) else HFEngine(m, tokenizer)

    engine = OwnWeights(over, base) if cfg.trainer.get("overlap") else over(base)  # overlap: generate beside training
    if cfg.trainer.get("overlap") and not getattr(engine, "takes_generator", False):
        raise ConfigError(f"trainer.overlap=true: model={cfg.model.get('name')} is not supported by the fast engine "
                          "(HF generate would draw from the trainer's RNG); use rollout.engine=vllm or overlap=false")
    if is_lora(model):
        engine = MergedForGeneration(engine, model)  # samples from base + adapter
    return PerPromptSeeds(engine) if cfg.rollout.get("seed_per_prompt") else engine


def restore(p: RunParts, ckpt_dir: Path) -> int | None:
    """Resume from ckpt_dir's checkpoint: everything the next step depends on. The step to start at, or
    None without a checkpoint."""
    state = checkpoint.load(ckpt_dir)
    if not state:
        return None
    p.actor.load(ckpt_dir, state, "policy", "opt")
    p.sched.load_state_dict(state["sched"])
    if p.ref is not None and state.get("ref") is not None:
        p.ref.load_state_dict(state["ref"])
    if p.critic is not None:
        p.critic.load(ckpt_dir, state, "critic", "critic_opt")
    p.stream.cursor = state["cursor"]
    p.dist.set_rng_states(state["rng"])
    p.stage, p.last_val = state["stage"], float(state.get("last_val", float("nan")))
    p.prior_wall = float(state.get("wall_s", 0.0))
    p.in_flight = list(state.get("in_flight") or [])  # trainer.staleness: the batches generated ahead
    with p.actor.gathered():
        p.engine.sync_weights(p.policy)
    return state["step"] + 1


def save(p: RunParts, ckpt_dir: Path, step: int, run_id: str | None, wall_s: float = 0.0) -> None:
    """Every rank calls it (DeepSpeed writes shards); rank 0 writes state.pt. `last_val` is kept so a job
    killed after its final checkpoint still returns its val/acc; `wall_s` (all attempts so far) so the
    summary's wall time adds up over resumes."""
    actor = p.actor.save(ckpt_dir, step, "policy", "opt")
    critic = p.critic.save(ckpt_dir, step, "critic", "critic_opt") if p.critic else {"critic": None, "critic_opt": None}
    state = {**actor, "sched": p.sched.state_dict(),
             "ref": p.ref.state_dict() if p.ref is not None and p.cfg.curriculum.reset_ref else None, **critic,
             "cursor": p.stream.cursor, "rng": p.dist.rng_states(), "step": step, "stage": p.stage, "run_id": run_id,
             "last_val": p.last_val, "wall_s": wall_s, "in_flight": p.in_flight}
    if p.dist.is_main:
        checkpoint.save(ckpt_dir, state)


def checkpoint_bytes(p: RunParts) -> int:
    """About what `save` writes: every weight plus AdamW's two moments of the trainable ones (actor and
    critic), and the reference when a curriculum resets it (for rlkit.checkpoint.preflight)."""
    def size(model, trainable_only: bool = False) -> int:
        if model is None:
            return 0
        return sum(t.numel() * t.element_size() for t in model.parameters() if t.requires_grad or not trainable_only)

    critic = p.critic.model if p.critic is not None else None
    total = sum(size(m) + 2 * size(m, True) for m in (p.actor.model, critic))
    return total + (size(p.ref) if p.ref is not None and p.cfg.curriculum.reset_ref else 0)


def torch_threads(cfg: DictConfig, env: Mapping[str, str] | None = None) -> int:
    """trainer.threads, else RLKIT_THREADS (set by the parallel launchers), else the CPUs this process
    may use (its affinity: a SLURM/cgroup cpuset) shared by the processes of a torchrun on this node.
    Oversubscribing hurts: two 2-thread processes on 2 cores ran up to 4.9x slower than 1 thread each."""
    env = os.environ if env is None else env
    if cfg.trainer.get("deterministic"):
        return 1  # a 2-thread CPU reduction is not bitwise reproducible (README)
    chosen = cfg.trainer.threads or int(env.get("RLKIT_THREADS") or 0)
    if chosen:
        return max(1, chosen)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // max(1, int(env.get("LOCAL_WORLD_SIZE", 1) or 1)))


def set_threads(cfg: DictConfig) -> None:
    torch.set_num_threads(torch_threads(cfg))
    if cfg.trainer.get("deterministic"):  # bit-identical reruns: deterministic kernels (CUDA: cuBLAS workspace too)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)

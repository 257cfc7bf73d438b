"""Policy, reference and critic: the embedded tiny warm start and real checkpoints load the same way."""
from __future__ import annotations

import copy
import sys

import torch
from omegaconf import DictConfig, OmegaConf

from rlkit.models import lora


def tiny_spec(model_cfg: DictConfig) -> dict:
    """The part of the model config that determines the warm start (its cache key)."""
    c = OmegaConf.to_container(model_cfg, resolve=True)
    return {"vocab_size": c["vocab_size"], "arch": c["arch"], "warmup": c["warmup"]}


def model_path(model_cfg: DictConfig) -> str:
    if model_cfg.get("path"):
        return str(model_cfg.path)
    from rlkit.models import tiny

    spec = tiny_spec(model_cfg)
    if tiny.shipped_path(spec) is None and not (tiny.cache_root() / f"tiny-{tiny.cache_key(spec)}" / "warmup.json").exists():
        # never train for minutes silently: say so before the warm-up's progress bar
        print(f"[rlkit] model={model_cfg.get('name')}: building its warm start once (a few minutes on a CPU), cached "
              f"in {tiny.cache_root()}", file=sys.stderr, flush=True)
    return str(tiny.ensure_tiny(spec))


def load_policy(model_cfg: DictConfig):
    """(model, tokenizer) in fp32 train mode; the tokenizer pads on the left for batched generation.
    With model.lora.rank > 0 the model is a peft LoRA model (base frozen, adapters trainable); with
    model.activation_checkpointing the update recomputes layer activations (docs/scale.md: a 16k response
    does not fit an 80 GB GPU from 3B up without it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_path(model_cfg)
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.generation_config.pad_token_id = tok.pad_token_id
    if model_cfg.get("activation_checkpointing"):  # keep each layer's input only, recompute the rest in the backward
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora.enabled(model_cfg):
        model = lora.attach(model, model_cfg.lora)
    return model, tok


def reference(policy: torch.nn.Module) -> torch.nn.Module:
    """The KL reference: the LoRA policy with its adapter disabled (no extra weights), else a frozen copy."""
    return lora.AdapterDisabled(policy) if lora.is_lora(policy) else frozen_copy(policy)


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class Critic(torch.nn.Module):
    """Value model for PPO: a copy of the policy's backbone plus a zero-initialised scalar head
    (verl/OpenRLHF initialise the critic from the actor too)."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(lora.hf_model(policy).base_model)  # (LoRA: the backbone with its adapters)
        self.head = torch.nn.Linear(policy.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask, position_ids) -> torch.Tensor:  # [B, L]
        h = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return self.head(h).squeeze(-1)

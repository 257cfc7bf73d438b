"""Real model presets built from their committed architecture alone: random weights, no hub.

Each real preset (conf/model/qwen2.5-*.yaml, r1-distill-qwen-14b.yaml) carries its checkpoint's public
config.json values under `model.arch`, so its exact shape can be instantiated here — on the meta device
to count parameters (tests/scale/test_shapes.py checks the published sizes), or as a local checkpoint
directory with random weights and a tokenizer carrying the real special tokens at their real ids and
the real chat template, which `model.path=<dir>` then runs through the same code as a downloaded one
(bench/shape_step.py: one RL step of the 0.5B shape on the CPU).

    python -m rlkit.models.shapes qwen2.5-0.5b-instruct /tmp/q05     # config + tokenizer + random weights
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # as rlkit.config's (models may not import config)

# Qwen2.5's added tokens, ids 151643..151664 (tokenizer_config.json of every Qwen2.5 checkpoint); the
# ones after <|video_pad|> are plain (not special) added tokens there too
QWEN25_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
                "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
QWEN25_SPECIAL = set(QWEN25_ADDED[:14])
# DeepSeek-R1-Distill-Qwen: the same base vocabulary, its own added tokens from 151643 on
R1_ADDED = ["<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜begin▁of▁sentence｜>", "<|EOT|>", "<think>",
            "</think>"]
R1_SPECIAL = set(R1_ADDED[:5])
FIRST_ADDED_ID = 151643  # the byte-level BPE vocabulary of Qwen2/2.5 has 151,643 entries

# Qwen2.5's chat template without its tool-calling branches (rlkit sends no tools): the default system
# prompt when the conversation has none, then <|im_start|>role\ncontent<|im_end|>\n per message
QWEN25_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role != 'system' or not loop.first %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# DeepSeek-R1-Distill's template, reduced to system/user/assistant turns (its tool branches and the
# stripping of earlier answers' reasoning omitted); the generation prompt opens a <think> block
R1_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}{%- if message.role == 'system' %}{{- message.content }}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}{{- '<｜User｜>' + message.content }}"
    "{%- elif message.role == 'assistant' %}{{- '<｜Assistant｜>' + message.content + '<｜end▁of▁sentence｜>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<｜Assistant｜><think>\\n' }}{%- endif %}"
)
REAL_PRESETS = ("qwen2.5-0.5b-instruct", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b",
                "r1-distill-qwen-14b")


def preset(name: str) -> DictConfig:
    """conf/model/<name>.yaml as a config (the `model` group's node)."""
    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"no model preset {name!r}; real presets: {', '.join(REAL_PRESETS)}")
    return OmegaConf.load(path)


def hf_config(model_cfg: DictConfig):
    """transformers config of the preset's architecture (`model.arch`: the checkpoint's config.json values)."""
    from transformers import AutoConfig

    arch = model_cfg.get("arch")
    if arch is None or "model_type" not in arch:
        raise ValueError(f"model={model_cfg.get('name')} carries no real architecture (model.arch with model_type)")
    values: dict[str, Any] = OmegaConf.to_container(arch, resolve=True)
    return AutoConfig.for_model(**values)


def meta_model(model_cfg: DictConfig) -> torch.nn.Module:
    """The preset's model on the meta device: every shape, no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config(model_cfg))


def n_params(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once, as published sizes count them)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def tokenizer(model_cfg: DictConfig, max_len: int):
    """A byte-level BPE tokenizer with the checkpoint's added tokens at their real ids and its chat
    template. The merges are not the real ones (they are not in the repo): the 256 byte symbols and
    placeholders fill ids up to 151642, so text encodes byte by byte, which is all a random model needs."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    kind = str(model_cfg.get("tokenizer", "qwen2.5"))
    if kind not in ("qwen2.5", "r1-distill"):
        raise ValueError(f"model.tokenizer={kind!r}: one of qwen2.5, r1-distill")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(alphabet)}
    vocab.update({f"<|placeholder_{i}|>": i for i in range(len(vocab), FIRST_ADDED_ID)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    added, special = (QWEN25_ADDED, QWEN25_SPECIAL) if kind == "qwen2.5" else (R1_ADDED, R1_SPECIAL)
    tok.add_tokens([AddedToken(t, special=t in special, normalized=False) for t in added])
    eos_id = model_cfg.arch.eos_token_id
    eos = added[int(eos_id) - FIRST_ADDED_ID]
    if kind == "qwen2.5":
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token=eos, pad_token="<|endoftext|>",
                                     padding_side="left", model_max_length=max_len)
        hf.chat_template = QWEN25_CHAT_TEMPLATE
    else:
        hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<｜begin▁of▁sentence｜>", eos_token=eos,
                                     pad_token="<｜end▁of▁sentence｜>", padding_side="left", model_max_length=max_len)
        hf.chat_template = R1_CHAT_TEMPLATE
    return hf


def write_random_checkpoint(name: str, out: str | Path, seed: int = 0) -> Path:
    """A local checkpoint directory of the preset's exact shape: config.json, tokenizer, random bf16
    weights (as the hub ships them); `model=<name> model.path=<out>` trains it like the real one."""
    from transformers import AutoModelForCausalLM

    cfg = preset(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(cfg), dtype=torch.bfloat16)
    model.save_pretrained(out)
    tokenizer(cfg, int(cfg.context_length)).save_pretrained(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m rlkit.models.shapes <{'|'.join(REAL_PRESETS)}> <out dir>")
    print(write_random_checkpoint(sys.argv[1], sys.argv[2]))

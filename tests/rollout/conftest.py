"""Models and prompts for the rollout tests: the embedded warm start (stops after ~20-40 tokens), a
random-init model of the same architecture (generates hundreds of tokens without EOS tricks), and a
small GQA Llama (another supported architecture, kv heads < query heads)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def warm(tiny_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32).eval()
    return model, tok


def _random_like(cfg, seed: int, **changes):
    from transformers import AutoModelForCausalLM

    cfg = cfg.__class__.from_dict({**cfg.to_dict(), **changes})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def random_tiny(warm):
    """Random init, the warm start's exact config (positions widened for prompt + 256 new tokens)."""
    model, tok = warm
    return _random_like(model.config, 0, max_position_embeddings=512), tok


@pytest.fixture(scope="session")
def gqa_llama(warm):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = warm
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                      tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = LlamaForCausalLM(cfg).eval()
    return model, tok


@pytest.fixture(scope="session")
def prompts_for():
    """prompts_for(tok, n, ragged=True) -> token ids of n chat prompts (see chat_prompts)."""
    return chat_prompts


def chat_prompts(tok, n: int = 16, ragged: bool = True) -> list[list[int]]:
    """Held-out addition questions through the chat template; the first ones shortened so the batch
    has left padding of several widths."""
    from rlkit.data.arithmetic import load

    out = []
    for p in load("test", size=n):
        text = tok.apply_chat_template([{"role": "user", "content": p.question}], tokenize=False,
                                       add_generation_prompt=True)
        out.append(tok(text, add_special_tokens=False)["input_ids"])
    if ragged:
        for i, cut in zip(range(len(out) - 1), (5, 3, 1)):  # (keep one full-length prompt)
            out[i] = out[i][cut:]
    return out

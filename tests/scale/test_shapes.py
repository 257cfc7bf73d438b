"""Every real preset's exact architecture builds from the repo alone (no hub): its parameter count on the
meta device equals the checkpoint's published size, and its tokenizer carries the real added tokens at
their real ids with the real chat template. bench/shape_step.py runs an RL step of the 0.5B shape."""
from __future__ import annotations

import pytest

from rlkit.models.shapes import REAL_PRESETS, meta_model, n_params, preset, tokenizer, write_random_checkpoint

# exact parameter counts of the released checkpoints (their model cards round them: 0.49B, 1.54B, 3.09B,
# 7.61B, 14.7B); the R1 distill is Qwen2.5-14B's architecture
PARAMS = {"qwen2.5-0.5b-instruct": 494_032_768, "qwen2.5-1.5b": 1_543_714_304, "qwen2.5-3b": 3_085_938_688,
          "qwen2.5-7b": 7_615_616_512, "qwen2.5-14b": 14_770_033_664, "r1-distill-qwen-14b": 14_770_033_664}
CARD = {"qwen2.5-0.5b-instruct": 0.49e9, "qwen2.5-1.5b": 1.54e9, "qwen2.5-3b": 3.09e9, "qwen2.5-7b": 7.61e9,
        "qwen2.5-14b": 14.7e9, "r1-distill-qwen-14b": 14.7e9}


@pytest.mark.parametrize("name", REAL_PRESETS)
def test_preset_shape_has_the_published_size(name):
    cfg = preset(name)
    model = meta_model(cfg)
    n = n_params(model)
    assert n == PARAMS[name] and abs(n - CARD[name]) / CARD[name] < 0.01
    a = cfg.arch
    assert model.config.vocab_size == a.vocab_size == (151936 if a.tie_word_embeddings else 152064)
    assert model.lm_head.weight.shape == (a.vocab_size, a.hidden_size)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == a.tie_word_embeddings
    attn = model.model.layers[0].self_attn
    head_dim = a.hidden_size // a.num_attention_heads
    assert attn.k_proj.weight.shape == (a.num_key_value_heads * head_dim, a.hidden_size) and head_dim in (64, 128)
    assert len(model.model.layers) == a.num_hidden_layers and model.config.rope_parameters["rope_theta"] == 1e6


def test_qwen_tokenizer_has_the_real_special_tokens_and_chat_template():
    tok = tokenizer(preset("qwen2.5-0.5b-instruct"), 32768)
    assert len(tok) == 151665  # as the released tokenizer: 151,643 BPE entries + 22 added tokens
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "<|file_sep|>"]) == \
        [151643, 151644, 151645, 151657, 151664]
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")
    ids = tok(text)["input_ids"]
    assert ids[0] == 151644 and ids.count(151644) == 3 and ids.count(151645) == 2 and tok.decode(ids) == text
    base = tokenizer(preset("qwen2.5-7b"), 32768)
    assert base.eos_token == "<|endoftext|>"  # base models end on <|endoftext|>


def test_r1_distill_tokenizer_opens_a_think_block():
    tok = tokenizer(preset("r1-distill-qwen-14b"), 32768)
    assert (tok.bos_token_id, tok.eos_token_id) == (151646, 151643)
    assert tok.convert_tokens_to_ids(["<think>", "</think>"]) == [151648, 151649]
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) == \
        "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>\n"


def test_unknown_preset_and_tiny_fail_clearly():
    with pytest.raises(ValueError, match="no model preset 'qwen9'"):
        preset("qwen9")
    with pytest.raises(ValueError, match="model=tiny carries no real architecture"):
        meta_model(preset("tiny"))


@pytest.mark.slow
def test_random_checkpoint_of_the_05b_shape_loads_like_a_downloaded_one(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = write_random_checkpoint("qwen2.5-0.5b-instruct", tmp_path / "q05")
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert n_params(model) == PARAMS["qwen2.5-0.5b-instruct"] and tok.convert_tokens_to_ids("<|im_end|>") == 151645
    assert tok.chat_template and "You are Qwen" in tok.chat_template


def test_activation_checkpointing_recomputes_to_the_same_gradients(tiny_path):
    import torch
    from omegaconf import OmegaConf

    from rlkit.models.load import load_policy

    grads = []
    for ckpt in (False, True):
        cfg = OmegaConf.create({"name": "tiny", "path": str(tiny_path), "activation_checkpointing": ckpt,
                                "lora": {"rank": 0}})
        model, tok = load_policy(cfg)
        model.train()
        assert model.is_gradient_checkpointing == ckpt
        ids = torch.tensor([tok("What is 12 + 34? <think>")["input_ids"]])
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7) and grads[0].abs().sum() > 0

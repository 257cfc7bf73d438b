"""The lean decode loop is a faithful replacement for HF generate: same greedy tokens, and the
training pass's logprobs of its samples match the sampling distribution's scores."""
from __future__ import annotations

import torch

from rlkit.data.arithmetic import load
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.fast import FastEngine
from rlkit.rollout.hf import HFEngine
from rlkit.rollout.logprobs import token_logprobs


def _setup(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    problems = load("test", size=24)
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": p.question}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for p in problems]
    prompts[0] = prompts[0][3:]  # ragged prompt lengths exercise left padding
    return model, tok, prompts


def test_greedy_tokens_match_hf_generate(tiny_path):
    model, tok, prompts = _setup(tiny_path)
    hf = HFEngine(model, tok).generate(prompts, 1, SamplingParams(48, greedy=True))
    fast = FastEngine(model, tok).generate(prompts, 1, SamplingParams(48, greedy=True))
    assert torch.equal(hf.response_ids, fast.response_ids)
    assert torch.equal(hf.response_mask, fast.response_mask)
    assert hf.texts == fast.texts
    assert fast.response_mask.sum() > 24 * 10  # real completions, not empty ones


def test_training_logprobs_match_generate_scores(tiny_path):
    """Logprobs of the fast path's greedy tokens, recomputed by the training pass, equal the
    log-softmax of HF generate's own per-step logits."""
    from rlkit.rollout.hf import left_pad

    model, tok, prompts = _setup(tiny_path)
    r = FastEngine(model, tok).generate(prompts, 1, SamplingParams(40, greedy=True))
    ids, mask = left_pad(prompts, tok.pad_token_id)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=40, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             output_logits=True, return_dict_in_generate=True)
        steps = torch.stack(out.logits, 1).log_softmax(-1)  # [B, T, V]
        t = r.response_ids.shape[1]
        ref = steps[:, :t].gather(-1, r.response_ids.unsqueeze(-1)).squeeze(-1)
        logp, _ = token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask)
    m = r.response_mask.bool()
    assert torch.allclose(logp[m], ref[m], atol=1e-4), (logp[m] - ref[m]).abs().max()

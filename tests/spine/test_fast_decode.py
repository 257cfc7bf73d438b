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


def test_per_prompt_generators_draw_what_the_seeded_global_stream_drew(tiny_path):
    """PerPromptSeeds hands the fast engine its own generator (so a worker thread can sample beside the
    trainer, trainer.overlap); the samples are the ones the seeded global stream gave, and the generator
    copy of the weights (OwnWeights) samples what the policy does."""
    from rlkit.rollout.own_weights import OwnWeights
    from rlkit.rollout.seeded import PerPromptSeeds, step_seed

    class GlobalOnly:  # the same engine without the generator argument: the fork-and-seed path
        def __init__(self, engine):
            self.engine = engine

        def generate(self, prompts, n, params):
            return self.engine.generate(prompts, n, params)

    model, tok, prompts = _setup(tiny_path)
    params = SamplingParams(40, seed=step_seed(3, 7))
    own = PerPromptSeeds(FastEngine(model, tok)).generate(prompts[:6], 4, params)
    fork = PerPromptSeeds(GlobalOnly(FastEngine(model, tok))).generate(prompts[:6], 4, params)
    assert torch.equal(own.response_ids, fork.response_ids) and torch.equal(own.logprobs, fork.logprobs)
    assert len(set(own.texts)) > 6  # real sampling, several distinct completions
    state = torch.get_rng_state()
    copied = PerPromptSeeds(OwnWeights(lambda m: FastEngine(m, tok), model)).generate(prompts[:6], 4, params)
    assert torch.equal(state, torch.get_rng_state())  # the global stream is left alone
    assert torch.equal(copied.response_ids, own.response_ids)

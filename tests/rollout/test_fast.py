"""The lean decode loop (rlkit.rollout.fast) against HF `generate`: same greedy tokens on short and
long (256-token, no EOS forcing) generations, on Qwen2 and a GQA Llama, with rows finishing at
different times (batch compaction), and the same logprobs; sampling draws from exactly the
temperature / top-p distribution."""
from __future__ import annotations

import pytest
import torch

from rlkit.rollout.base import SamplingParams
from rlkit.rollout.fast import FastEngine, sample_next, supports
from rlkit.rollout.hf import HFEngine, left_pad
from rlkit.rollout.logprobs import token_logprobs


def hf_greedy(model, tok, prompts, n_new: int):
    """HF generate's greedy tokens and per-step logits ([B, T], [B, T, V]) for left-padded prompts."""
    ids, mask = left_pad(prompts, tok.pad_token_id)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n_new, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, output_logits=True,
                             return_dict_in_generate=True)
    return out.sequences[:, ids.shape[1]:], torch.stack(out.logits, 1)


def assert_same_greedy(model, tok, prompts, n_new: int, engine: FastEngine | None = None):
    engine = engine or FastEngine(model, tok)
    fast = engine.generate(prompts, 1, SamplingParams(n_new, greedy=True))
    hf = HFEngine(model, tok).generate(prompts, 1, SamplingParams(n_new, greedy=True))
    assert fast.response_ids.shape == hf.response_ids.shape
    assert torch.equal(fast.response_ids, hf.response_ids)
    assert torch.equal(fast.response_mask, hf.response_mask)
    assert torch.equal(fast.truncated, hf.truncated)
    assert fast.texts == hf.texts
    return fast


def test_supported_architectures(warm, gqa_llama):
    assert supports(warm[0]) and supports(gqa_llama[0])


def test_long_generation_256_tokens_same_tokens_and_logprobs(random_tiny, prompts_for):
    """256 new tokens from a random-init model of the default's architecture: no min_new_tokens, no
    EOS suppression; the model itself rarely emits EOS. Tokens equal HF generate's one for one, and
    the training pass scores them as generate's logits do."""
    model, tok = random_tiny
    prompts = prompts_for(tok, 8)
    fast = assert_same_greedy(model, tok, prompts, 256)
    assert fast.response_ids.shape[1] == 256 and int(fast.lengths.max()) == 256
    assert float(fast.lengths.float().mean()) > 128  # long generations, not early stops
    _, logits = hf_greedy(model, tok, prompts, 256)
    ref = logits.log_softmax(-1).gather(-1, fast.response_ids.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        logp, _ = token_logprobs(model, fast.prompt_ids, fast.prompt_mask, fast.response_ids, fast.response_mask)
    m = fast.response_mask.bool()
    assert torch.allclose(logp[m], ref[m], atol=1e-4), (logp[m] - ref[m]).abs().max()


def test_gqa_llama_same_tokens(gqa_llama, prompts_for):
    model, tok = gqa_llama
    assert_same_greedy(model, tok, prompts_for(tok, 6), 64)


def test_compaction_rows_finishing_at_different_times(warm, prompts_for):
    """The warm start answers in 15-40 tokens depending on the problem: rows finish at different
    steps, so finished rows are dropped from the batch (several times) while the others go on.
    Tokens must equal HF generate's (which never drops rows) and the no-compaction run's."""
    model, tok = warm
    prompts = prompts_for(tok, 24)
    engine = FastEngine(model, tok)
    engine.compact_at = 0.05  # compact at nearly every finish
    fast = assert_same_greedy(model, tok, prompts, 96, engine)
    assert engine.last_stats["compactions"] >= 3
    lengths = fast.lengths
    assert int(lengths.min()) < int(lengths.max()) and not bool(fast.truncated.any())
    never = FastEngine(model, tok)
    never.compact_at = 1.0
    again = never.generate(prompts, 1, SamplingParams(96, greedy=True))
    assert never.last_stats["compactions"] == 0
    assert torch.equal(again.response_ids, fast.response_ids)


def test_groups_share_one_prefill(warm, prompts_for):
    """n samples per prompt (GRPO groups): greedy samples of one prompt are identical and equal to
    the single-sample run of that prompt."""
    model, tok = warm
    prompts = prompts_for(tok, 6)
    one = FastEngine(model, tok).generate(prompts, 1, SamplingParams(48, greedy=True))
    four = FastEngine(model, tok).generate(prompts, 4, SamplingParams(48, greedy=True))
    assert torch.equal(four.group, torch.arange(6).repeat_interleave(4))
    w = one.response_ids.shape[1]
    assert torch.equal(four.response_ids[:, :w], one.response_ids.repeat_interleave(4, 0))


def test_sampled_tokens_logprobs_and_masks(random_tiny, prompts_for):
    """Sampling at temperature 0.7: response mask covers tokens up to and including the first EOS,
    truncated iff no EOS, and the training pass's logprobs of the samples are finite."""
    model, tok = random_tiny
    torch.manual_seed(0)
    r = FastEngine(model, tok).generate(prompts_for(tok, 4), 8, SamplingParams(128, temperature=0.7))
    eos = tok.eos_token_id
    for i in range(len(r.texts)):
        n = int(r.lengths[i])
        row = r.response_ids[i]
        has_eos = bool((row[:n] == eos).any())
        assert has_eos != bool(r.truncated[i])
        if has_eos:
            assert int(row[n - 1]) == eos and int((row[:n] == eos).sum()) == 1
        assert bool((row[n:] == tok.pad_token_id).all())
    with torch.no_grad():
        logp, _ = token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask,
                                    temperature=0.7)
    assert torch.isfinite(logp[r.response_mask.bool()]).all()


# ---------------------------------------------------------------------------------------- sampling
def nucleus_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The reference distribution: HF's own temperature and top-p processors, then softmax."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    x = TemperatureLogitsWarper(temperature)(None, logits[None].clone())
    if top_p < 1.0:
        x = TopPLogitsWarper(top_p)(None, x)
    return x.softmax(-1)[0]


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 1.0), (1.0, 0.9), (1.3, 0.5)])
def test_sampler_matches_the_nucleus_distribution(temperature, top_p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, generator=g) * 2.0
    want = nucleus_probs(logits, temperature, top_p)
    n = 200_000
    torch.manual_seed(1)
    draws = sample_next(logits.expand(n, -1), SamplingParams(1, temperature=temperature, top_p=top_p))
    freq = torch.bincount(draws, minlength=64).double() / n
    assert bool((freq[want == 0] == 0).all()), "a token outside the nucleus was drawn"
    tv = 0.5 * float((freq - want.double()).abs().sum())
    assert tv < 0.01, tv
    # each kept token within 5 standard errors of its probability
    se = (want.double() * (1 - want.double()) / n).sqrt()
    assert bool(((freq - want.double()).abs() <= 5 * se + 1e-4).all())


def test_sampler_greedy_and_tiny_nucleus():
    logits = torch.tensor([[0.1, 3.0, 2.9, -1.0], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, SamplingParams(1, greedy=True)).tolist() == [1, 0]
    for _ in range(20):  # top_p below the top token's probability keeps that token alone
        assert sample_next(logits, SamplingParams(1, top_p=0.01)).tolist() == [1, 0]


def test_engine_top_p_samples_stay_in_the_nucleus(random_tiny, prompts_for):
    """End to end: every token FastEngine samples with top_p=0.3 lies in the nucleus of the model's
    distribution at that position (recomputed by the training pass)."""
    model, tok = random_tiny
    torch.manual_seed(0)
    top_p = 0.3
    r = FastEngine(model, tok).generate(prompts_for(tok, 4), 4, SamplingParams(32, temperature=1.0, top_p=top_p))
    with torch.no_grad():
        logp, _ = token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask)
        ids = torch.cat([r.prompt_ids, r.response_ids], 1)
        mask = torch.cat([r.prompt_mask, r.response_mask.long()], 1)
        out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    P = r.prompt_ids.shape[1]
    probs = out.logits[:, P - 1: P - 1 + r.response_ids.shape[1]].softmax(-1)
    for b in range(len(r.texts)):
        for t in range(int(r.lengths[b])):
            p = probs[b, t]
            chosen = p[r.response_ids[b, t]]
            higher = float(p[p > chosen].sum())  # mass strictly above the sampled token
            assert higher < top_p + 1e-5, (b, t, higher)

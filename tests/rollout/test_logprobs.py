"""token_logprobs' two fast layouts (shared prompt prefix with length buckets; left-shifted rows with
no attention mask) give the logprobs, entropies and gradients of the plain HF forward over the
left-padded batch with its attention mask (what rlkit computed before, and what TRL computes)."""
from __future__ import annotations

import pytest
import torch

from rlkit.rollout import logprobs as lp
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.fast import FastEngine


def reference(model, r, temperature=1.0):
    """The straightforward pass: left-padded prompt + response, attention mask, cumsum positions."""
    ids, mask, pos = lp.sequence_inputs(r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask)
    P, T = r.prompt_ids.shape[1], r.response_ids.shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, P - 1: P - 1 + T].float()
    logits = logits / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, r.response_ids.unsqueeze(-1)).squeeze(-1)
    p64 = torch.softmax(logits.detach().double(), -1)  # entropy in float64: the truth both float32 formulas approach
    return logp, -(p64 * p64.log()).nan_to_num(0.0).sum(-1).float()


def grads(model, logp, mask):
    model.zero_grad(set_to_none=True)
    (logp * mask).sum().div(mask.sum()).backward()
    return [p.grad.clone() for p in model.parameters()]


def rollout(model, tok, prompts, n, T, seed=0):
    torch.manual_seed(seed)
    return FastEngine(model, tok).generate(prompts, n, SamplingParams(T))


def check(model, r, temperature=1.0, monkeypatch=None, expect_shared=True):
    assert lp.shared_prefix_ok(model) == expect_shared
    m = r.response_mask
    ref_lp, ref_ent = reference(model, r, temperature)
    g_ref = grads(model, ref_lp, m)
    got_lp, got_ent = lp.token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids, m,
                                           temperature=temperature, with_entropy=True)
    assert got_lp.shape == ref_lp.shape and got_ent.shape == ref_ent.shape
    g = grads(model, got_lp, m)
    v = m.bool()
    assert torch.allclose(got_lp[v], ref_lp[v], atol=2e-5), (got_lp[v] - ref_lp[v]).abs().max()
    assert torch.allclose(got_ent[v], ref_ent[v], atol=2e-5), (got_ent[v] - ref_ent[v]).abs().max()
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (a - b).abs().max()
    return got_lp


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prefix_equals_masked_forward(random_tiny, prompts_for, temperature):
    """GRPO-shaped batch: 6 prompts (ragged left padding) x 4 samples, lengths from 1 to 96 (the
    random model stops at random), so several length buckets; train mode, as in the update."""
    model, tok = random_tiny
    r = rollout(model, tok, prompts_for(tok, 6), 4, 96)
    assert int(r.lengths.min()) < int(r.lengths.max())
    model.train()
    try:
        check(model, r, temperature)
    finally:
        model.eval()


def test_generic_path_equals_masked_forward(random_tiny, prompts_for, monkeypatch):
    model, tok = random_tiny
    r = rollout(model, tok, prompts_for(tok, 5), 3, 64)
    monkeypatch.setenv("RLKIT_FAST_LOGPROBS", "0")
    check(model, r, expect_shared=False)


def test_gqa_llama(gqa_llama, prompts_for):
    model, tok = gqa_llama
    check(model, rollout(model, tok, prompts_for(tok, 4), 4, 48))


def test_distinct_prompts_and_duplicates_anywhere(warm, prompts_for):
    """Prompt sharing is by content, not by position: shuffled rows, every prompt distinct or the
    same prompt everywhere."""
    model, tok = warm
    r = rollout(model, tok, prompts_for(tok, 8), 2, 48)
    perm = torch.randperm(len(r.texts), generator=torch.Generator().manual_seed(0))
    from dataclasses import replace

    shuffled = replace(r, prompt_ids=r.prompt_ids[perm], prompt_mask=r.prompt_mask[perm],
                       response_ids=r.response_ids[perm], response_mask=r.response_mask[perm])
    check(model, shuffled)
    one = rollout(model, tok, prompts_for(tok, 1, ragged=False), 8, 48)
    check(model, one)


def test_short_batch_and_empty_mask_rows(warm, prompts_for):
    """Fewer rows than a bucket, and a row whose response mask is all zero (a filtered sample):
    shapes are kept and its logprobs are finite."""
    model, tok = warm
    r = rollout(model, tok, prompts_for(tok, 2), 2, 32)
    r.response_mask[1] = 0
    out, ent = lp.token_logprobs(model, r.prompt_ids, r.prompt_mask, r.response_ids, r.response_mask,
                                    with_entropy=True)
    assert out.shape == r.response_ids.shape and torch.isfinite(out).all() and torch.isfinite(ent).all()
    r.response_mask[1] = 1.0
    check(model, r)


def test_wrapped_models_use_the_generic_path(warm):
    model, _ = warm
    assert lp.shared_prefix_ok(model)
    h = model.model.layers[0].self_attn.register_forward_hook(lambda *a: None)
    try:
        assert not lp.shared_prefix_ok(model)  # a hook on a bypassed module must see every call
    finally:
        h.remove()

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, **kw):
            return self.m(**kw)

    assert not lp.shared_prefix_ok(Wrapped(model))


def test_packed_inputs_layout():
    prompt_ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    response_ids = torch.tensor([[11, 12, 3], [13, 3, 3]])
    response_mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    ids, first = lp.packed_inputs(prompt_ids, prompt_mask, response_ids, response_mask)
    assert ids.tolist() == [[5, 6, 11, 12, 3], [7, 8, 9, 10, 13]]
    assert first.tolist() == [1, 3]


def test_bf16_wrapper_runs_the_shared_prefix_path_under_its_autocast(random_tiny, prompts_for, monkeypatch):
    """trainer.bf16: the Autocast-wrapped policy takes the shared-prefix path inside the same autocast, and
    gives the generic path's bf16 numbers (same rounding class: close, not equal) and gradients."""
    from rlkit.backends.torch_backend import Autocast

    model, tok = random_tiny
    r = rollout(model, tok, prompts_for(tok, 4), 4, 48)
    model.train()
    wrapped, m = Autocast(model, "cpu"), r.response_mask
    args = (r.prompt_ids, r.prompt_mask, r.response_ids, m)
    fast_lp, _ = lp.token_logprobs(wrapped, *args)
    g_fast = grads(model, fast_lp, m)
    monkeypatch.setenv("RLKIT_FAST_LOGPROBS", "0")
    slow_lp, _ = lp.token_logprobs(wrapped, *args)
    g_slow = grads(model, slow_lp, m)
    fp32_lp, _ = lp.token_logprobs(model, *args)
    v = m.bool()
    assert fast_lp.dtype == torch.float32 and not torch.equal(fast_lp[v], fp32_lp[v])  # bf16 really ran
    assert (fast_lp[v] - slow_lp[v]).abs().max() < 0.05, (fast_lp[v] - slow_lp[v]).abs().max()
    for a, b in zip(g_fast, g_slow):
        assert (a - b).norm() <= 0.05 * b.norm() + 1e-6, ((a - b).norm(), b.norm())

"""Rollout with HF `generate` on the training model itself (KV cache, left padding)."""
from __future__ import annotations

import torch

from rlkit.rollout.base import Rollout, SamplingParams, left_pad  # noqa: F401  (left_pad: re-exported)


def finish(prompt_ids, prompt_mask, new_tokens: torch.Tensor, eos_id: int, pad_id: int, tokenizer,
           group: torch.Tensor) -> Rollout:
    """Mask everything after the first EOS, flag sequences that never emitted one."""
    is_eos = new_tokens == eos_id
    seen_before = (is_eos.cumsum(-1) - is_eos.long()) > 0
    mask = (~seen_before).float()
    response = torch.where(seen_before, torch.full_like(new_tokens, pad_id), new_tokens)
    truncated = ~is_eos.any(-1)
    texts = tokenizer.batch_decode(response, skip_special_tokens=True)
    return Rollout(prompt_ids, prompt_mask, response, mask, truncated, texts, group)


class HFEngine:
    def __init__(self, model: torch.nn.Module, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams) -> Rollout:
        tok = self.tokenizer
        ids, mask = left_pad(prompts, tok.pad_token_id)
        ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        group = torch.arange(len(prompts)).repeat_interleave(n)
        sample = {} if params.greedy else {"temperature": params.temperature, "top_p": params.top_p,
                                           "top_k": 0}
        out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=params.max_new_tokens,
                                  do_sample=not params.greedy, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id, return_dict_in_generate=True,
                                  output_logits=not params.greedy, **sample)
        new = out.sequences[:, ids.shape[1]:]
        if new.shape[1] == 0:
            new = torch.full((ids.shape[0], 1), tok.pad_token_id)
        rollout = finish(ids, mask, new, tok.eos_token_id, tok.pad_token_id, tok, group)
        if not params.greedy and out.logits:  # the sampled tokens' log-probs under softmax(logits / temperature)
            logits = torch.stack(out.logits, 1).float() / params.temperature  # [B, T, V]
            lp = torch.log_softmax(logits, -1).gather(-1, new[:, :logits.shape[1], None]).squeeze(-1)
            rollout.logprobs = lp * rollout.response_mask[:, :lp.shape[1]]
        return rollout

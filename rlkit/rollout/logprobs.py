"""Per-token log-probabilities (and entropy) of a response under a model, in one batched pass."""
from __future__ import annotations

import torch

from rlkit.algos.entropy import entropy_from_logits


def sequence_inputs(prompt_ids, prompt_mask, response_ids, response_mask):
    """Concatenate left-padded prompts and right-padded responses; position ids skip the left pad
    (cumsum(mask) - 1), which matched generate()'s logprobs within 1e-5 here."""
    ids = torch.cat([prompt_ids, response_ids], 1)
    mask = torch.cat([prompt_mask, response_mask.long()], 1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def token_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask, *, temperature: float = 1.0,
                   with_entropy: bool = False, with_values: bool = False):
    """logp [B,T] of each response token under the sampling distribution (logits / temperature, as verl);
    entropy [B,T] if asked; last hidden states [B,T,H] if asked."""
    ids, mask, pos = sequence_inputs(prompt_ids, prompt_mask, response_ids, response_mask)
    p_len, t_len = prompt_ids.shape[1], response_ids.shape[1]
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=with_values)
    logits = out.logits[:, p_len - 1: p_len - 1 + t_len].float() / temperature  # position i predicts i+1
    logp = torch.log_softmax(logits, -1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
    entropy = entropy_from_logits(logits) if with_entropy else None
    values = None
    if with_values:
        values = out.hidden_states[-1][:, p_len - 1: p_len - 1 + t_len]
    return logp, entropy, values

"""Per-token log-probabilities (and entropy) of a response under a model, in one batched pass.

The batch arrives as left-padded prompts + right-padded responses, G responses per prompt. Two paths,
same numbers (tests/rollout/test_logprobs.py):

* shared prefix (Qwen2/Llama transformers models, unwrapped): the forward pass runs each *distinct*
  prompt once (a GRPO group's G rows share it), keeps its per-layer keys/values, and runs only the
  response tokens of every row against them: prompt tokens cost 1/G of their usual forward+backward
  (a 19-token prompt is ~23% of a 64-token step's tokens). The model's own modules do the maths
  (norms, projections, MLP, rotary); only the attention call and the token layout are rlkit's.
* generic (any other model, or a wrapped one: DeepSpeed, LoRA, hooks; rlkit's own bf16 autocast wrapper
  runs the shared-prefix path inside its autocast): each row is shifted
  left to start at column 0 (`packed_inputs`), so the batch is right-padded and needs no attention
  mask at all (a real token never attends to positions after it); position ids are 0..n-1, exactly
  what generate used (cumsum(mask) - 1).

The shared-prefix path runs the responses in length-sorted chunks of ~1k tokens (each trimmed to its
own longest response: less padding, cache-sized working sets); both compute the vocabulary projection
only at response positions. RLKIT_FAST_LOGPROBS=0 forces the generic path.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from rlkit.algos.entropy import entropy_from_logprobs
from rlkit.rollout import fast


def sequence_inputs(prompt_ids, prompt_mask, response_ids, response_mask):
    """Concatenate left-padded prompts and right-padded responses; position ids skip the left pad
    (cumsum(mask) - 1), which matched generate()'s logprobs within 1e-5 here."""
    ids = torch.cat([prompt_ids, response_ids], 1)
    mask = torch.cat([prompt_mask, response_mask.long()], 1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def packed_inputs(prompt_ids, prompt_mask, response_ids, response_mask):
    """Right-padded rows (prompt at column 0, response right after it), trimmed to the longest row.

    Returns (ids [B, W], first [B]): row b's response token j is predicted at position first[b] + j."""
    P, T = prompt_ids.shape[1], response_ids.shape[1]
    p_len = prompt_mask.sum(-1)
    r_len = response_mask.sum(-1).long()
    width = max(1, int((p_len + r_len).max()))
    ids = torch.cat([prompt_ids, response_ids], 1)
    src = (torch.arange(width)[None] + (P - p_len)[:, None]).clamp_(max=P + T - 1)
    return ids.gather(1, src), p_len - 1


def token_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask, *, temperature: float = 1.0,
                   with_entropy: bool = False):
    """(logp [B,T] of each response token under the sampling distribution (logits / temperature, as verl),
    entropy [B,T] if asked else None). Positions past a row's response (response_mask 0) hold 0 (past the
    longest response) or a value that must be masked."""
    inner, dtype = getattr(model, "module", None), getattr(model, "autocast_dtype", None)
    if dtype is not None and isinstance(inner, torch.nn.Module) and shared_prefix_ok(inner):  # trainer.bf16
        with torch.autocast(model.device_type, dtype=dtype):  # the shared-prefix path under the wrapper's autocast
            return _shared_prefix_logprobs(inner, prompt_ids, prompt_mask, response_ids, response_mask, temperature,
                                           with_entropy)
    if shared_prefix_ok(model):
        return _shared_prefix_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask, temperature,
                                       with_entropy)
    B, T = response_ids.shape
    t_len = min(T, max(1, int(response_mask.sum(-1).max())))  # the longest response
    ids, first = packed_inputs(prompt_ids, prompt_mask, response_ids, response_mask)
    out = model(input_ids=ids, use_cache=False)
    width = ids.shape[1]
    at = (first[:, None] + torch.arange(t_len)[None]).clamp_(max=width - 1)  # position i predicts i+1
    logits = out.logits.gather(1, at[..., None].expand(-1, -1, out.logits.shape[-1])).float()
    logp, entropy = _logp_entropy(logits, response_ids[:, :t_len], temperature, with_entropy)
    if t_len < T:  # the caller's [B, T] shape
        logp = F.pad(logp, (0, T - t_len))
        entropy = None if entropy is None else F.pad(entropy, (0, T - t_len))
    return logp, entropy


def _logp_entropy(logits, ids, temperature: float, with_entropy: bool):
    """Log-probability of `ids` [B, t] under softmax(logits / temperature), and the entropy of that
    distribution from the same log_softmax (one pass over the vocabulary for both)."""
    if temperature != 1.0:
        logits = logits / temperature
    lsm = torch.log_softmax(logits, -1)
    return lsm.gather(-1, ids[..., None]).squeeze(-1), entropy_from_logprobs(lsm) if with_entropy else None


# ------------------------------------------------------------------------------------ shared prefix
def shared_prefix_ok(model) -> bool:
    """A plain transformers Qwen2/Llama causal LM (not wrapped by DeepSpeed/autocast/peft) without
    hooks on the modules this path bypasses (the model, its decoder, layers and attention blocks; the
    norms, projections and MLPs are called as modules, so their hooks and adapters still run)."""
    if os.environ.get("RLKIT_FAST_LOGPROBS", "1") == "0":
        return False
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover
        return False
    if not isinstance(model, PreTrainedModel) or not fast.supports(model):
        return False
    m = getattr(model, "model", None)
    if m is None or not hasattr(m, "layers") or not hasattr(model, "lm_head"):
        return False
    name = "is_activation_checkpointing" if hasattr(model, "is_activation_checkpointing") else "is_gradient_checkpointing"
    if getattr(model, name, False):
        return False  # (recomputation is the HF forward's business)
    if model.training and float(getattr(model.config, "attention_dropout", 0.0) or 0.0) > 0:
        return False
    bypassed = [model, m, *m.layers, *(layer.self_attn for layer in m.layers)]
    return not any(mod._forward_hooks or mod._forward_pre_hooks for mod in bypassed)


def _attention_block(layer, h, cos, sin, n_heads, n_kv, hd):
    """q, k, v [B, heads, L, hd] of one decoder layer's attention input (rotary applied)."""
    at = layer.self_attn
    B, L, _ = h.shape
    x = layer.input_layernorm(h)
    q = at.q_proj(x).view(B, L, n_heads, hd).transpose(1, 2)
    k = at.k_proj(x).view(B, L, n_kv, hd).transpose(1, 2)
    v = at.v_proj(x).view(B, L, n_kv, hd).transpose(1, 2)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return fast._rotate(q, cos, sin), fast._rotate(k, cos, sin), v


def _finish_layer(layer, h, o):
    B, L = h.shape[:2]
    h = h + layer.self_attn.o_proj(o.transpose(1, 2).reshape(B, L, -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))


CHUNK_TOKENS = 1024  # response tokens per forward chunk (measured: 512-1024 best on 2 cores, ~15% over 1 chunk)


def _chunks(lengths: torch.Tensor, budget: int = CHUNK_TOKENS, min_rows: int = 4) -> list[torch.Tensor]:
    """Rows sorted by response length (longest first), cut into chunks of about `budget` tokens
    (at least `min_rows` rows). Each chunk is trimmed to its own longest response, so short responses
    stop paying for long ones' padding, and each op's working set stays cache-sized."""
    order = torch.argsort(lengths, descending=True, stable=True)
    out, i = [], 0
    while i < len(order):
        n = max(min_rows, budget // max(1, int(lengths[order[i]])))
        out.append(order[i: i + n])
        i += n
    return out


def _shared_prefix_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask, temperature: float,
                            with_entropy: bool):
    """logp (and entropy) [B, T] computing each distinct prompt once, responses in length buckets."""
    cfg, m = model.config, model.model
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    gqa = n_kv != n_heads
    B, T = response_ids.shape
    first = int(prompt_mask.any(0).long().argmax())  # drop columns that are padding in every row
    prompt_ids, prompt_mask = prompt_ids[:, first:], prompt_mask[:, first:].bool()
    P = prompt_ids.shape[1]
    uniq, inv = torch.unique(torch.cat([prompt_ids, prompt_mask.long()], 1), dim=0, return_inverse=True)
    u_ids, u_mask = uniq[:, :P], uniq[:, P:].bool()

    # distinct prompts: causal + their own left padding (a pad query sees itself, so nothing is NaN)
    h = m.embed_tokens(u_ids)
    cos, sin = m.rotary_emb(h, (u_mask.long().cumsum(-1) - 1).clamp(min=0))
    mask = (u_mask[:, None, None, :] & torch.ones(P, P, dtype=torch.bool).tril()) | torch.eye(P, dtype=torch.bool)
    kv = []
    for layer in m.layers:
        q, k, v = _attention_block(layer, h, cos, sin, n_heads, n_kv, hd)
        kv.append((k, v))
        h = _finish_layer(layer, h, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa))
    last = h[:, -1]  # the last prompt token (left padding): predicts response token 0

    # responses against their prompt's keys/values, in length buckets
    lengths = response_mask.sum(-1).long().clamp(min=1)
    p_len = prompt_mask.long().sum(-1)
    logps, ents, rows = [], [], []
    for idx in _chunks(lengths):
        t = int(lengths[idx].max())
        r_inv = inv[idx]
        h = m.embed_tokens(response_ids[idx, :t])
        n = len(idx)
        cos, sin = m.rotary_emb(h, p_len[idx, None] + torch.arange(t)[None])
        valid = prompt_mask[idx][:, None, None, :].expand(n, 1, t, P)
        mask = torch.cat([valid, torch.ones(t, t, dtype=torch.bool).tril().expand(n, 1, t, t)], -1)
        for layer, (pk, pv) in zip(m.layers, kv):
            q, k, v = _attention_block(layer, h, cos, sin, n_heads, n_kv, hd)
            k, v = torch.cat([pk[r_inv], k], 2), torch.cat([pv[r_inv], v], 2)
            h = _finish_layer(layer, h, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa))
        hidden = torch.cat([last[r_inv, None], h[:, :-1]], 1)  # position j predicts response token j
        logp, entropy = _logp_entropy(model.lm_head(m.norm(hidden)).float(), response_ids[idx, :t], temperature,
                                      with_entropy)
        logps.append(F.pad(logp, (0, T - t)))
        if with_entropy:
            ents.append(F.pad(entropy, (0, T - t)))
        rows.append(idx)
    back = torch.argsort(torch.cat(rows))  # sorted position of each original row
    logp = torch.cat(logps)[back]
    entropy = torch.cat(ents)[back] if with_entropy else None
    return logp, entropy

"""The engine interface every rollout backend implements (HF generate on CPU, vLLM on GPU)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F


@dataclass
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False
    seed: int | None = None       # per-request seed base (rollout.seed_per_prompt): a prompt's samples depend
                                  # only on (seed, its tokens), whatever rank or batch it is in


@dataclass
class Rollout:
    """G samples for each of P prompts, flattened prompt-major (B = P*G)."""

    prompt_ids: torch.Tensor      # [B, P_len] left-padded
    prompt_mask: torch.Tensor     # [B, P_len] 1 on real prompt tokens
    response_ids: torch.Tensor    # [B, T] right-padded; includes the EOS token when one was emitted
    response_mask: torch.Tensor   # [B, T] float, 1.0 on generated tokens (EOS included)
    truncated: torch.Tensor       # [B] bool: hit max_new_tokens without EOS
    texts: list[str]              # decoded responses without special tokens
    group: torch.Tensor           # [B] int64 prompt index 0..P-1
    logprobs: torch.Tensor | None = None  # [B, T] sampled tokens' logprobs, when the engine reports them (vLLM)

    @property
    def lengths(self) -> torch.Tensor:  # [B]
        return self.response_mask.sum(-1).long()


class Engine(Protocol):
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams) -> Rollout: ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push the policy's current weights (a no-op when the engine shares the training model)."""
        ...


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, W] ids, [N, W] long mask) with each sequence right-aligned (generation appends on the right)."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


def cat_rollouts(parts: list[Rollout], keep: list[torch.Tensor] | None = None) -> Rollout:
    """The rows of several rollouts as one (per-prompt seeded generation, DAPO's extra rounds).

    `keep[i]` ([B_i] bool) selects part i's rows, all by default. Prompts are left-padded again to the
    longest kept prompt (padded positions are masked out, any id will do), responses right-padded to
    the widest part that contributes a row, and prompt groups renumbered 0.. in order of appearance."""
    keep = keep if keep is not None else [torch.ones(len(r.texts), dtype=torch.bool) for r in parts]
    rows = [(k, r, i) for k, (r, sel) in enumerate(zip(parts, keep)) for i in sel.nonzero().flatten().tolist()]
    p_ids, p_mask = left_pad([r.prompt_ids[i][r.prompt_mask[i].bool()].tolist() for _, r, i in rows], 0)
    width = max(int(r.response_ids.shape[1]) for _, r, _ in rows)
    rpad = lambda t: F.pad(t, (0, width - t.shape[1]))  # noqa: E731
    group_keys = [(k, int(r.group[i])) for k, r, i in rows]
    remap = {g: j for j, g in enumerate(dict.fromkeys(group_keys))}
    out = Rollout(p_ids, p_mask, torch.stack([rpad(r.response_ids[i:i + 1])[0] for _, r, i in rows]),
                  torch.stack([rpad(r.response_mask[i:i + 1])[0] for _, r, i in rows]),
                  torch.stack([r.truncated[i] for _, r, i in rows]), [r.texts[i] for _, r, i in rows],
                  torch.tensor([remap[g] for g in group_keys]))
    if all(r.logprobs is not None for r in parts):
        out.logprobs = torch.stack([rpad(r.logprobs[i:i + 1])[0] for _, r, i in rows])
    return out

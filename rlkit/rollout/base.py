"""The engine interface every rollout backend implements (HF generate on CPU, vLLM on GPU)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


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

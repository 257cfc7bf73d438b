"""What a reward may know about a completion besides its text: token counts and training progress.

Rewards are pure functions of (completion, problem, ctx); everything that depends on the tokenizer or
on the loop (length in tokens, truncation, step) is computed once by the caller and passed here, so
reward code never tokenizes and stays trivially testable with literal values.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RewardContext:
    """Per-completion facts from the rollout.

    response_tokens: generated tokens (excluding the prompt, including a final EOS if generated).
    max_response_tokens: the generation cap used for this rollout (the hard max length).
    truncated: True when generation stopped at the cap instead of at EOS.
    step, total_steps: training progress, for schedules such as `light_r1_length`'s start.
    """

    response_tokens: int
    max_response_tokens: int
    truncated: bool
    step: int = 0
    total_steps: int = 1

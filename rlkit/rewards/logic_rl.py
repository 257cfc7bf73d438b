"""Logic-RL's scoring (rlkit/rewards/kk.py) for any task with a checkable answer, e.g. the tiny arithmetic.

Two components, so that `rewards/format/mean` is logged and the report's format-hacking flag can read it:
  format  +1 if `<think>`, `</think>`, `<answer>`, `</answer>` each occur once and in order, else −1;
  answer  +2 correct, −1.5 wrong, −2 when there is nothing to score (format wrong or empty answer tag).
Total ∈ {3, −0.5, −1, −3}, Logic-RL's values. `require_think=False` is Logic-RL's no-think ablation
(kk_no_think): only the answer tags are checked. The −1 format penalty against +2 for a right answer
is what lets a one-sentence think win over untagged reasoning (RESEARCH.md §1).
"""
from __future__ import annotations

from typing import Any

from rlkit.rewards.accuracy import extract_tag, is_correct
from rlkit.rewards.base import RewardContext
from rlkit.rewards.kk import CORRECT_SCORE, UNPARSEABLE_SCORE, WRONG_SCORE, kk_format_ok


def _text(completion: Any, prefill: str) -> str:
    return prefill + completion if isinstance(completion, str) else prefill


def logic_rl_format(
    completion: str, problem: Any = None, ctx: RewardContext | None = None, *, prefill: str = "",
    require_think: bool = True,
) -> float:
    """Logic-RL's format score: the tags once each, in order. Range {1, −1}."""
    return 1.0 if kk_format_ok(_text(completion, prefill), require_think=require_think) else -1.0


def logic_rl_answer(
    completion: str, problem: Any, ctx: RewardContext | None = None, *, prefill: str = "",
    require_think: bool = True,
) -> float:
    """Logic-RL's answer score, scored only when the format is right. Range {2, −1.5, −2}."""
    text = _text(completion, prefill)
    if not kk_format_ok(text, require_think=require_think) or not (extract_tag(text) or "").strip():
        return UNPARSEABLE_SCORE
    return CORRECT_SCORE if is_correct(text, problem, answer_from="tag") else WRONG_SCORE

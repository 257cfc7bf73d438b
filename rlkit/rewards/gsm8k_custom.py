r"""The GSM8K custom reward of RESEARCH.md §4 — the worked example of a user-defined reward.

A user reward is just a function `fn(completion, problem, ctx, **params) -> float` bound in YAML with
`_target_` + `_partial_: true` (see conf/reward/gsm8k_custom.yaml); this one shows how.

The report describes: `<reasoning>`, `<validate>`, `<answer>` tags; +5 correct answer, +0.5 integer,
×1.25 per reasoning/validate tag pair present, a bonus growing linearly with reasoning length (5→1024
words, capped) and with validate length (5→256 words, up to 3), ×10 when the validate section contains
"wait", "but" or "rethink" followed by 20+ characters. Our reading, where the report is ambiguous:

    base  = correct_reward·[answer correct] + int_reward·[answer is an integer]
    r_bon = reasoning_bonus_max · clip((words_r − 5) / (1024 − 5), 0, 1)   if a reasoning pair is present
    v_bon = validate_bonus_max  · clip((words_v − 5) / (256 − 5), 0, 1)    if a validate pair is present
    total = (base + r_bon + v_bon) · tag_multiplier^(pairs present) · (aha_multiplier if aha else 1)

Choices: the multipliers apply to the whole sum (as the ×1.25 is described as a reward multiplier, the ×10
is read the same way); the reasoning bonus maximum is unspecified in the report, we use 1.0 (validate: 3);
"integer" is judged on the `<answer>` content alone (digits, optional sign, thousands commas) whether or
not it is correct; correctness is `is_correct(answer_from="tag")` (numeric fast path for GSM8K golds);
a "pair" is an opening tag followed later by its closing tag, and a section's content is the first pair;
words are whitespace-separated tokens; "aha" = a case-insensitive whole word wait/but/rethink inside the
validate section with at least `aha_min_chars` characters after it within that section.
Range with the defaults: [0, (5 + 0.5 + 1 + 3) · 1.25² · 10] = [0, 148.4375].
"""
from __future__ import annotations

import re
from typing import Any

from rlkit.rewards.accuracy import extract_tag, is_correct
from rlkit.rewards.base import RewardContext

_INT_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)")
_AHA_RE = re.compile(r"\b(?:wait|but|rethink)\b", re.IGNORECASE)


def _section(text: str, tag: str) -> str | None:
    start = text.find(f"<{tag}>")
    if start < 0:
        return None
    start += len(tag) + 2
    end = text.find(f"</{tag}>", start)
    return None if end < 0 else text[start:end]


def _ramp(words: int, lo: int, hi: int, top: float) -> float:
    if hi <= lo:
        return top if words >= hi else 0.0
    return top * min(max((words - lo) / (hi - lo), 0.0), 1.0)


def gsm8k_custom(
    completion: str,
    problem: Any,
    ctx: RewardContext | None = None,
    *,
    correct_reward: float = 5.0,
    int_reward: float = 0.5,
    tag_multiplier: float = 1.25,
    reasoning_bonus_max: float = 1.0,
    reasoning_words: tuple[int, int] = (5, 1024),
    validate_bonus_max: float = 3.0,
    validate_words: tuple[int, int] = (5, 256),
    aha_multiplier: float = 10.0,
    aha_min_chars: int = 20,
) -> float:
    """RESEARCH §4 custom reward (formula in the module docstring). Range [0, 148.4375] with defaults."""
    if not isinstance(completion, str):
        return 0.0
    answer = extract_tag(completion)
    base = 0.0
    if answer is not None:
        if is_correct(completion, problem, answer_from="tag"):
            base += correct_reward
        if _INT_RE.fullmatch(answer):
            base += int_reward
    total = base
    pairs = 0
    reasoning = _section(completion, "reasoning")
    if reasoning is not None:
        pairs += 1
        total += _ramp(len(reasoning.split()), reasoning_words[0], reasoning_words[1], reasoning_bonus_max)
    validate = _section(completion, "validate")
    aha = False
    if validate is not None:
        pairs += 1
        total += _ramp(len(validate.split()), validate_words[0], validate_words[1], validate_bonus_max)
        m = _AHA_RE.search(validate)
        aha = m is not None and len(validate) - m.end() >= aha_min_chars
    total *= tag_multiplier**pairs
    if aha:
        total *= aha_multiplier
    return float(total)

r"""Knights-and-Knaves reward, following Logic-RL's scheme exactly.

Reference: Unakar/Logic-RL `verl/utils/reward_score/kk.py` (read from the fork ruoyuxie/Logic-RL at
681d2be; the Unakar repository itself is not in our index). Its `compute_score` is:
  format   +1 if each of `<think>`, `</think>`, `<answer>`, `</answer>` occurs exactly once and in that
           order (positions increasing), else −1 (`-abs(format_reward)`);
  answer   only if the format is right and the `<answer>` content is non-empty:
           +2 every name's role matches, −1.5 parsed but wrong, −2 not parseable;
           −2 as well when the format is wrong or there is no answer.
  total = format + answer ∈ {3, −0.5, −1, −3}.
Answer parsing (Logic-RL `parse_model_answer`): the content of the last `<answer>…</answer>`; the number
of case-insensitive occurrences of the role words must equal the number of people, and each name must
appear as `\bName\b\s+is\s+a\s+(knight|knave)\b` (case-insensitive) somewhere in it. So the accepted
answer is, e.g.
    <answer>(1) Zoey is a knight
    (2) Oliver is a knave</answer>
numbering, order, separators and extra words are free, but the role words may not occur more often
than there are people ("Zoey is a knight, not a knave" is unparseable).

Differences from the reference (deliberate, documented):
  * the reward sees the completion only (Logic-RL splits the decoded prompt+response at
    "<|im_start|>assistant"); Logic-RL's prompt prefills `<think>`, so pass `prefill="<think>"` with such
    a template;
  * role words come from `problem.meta["terms"]` (default ("knight", "knave"); reasoning-gym also uses
    pairs such as saint/sinner, altruist/egoist), and `is an` is accepted besides `is a`;
  * the gold comes from `meta["names"]` + `meta["solution"]` (True = first term), else from parsing
    `problem.answer` lines the way Logic-RL parses `solution_text_format`;
  * ablation switches (RESEARCH §1), both off by default: `require_think=False` drops the think tags
    from the format check; `all_or_nothing=True` gives the maximum only for format AND answer right and
    the minimum otherwise.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from rlkit.rewards.accuracy import extract_tag
from rlkit.rewards.base import RewardContext

logger = logging.getLogger(__name__)

DEFAULT_TERMS = ("knight", "knave")
CORRECT_SCORE = 2.0
WRONG_SCORE = -1.5
UNPARSEABLE_SCORE = -2.0
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _terms(meta: dict) -> tuple[str, str]:
    terms = meta.get("terms")
    if isinstance(terms, Sequence) and not isinstance(terms, str) and len(terms) == 2:
        return str(terms[0]).lower(), str(terms[1]).lower()
    return DEFAULT_TERMS


def kk_gold(problem: Any) -> tuple[list[str], dict[str, str], tuple[str, str]] | None:
    """(names, {name: role}, terms) from meta names/solution, else parsed from `problem.answer` lines."""
    meta = getattr(problem, "meta", None) or {}
    terms = _terms(meta)
    names = meta.get("names")
    solution = meta.get("solution")
    if names is not None and solution is not None and len(names) == len(solution) and len(names) > 0:
        names = [str(n) for n in names]
        return names, {n: terms[0] if bool(s) else terms[1] for n, s in zip(names, solution, strict=True)}, terms
    alt = "|".join(re.escape(t) for t in terms)
    gold: dict[str, str] = {}
    for line in str(getattr(problem, "answer", "")).splitlines():
        m = re.search(rf"\b([A-Za-z]+)\b.*?\b({alt})\b", line, re.IGNORECASE)
        if m:
            gold[m.group(1)] = m.group(2).lower()
    if not gold:
        return None
    return list(gold), gold, terms


def parse_kk_answer(answer_text: str, names: Sequence[str], terms: tuple[str, str] = DEFAULT_TERMS) -> dict[str, str] | None:
    """{name: role} per Logic-RL's parse_model_answer (see the module docstring), or None."""
    low = answer_text.lower()
    if sum(low.count(t) for t in terms) != len(names):
        return None
    alt = "|".join(re.escape(t) for t in terms)
    out: dict[str, str] = {}
    for name in names:
        m = re.search(rf"\b{re.escape(name)}\b\s+is\s+an?\s+\b({alt})\b", answer_text, re.IGNORECASE)
        if m is None:
            return None
        out[name] = m.group(1).lower()
    return out


def kk_format_ok(text: str, *, require_think: bool = True) -> bool:
    """Each required tag exactly once, positions increasing (Logic-RL validate_response_structure)."""
    tags = _TAGS if require_think else _TAGS[2:]
    positions = []
    for tag in tags:
        if text.count(tag) != 1:
            return False
        positions.append(text.find(tag))
    return positions == sorted(positions)


def kk(
    completion: str,
    problem: Any,
    ctx: RewardContext | None = None,
    *,
    prefill: str = "",
    format_score: float = 1.0,
    require_think: bool = True,
    all_or_nothing: bool = False,
) -> float:
    """Logic-RL KK reward. Range [-(|format_score|+2), |format_score|+2]; default values {3, -0.5, -1, -3}
    (all_or_nothing: {3, -3})."""
    fs = abs(format_score)
    try:
        text = prefill + completion if isinstance(completion, str) else prefill
        fmt_ok = kk_format_ok(text, require_think=require_think)
        answer_score = UNPARSEABLE_SCORE
        if fmt_ok:
            answer_text = extract_tag(text)
            gold = kk_gold(problem)
            if gold is None:
                logger.warning("KK problem %s has no parseable gold answer", getattr(problem, "id", "?"))
            elif answer_text:
                names, gold_roles, terms = gold
                pred = parse_kk_answer(answer_text, names, terms)
                if pred is not None:
                    answer_score = CORRECT_SCORE if pred == gold_roles else WRONG_SCORE
        if all_or_nothing:
            return fs + CORRECT_SCORE if (fmt_ok and answer_score == CORRECT_SCORE) else -fs + UNPARSEABLE_SCORE
        return (fs if fmt_ok else -fs) + answer_score
    except Exception:
        logger.warning("kk reward failed; scoring minimum", exc_info=True)
        return -fs + UNPARSEABLE_SCORE


def kk_is_correct(completion: str, problem: Any, *, prefill: str = "") -> bool:
    """Every role right in the last `<answer>…</answer>` (format otherwise ignored): for val accuracy."""
    try:
        text = prefill + completion if isinstance(completion, str) else prefill
        answer_text = extract_tag(text)
        gold = kk_gold(problem)
        if not answer_text or gold is None:
            return False
        names, gold_roles, terms = gold
        return parse_kk_answer(answer_text, names, terms) == gold_roles
    except Exception:
        logger.warning("kk_is_correct failed; scoring wrong", exc_info=True)
        return False

r"""Format rewards: does the completion have the `<think>…</think><answer>…</answer>` shape?

Which rule is right depends on the model (RESEARCH.md §1–2): base models rarely hit the anchored
regex while exploring, instruct models put `\n` between `</think>` and `<answer>`, and requiring
`<think>` at all made a small KK model write one-sentence "reasoning". So each rule is its own function,
each returns 1.0/0.0 (tag_count: 0, .25, .5, .75, 1) and the choice is a sweep axis.

Whitespace convention (Open-R1 / OpenRLHF): the raw completion is matched, nothing is stripped. As in
their `re.match(pattern, text)` with a `$`-terminated pattern, Python's `$` also matches before ONE final
`\n`, so `…</answer>\n` passes and leading whitespace fails. `strict_newline` additionally allows any
whitespace between `</think>` and `<answer>` (`\s*`).

The regex semantics are reproduced exactly but evaluated with `str.find` (linear time): the lazy
`.*?` patterns backtrack quadratically on adversarial 100k-character inputs. tests/rewards checks
equivalence with the reference regexes on random inputs. Note that, like the reference regexes, `strict`
does not forbid extra tags inside the spans (`<think>a</think><answer>b</answer><answer>c</answer>`
matches); use `tag_count` or kk's format check where uniqueness matters.

`prefill`: text the chat template already put at the start of the assistant turn (Logic-RL's prompt
ends with `<think>`); it is prepended before checking so a prefilled tag counts.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from rlkit.rewards.base import RewardContext

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_END = "</answer>"


def _body_end(t: str) -> int:
    """Start of the final `</answer>` as `</answer>$` would match it (one trailing \\n allowed), or -1."""
    if t.endswith(_END):
        return len(t) - len(_END)
    if t.endswith(_END + "\n"):
        return len(t) - len(_END) - 1
    return -1


def matches_strict(t: str) -> bool:
    r"""re.match(r'^<think>.*?</think><answer>.*?</answer>$', t, re.DOTALL) is not None."""
    if not t.startswith("<think>"):
        return False
    end = _body_end(t)
    q = t.find("</think><answer>", 7)
    return end >= 0 and q >= 0 and q + 16 <= end


_SEP_WS = re.compile(r"</think>\s*<answer>")


def matches_strict_newline(t: str) -> bool:
    r"""re.match(r'^<think>.*?</think>\s*<answer>.*?</answer>$', t, re.DOTALL) is not None."""
    if not t.startswith("<think>"):
        return False
    end = _body_end(t)
    if end < 0:
        return False
    m = _SEP_WS.search(t, 7)
    return m is not None and m.end() <= end


def matches_lenient(t: str) -> bool:
    r"""re.search(r'<think>.*?</think><answer>.*?</answer>', t, re.DOTALL) is not None."""
    p = t.find("<think>")
    if p < 0:
        return False
    q = t.find("</think><answer>", p + 7)
    return q >= 0 and t.find(_END, q + 16) >= 0


_O1_MID = "\n</think>\n<answer>\n"
_O1_END = "\n</answer>"


def matches_openr1(t: str) -> bool:
    r"""re.match(r'^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$', t, re.DOTALL | re.MULTILINE).

    With MULTILINE, `$` also matches before any newline, so text after `</answer>\n` is accepted —
    a quirk of Open-R1's rule that we keep for fidelity."""
    if not t.startswith("<think>\n"):
        return False
    q = t.find(_O1_MID, 8)
    if q < 0:
        return False
    s = t.find(_O1_END, q + len(_O1_MID))
    while s >= 0:
        after = s + len(_O1_END)
        if after == len(t) or t[after] == "\n":
            return True
        s = t.find(_O1_END, s + 1)
    return False


def _text(completion: Any, prefill: str) -> str:
    return prefill + completion if isinstance(completion, str) else prefill


def strict(completion: str, problem: Any = None, ctx: RewardContext | None = None, *, prefill: str = "") -> float:
    """Open-R1/OpenRLHF anchored rule `^<think>.*?</think><answer>.*?</answer>$` (DOTALL). Range {0, 1}."""
    return float(matches_strict(_text(completion, prefill)))


def strict_newline(
    completion: str, problem: Any = None, ctx: RewardContext | None = None, *, prefill: str = ""
) -> float:
    r"""As `strict` but any whitespace may separate `</think>` and `<answer>` (instruct models). Range {0, 1}."""
    return float(matches_strict_newline(_text(completion, prefill)))


def lenient(completion: str, problem: Any = None, ctx: RewardContext | None = None, *, prefill: str = "") -> float:
    """The strict pattern unanchored (`re.search`): text before/after is allowed. Range {0, 1}."""
    return float(matches_lenient(_text(completion, prefill)))


def openr1(completion: str, problem: Any = None, ctx: RewardContext | None = None, *, prefill: str = "") -> float:
    r"""Open-R1's current `format_reward`: `^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$` with
    re.DOTALL | re.MULTILINE (see `matches_openr1` for the MULTILINE quirk). Range {0, 1}."""
    return float(matches_openr1(_text(completion, prefill)))


def answer_only(
    completion: str, problem: Any = None, ctx: RewardContext | None = None, *, prefill: str = ""
) -> float:
    """No `<think>` requirement (RESEARCH §1: it kept small-model reasoning alive): `<answer>` and
    `</answer>` each exactly once, in that order, and only whitespace after `</answer>`. Think tags and
    any text before `<answer>` are allowed. Range {0, 1}."""
    t = _text(completion, prefill)
    if t.count("<answer>") != 1 or t.count(_END) != 1:
        return 0.0
    o, c = t.find("<answer>"), t.find(_END)
    return float(o < c and not t[c + len(_END):].strip())


_OPENR1_TAGS = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")


def tag_count(
    completion: str,
    problem: Any = None,
    ctx: RewardContext | None = None,
    *,
    prefill: str = "",
    style: Literal["ordered", "openr1"] = "ordered",
) -> float:
    """0.25 per correctly placed tag, for base models that rarely satisfy `strict` (RESEARCH §2). Range [0, 1].

    style="ordered" (default): the four bare tags `<think>`, `</think>`, `<answer>`, `</answer>`. A tag
      earns 0.25 iff it occurs exactly once AND it comes after every earlier tag of that list that also
      occurs exactly once (missing or repeated tags have no single position and impose no order). So in
      `</think><think>` only `<think>` scores: on a conflict the tag earlier in the canonical order wins.
    style="openr1": Open-R1's `tag_count_reward` exactly — counts of `<think>\\n`, `\\n</think>\\n`,
      `\\n<answer>\\n`, `\\n</answer>` each == 1, no order check.
    Deviation of the default from Open-R1 (deliberate): Open-R1 counts newline-decorated tags (its format
    has newlines inside the tags) and never checks order; the study this serves uses the newline-free
    strict format and asks for "in order and appearing once".
    """
    t = _text(completion, prefill)
    if style == "openr1":
        return 0.25 * sum(t.count(tag) == 1 for tag in _OPENR1_TAGS)
    if style != "ordered":
        raise ValueError(f"tag_count style must be 'ordered' or 'openr1', got {style!r}")
    placed: list[int] = []  # positions of earlier unique tags
    score = 0.0
    for tag in TAGS:
        if t.count(tag) != 1:
            continue
        pos = t.find(tag)
        if all(p < pos for p in placed):
            score += 0.25
        placed.append(pos)
    return score

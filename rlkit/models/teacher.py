"""The warm-up teacher: demonstrations that are a documented *mixture of behaviours*.

A real base or instruct model already holds several behaviours and R1-style RL mostly selects among
them ("draw lots and filter", RESEARCH.md §1). The tiny default is warmed up to convergence on the
output of this teacher so that RL has something to select (see ../shared/notes/rl-on-tiny-models.md):

* Solution procedure: right-to-left column addition. Correct everywhere except in three *flaw
  contexts*, where the teacher drops the incoming carry with a context-specific probability and the
  answer follows the (wrong) chain. Each context is a one-token decision (`+1=` vs `=` after the two
  digits) but of graded strength, so greedy decoding fails there while sampling sometimes succeeds:
    A  carry into the tens column whose digits sum to 6..8       p_drop 0.75  (frequent, easy to fix)
    B  carry into the hundreds column whose digits sum to 6..8   p_drop 0.90  (frequent, harder)
    C  carry into any column whose digits sum to 9               p_drop 0.97  (rare right branch)
    E  carry into the thousands column or beyond, digits 6..8     (4-digit operands only: tiny_ladder)
  A preset that leaves a context out of `flaws` never drops a carry there. tiny_ladder keeps only C
  (p_drop 0.9, 4-digit operands): one skill met once per C column, so a problem whose chain passes k
  such columns is solved by sampling with probability 0.1^k: the curriculum study's difficulty ladder.
* Formats real models emit: `<think>…</think><answer>…</answer>`, the instruct-style `\\n` between
  `</think>` and `<answer>`, reasoning with no think tags, and no tags at all ("The answer is N.").
* A *lazy* format (only where a preset's mixture names it, e.g. conf/model/tiny_lazy.yaml): the think tags
  hold one generic sentence and the answer is a shortcut (each column's digits added, every carry
  dropped: right only on carry-free problems). It satisfies a think-requiring format rule at a fraction of
  the reasoning's length: Logic-RL's "one generic sentence of reasoning" in miniature (RESEARCH.md §1).
* Reasoning style: terse (`7+5=12, 4+8+1=13`) or verbose (`7+5=12 write 2 carry 1.`, about twice
  as long), and occasionally a repeated step (degenerate repetition). Where a preset sets
  `verbose_flaw_scale` (conf/model/tiny_verbose.yaml: 0.5) the verbose style, which writes each carry
  out, drops it that much less often: *thinking longer pays*. A 3-digit verbose chain is longer than the 16k-scaled budget (44 tokens) and fits the 24k one
  (66), so under 24k RL can select the longer, more accurate style (length and accuracy rise together,
  R1's "length grows" in miniature) while under 16k truncation punishes it (Light-R1's 24k > 16k).
All ratios live in `model.warmup.mixture` (conf/model/tiny.yaml) and are logged with every run.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from rlkit.data.arithmetic import _flaw_at  # (the task owns its flaw contexts: data/arithmetic.py)

DEFAULT_MIXTURE: dict[str, Any] = {
    "formats": {"think_answer": 0.55, "think_newline": 0.2, "no_think": 0.15, "no_tags": 0.10},
    "styles": {"terse": 0.7, "verbose": 0.3},
    "repeat_step": 0.03,
    "flaws": {"A": 0.75, "B": 0.90, "C": 0.97},
}


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[float(weights[n]) for n in names])[0]


def solve(a: int, b: int, rng: random.Random, flaws: Mapping[str, float]) -> tuple[list[str], int]:
    """Column steps as (text) and the answer the chain implies, dropping carries per `flaws`."""
    steps, digits, carry, col = [], [], 0, 0
    while a or b:
        da, db = a % 10, b % 10
        ctx = _flaw_at(col, da, db, carry)
        used = 0 if (ctx and rng.random() < float(flaws.get(ctx, 0.0))) else carry
        s = da + db + used
        steps.append((da, db, used, s))
        digits.append(s % 10)
        carry, a, b, col = s // 10, a // 10, b // 10, col + 1
    if carry:
        digits.append(carry)
    answer = int("".join(str(d) for d in reversed(digits)))
    return [_step(*st) for st in steps], answer


LAZY_THINK = "I add the numbers."


def no_carry_sum(a: int, b: int) -> int:
    """The lazy shortcut: column digits added mod 10, every carry dropped (57 + 68 -> 15)."""
    digits, place = 0, 1
    while a or b:
        digits += ((a % 10 + b % 10) % 10) * place
        a, b, place = a // 10, b // 10, place * 10
    return digits


def _step(da: int, db: int, used: int, s: int) -> str:
    return f"{da}+{db}+{used}={s}" if used else f"{da}+{db}={s}"


def demonstration(a: int, b: int, rng: random.Random, mixture: Mapping[str, Any]) -> str:
    """One teacher response (the assistant turn, without the end-of-turn token)."""
    if "verbose_flaw_scale" in mixture:  # the style decides the flaw rates, so it is drawn first
        verbose = _pick(rng, mixture["styles"]) == "verbose"
        scale = float(mixture["verbose_flaw_scale"]) if verbose else 1.0
        steps, answer = solve(a, b, rng, {ctx: p * scale for ctx, p in mixture["flaws"].items()})
    else:  # the shipped default's draw order, kept so its demonstrations stay byte-identical
        steps, answer = solve(a, b, rng, mixture["flaws"])
        verbose = _pick(rng, mixture["styles"]) == "verbose"
    if verbose:
        steps = [f"{st} write {int(st.split('=')[1]) % 10}" + (" carry 1." if int(st.split("=")[1]) >= 10 else ".")
                 for st in steps]
        cot = " ".join(steps)
    else:
        cot = ", ".join(steps)
    if rng.random() < float(mixture["repeat_step"]):
        i = rng.randrange(len(steps))
        cot = cot.replace(steps[i], f"{steps[i]} {steps[i]}", 1)
    fmt = _pick(rng, mixture["formats"])
    if fmt == "lazy":  # drawn after the reasoning, so a mixture without it draws exactly as before
        return f"<think>{LAZY_THINK}</think><answer>{no_carry_sum(a, b)}</answer>"
    if fmt == "think_answer":
        return f"<think>{cot}</think><answer>{answer}</answer>"
    if fmt == "think_newline":
        return f"<think>{cot}</think>\n<answer>{answer}</answer>"
    if fmt == "no_think":
        return f"{cot}\n<answer>{answer}</answer>"
    return f"{cot}\nThe answer is {answer}."

"""(d) Fuzz: 10,000 random/adversarial completions through every reward (fixed seed).

None may raise, each value must lie in the reward's documented range, and no single call may take a
second. The linear-time format matchers are also checked against the reference regexes.
"""
from __future__ import annotations

import functools
import random
import re
import time

import pytest

from rlkit.data.problem import Problem
from rlkit.rewards import format as F
from rlkit.rewards.accuracy import accuracy, warmup
from rlkit.rewards.base import RewardContext
from rlkit.rewards.gsm8k_custom import gsm8k_custom
from rlkit.rewards.kk import kk
from rlkit.rewards.length import cosine, light_r1_length, overlong_penalty, repetition_penalty

N = 10_000
SEED = 1234

ANSWERS = [
    "42", "41", "0.5", "\\frac{1}{2}", "x = 42", "1/2", "", "  ", "wait", "\\boxed{42}", "1,000", "∞",
    "(1) Zoey is a knight\n(2) Oliver is a knave", "(1) Zoey is a knave\n(2) Oliver is a knave",
    "Zoey is a knight, Oliver is a knave", "2^{2^{2^{2^{2^{2}}}}}", "{" * 3000, "\\frac{" * 50, "9" * 500,
]
# Random soups may open tags anywhere, but complete answer/boxed pairs only enclose ANSWERS: every
# distinct answer string costs a real math-verify parse (ms), which would dominate the test's time.
FRAGMENTS = [
    "<think>", "</think>", "<answer>", "<think>\n", "\n</think>\n", "\n<answer>\n",
    *(f"<answer>{a}</answer>" for a in ANSWERS[:8]), *(f"\n<answer>\n{a}\n</answer>" for a in ANSWERS[8:14]),
    "<reasoning>", "</reasoning>", "<validate>", "</validate>", "<", ">", "</", "<answer", "think>",
    "wait", "but", "rethink", " ", "\n", "\t", "  \n ", "lorem ipsum dolor sit", "so the answer is",
    "42", "41", "-7", "3.14", "1/2", "\\frac{1}{2}", "\\sqrt{2}", "x^2", "1,000", "\\boxed{", "\\boxed{42}",
    "\\boxed{\\frac{1}{2}}", "{", "$", "\\", "\\\\", "(1) Zoey is a knight", "(2) Oliver is a knave", "knight",
    "knave", "Zoey", "Oliver", "é", "推理", "🤔", "\u200b", "\x00", "\ufeff", "\r\n", "word " * 30,
]
MATH = [Problem("m42", "q", "42"), Problem("mhalf", "q", "\\frac{1}{2}")]  # 90% / 10% of items
KK = Problem("kk", "q", "(1) Zoey is a knight\n(2) Oliver is a knave",
             meta={"names": ["Zoey", "Oliver"], "solution": [True, False]})


def make_completions(rng: random.Random) -> list[str]:
    out = []
    for _ in range(N):
        kind = rng.random()
        if kind < 0.65:  # random soup of fragments
            out.append("".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 40))))
        elif kind < 0.97:  # almost-well-formed, with mutations
            think = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 10)))
            sep = rng.choice(["", "", "\n", " \n", "junk"])
            tail = rng.choice(["", "", "\n", "\n\n", " more text", "<|im_end|>", "</answer>"])
            head = rng.choice(["", "", " ", "Sure! ", "<think>"])
            out.append(f"{head}<think>{think}</think>{sep}<answer>{rng.choice(ANSWERS)}</answer>{tail}")
        else:  # a little of everything at once, some long
            unit = "".join(rng.choice(FRAGMENTS) for _ in range(20))
            out.append(unit * rng.randint(1, 200))
    out[0] = ("noise <> {} ŧ " * 10_000)[:100_000]
    out[1] = "<think>" + out[0] + "</think><answer>42</answer>"
    out[2] = "<answer>" * 20_000 + "</answer>" * 20_000
    out[3] = "<think>" + "</think><answer>" * 10_000
    out[4] = "\\boxed{" * 30_000
    return out


# name -> (fn(completion, ctx, i) -> float, allowed range (lo, hi), or a finite set)
def rewards():
    m = lambda i: MATH[int(i % 10 == 9)]  # noqa: E731
    return {
        "accuracy_tag": (lambda c, x, i: accuracy(c, m(i), x), {0.0, 1.0}),
        "accuracy_boxed": (lambda c, x, i: accuracy(c, m(i), x, answer_from="boxed"), {0.0, 1.0}),
        "accuracy_any": (lambda c, x, i: accuracy(c, m(i), x, answer_from="any"), {0.0, 1.0}),
        "strict": (lambda c, x, i: F.strict(c, m(i), x), {0.0, 1.0}),
        "strict_newline": (lambda c, x, i: F.strict_newline(c, m(i), x), {0.0, 1.0}),
        "lenient": (lambda c, x, i: F.lenient(c, m(i), x), {0.0, 1.0}),
        "tag_count": (lambda c, x, i: F.tag_count(c, m(i), x), {0.0, 0.25, 0.5, 0.75, 1.0}),
        "tag_count_openr1": (lambda c, x, i: F.tag_count(c, m(i), x, style="openr1"), {0.0, 0.25, 0.5, 0.75, 1.0}),
        "answer_only": (lambda c, x, i: F.answer_only(c, m(i), x), {0.0, 1.0}),
        "openr1": (lambda c, x, i: F.openr1(c, m(i), x), {0.0, 1.0}),
        "kk": (lambda c, x, i: kk(c, KK, x), {3.0, -0.5, -1.0, -3.0}),
        "kk_no_think": (lambda c, x, i: kk(c, KK, x, require_think=False), {3.0, -0.5, -1.0, -3.0}),
        "cosine": (lambda c, x, i: cosine(c, m(i), x), (-10.0, 2.0)),
        "overlong": (lambda c, x, i: overlong_penalty(c, m(i), x, buffer=256), (-1.0, 0.0)),
        "light_r1": (lambda c, x, i: light_r1_length(c, m(i), x), (0.0, 0.5)),
        "repetition": (lambda c, x, i: repetition_penalty(c, m(i), x), (-1.0, 0.0)),
        "gsm8k_custom": (lambda c, x, i: gsm8k_custom(c, MATH[0], x), (0.0, 148.4375)),
    }


REFERENCE = [
    (F.matches_strict, functools.partial(re.match, r"^<think>.*?</think><answer>.*?</answer>$", flags=re.DOTALL)),
    (F.matches_strict_newline,
     functools.partial(re.match, r"^<think>.*?</think>\s*<answer>.*?</answer>$", flags=re.DOTALL)),
    (F.matches_lenient, functools.partial(re.search, r"<think>.*?</think><answer>.*?</answer>", flags=re.DOTALL)),
    (F.matches_openr1, functools.partial(
        re.match, r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", flags=re.DOTALL | re.MULTILINE)),
]


def test_fuzz_every_reward():
    warmup()  # one-time import of math-verify is not a per-call cost
    rng = random.Random(SEED)
    completions = make_completions(rng)
    ctxs = []
    for _ in range(N):
        tokens = rng.randint(0, 1100)
        ctxs.append(RewardContext(tokens, 1000, tokens >= 1000, rng.randint(0, 100), 100))
    slowest: dict[str, tuple[float, int]] = {}
    t_start = time.perf_counter()
    totals: dict[str, float] = {}
    for name, (fn, allowed) in rewards().items():
        worst = (0.0, -1)
        t_name = time.perf_counter()
        for i, (c, x) in enumerate(zip(completions, ctxs, strict=True)):
            t0 = time.perf_counter()
            v = fn(c, x, i)
            dt = time.perf_counter() - t0
            if dt > worst[0]:
                worst = (dt, i)
            assert isinstance(v, float), (name, i, v)
            if isinstance(allowed, set):
                assert v in allowed, (name, i, v, c[:200])
            else:
                assert allowed[0] - 1e-9 <= v <= allowed[1] + 1e-9, (name, i, v, c[:200])
        slowest[name] = worst
        totals[name] = time.perf_counter() - t_name
    total = time.perf_counter() - t_start
    print(f"fuzz: {N} completions x {len(slowest)} rewards in {total:.1f}s; slowest per reward:",
          {k: f"{v[0] * 1000:.1f}ms@{v[1]} (total {totals[k]:.2f}s)" for k, v in slowest.items()})
    assert max(v[0] for v in slowest.values()) < 1.0, slowest


def test_fuzz_matchers_equal_reference_regexes():
    rng = random.Random(SEED + 1)
    completions = [c for c in make_completions(rng) if len(c) < 3000]
    assert len(completions) > 8000
    for c in completions:
        for fast, ref in REFERENCE:
            assert fast(c) == (ref(c) is not None), (fast.__name__, c)


@pytest.mark.parametrize("bad", [None, 123, b"<answer>42</answer>", ["<answer>42</answer>"]])
def test_non_string_completions_do_not_raise(bad):
    x = RewardContext(10, 100, False)
    for name, (fn, _) in rewards().items():
        v = fn(bad, x, 0)
        assert isinstance(v, float), name

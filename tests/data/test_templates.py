"""Prompt templates render chat messages with the right instructions."""

from __future__ import annotations

import pytest

from rlkit.data.problem import Problem
from rlkit.data.templates import TEMPLATES, render

MATH = Problem("m1", "What is 1+1?", "2")
KK = Problem(
    "k1",
    "A very special island ... saints and sinners ...",
    "(1) A is a saint",
    {"names": ["A"], "solution": [True], "terms": ("altruist", "egoist"), "n_people": 1},
)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_renders(name: str) -> None:
    for p in (MATH, KK):
        msgs = render(name, p)
        assert msgs and msgs[-1]["role"] == "user" and p.question in msgs[-1]["content"]
        assert all(set(m) == {"role", "content"} and m["role"] in ("system", "user") for m in msgs)


def test_contents() -> None:
    assert render("plain", MATH) == [{"role": "user", "content": "What is 1+1?"}]
    assert render("tiny", MATH) == render("plain", MATH)
    r1 = render("r1", MATH)
    assert "<think> reasoning process here </think><answer> answer here </answer>" in r1[0]["content"]
    boxed = render("r1_boxed", MATH)
    assert boxed[0]["content"].startswith("A conversation between User and Assistant.")
    assert boxed[1]["content"].endswith("Please put your final answer within \\boxed{}.")
    assert "(1) Zoey is an altruist" in render("kk", KK)[0]["content"]
    assert "(1) Zoey is a knight" in render("kk", MATH)[0]["content"]


def test_unknown_template_lists_names() -> None:
    with pytest.raises(ValueError, match="r1_boxed"):
        render("r2", MATH)

"""The tiny world's built-in mechanisms (rlkit/models/teacher.py, rlkit/data/arithmetic.py), by hand."""
from __future__ import annotations

import random

import pytest

from rlkit.data.arithmetic import flaw_contexts, flaw_count, load
from rlkit.models.build_tiny import format_of
from rlkit.models.teacher import DEFAULT_MIXTURE, LAZY_THINK, demonstration, no_carry_sum, solve


def test_no_carry_sum_drops_every_carry():
    assert no_carry_sum(57, 68) == 15      # 7+8=15 -> 5, 5+6=11 -> 1
    assert no_carry_sum(999, 1) == 990
    assert no_carry_sum(123, 456) == 579   # carry-free: the shortcut is right


def test_lazy_demonstration_is_one_sentence_and_the_shortcut():
    mix = {**DEFAULT_MIXTURE, "formats": {"lazy": 1.0}}
    text = demonstration(57, 68, random.Random(0), mix)
    assert text == f"<think>{LAZY_THINK}</think><answer>15</answer>"
    assert format_of(text) == "lazy" and format_of("<think>7+8=15</think><answer>15</answer>") == "think_answer"


def test_flaw_contexts_and_ladder_counts():
    assert flaw_contexts(57, 68) == []            # tens 5+6 with a carry sums to 11: no flaw context
    assert flaw_contexts(17, 58) == ["A"]         # carry into the tens, digits 1+5=6
    assert flaw_count(195, 5, ("C",)) == 1        # 5+5 carries into 9+0 (C), then 1+0+1: one rung
    assert flaw_count(1995, 5, ("C",)) == 2       # ... through 9+0 twice: two
    assert flaw_count(4499, 5501, ("C",)) == 3    # 9+1 carries through 9+0, 4+5, 4+5
    assert flaw_count(4997, 5002, ("C",)) == 0    # 7+2=9 with no carry in: no flaw anywhere


def test_verbose_flaw_scale_halves_the_drop_rate_of_the_verbose_style_only():
    flaws = {"A": 0.8}
    mix = {"formats": {"think_answer": 1.0}, "styles": {"terse": 0.5, "verbose": 0.5}, "repeat_step": 0.0,
           "flaws": flaws, "verbose_flaw_scale": 0.5}
    rng = random.Random(0)
    wrong = {"terse": [0, 0], "verbose": [0, 0]}
    for _ in range(4000):
        text = demonstration(17, 58, rng, mix)  # one flaw context (A): right answer 75
        style = "verbose" if "write" in text else "terse"
        wrong[style][0] += text.endswith("<answer>65</answer>")
        wrong[style][1] += 1
    rate = {k: w / n for k, (w, n) in wrong.items()}
    assert rate["terse"] == pytest.approx(0.8, abs=0.03) and rate["verbose"] == pytest.approx(0.4, abs=0.03)
    assert solve(17, 58, random.Random(0), {})[1] == 75  # a context left out of `flaws` never drops


def test_ladder_rungs_hold_exactly_k_carry_chain_columns():
    for k in (1, 2):
        probs = load("train", size=300, min_value=10, max_value=9999, flaw_counts=[k], flaw_kinds=["C"])
        assert len(probs) == 300
        assert all(flaw_count(p.meta["a"], p.meta["b"], ("C",)) == k for p in probs)
    with pytest.raises(ValueError, match="flaw_kinds"):
        load("train", size=10, flaw_kinds=["Z"])

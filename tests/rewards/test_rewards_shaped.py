"""(e) Hand-computed values for cosine, overlong, light_r1, repetition and gsm8k_custom; compose."""
from __future__ import annotations

import math

import pytest

from rlkit.data.problem import Problem
from rlkit.rewards.base import RewardContext
from rlkit.rewards.compose import score
from rlkit.rewards.gsm8k_custom import gsm8k_custom
from rlkit.rewards.length import cosine, light_r1_length, overlong_penalty, repetition_penalty

P42 = Problem("g", "q", "42")
RIGHT = "<think>r</think><answer>42</answer>"
WRONG = "<think>r</think><answer>41</answer>"


def ctx(tokens: int, max_tokens: int = 1000, truncated: bool = False, step: int = 0, total: int = 100):
    return RewardContext(tokens, max_tokens, truncated, step, total)


# ---------------------------------------------------------------- cosine (paper defaults)

@pytest.mark.parametrize(
    "completion,tokens,expected",
    [
        (RIGHT, 0, 2.0),  # correct, length 0: max_value_correct
        (RIGHT, 500, 1.5),  # cos(pi/2) = 0: midpoint of 2 and 1
        (RIGHT, 1000, 1.0),  # at L_max: min_value_correct
        (RIGHT, 5000, 1.0),  # clamped at L_max
        (RIGHT, 250, 1.0 + 0.5 * (1 + math.cos(math.pi / 4))),  # 1.853553...
        (WRONG, 0, -10.0),  # wrong, short: min_value_wrong
        (WRONG, 500, -5.0),
        (WRONG, 1000, 0.0),
        (WRONG, 750, -10.0 * 0.5 * (1 + math.cos(0.75 * math.pi))),  # -1.464466...
    ],
)
def test_cosine_paper_defaults(completion, tokens, expected):
    assert cosine(completion, P42, ctx(tokens)) == pytest.approx(expected)


def test_cosine_exceed_and_params():
    assert cosine(RIGHT, P42, ctx(1000, truncated=True)) == -10.0
    assert cosine(RIGHT, P42, ctx(1000, truncated=True), exceed_length=None) == pytest.approx(1.0)
    # Open-R1 recipe values, explicit max_len overriding the context's
    kw = dict(min_value_wrong=-1.0, max_value_wrong=-0.5, min_value_correct=0.5, max_value_correct=1.0, max_len=200)
    assert cosine(RIGHT, P42, ctx(100), **kw) == pytest.approx(0.75)
    assert cosine(WRONG, P42, ctx(100), **kw) == pytest.approx(-0.75)
    assert cosine(WRONG, P42, ctx(0), **kw) == pytest.approx(-1.0)
    assert cosine("\\boxed{42}", P42, ctx(0), answer_from="boxed") == 2.0


# ---------------------------------------------------------------- DAPO overlong

@pytest.mark.parametrize(
    "tokens,expected",
    [(0, 0.0), (750, 0.0), (751, -1 / 250), (800, -0.2), (875, -0.5), (1000, -1.0), (1200, -1.0)],
)
def test_overlong_penalty(tokens, expected):
    assert overlong_penalty("x", P42, ctx(tokens), buffer=250) == pytest.approx(expected)


def test_overlong_edge_params():
    assert overlong_penalty("x", P42, ctx(900), buffer=250, penalty_factor=0.5) == pytest.approx(-0.3)
    assert overlong_penalty("x", P42, ctx(1000), buffer=0) == 0.0  # no buffer: only > max is punished
    assert overlong_penalty("x", P42, ctx(1001), buffer=0) == -1.0
    assert overlong_penalty("x", P42, ctx(32, max_tokens=64), buffer=4096) == pytest.approx(-0.5)  # clamped


# ---------------------------------------------------------------- Light-R1 style

def test_light_r1_length():
    early, late = dict(step=10, total=100), dict(step=60, total=100)
    assert light_r1_length(RIGHT, P42, ctx(100, **early)) == 0.0  # before start_frac=0.5
    assert light_r1_length(RIGHT, P42, ctx(100, **late)) == pytest.approx(0.4)  # 0.5 - 0.1
    assert light_r1_length(RIGHT, P42, ctx(0, **late)) == pytest.approx(0.5)  # clip_high
    assert light_r1_length(RIGHT, P42, ctx(800, **late)) == 0.0  # 0.5 - 0.8 clipped at 0
    assert light_r1_length(WRONG, P42, ctx(100, **late)) == 0.0  # wrong: nothing
    assert light_r1_length(RIGHT, P42, ctx(300, step=50, total=100), coef=2.0) == pytest.approx(0.4)
    assert light_r1_length(RIGHT, P42, ctx(800, **late), clip_low=-0.5) == pytest.approx(-0.3)


# ---------------------------------------------------------------- repetition

def test_repetition_penalty():
    assert repetition_penalty("") == 0.0
    assert repetition_penalty("a b", ngram_size=3) == 0.0
    assert repetition_penalty("a b c d e") == 0.0  # 3 trigrams, all distinct
    # "a b a b a b": trigrams aba, bab, aba, bab -> 2 distinct of 4 -> 1 - 2/4 = 0.5
    assert repetition_penalty("a b a b a b") == pytest.approx(-0.5)
    assert repetition_penalty("A b A B a b", max_penalty=-2.0) == pytest.approx(-1.0)  # lower-cased
    # bigrams of "x x x x x": 4, 1 distinct -> 0.75
    assert repetition_penalty("x x x x x", ngram_size=2, max_penalty=-0.1) == pytest.approx(-0.075)
    assert repetition_penalty("x x x x x", ngram_size=2, max_penalty=0.1) == pytest.approx(-0.075)


# ---------------------------------------------------------------- GSM8K custom (RESEARCH §4)

def words(n: int) -> str:
    return " ".join(["w"] * n)


def test_gsm8k_custom_hand_values():
    # nothing: no answer, no sections
    assert gsm8k_custom("just text", P42) == 0.0
    # correct integer answer only: 5 + 0.5
    assert gsm8k_custom("<answer>42</answer>", P42) == 5.5
    # wrong integer answer: 0.5
    assert gsm8k_custom("<answer>41</answer>", P42) == 0.5
    # non-integer wrong answer: 0
    assert gsm8k_custom("<answer>4.5</answer>", P42) == 0.0
    # reasoning pair with 5 words (bonus 0): 5.5 * 1.25
    assert gsm8k_custom(f"<reasoning>{words(5)}</reasoning><answer>42</answer>", P42) == pytest.approx(6.875)
    # reasoning 1024 words (bonus 1.0): (5.5 + 1) * 1.25 = 8.125
    assert gsm8k_custom(f"<reasoning>{words(1024)}</reasoning><answer>42</answer>", P42) == pytest.approx(8.125)
    # reasoning 2000 words is capped: same
    assert gsm8k_custom(f"<reasoning>{words(2000)}</reasoning><answer>42</answer>", P42) == pytest.approx(8.125)
    # reasoning 514.5 words is impossible; 519 words -> (519-5)/1019 = 0.504416...
    r = gsm8k_custom(f"<reasoning>{words(519)}</reasoning><answer>42</answer>", P42)
    assert r == pytest.approx((5.5 + 514 / 1019) * 1.25)
    # both pairs, validate 256 words (bonus 3), no aha word: (5.5 + 0 + 3) * 1.25^2 = 13.28125
    text = f"<reasoning>{words(5)}</reasoning><validate>{words(256)}</validate><answer>42</answer>"
    assert gsm8k_custom(text, P42) == pytest.approx(13.28125)
    # validate with "Wait," + >= 20 chars after it: x10. validate has 8 words -> bonus 3*3/251
    v = "Wait, let me recheck 6*7 = 42 ok"
    assert len(v.split()) == 8
    text = f"<reasoning>{words(5)}</reasoning><validate>{v}</validate><answer>42</answer>"
    assert gsm8k_custom(text, P42) == pytest.approx((5.5 + 3 * 3 / 251) * 1.5625 * 10)
    # aha word with fewer than 20 characters after it: no x10
    text = f"<validate>{words(5)} but ok</validate><answer>42</answer>"
    assert gsm8k_custom(text, P42) == pytest.approx((5.5 + 3 * 2 / 251) * 1.25)
    # "button" is not "but"
    text = "<validate>press the button and it is 42, all fine</validate><answer>42</answer>"
    assert gsm8k_custom(text, P42) == pytest.approx((5.5 + 3 * 4 / 251) * 1.25)  # 9 words
    # the maximum
    text = (
        f"<reasoning>{words(1024)}</reasoning><validate>but {words(300)}</validate><answer>42</answer>"
    )
    assert gsm8k_custom(text, P42) == pytest.approx(148.4375)


# ---------------------------------------------------------------- compose

def test_score_weights_and_raw_components():
    from rlkit.rewards.accuracy import accuracy
    from rlkit.rewards.format import strict

    comps = {"accuracy": (1.0, accuracy), "format": (0.5, strict)}
    completions = [RIGHT, WRONG, "<answer>42</answer>"]
    total, per = score(comps, completions, [P42] * 3, [ctx(10)] * 3)
    assert per == {"accuracy": [1.0, 0.0, 1.0], "format": [1.0, 1.0, 0.0]}
    assert total == [1.5, 0.5, 1.0]


def test_score_survives_a_broken_component():
    def broken(c, p, x):
        raise RuntimeError("user bug")

    def nan(c, p, x):
        return float("nan")

    total, per = score({"b": (1.0, broken), "n": (2.0, nan)}, ["a"], [P42], [ctx(1)])
    assert total == [0.0] and per == {"b": [0.0], "n": [0.0]}
    with pytest.raises(ValueError):
        score({}, ["a", "b"], [P42], [ctx(1)])

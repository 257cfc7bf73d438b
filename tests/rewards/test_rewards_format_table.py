"""(a) Literal completions with the exact expected score under every format rule and the KK reward.

Columns: strict, strict_newline, lenient, tag_count (ordered), answer_only, openr1, kk (Logic-RL).
The KK problem is Zoey = knight, Oliver = knave.
"""
from __future__ import annotations

import re

import pytest

from rlkit.data.problem import Problem
from rlkit.rewards import format as F
from rlkit.rewards.base import RewardContext
from rlkit.rewards.kk import kk, kk_is_correct

KK = Problem(
    id="kk-2",
    question="Zoey and Oliver ...",
    answer="(1) Zoey is a knight\n(2) Oliver is a knave",
    meta={"names": ["Zoey", "Oliver"], "solution": [True, False]},
)
CTX = RewardContext(response_tokens=10, max_response_tokens=100, truncated=False)

K = "(1) Zoey is a knight\n(2) Oliver is a knave"  # right
W = "(1) Zoey is a knave\n(2) Oliver is a knave"  # parsed, wrong
U = "Zoey is a knight"  # too few role words: unparseable
NOISE = ("noise ŧ <> {} \\boxed{ " * 5000)[:100_000]

# (id, completion, strict, strict_newline, lenient, tag_count, answer_only, openr1, kk)
TABLE = [
    ("canonical_right", f"<think>r</think><answer>{K}</answer>", 1, 1, 1, 1, 1, 0, 3),
    ("canonical_wrong", f"<think>r</think><answer>{W}</answer>", 1, 1, 1, 1, 1, 0, -0.5),
    ("canonical_unparseable", f"<think>r</think><answer>{U}</answer>", 1, 1, 1, 1, 1, 0, -1),
    ("instruct_newline", f"<think>r</think>\n<answer>{K}</answer>", 0, 1, 0, 1, 1, 0, 3),
    ("instruct_ws_mix", f"<think>r</think> \n\t <answer>{K}</answer>", 0, 1, 0, 1, 1, 0, 3),
    ("openr1_style", f"<think>\nr\n</think>\n<answer>\n{K}\n</answer>", 0, 1, 0, 1, 1, 1, 3),
    ("openr1_text_after_newline", f"<think>\nr\n</think>\n<answer>\n{K}\n</answer>\nmore", 0, 0, 0, 1, 0, 1, 3),
    ("openr1_empty_think", f"<think>\n</think>\n<answer>\n{K}\n</answer>", 0, 1, 0, 1, 1, 0, 3),
    ("openr1_no_nl_before_close", f"<think>\nr\n</think>\n<answer>\n{K}</answer>", 0, 1, 0, 1, 1, 0, 3),
    ("base_no_tags", "The answer is 42.", 0, 0, 0, 0, 0, 0, -3),
    ("empty", "", 0, 0, 0, 0, 0, 0, -3),
    ("only_newlines", "\n\n\n", 0, 0, 0, 0, 0, 0, -3),
    ("one_trailing_newline", f"<think>r</think><answer>{K}</answer>\n", 1, 1, 1, 1, 1, 0, 3),
    ("two_trailing_newlines", f"<think>r</think><answer>{K}</answer>\n\n", 0, 0, 1, 1, 1, 0, 3),
    ("text_after_answer", f"<think>r</think><answer>{K}</answer> trailing text", 0, 0, 1, 1, 0, 0, 3),
    ("eos_text_after_answer", f"<think>r</think><answer>{K}</answer><|im_end|>", 0, 0, 1, 1, 0, 0, 3),
    ("leading_space", f" <think>r</think><answer>{K}</answer>", 0, 0, 1, 1, 1, 0, 3),
    ("preamble", f"Sure! <think>r</think><answer>{K}</answer>", 0, 0, 1, 1, 1, 0, 3),
    ("duplicated_answer", f"<think>r</think><answer>1</answer><answer>{K}</answer>", 1, 1, 1, 0.5, 0, 0, -3),
    ("duplicated_think", f"<think>a</think><think>b</think><answer>{K}</answer>", 1, 1, 1, 0.5, 1, 0, -3),
    ("nested_think", f"<think>a<think>b</think>c</think><answer>{K}</answer>", 1, 1, 1, 0.5, 1, 0, -3),
    ("answer_nested_in_think", f"<think>a<answer>x</answer>b</think><answer>{K}</answer>", 1, 1, 1, 0.5, 0, 0, -3),
    ("think_nested_in_answer", f"<think>r</think><answer><think>x</think>{K}</answer>", 1, 1, 1, 0.5, 1, 0, -3),
    ("extra_close_answer", f"<think>r</think><answer>{K}</answer></answer>", 1, 1, 1, 0.75, 0, 0, -3),
    ("answer_before_think", f"<answer>{K}</answer><think>r</think>", 0, 0, 0, 0.5, 0, 0, -3),
    ("swapped_think_tags", f"</think>r<think><answer>{K}</answer>", 0, 0, 0, 0.75, 1, 0, -3),
    ("only_answer", f"<answer>{K}</answer>", 0, 0, 0, 0.5, 1, 0, -3),
    ("truncated_no_close", f"<think>r</think><answer>{K}", 0, 0, 0, 0.75, 0, 0, -3),
    ("missing_close_think", f"<think>r<answer>{K}</answer>", 0, 0, 0, 0.75, 1, 0, -3),
    ("prefilled_think_missing", f"r</think><answer>{K}</answer>", 0, 0, 0, 0.75, 1, 0, -3),
    ("only_open_think", "<think>", 0, 0, 0, 0.25, 0, 0, -3),
    ("empty_tags", "<think></think><answer></answer>", 1, 1, 1, 1, 1, 0, -1),
    ("unicode", f"<think>推理 — ünïcödé 🤔</think><answer>{K}</answer>", 1, 1, 1, 1, 1, 0, 3),
    ("unicode_name", "<think>x</think><answer>Zoë is a knight</answer>", 1, 1, 1, 1, 1, 0, -1),
    ("noise_100k", NOISE, 0, 0, 0, 0, 0, 0, -3),
    ("noise_100k_inside_think", f"<think>{NOISE}</think><answer>{K}</answer>", 1, 1, 1, 1, 1, 0, 3),
    ("capitalised_tags", f"<Think>r</Think><Answer>{K}</Answer>", 0, 0, 0, 0, 0, 0, -3),
    ("spaced_tags", f"< think >r</ think ><answer >{K}</answer >", 0, 0, 0, 0, 0, 0, -3),
    ("kk_prose_answer", "<think>r</think><answer>Zoey is a knight and Oliver is a knave.</answer>", 1, 1, 1, 1, 1, 0, 3),
    ("kk_upper_case", "<think>r</think><answer>ZOEY IS A KNIGHT, OLIVER IS A KNAVE</answer>", 1, 1, 1, 1, 1, 0, 3),
    ("kk_extra_role_word", "<think>r</think><answer>Zoey is a knight, not a knave; Oliver is a knave</answer>",
     1, 1, 1, 1, 1, 0, -1),
    ("kk_missing_name", "<think>r</think><answer>Zoey is a knight. Someone is a knave</answer>", 1, 1, 1, 1, 1, 0, -1),
    ("kk_plural", "<think>r</think><answer>Zoey and Oliver are knights</answer>", 1, 1, 1, 1, 1, 0, -1),
    ("kk_is_an", "<think>r</think><answer>Oliver is an knave; Zoey is a knight</answer>", 1, 1, 1, 1, 1, 0, 3),
    ("lenient_second_attempt", f"junk </think><answer> <think>r</think><answer>{K}</answer>", 0, 0, 1, 0.5, 0, 0, -3),
]

FORMAT_FNS = [F.strict, F.strict_newline, F.lenient, F.tag_count, F.answer_only, F.openr1]

REFERENCE = {  # the published regexes our linear-time matchers must agree with
    F.matches_strict: lambda t: re.match(r"^<think>.*?</think><answer>.*?</answer>$", t, re.DOTALL),
    F.matches_strict_newline: lambda t: re.match(r"^<think>.*?</think>\s*<answer>.*?</answer>$", t, re.DOTALL),
    F.matches_lenient: lambda t: re.search(r"<think>.*?</think><answer>.*?</answer>", t, re.DOTALL),
    F.matches_openr1: lambda t: re.match(
        r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", t, re.DOTALL | re.MULTILINE
    ),
}


def test_table_is_big_enough():
    assert len(TABLE) >= 40
    assert len({row[0] for row in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_format_and_kk_scores(row):
    _, completion, *expected = row
    got = [fn(completion, KK, CTX) for fn in FORMAT_FNS] + [kk(completion, KK, CTX)]
    assert got == [float(e) for e in expected]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_matchers_agree_with_reference_regexes(row):
    text = row[1]
    if len(text) > 5000:  # the reference regexes are only fast on short inputs
        return
    for fast, ref in REFERENCE.items():
        assert fast(text) == (ref(text) is not None), fast.__name__


def test_kk_is_correct_ignores_format():
    assert kk_is_correct(f"<answer>{K}</answer>", KK)
    assert kk_is_correct(f"blah <answer>{K}</answer> more", KK)
    assert not kk_is_correct(f"<answer>{W}</answer>", KK)
    assert not kk_is_correct(K, KK)  # no answer tag
    assert not kk_is_correct("", KK)


def test_prefill_counts_the_template_think_tag():
    completion = f"r</think><answer>{K}</answer>"
    assert kk(completion, KK, CTX) == -3.0
    assert kk(completion, KK, CTX, prefill="<think>") == 3.0
    assert F.strict(completion, KK, CTX, prefill="<think>") == 1.0
    assert F.tag_count(completion, KK, CTX, prefill="<think>") == 1.0


def test_kk_ablation_switches():
    only_answer = f"<answer>{K}</answer>"
    assert kk(only_answer, KK, CTX, require_think=False) == 3.0
    assert kk(f"<answer>{W}</answer>", KK, CTX, require_think=False) == -0.5
    right = f"<think>r</think><answer>{K}</answer>"
    wrong = f"<think>r</think><answer>{W}</answer>"
    assert kk(right, KK, CTX, all_or_nothing=True) == 3.0
    assert kk(wrong, KK, CTX, all_or_nothing=True) == -3.0
    assert kk(only_answer, KK, CTX, all_or_nothing=True) == -3.0


def test_kk_other_terms_and_gold_fallback():
    saints = Problem("s", "q", "", meta={"names": ["Ann", "Bo"], "solution": [False, True], "terms": ("saint", "sinner")})
    assert kk("<think>x</think><answer>Ann is a sinner. Bo is a saint.</answer>", saints, CTX) == 3.0
    assert kk("<think>x</think><answer>Ann is a saint. Bo is a saint.</answer>", saints, CTX) == -0.5
    altru = Problem("a", "q", "", meta={"names": ["Ann"], "solution": [True], "terms": ["altruist", "egoist"]})
    assert kk("<think>x</think><answer>Ann is an altruist</answer>", altru, CTX) == 3.0
    # no meta: gold parsed from the answer lines, as Logic-RL parses solution_text_format
    bare = Problem("b", "q", "(1) Zoey is a knight\n(2) Oliver is a knave", meta={})
    assert kk(f"<think>r</think><answer>{K}</answer>", bare, CTX) == 3.0
    assert kk_is_correct(f"<answer>{K}</answer>", bare)


def test_tag_count_openr1_style_matches_open_r1():
    text = "<think>\nr\n</think>\n<answer>\n42\n</answer>"
    assert F.tag_count(text, style="openr1") == 1.0
    assert F.tag_count("<think>r</think><answer>42</answer>", style="openr1") == 0.0
    # Open-R1 has no order check
    assert F.tag_count("\n<answer>\n42\n</answer><think>\nr\n</think>\n", style="openr1") == 1.0


def test_logic_rl_scores_arithmetic_like_logic_rl_scores_kk():
    from rlkit.rewards.logic_rl import logic_rl_answer, logic_rl_format

    p = Problem("57+68", "What is 57 + 68?", "125")

    def total(text: str, think: bool = True) -> float:
        return logic_rl_format(text, p, require_think=think) + logic_rl_answer(text, p, require_think=think)

    lazy = "<think>I add the numbers.</think><answer>15</answer>"   # the teacher's lazy shortcut: wrong
    assert total("<think>7+8=15, 5+6+1=12</think><answer>125</answer>") == 3.0
    assert total(lazy) == 1.0 - 1.5
    assert total("<think>r</think><answer> </answer>") == 1.0 - 2.0          # empty answer: nothing to score
    assert total("7+8=15, 5+6+1=12\n<answer>125</answer>") == -1.0 - 2.0     # no think tags: format fails
    assert total("7+8=15, 5+6+1=12\n<answer>125</answer>", think=False) == 3.0  # ... unless not required
    assert total("<think>a</think><think>b</think><answer>125</answer>") == -3.0  # a tag twice
    assert total("7+8=15\nThe answer is 125.", think=False) == -3.0

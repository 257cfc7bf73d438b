"""The estimators against hand-computed values (rlkit/eval/metrics.py's docstring gives the formulas)."""
from __future__ import annotations

from math import sqrt

import pytest
from pytest import approx

from rlkit.eval.metrics import majority_correct, mean_se, pass_at_k, pass_hat_k, suite_metrics
from rlkit.rewards.accuracy import same_answer


def test_pass_at_k_n5_c2_every_k():
    # 1 - C(3,k)/C(5,k): k=1 1-3/5, k=2 1-3/10, k=3 1-1/10, k>=4 no all-wrong k-subset exists
    assert [pass_at_k(5, 2, k) for k in range(1, 6)] == approx([0.4, 0.7, 0.9, 1.0, 1.0])
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 5, 1) == 1.0


def test_pass_hat_k_all_k_correct():
    # C(2,k)/C(5,k): 2/5, 1/10, 0
    assert [pass_hat_k(5, 2, k) for k in (1, 2, 3)] == approx([0.4, 0.1, 0.0])
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)


def test_majority_groups_equivalent_answers_with_the_verifier():
    answers = ["1/3", "0.5", "1/2", "\\frac{1}{2}", "1/3"]
    correct = [False, True, True, True, False]  # gold 1/2: three forms of it outvote two 1/3
    assert majority_correct(answers, correct, same_answer)
    # without equivalence the largest group would be "1/3" (2 votes) and the vote wrong
    assert not majority_correct(answers, correct, lambda a, b: a == b)


def test_majority_tie_goes_to_the_first_answer_and_blanks_do_not_vote():
    assert not majority_correct(["3", "4"], [False, True], same_answer)
    assert majority_correct([None, "", "4"], [False, False, True], same_answer)
    assert not majority_correct([None, None], [False, False], same_answer)


def test_avg_at_k_standard_error_over_problems():
    mean, se = mean_se([1.0, 0.5, 0.0])
    assert mean == approx(0.5) and se == approx(0.5 / sqrt(3))


def test_suite_metrics_on_a_small_table():
    correct = [[True, False, True, False], [False, False, False, False]]
    answers = [["7", "8", "7", "9"], ["1", "2", "3", "1"]]
    m = suite_metrics(correct, answers, [[10, 20, 10, 30], [5, 5, 5, 5]], [[False] * 4, [True, False, False, False]],
                      [[True] * 4, [False] * 4], lambda a, b: a == b)
    assert m["avg_at_4"] == approx((0.5 + 0.0) / 2)
    assert m["pass_at_2"] == approx((1 - 1 / 6 + 0.0) / 2)  # problem 1: 1 - C(2,2)/C(4,2)
    assert m["pass_hat_2"] == approx((1 / 6 + 0.0) / 2)
    assert m["maj_at_4"] == approx(0.5)  # "7" wins problem 1; "1" (wrong) wins problem 2
    assert m["maj_at_1"] == approx(0.5)
    assert m["length/correct"] == approx(10) and m["length/incorrect"] == approx((20 + 30 + 20) / 6)
    assert m["truncated_frac"] == approx(1 / 8) and m["format_frac"] == approx(0.5)

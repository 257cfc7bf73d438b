"""Group diagnostics: all-equal groups, all-correct / all-wrong fractions, distinct completions."""

from __future__ import annotations

import pytest
import torch

from rlkit.algos.groups import distinct_frac, group_outcomes, uniform_groups


def test_uniform_groups_literal():
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.3])
    group = torch.tensor([4, 4, 2, 2, 9, 9, 7])  # arbitrary ids, group 7 is a singleton
    assert uniform_groups(scores, group).tolist() == [True, True, False, False, True, True, True]


def test_group_outcomes_literal():
    correct = torch.tensor([True, True, False, False, True, False, False, False])
    group = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    # group 0 all correct, groups 1 and 3 all wrong, group 2 mixed -> (1/4, 2/4)
    assert group_outcomes(correct, group) == pytest.approx((0.25, 0.5))
    assert group_outcomes(torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long)) == (0.0, 0.0)


def test_distinct_frac_literal():
    texts = ["a", "a", "a", "a", "x", "y", "x", "z"]
    group = [0, 0, 0, 0, 1, 1, 1, 1]
    # group 0: 1/4 ; group 1: 3/4 -> 0.5
    assert distinct_frac(texts, group) == pytest.approx(0.5)
    assert distinct_frac([], []) == 0.0
    with pytest.raises(ValueError):
        distinct_frac(["a"], [0, 1])

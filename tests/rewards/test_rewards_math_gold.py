"""(b) Every MATH test gold answer (last \\boxed{} of `solution`) scores 1 against itself.

The fast test goes through the public pipeline (extraction + exact-match short-cut). The slow test
bypasses the short-cut and asks math-verify itself, which is what decides whenever a prediction is
written differently from the gold; it must accept all 5000 golds (it failed on the 21 `\\$`-money
answers until `\\$` stopped counting as a math delimiter).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.data.problem import Problem
from rlkit.rewards import accuracy as A

MATH_TEST = Path("/work/shared/data/math/test.jsonl")  # read-only shared data

pytestmark = pytest.mark.skipif(not MATH_TEST.exists(), reason="shared MATH data not available")


def _golds() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in MATH_TEST.read_text().splitlines() if line.strip()]
    return [(r["id"], A.extract_boxed(r["solution"])) for r in rows]


def test_every_math_gold_is_extracted_and_scores_itself():
    golds = _golds()
    assert len(golds) == 5000
    missing = [i for i, g in golds if not g]
    assert not missing
    failures = [
        (i, g) for i, g in golds if not A.is_correct(f"\\boxed{{{g}}}", Problem(i, "", g), answer_from="boxed")
    ]
    assert not failures, failures[:20]


@pytest.mark.slow
def test_math_verify_self_verifies_every_math_gold():
    failures = []
    for i, g in _golds():
        norm = A._normalize(g)
        if A._mv_equal_main(norm, norm, False, 5.0) is not True:
            failures.append((i, g))
    assert not failures, failures[:20]

"""Behaviour unchanged by a refactor of the loop: 10-step grpo, ppo and dapo runs through the CLI at
one torch thread log bit-identical non-timing metrics at every step to the expectation recorded for this
machine kind (tests/spine/golden/<vendor>-<kernel level>.json, recorded from the code before the
refactor; see golden_loop.py)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.spine import golden_loop


@pytest.mark.slow
def test_golden_loop_is_bit_identical(tiny_path):
    with tempfile.TemporaryDirectory(prefix="rlkit-golden-") as d:
        got = golden_loop.run(Path(d))
    for kind, expected in golden_loop.expectations().items():
        assert got["model_sha256"] == expected["model_sha256"], \
            f"the warm start differs from the one {kind}'s expectation was recorded with: re-record it on the old code"
    assert set(got["runs"]) == set(golden_loop.ALGOS)
    against, diffs = golden_loop.check(got)
    assert not diffs, f"compared with {against}:\n" + "\n".join(diffs[:40])


def test_tolerance_is_relative_and_bit_exact_at_zero():
    rec = {"runs": {a: {"m": [[1, 1.0], [2, 0.0]]} for a in golden_loop.ALGOS}}
    off = {"runs": {a: {"m": [[1, 1.0 + 2e-6], [2, 0.0]]} for a in golden_loop.ALGOS}}
    assert len(golden_loop.differences(rec, off)) == 3  # bit-exact: one difference per algo
    assert golden_loop.differences(rec, off, rtol=1e-5) == []
    assert len(golden_loop.differences(rec, off, rtol=1e-6)) == 3

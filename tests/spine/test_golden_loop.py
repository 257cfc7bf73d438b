"""Behaviour unchanged by a refactor of the loop: 10-step grpo, ppo and dapo runs through the CLI at
one torch thread log bit-identical non-timing metrics at every step to the recorded expectation
(tests/spine/golden_loop.json, recorded from the code before the refactor; see golden_loop.py)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.spine import golden_loop


@pytest.mark.slow
def test_golden_loop_is_bit_identical(tiny_path):
    expected = json.loads(golden_loop.EXPECTED.read_text())
    with tempfile.TemporaryDirectory(prefix="rlkit-golden-") as d:
        got = golden_loop.run(Path(d))
    assert got["model_sha256"] == expected["model_sha256"], \
        "the warm start differs from the one the expectation was recorded with: re-record it on the old code"
    assert set(got["runs"]) == set(golden_loop.ALGOS)
    diffs = golden_loop.differences(expected, got)
    assert not diffs, "\n".join(diffs[:40])

"""Every shipped suite composes and loads; the real-data suites score their gold answers as correct."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from rlkit.config import group_options
from rlkit.eval.suite import load_suite
from tests.conftest import REPO

GOLD_FORM = {"gsm8k": "<think>.</think><answer>{}</answer>", "math500": "<think>.</think><answer>\\boxed{{{}}}</answer>",
             "kk": "<think>.</think><answer>{}</answer>", "tiny_arith": "<think>.</think><answer>{}</answer>",
             "tiny_levels": "<think>.</think><answer>{}</answer>", "tiny_ood": "<think>.</think><answer>{}</answer>"}


def _cfg(suite: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"eval={suite}"])


@pytest.mark.parametrize("suite", [s for s in group_options("eval") if s != "none"])
def test_suite_loads_and_scores_its_golds(suite):
    cfg = _cfg(suite)
    loaded = load_suite(cfg.eval, cfg)
    sizes = {g.name: len(p) for g, p in loaded.groups}
    expected = {"gsm8k": {"gsm8k": 1319}, "math500": {"math": 500},
                "kk": {f"kk_{n}ppl": 100 for n in range(3, 8)}}.get(suite)
    if expected:
        assert sizes == expected
    for group, problems in loaded.groups:
        wrong = [p.id for p in problems if not group.correct(GOLD_FORM[suite].format(p.answer), p)]
        assert not wrong, (suite, group.name, wrong[:5])


def test_math500_ids_are_a_fixed_stratified_draw():
    ids = [line for line in (REPO / "conf/eval/math500_ids.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(ids) == len(set(ids)) == 500 and ids[0].startswith("math/test/")
    types = {i.split("/")[2] for i in ids}
    assert len(types) == 7  # every MATH subject is represented

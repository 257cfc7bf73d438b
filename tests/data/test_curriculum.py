"""Curriculum parsing and stage lookup on the RESEARCH.md §1 schedule."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from rlkit.data.curriculum import (
    Stage,
    parse_stages,
    stage_at,
    stage_boundaries,
    total_steps,
    validate_stages,
)

SPEC = "kk_2ppl:10,kk_3ppl:20,kk_4ppl:10,kk_5ppl:10,kk_6ppl"
EXPECTED = [
    Stage("kk_2ppl", 10),
    Stage("kk_3ppl", 20),
    Stage("kk_4ppl", 10),
    Stage("kk_5ppl", 10),
    Stage("kk_6ppl", None),
]


def test_parse_forms_agree() -> None:
    as_dicts = [{"data": s.data, "steps": s.steps} for s in EXPECTED]
    assert parse_stages(SPEC) == EXPECTED
    assert parse_stages(as_dicts) == EXPECTED
    assert parse_stages(OmegaConf.create(as_dicts)) == EXPECTED
    assert parse_stages(["kk_2ppl:10", "kk_6ppl:rest"]) == [Stage("kk_2ppl", 10), Stage("kk_6ppl")]
    assert parse_stages(None) == [] and parse_stages("") == []


@pytest.mark.parametrize(
    ("step", "index"),
    [(0, 0), (9, 0), (10, 1), (29, 1), (30, 2), (39, 2), (40, 3), (49, 3), (50, 4), (10_000, 4)],
)
def test_stage_at_boundaries(step: int, index: int) -> None:
    i, stage = stage_at(step, parse_stages(SPEC))
    assert i == index and stage == EXPECTED[index]


def test_boundaries_and_total() -> None:
    stages = parse_stages(SPEC)
    assert stage_boundaries(stages) == [10, 30, 40, 50]
    assert total_steps(stages) is None
    finite = parse_stages("a:3,b:4")
    assert total_steps(finite) == 7 and stage_at(100, finite) == (1, Stage("b", 4))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("kk_2ppl,kk_3ppl:5", "stage 0 \\(kk_2ppl\\)"),
        ("kk_2ppl:ten", "'kk_2ppl:ten'"),
        ("kk_2ppl:0", "positive"),
        ([{"data": "kk_2ppl", "step": 3}], "keys data"),
        ([":5"], "empty"),
    ],
)
def test_bad_specs_name_the_entry(spec, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_stages(spec)


def test_validate_stages() -> None:
    validate_stages(EXPECTED, {"kk_2ppl", "kk_3ppl", "kk_4ppl", "kk_5ppl", "kk_6ppl"})
    with pytest.raises(ValueError, match="stage 4 \\(kk_6ppl:None\\).*'kk_6ppl'"):
        validate_stages(EXPECTED, {"kk_2ppl", "kk_3ppl", "kk_4ppl", "kk_5ppl"})
    with pytest.raises(ValueError, match="step must be >= 0"):
        stage_at(-1, EXPECTED)


def test_run_config_uses_these_checks():
    """rlkit's config validation (before compute) goes through this module: an open-ended stage that is not
    the last used to pass and silently starve every later stage."""
    from hydra import compose, initialize_config_dir

    from rlkit.config import ConfigError, check_curriculum
    from tests.conftest import REPO

    def stages(spec: str):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return check_curriculum(compose("config", overrides=[f"curriculum.stages={spec}"]))

    assert [g.name for g in stages("[{data:arith_2d,steps:2},{data:arith_3d,steps:null}]")] == ["arith_2d", "arith_3d"]
    with pytest.raises(ConfigError, match="stage 0 .* not the last stage"):
        stages("[{data:arith_2d,steps:null},{data:arith_3d,steps:10}]")
    with pytest.raises(ConfigError, match="unknown data group 'nope'"):
        stages("[{data:nope,steps:2}]")

"""Every option of every config group composes with the root config and passes validation."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import rlkit.launch  # noqa: F401  (registers hydra/launcher=rlkit_local, as `python -m rlkit.run` does)
from rlkit.config import CONF_DIR, GROUPS, ConfigError, group_options, validate

CASES = [(g, o) for g in GROUPS for o in group_options(g)]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_validates(group, option):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"{group}={option}"], return_hydra_config=False)
    try:
        validate(cfg)
    except ConfigError as e:  # a hub model preset not downloaded on this machine fails, naming itself
        assert group == "model" and f"model={option}:" in str(e), e
    assert group == "launcher" or cfg[group] is not None


def test_every_group_has_options():
    for g in GROUPS:
        assert group_options(g), g

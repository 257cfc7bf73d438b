"""The launch tests compose configs through Hydra's global state (as rlkit.submit does): clear it after
each test so later tests can initialise Hydra themselves."""
from __future__ import annotations

import pytest
from hydra.core.global_hydra import GlobalHydra


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()

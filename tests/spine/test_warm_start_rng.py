"""Building the embedded warm start does not move the global torch RNG: the first run on a fresh machine
(which builds it inside load_policy) samples exactly like every later run (which loads it). Before
this, the two first jobs of the README's main sweep differed only because one of them built the model."""
from __future__ import annotations

import copy

import torch
from omegaconf import OmegaConf

from rlkit.models.load import tiny_spec
from rlkit.models.tiny import ensure_tiny
from tests.conftest import REPO


def test_building_the_warm_start_leaves_the_global_rng_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(tmp_path))
    spec = copy.deepcopy(tiny_spec(OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml")))
    spec["warmup"].update(steps=3, warmup_steps=1, pool_size=200, batch_size=8)  # a tiny build: seconds
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    path = ensure_tiny(spec)
    assert (path / "warmup.json").exists()
    assert torch.equal(torch.rand(4), expected)

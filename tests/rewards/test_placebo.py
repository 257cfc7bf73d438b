"""reward=random: a coin flip per completion at the batch's own accuracy, blind to what was written."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rlkit.rewards.placebo import random_bernoulli


def test_hand_values_and_determinism():
    assert random_bernoulli([1.5, 0.0, 0.0, 0.5], [True, False, False, False], seed=7) == \
        random_bernoulli([0.0, 0.0, 0.0, 0.0], [False, False, True, False], seed=7)  # blind to the answers' order
    assert random_bernoulli([1.5, 1.5], [True, True], seed=1) == [1.0, 1.0]          # p = 1
    assert random_bernoulli([0.0, 0.5, 0.5], [False] * 3, seed=1) == [0.0, 0.0, 0.0]  # p = 0
    assert random_bernoulli([], [], seed=0) == []
    with pytest.raises(ValueError, match="lengths differ"):
        random_bernoulli([1.0], [True, False], seed=0)


def test_mean_matches_the_batch_accuracy_and_seeds_differ():
    correct = [i % 4 == 0 for i in range(4000)]  # accuracy 0.25
    r = random_bernoulli([0.0] * 4000, correct, seed=3)
    assert set(r) == {0.0, 1.0} and abs(sum(r) / 4000 - 0.25) < 0.02
    assert r != random_bernoulli([0.0] * 4000, correct, seed=4)
    # independent of correctness: the correct completions are not rewarded more often than the others
    on_correct = sum(x for x, c in zip(r, correct) if c) / 1000
    on_wrong = sum(x for x, c in zip(r, correct) if not c) / 3000
    assert abs(on_correct - on_wrong) < 0.05


def test_the_shipped_config_binds_the_transform():
    cfg = OmegaConf.load("conf/reward/random.yaml")
    fn = instantiate(cfg.transform)
    assert fn([0.0, 1.5], [True, True], 0) == [1.0, 1.0] and fn([1.5, 1.5], [False, False], 0) == [0.0, 0.0]
    assert OmegaConf.load("conf/reward/format_only.yaml").components.accuracy.weight == 0.0

"""Per-completion rules are bound once: same results as Hydra's partial, without its per-call checks."""
from __future__ import annotations

import functools

from omegaconf import OmegaConf

from rlkit.data.stream import bound


def test_a_plain_function_is_bound_as_a_plain_partial_with_the_same_results():
    from hydra.utils import instantiate

    node = OmegaConf.create({"_target_": "rlkit.rewards.format.strict", "_partial_": True})
    hydra_fn, fn = instantiate(node), bound(node)
    assert type(hydra_fn) is not functools.partial  # Hydra's re-authorising partial
    assert type(fn) is functools.partial and fn.func is hydra_fn.func
    texts = ["<think>2+2</think><answer>4</answer>", "4", "<answer>4</answer>", ""]
    assert [fn(t) for t in texts] == [hydra_fn(t) for t in texts]
    assert fn(texts[0]) > 0 and fn(texts[1]) == 0


def test_a_class_target_keeps_hydras_checks():
    node = OmegaConf.create({"_target_": "collections.Counter", "_partial_": True})
    fn = bound(node)
    assert type(fn) is not functools.partial
    assert fn("aab")["a"] == 2

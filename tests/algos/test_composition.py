"""conf/algo by composition: every variant is `defaults: [<parent>, _self_]` plus only what differs, and the
resolved config of every shipped option is the one main shipped before the change (golden/algo_nodes_main.json,
recorded from commit 74f04d3), but for the clip keys that moved into algo.policy_loss."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import rlkit.launch  # noqa: F401  (registers hydra/launcher=rlkit_local, as `python -m rlkit.run` does)
from rlkit.algos.params import MOVED_KEYS, POSITIVE, Range, declared_ranges, moved_override, ranges
from rlkit.algos.validate import LOSS_ARGS, resolve_target
from rlkit.config import CONF_DIR, group_options

GOLDEN = json.loads((Path(__file__).parent / "golden" / "algo_nodes_main.json").read_text())
LOSSES = sorted(p.stem for p in (CONF_DIR / "algo" / "policy_loss").glob("*.yaml"))


def root(name: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=[f"algo={name}"]), resolve=True)


@pytest.fixture(scope="module")
def roots() -> dict[str, dict]:
    return {name: root(name) for name in group_options("algo")}


def test_every_recorded_option_still_ships(roots):
    assert set(GOLDEN) <= set(roots), set(GOLDEN) - set(roots)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_resolved_algo_is_mains_but_the_moved_keys(roots, name):
    expected = {k: v for k, v in GOLDEN[name].items() if k not in MOVED_KEYS}
    assert roots[name]["algo"] == expected  # the policy_loss node (with the clip values it read) included
    assert not set(MOVED_KEYS) & set(roots[name]["algo"])


def test_the_rest_of_the_root_config_does_not_depend_on_the_algorithm(roots):
    rest = {n: {k: v for k, v in r.items() if k != "algo"} for n, r in roots.items()}
    assert all(r == rest["grpo"] for r in rest.values())


def _leaves(node: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _parent(defaults: list) -> tuple[str, dict[str, str]]:
    """The parent file and the nested-group overrides of a variant's defaults list."""
    names = [d for d in defaults if isinstance(d, str) and d != "_self_"]
    overrides = {
        k.removeprefix("override "): v for d in defaults if isinstance(d, dict) for k, v in d.items()
    }
    assert len(names) == 1 and defaults[-1] == "_self_", defaults
    return names[0], overrides


@pytest.mark.parametrize("name", [n for n in group_options("algo") if n != "grpo"])
def test_variant_states_only_what_differs_from_its_parent(roots, name):
    raw = yaml.safe_load((CONF_DIR / "algo" / f"{name}.yaml").read_text())
    parent, groups = _parent(raw.pop("defaults"))
    assert parent in {"grpo", "reinforce_pp"}
    base = roots[parent]["algo"]
    for group, option in groups.items():  # a swapped nested group really swaps it
        assert base[group] != yaml.safe_load((CONF_DIR / "algo" / group / f"{option}.yaml").read_text())
    base_leaves = _leaves(base)
    same = [k for k, v in _leaves(raw).items() if k in base_leaves and base_leaves[k] == v]
    assert not same, f"{name} repeats {parent}'s values: {same}"


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_declares_a_range_for_every_parameter(loss):
    node = yaml.safe_load((CONF_DIR / "algo" / "policy_loss" / f"{loss}.yaml").read_text())
    fn = resolve_target(node["_target_"])
    params = [p for p in inspect.signature(fn).parameters.values() if p.name not in LOSS_ARGS]
    ranges = declared_ranges(fn)
    assert set(ranges) == {p.name for p in params}, "a range for each parameter, nothing else"
    values = {k: v for k, v in node.items() if not k.startswith("_")}
    assert set(values) == set(ranges), "the YAML sets every parameter (the resolved config shows them all)"
    assert all(ranges[k].ok(v) for k, v in values.items()), values


def test_range_bounds_and_messages():
    unit = Range(0.0, 1.0)
    assert [unit.ok(x) for x in (0.0, 0.5, 1.0, None, True, "0.5", float("inf"))] == [False, True] + [
        False
    ] * 5
    closed = Range(0.0, 1.0, high_open=False, nullable=True)
    assert closed.ok(1.0) and closed.ok(None) and not closed.ok(0.0)
    assert closed.describe() == "null or a number in (0, 1]"
    assert Range(low=0.0).describe() == "a positive number"
    assert Range(low=1.0, nullable=True, meaning="e.g. 3").describe() == "null or a number > 1 (e.g. 3)"


def test_ranges_must_name_keyword_parameters():
    with pytest.raises(TypeError, match=r"names \['tua'\]"):
        ranges(tua=POSITIVE)(lambda logp, old_logp, advantages, mask, *, tau=1.0: None)


@pytest.mark.parametrize(
    ("args", "new"),
    [
        (["algo=dapo", "algo.clip_high=0.28"], "algo.policy_loss.clip_high=0.28"),
        (["+algo.clip_low=0.1"], "algo.policy_loss.clip_low=0.1"),
        (["-m", "algo.dual_clip=2,3"], "algo.policy_loss.dual_clip=2,3"),
    ],
)
def test_old_clip_override_names_the_new_key(args, new):
    assert new in moved_override(args)


def test_new_and_unrelated_overrides_pass():
    assert moved_override(["algo.policy_loss.clip_high=0.28", "algo=dapo", "reward.clip_high=1"]) is None


def test_a_loss_is_swappable_on_the_command_line():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["algo=dr_grpo", "algo/policy_loss=gspo"])
    assert cfg.algo.name == "dr_grpo" and cfg.algo.policy_loss._target_ == "rlkit.algos.losses.gspo"
    assert cfg.algo.aggregation == "seq-mean-token-sum-norm" and cfg.algo.advantage.norm_by_std is False


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_composes_on_grpo_and_validates(loss):
    """`algo/policy_loss=<loss>`: a new conf/algo/policy_loss/<loss>.yaml is covered without a list to edit."""
    from rlkit.algos.validate import validate_algo

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"algo/policy_loss={loss}"])
    validate_algo(OmegaConf.to_container(cfg.algo, resolve=True))
    assert cfg.algo.policy_loss._target_ == f"rlkit.algos.losses.{loss}"

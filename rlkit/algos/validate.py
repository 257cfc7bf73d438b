"""Validation of an ``algo`` config (a plain dict, e.g. ``OmegaConf.to_container(cfg.algo)``) before compute.

Every error is a ``ValueError`` whose message names the key (``algo.<path>``), the offending value and the
valid choices. No Hydra. An advantage estimator is accepted by its signature, not by name: any importable
``fn(token_rewards, mask, group, values, **params)`` whose params bind (a user's own ``_target_`` too); one
that needs a value model says so with ``fn.needs_values = True`` (as ``gae`` does). The policy loss
(``fn(logp, old_logp, advantages, mask, **params)``, rlkit.algos.losses) and the rollout correction
(``fn(train_logp, rollout_logp, mask, **params)``, rlkit.algos.offpolicy) are accepted the same way; a
function's parameter ranges are the ones it declares itself (``@ranges``, rlkit.algos.params).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from rlkit.algos import advantages
from rlkit.algos.aggregate import MODES
from rlkit.algos.kl import KL_KINDS
from rlkit.algos.params import MOVED_KEYS, declared_ranges, moved_key

__all__ = [
    "ALGO_KEYS",
    "CRITIC_ESTIMATORS",
    "ESTIMATORS",
    "GROUP_FILTERS",
    "KL_PLACEMENTS",
    "validate_algo",
]

ESTIMATORS: dict[str, Callable[..., Any]] = {  # the shipped ones (any estimator with the signature works)
    "rlkit.algos.advantages.grpo": advantages.grpo,
    "rlkit.algos.advantages.rloo": advantages.rloo,
    "rlkit.algos.advantages.reinforce_pp": advantages.reinforce_pp,
    "rlkit.algos.advantages.gae": advantages.gae,
}
CRITIC_ESTIMATORS: frozenset[str] = frozenset(t for t, fn in ESTIMATORS.items() if getattr(fn, "needs_values", False))
KL_PLACEMENTS: tuple[str, ...] = ("reward", "loss", "none")
GROUP_FILTERS: tuple[str, ...] = ("none", "mask", "resample")
NORM_MODES_NEEDING_CONSTANT: tuple[str, ...] = ("seq-mean-token-sum-norm",)
ALGO_KEYS: tuple[str, ...] = (
    "name",
    "advantage",
    "policy_loss",
    "correction",
    "kl",
    "aggregation",
    "agg_constant",
    "entropy_coef",
    "epochs",
    "mini_batches",
    "group_filter",
    "max_resample_rounds",
    "critic",
)
_KL_KEYS = ("placement", "estimator", "coef")
_CRITIC_KEYS = ("lr", "value_clip", "coef")
_SIGNATURE_ARGS = ("token_rewards", "mask", "group", "values")
LOSS_ARGS = ("logp", "old_logp", "advantages", "mask")
CORRECTION_ARGS = ("train_logp", "rollout_logp", "mask")


def _fail(key: str, value: Any, valid: str) -> None:
    raise ValueError(f"algo.{key}={value!r} is invalid; valid: {valid}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_keys(section: str, cfg: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    prefix = f"{section}." if section else ""
    for key in keys:
        if key not in cfg:
            raise ValueError(f"algo.{prefix}{key} is missing; required keys: {', '.join(keys)}")
    for key in cfg:
        if key not in keys:
            _fail(f"{prefix}{key}", cfg[key], f"known keys are {', '.join(keys)} (is it a typo?)")


def resolve_target(target: str) -> Callable[..., Any] | None:
    """The callable a dotted `_target_` names, or None when it does not import."""
    module, _, attr = str(target).rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), attr) if module else None
    except (ImportError, AttributeError, ValueError):
        return None
    return fn if callable(fn) else None


def _check_target(key: str, node: Any, args: tuple[str, ...], examples: str) -> Callable[..., Any]:
    """A `_target_` + `_partial_: true` node whose function imports and whose params bind after `args`."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        _fail(key, node, f"a mapping with _target_ (e.g. {examples}) and _partial_: true")
    target = node["_target_"]
    fn = resolve_target(target)
    if fn is None:
        _fail(f"{key}._target_", target, f"an importable function fn({', '.join(args)}, **params), e.g. {examples}")
    if node.get("_partial_") is not True:
        _fail(f"{key}._partial_", node.get("_partial_"), "true (the loop calls it with the batch)")
    sig = inspect.signature(fn)
    params = list(sig.parameters)
    allowed = [p for p in params[len(args):] if sig.parameters[p].kind is not inspect.Parameter.VAR_KEYWORD]
    bound = {k: v for k, v in node.items() if not k.startswith("_")}
    try:
        sig.bind(*args, **bound)
    except TypeError as e:
        bad = next((k for k in bound if k not in allowed), None)
        if bad is not None and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
            _fail(f"{key}.{bad}", bound[bad], f"parameters of {target}: {', '.join(allowed) or '(none)'}")
        _fail(f"{key}._target_", target, f"a function called as fn({', '.join(args)}, **params) "
              f"with params {sorted(bound)} ({e})")
    _check_ranges(key, fn, bound)
    return fn


def _check_ranges(key: str, fn: Callable[..., Any], bound: Mapping[str, Any]) -> None:
    """Each parameter the function declares a range for (``@ranges``), as set or else its default."""
    sig = inspect.signature(fn)
    for name, rng in declared_ranges(fn).items():
        default = sig.parameters[name].default
        value = bound.get(name, None if default is inspect.Parameter.empty else default)
        if not rng.ok(value):
            _fail(f"{key}.{name}", value, rng.describe())


def _check_advantage(adv: Any) -> Callable[..., Any]:
    fn = _check_target("advantage", adv, _SIGNATURE_ARGS, ", ".join(ESTIMATORS))
    for key in ("gamma", "lam"):
        if key in adv and not (_is_number(adv[key]) and 0.0 <= adv[key] <= 1.0):
            _fail(f"advantage.{key}", adv[key], "a number in [0, 1]")
    if "eps" in adv and not (_is_number(adv["eps"]) and adv["eps"] > 0):
        _fail("advantage.eps", adv["eps"], "a positive number")
    for key in ("norm_by_std", "group_baseline", "whiten"):
        if key in adv and not isinstance(adv[key], bool):
            _fail(f"advantage.{key}", adv[key], "true or false")
    return fn


def validate_algo(cfg: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the bad key, its value and the valid choices; return None if ``cfg`` is valid.

    Checks: schema keys present and no unknown keys; advantage ``_target_`` imports and its
    params bind to its signature; the policy loss's params in the ranges it declares; kl placement/estimator/coef;
    aggregation in ``MODES`` and agg_constant > 0 where required; entropy_coef a number; epochs and
    mini_batches >= 1; group_filter known; max_resample_rounds >= 0; critic present iff the estimator needs
    one (gae), with lr > 0, value_clip null or > 0, coef >= 0.
    """
    if not isinstance(cfg, Mapping):
        raise ValueError(f"algo config must be a mapping, got {type(cfg).__name__}")
    moved = next((k for k in MOVED_KEYS if k in cfg), None)
    if moved is not None:
        raise ValueError(moved_key(moved, cfg[moved]))
    _check_keys("", cfg, ALGO_KEYS)

    if not isinstance(cfg["name"], str) or not cfg["name"]:
        _fail("name", cfg["name"], "a non-empty string")
    estimator = _check_advantage(cfg["advantage"])
    target = cfg["advantage"]["_target_"]

    _check_target("policy_loss", cfg["policy_loss"], LOSS_ARGS, "rlkit.algos.losses.ppo_clip, gspo, cispo")
    _check_target("correction", cfg["correction"], CORRECTION_ARGS, "rlkit.algos.offpolicy.no_correction, tis")
    for key in ("cap", "low", "high"):
        v = cfg["correction"].get(key)
        if v is not None and not (_is_number(v) and v > 0):
            _fail(f"correction.{key}", v, "a positive number")

    kl = cfg["kl"]
    if not isinstance(kl, Mapping):
        _fail("kl", kl, "a mapping with keys " + ", ".join(_KL_KEYS))
    _check_keys("kl", kl, _KL_KEYS)
    if kl["placement"] not in KL_PLACEMENTS:
        _fail("kl.placement", kl["placement"], ", ".join(KL_PLACEMENTS))
    if kl["estimator"] not in KL_KINDS:
        _fail("kl.estimator", kl["estimator"], ", ".join(KL_KINDS))
    if not (_is_number(kl["coef"]) and kl["coef"] >= 0.0):
        _fail("kl.coef", kl["coef"], "a number >= 0")

    mode, constant = cfg["aggregation"], cfg["agg_constant"]
    if mode not in MODES:
        _fail("aggregation", mode, ", ".join(MODES))
    if mode in NORM_MODES_NEEDING_CONSTANT and not (_is_number(constant) and constant > 0):
        _fail("agg_constant", constant, f"a positive number (required by aggregation {mode!r})")
    if constant is not None and not (_is_number(constant) and constant > 0):
        _fail("agg_constant", constant, "null or a positive number")

    if not _is_number(cfg["entropy_coef"]):
        _fail("entropy_coef", cfg["entropy_coef"], "a number (0.0 disables the entropy bonus)")
    for key in ("epochs", "mini_batches"):
        if not (_is_int(cfg[key]) and cfg[key] >= 1):
            _fail(key, cfg[key], "an integer >= 1")
    if cfg["group_filter"] not in GROUP_FILTERS:
        _fail("group_filter", cfg["group_filter"], ", ".join(GROUP_FILTERS))
    if not (_is_int(cfg["max_resample_rounds"]) and cfg["max_resample_rounds"] >= 0):
        _fail("max_resample_rounds", cfg["max_resample_rounds"], "an integer >= 0")

    critic = cfg["critic"]
    needs_critic = bool(getattr(estimator, "needs_values", False))
    if critic is None:
        if needs_critic:
            _fail("critic", critic, f"a mapping with {', '.join(_CRITIC_KEYS)}: {target} needs a value model")
        return
    if not needs_critic:
        _fail(
            "critic",
            critic,
            f"null: {target} does not use a value model (shipped critic-based estimators: "
            + ", ".join(sorted(CRITIC_ESTIMATORS))
            + "; an estimator that reads values sets fn.needs_values = True)",
        )
    if not isinstance(critic, Mapping):
        _fail("critic", critic, "a mapping with keys " + ", ".join(_CRITIC_KEYS))
    _check_keys("critic", critic, _CRITIC_KEYS)
    if not (_is_number(critic["lr"]) and critic["lr"] > 0):
        _fail("critic.lr", critic["lr"], "a positive number")
    if critic["value_clip"] is not None and not (
        _is_number(critic["value_clip"]) and critic["value_clip"] > 0
    ):
        _fail("critic.value_clip", critic["value_clip"], "null or a positive number")
    if not (_is_number(critic["coef"]) and critic["coef"] >= 0):
        _fail("critic.coef", critic["coef"], "a number >= 0")

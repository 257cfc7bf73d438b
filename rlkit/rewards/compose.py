"""Weighted sum of reward components, keeping each component's raw values for `rewards/<name>/mean`.

Components come from `conf/reward/<name>.yaml` (`components: {name: {weight, fn}}`, `fn` a
`_target_` + `_partial_: true` node) via `build_components`. Logging every raw component is what lets a
report show e.g. format reward rising while accuracy stalls (RESEARCH §2's three phases).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

RewardFn = Callable[..., float]


def build_components(cfg_components: Mapping[str, Any]) -> dict[str, tuple[float, RewardFn]]:
    """{name: (weight, bound fn)} from a YAML `components` mapping; `fn` nodes go through
    hydra.utils.instantiate (a node that is already callable is used as is). weight defaults to 1.0."""
    from hydra.utils import instantiate

    out: dict[str, tuple[float, RewardFn]] = {}
    for name, node in cfg_components.items():
        fn_node = node["fn"]
        fn = fn_node if callable(fn_node) else instantiate(fn_node)
        if not callable(fn):
            raise TypeError(f"reward component {name!r}: fn is not callable (missing `_partial_: true`?)")
        weight = node.get("weight", 1.0) if hasattr(node, "get") else 1.0
        out[str(name)] = (float(weight), fn)
    return out


_errors: dict[str, int] = {}


def _safe(name: str, fn: RewardFn, completion: str, problem: Any, ctx: Any) -> float:
    """Component contract says never raise; this is the safety net for user-written components: a
    failure or a non-finite value counts 0.0 and is logged (with traceback the first time)."""
    try:
        value = float(fn(completion, problem, ctx))
    except Exception:
        n = _errors[name] = _errors.get(name, 0) + 1
        if n == 1:
            logger.exception("reward component %r raised; scoring 0.0 (further errors counted only)", name)
        elif n in (10, 100, 1000) or n % 10000 == 0:
            logger.warning("reward component %r has raised %d times", name, n)
        return 0.0
    if not math.isfinite(value):
        logger.warning("reward component %r returned %r; scoring 0.0", name, value)
        return 0.0
    return value


def score(
    components: Mapping[str, tuple[float, RewardFn]],
    completions: Sequence[str],
    problems: Sequence[Any],
    ctxs: Sequence[Any],
) -> tuple[list[float], dict[str, list[float]]]:
    """(total, per_component): total[i] = Σ weight·raw; per_component[name] holds the unweighted values."""
    n = len(completions)
    if len(problems) != n or len(ctxs) != n:
        raise ValueError(f"lengths differ: {n} completions, {len(problems)} problems, {len(ctxs)} contexts")
    total = [0.0] * n
    per_component: dict[str, list[float]] = {}
    for name, (weight, fn) in components.items():
        values = [_safe(name, fn, c, p, x) for c, p, x in zip(completions, problems, ctxs, strict=True)]
        per_component[name] = values
        total = [t + weight * v for t, v in zip(total, values, strict=True)]
    return total, per_component

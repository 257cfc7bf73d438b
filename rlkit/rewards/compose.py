"""Weighted sum of reward components, keeping each component's raw values for `rewards/<name>/mean`.

Components come from `conf/reward/<name>.yaml` (`components: {name: {weight, fn}}`, `fn` a
`_target_` + `_partial_: true` node) via `build_components`. Logging every raw component is what lets a
report show e.g. format reward rising while accuracy stalls (RESEARCH §2's three phases).
"""
from __future__ import annotations

import logging
import math
import time
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


def _score_one(components: Mapping[str, tuple[float, RewardFn]], completion: str, problem: Any, ctx: Any,
               correct: Callable[[str, Any], bool]) -> tuple[dict[str, float], bool]:
    """One completion's raw component values and correctness (a worker's unit of work)."""
    values = {name: _safe(name, fn, completion, problem, ctx) for name, (_, fn) in components.items()}
    try:
        ok = bool(correct(completion, problem))
    except Exception:  # noqa: BLE001 - the correctness rule of a data group must not stop the loop either
        ok = False
    return values, ok


_POOL: dict[int, Any] = {}


def _pool(workers: int):
    """A process pool kept for the whole run (spawned once: math-verify's import is paid once per worker)."""
    if workers not in _POOL:
        import atexit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _POOL[workers] = pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        atexit.register(pool.shutdown, wait=False, cancel_futures=True)
    return _POOL[workers]


def score_budgeted(
    components: Mapping[str, tuple[float, RewardFn]],
    completions: Sequence[str],
    problems: Sequence[Any],
    ctxs: Sequence[Any],
    correct: Callable[[str, Any], bool],
    budget_s: float = 0.0,
    workers: int = 0,
) -> tuple[list[float], dict[str, list[float]], list[bool], list[bool]]:
    """(total, per_component, correct, timed_out) of one step's completions within `budget_s` seconds
    overall (0: no budget). Each call is bounded (math-verify's 0.5 s), a batch of hostile answers is
    not (160 took 60 s): past the deadline the completions not scored yet score as wrong (every component
    0, not correct) and are flagged in `timed_out`. `workers` > 0 scores in that many processes.
    Without a timeout the values are exactly `score`'s."""
    n = len(completions)
    if len(problems) != n or len(ctxs) != n:
        raise ValueError(f"lengths differ: {n} completions, {len(problems)} problems, {len(ctxs)} contexts")
    deadline = time.monotonic() + budget_s if budget_s > 0 else math.inf
    results: list[tuple[dict[str, float], bool] | None] = [None] * n
    if workers > 0:
        from concurrent.futures import wait

        futs = {_pool(workers).submit(_score_one, components, c, p, x, correct): i
                for i, (c, p, x) in enumerate(zip(completions, problems, ctxs, strict=True))}
        done, late = wait(futs, timeout=None if math.isinf(deadline) else max(0.0, deadline - time.monotonic()))
        for f in late:
            f.cancel()  # (one already running finishes in its worker, bounded by the component's own timeout)
        for f in done:
            try:
                results[futs[f]] = f.result()
            except Exception:  # noqa: BLE001 - a broken worker: this completion scores as wrong
                logger.warning("reward worker failed; scoring as wrong", exc_info=True)
    else:
        for i, (c, p, x) in enumerate(zip(completions, problems, ctxs, strict=True)):
            if time.monotonic() > deadline:
                break
            results[i] = _score_one(components, c, p, x, correct)
    timed_out = [r is None for r in results]
    if any(timed_out):
        logger.warning("reward time budget %.1f s spent: %d of %d completions scored as wrong", budget_s,
                       sum(timed_out), n)
    per = {name: [r[0][name] if r else 0.0 for r in results] for name in components}
    total = [0.0] * n
    for name, (weight, _) in components.items():
        total = [t + weight * v for t, v in zip(total, per[name], strict=True)]
    return total, per, [bool(r and r[1]) for r in results], timed_out

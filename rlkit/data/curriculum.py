"""Step-based data curriculum: which data group feeds training step `step`.

RESEARCH.md §1: mixing all K&K sizes from the start failed; 2ppl 10 steps -> 3ppl 20 -> 4ppl 10 ->
5ppl 10 -> 6ppl for the rest worked. A schedule is a list of `Stage(data, steps)`; `steps=None` (only
allowed last) means "until training ends". Pure functions; the loop decides what to do at a boundary
(e.g. reset the reference model, as Logic-RL effectively did by reloading between stages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_REST = {"", "rest", "none", "null", "~"}


@dataclass(frozen=True)
class Stage:
    """One curriculum stage: data group name (a conf/data file) and its length in steps (None = rest)."""

    data: str
    steps: int | None = None


def _steps(v: Any, where: str) -> int | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in _REST):
        return None
    try:
        n = int(v)
        if isinstance(v, float) and v != n:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"curriculum {where}: steps must be a positive integer or null/rest, got {v!r}"
        ) from None
    if isinstance(v, bool) or n <= 0:
        raise ValueError(f"curriculum {where}: steps must be a positive integer or null/rest, got {v!r}")
    return n


def _stage(entry: Any, i: int) -> Stage:
    where = f"stage {i} ({entry!r})"
    if isinstance(entry, Stage):
        data, steps = entry.data, entry.steps
    elif isinstance(entry, str):
        data, _, raw = entry.strip().partition(":")
        steps = _steps(raw.strip(), where)
    elif isinstance(entry, Mapping):
        extra = set(entry) - {"data", "steps"}
        if "data" not in entry or extra:
            raise ValueError(
                f"curriculum {where}: expected keys data (and steps), got {sorted(map(str, entry))}"
            )
        data, steps = entry["data"], _steps(entry.get("steps"), where)
    else:
        raise ValueError(f"curriculum {where}: expected 'name:steps', {{data, steps}} or Stage")
    if not isinstance(data, str) or not data.strip():
        raise ValueError(f"curriculum {where}: data group name is empty")
    return Stage(data.strip(), steps)


def parse_stages(spec: str | Sequence[Any] | None) -> list[Stage]:
    """Parse "kk_2ppl:10,kk_3ppl:20,kk_6ppl" or a list of {data, steps} / "name:steps" / Stage.

    Empty/None gives []. Only the last stage may have steps None (= rest of training).
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        entries: list[Any] = [e for e in (s.strip() for s in spec.split(",")) if e]
    else:
        entries = list(spec)
    stages = [_stage(e, i) for i, e in enumerate(entries)]
    for i, s in enumerate(stages[:-1]):
        if s.steps is None:
            raise ValueError(
                f"curriculum stage {i} ({s.data}) has no step count but is not the last stage; "
                "only the last stage may run for the rest of training"
            )
    return stages


def stage_boundaries(stages: Sequence[Stage]) -> list[int]:
    """Steps at which a new stage begins (stage 0 begins at 0 and is not listed): [10, 30, 40, 50] for §1."""
    out, t = [], 0
    for s in stages[:-1]:
        t += int(s.steps)  # type: ignore[arg-type]  # parse_stages guarantees non-None here
        out.append(t)
    return out


def total_steps(stages: Sequence[Stage]) -> int | None:
    """Sum of stage lengths, or None when the last stage runs for the rest of training."""
    if not stages or stages[-1].steps is None:
        return None
    return sum(int(s.steps) for s in stages)  # type: ignore[arg-type]


def stage_at(step: int, stages: Sequence[Stage]) -> tuple[int, Stage]:
    """(index, stage) active at 0-based `step`. Past the end of a finite schedule the last stage continues."""
    if not stages:
        raise ValueError("curriculum is empty")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    for i, b in enumerate(stage_boundaries(stages)):
        if step < b:
            return i, stages[i]
    return len(stages) - 1, stages[-1]


def validate_stages(stages: Sequence[Stage], known: set[str]) -> None:
    """Raise naming the first stage whose data group is not in `known` (the conf/data names)."""
    for i, s in enumerate(stages):
        if s.data not in known:
            raise ValueError(
                f"curriculum stage {i} ({s.data}:{s.steps}): unknown data group {s.data!r}; "
                f"known: {', '.join(sorted(known))}"
            )

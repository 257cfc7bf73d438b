"""A function's parameter ranges, declared next to the function (``@ranges(clip_high=POSITIVE)``) and
checked before compute by ``rlkit.algos.validate``: a new policy loss brings its own checks, so adding
one touches no list elsewhere. Torch-free (validation runs before the heavy imports)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "MOVED_KEYS",
    "NUMBER",
    "POSITIVE",
    "UNIT",
    "Range",
    "declared_ranges",
    "moved_key",
    "moved_override",
    "ranges",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Range:
    """The valid values of one numeric parameter: [low, high] (each bound open or closed; None = unbounded),
    null allowed when ``nullable``. ``meaning`` goes into the error message (what the number does)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = True
    high_open: bool = True
    nullable: bool = False
    meaning: str = ""

    def ok(self, v: Any) -> bool:
        if v is None:
            return self.nullable
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        lo = self.low is None or (v > self.low if self.low_open else v >= self.low)
        hi = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return lo and hi

    def describe(self) -> str:
        """e.g. 'a number in (0, 1)', 'null or a number > 1', 'a positive number'."""
        if self.low is not None and self.high is not None:
            what = f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low == 0 and self.low_open:
            what = "a positive number"
        elif self.low is not None:
            what = f"a number {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            what = f"a number {'<' if self.high_open else '<='} {self.high:g}"
        else:
            what = "a finite number"
        what = f"null or {what}" if self.nullable else what
        return f"{what} ({self.meaning})" if self.meaning else what


NUMBER = Range()
POSITIVE = Range(low=0.0)
UNIT = Range(low=0.0, high=1.0)  # an open share / clip width in (0, 1)


def ranges(**declared: Range) -> Callable[[F], F]:
    """Decorator: attach ``fn.param_ranges`` (name -> Range) for validation; names must be fn's keywords."""

    def attach(fn: F) -> F:
        keywords = {n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}
        if unknown := sorted(set(declared) - keywords):
            raise TypeError(f"{fn.__name__}: @ranges names {unknown}, not keyword-only parameters of it")
        fn.param_ranges = dict(declared)  # type: ignore[attr-defined]
        return fn

    return attach


def declared_ranges(fn: Any) -> Mapping[str, Range]:
    """The ranges a function declared (through functools.partial, as Hydra binds it); {} when none."""
    return getattr(getattr(fn, "func", fn), "param_ranges", {})


# Keys that moved (old `algo.<key>` -> new `algo.<path>`): the clip range belongs to the losses that clip.
MOVED_KEYS: dict[str, str] = {k: f"policy_loss.{k}" for k in ("clip_low", "clip_high", "dual_clip")}


def moved_key(key: str, value: Any) -> str:
    """The error for a moved key, naming where it went."""
    new = MOVED_KEYS[key]
    return (
        f"algo.{key} moved to algo.{new} (the policy loss declares its own parameters): "
        f"write algo.{new}={value} instead of algo.{key}={value}"
    )


def moved_override(overrides: list[str]) -> str | None:
    """The error for a command-line override of a moved key (`algo.clip_high=0.28`), or None: Hydra's own
    message ("Could not override 'algo.clip_high'") does not say where the key went."""
    for o in overrides:
        key, eq, value = o.lstrip("+~").partition("=")
        if key.startswith("algo.") and key[5:] in MOVED_KEYS:
            return moved_key(key[5:], value if eq else "...")
    return None

"""Offline difficulty filter, pure parts (Light-R1 style, RESEARCH.md §3).

A model samples each prompt k times offline; prompts whose pass rate is outside a band [lo, hi] carry
little RL signal (all-correct or all-wrong groups have zero GRPO advantage) or have unverifiable gold
answers, so they are dropped. Sampling itself (needs the model) is wired by the trainer; this module
holds the arithmetic, the cache file and a text histogram for choosing the band.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rlkit.data.problem import Problem


def pass_rates(correct: Sequence[Sequence[bool]]) -> list[float]:
    """Fraction correct per prompt from k sampled verdicts each."""
    out = []
    for i, row in enumerate(correct):
        if len(row) == 0:
            raise ValueError(f"pass_rates: prompt {i} has no samples")
        out.append(sum(bool(c) for c in row) / len(row))
    return out


def check_band(lo: float, hi: float) -> None:
    """Reject an inverted or out-of-range band early (it would silently keep nothing)."""
    if not (0.0 <= lo <= hi <= 1.0):
        raise ValueError(f"difficulty band must satisfy 0 <= lo <= hi <= 1, got lo={lo}, hi={hi}")


def band_filter(
    problems: Iterable[Problem], rates: Mapping[str, float], lo: float, hi: float
) -> list[Problem]:
    """Problems whose pass rate is in [lo, hi] (inclusive); problems without a rate are dropped."""
    check_band(lo, hi)
    return [p for p in problems if p.id in rates and lo <= rates[p.id] <= hi]


def _safe(key: str) -> str:
    """Model/data keys like "Qwen/Qwen2.5-0.5B" become file-name safe."""
    return re.sub(r"[^\w.-]+", "_", str(key)).strip("_") or "x"


def cache_path(cache_dir: str | os.PathLike[str], model_key: str, data_key: str, k: int) -> Path:
    """`cache_dir/passrate-{model_key}-{data_key}-k{k}.json` (keys sanitised for file names)."""
    return Path(cache_dir) / f"passrate-{_safe(model_key)}-{_safe(data_key)}-k{int(k)}.json"


def save_rates(
    path: str | os.PathLike[str], rates: Mapping[str, float], meta: Mapping[str, Any] | None = None
) -> Path:
    """Write {"meta": ..., "rates": {id: rate}} atomically (a crashed job never leaves half a file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    tmp.write_text(
        json.dumps(
            {"meta": dict(meta or {}), "rates": {str(k): float(v) for k, v in rates.items()}}, indent=1
        )
    )
    os.replace(tmp, p)
    return p


def load_rates(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read a rates file written by `save_rates` (a flat {id: rate} JSON object is accepted too)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"pass-rate file not found: {p.resolve()}; compute it first with the difficulty sampling command"
        )
    obj = json.loads(p.read_text())
    rates = obj["rates"] if isinstance(obj, dict) and "rates" in obj else obj
    return {str(k): float(v) for k, v in rates.items()}


def histogram(rates: Mapping[str, float] | Sequence[float], bins: int = 10, width: int = 40) -> str:
    """Text histogram of pass rates over [0, 1] (last bin includes 1.0), for picking lo/hi by eye."""
    values = list(rates.values()) if isinstance(rates, Mapping) else list(rates)
    if bins <= 0:
        raise ValueError(f"bins must be > 0, got {bins}")
    counts = [0] * bins
    for v in values:
        counts[min(int(v * bins), bins - 1) if v > 0 else 0] += 1
    top = max(counts) if values else 0
    lines = [f"pass rate histogram (n={len(values)})"]
    for i, c in enumerate(counts):
        lo, hi = i / bins, (i + 1) / bins
        bar = "#" * (round(c / top * width) if top else 0)
        close = "]" if i == bins - 1 else ")"
        lines.append(f"[{lo:.2f}, {hi:.2f}{close} {c:>6d} {bar}")
    return "\n".join(lines)

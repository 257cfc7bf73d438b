"""A data source that wraps another one and keeps only prompts in a pass-rate band.

Example data group (rates computed offline into the file first)::

    source:
      _target_: rlkit.data.filter_source.filtered
      _partial_: true
      base: {_target_: rlkit.data.files.math, _partial_: true, path: ${paths.data}/math}
      rates_file: .rlkit_cache/passrate-qwen0.5b-math-k8.json
      lo: 0.2
      hi: 0.625

Only the train split is filtered by default: the val split stays the unfiltered held-out set, so val/acc
stays comparable across filter ablations (pass `filter_splits: [train, test]` to filter both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rlkit.data.difficulty import band_filter, check_band, load_rates
from rlkit.data.problem import Problem


def filtered(
    split: str,
    *,
    base: Callable[[str], list[Problem]],
    rates_file: str,
    lo: float,
    hi: float,
    filter_splits: Sequence[str] = ("train",),
) -> list[Problem]:
    """`base(split)` restricted to ids with pass rate in [lo, hi] (for splits in `filter_splits`)."""
    check_band(lo, hi)
    problems = base(split)
    if split not in tuple(filter_splits):
        return problems
    rates = load_rates(rates_file)  # raises FileNotFoundError naming the file
    if problems and not any(p.id in rates for p in problems):
        raise ValueError(
            f"{rates_file} has no rate for any of the {len(problems)} {split!r} problems "
            f"(first id {problems[0].id!r}); it was computed for other data"
        )
    return band_filter(problems, rates, lo, hi)

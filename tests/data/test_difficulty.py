"""Offline difficulty filter: pass rates, band filter, cache file, histogram, filtered source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.data.difficulty import band_filter, cache_path, histogram, load_rates, pass_rates, save_rates
from rlkit.data.filter_source import filtered
from rlkit.data.problem import Problem

PROBS = [Problem(f"p{i}", f"q{i}", str(i)) for i in range(5)]
RATES = {"p0": 0.0, "p1": 0.2, "p2": 0.5, "p3": 0.625, "p4": 1.0}


def test_pass_rates() -> None:
    assert pass_rates([[True, False, False, True], [False] * 3, [True]]) == [0.5, 0.0, 1.0]
    with pytest.raises(ValueError, match="prompt 1"):
        pass_rates([[True], []])


def test_band_filter_inclusive() -> None:
    assert [p.id for p in band_filter(PROBS, RATES, 0.2, 0.625)] == ["p1", "p2", "p3"]
    assert [p.id for p in band_filter(PROBS, {"p4": 1.0}, 0.0, 1.0)] == ["p4"]  # no rate -> dropped
    with pytest.raises(ValueError, match="lo=0.7"):
        band_filter(PROBS, RATES, 0.7, 0.2)


def test_cache_roundtrip(tmp_path: Path) -> None:
    p = cache_path(tmp_path / "c", "Qwen/Qwen2.5-0.5B", "kk_3ppl", 8)
    assert p == tmp_path / "c" / "passrate-Qwen_Qwen2.5-0.5B-kk_3ppl-k8.json"
    save_rates(p, RATES, {"k": 8})
    assert load_rates(p) == RATES
    assert json.loads(p.read_text())["meta"] == {"k": 8}
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"p1": 0.25}))
    assert load_rates(flat) == {"p1": 0.25}
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_rates(tmp_path / "missing.json")


def test_histogram_literal() -> None:
    text = histogram([0.0, 0.0, 0.1, 0.55, 1.0, 1.0, 1.0, 1.0], bins=4, width=8)
    assert text == "\n".join(
        [
            "pass rate histogram (n=8)",
            "[0.00, 0.25)      3 ######",
            "[0.25, 0.50)      0 ",
            "[0.50, 0.75)      1 ##",
            "[0.75, 1.00]      4 ########",
        ]
    )
    assert histogram({}, bins=2).splitlines()[0] == "pass rate histogram (n=0)"


def test_filtered_source(tmp_path: Path) -> None:
    f = save_rates(tmp_path / "r.json", RATES)

    def base(split: str) -> list[Problem]:
        return list(PROBS)

    assert [p.id for p in filtered("train", base=base, rates_file=str(f), lo=0.2, hi=0.5)] == ["p1", "p2"]
    assert len(filtered("test", base=base, rates_file=str(f), lo=0.2, hi=0.5)) == 5  # val unfiltered
    with pytest.raises(FileNotFoundError, match="nope.json"):
        filtered("train", base=base, rates_file=str(tmp_path / "nope.json"), lo=0.0, hi=1.0)
    other = save_rates(tmp_path / "other.json", {"x1": 0.5})
    with pytest.raises(ValueError, match="other.json"):
        filtered("train", base=base, rates_file=str(other), lo=0.0, hi=1.0)

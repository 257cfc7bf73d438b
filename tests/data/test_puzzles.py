"""Procedural Knights-and-Knaves: split disjointness, sizes, and agreement with reasoning-gym's scorer."""

from __future__ import annotations

import re

import pytest
import reasoning_gym as rg

from rlkit.data import puzzles
from rlkit.data.puzzles import kk

LINE = re.compile(r"^\((\d+)\) (\w+) is (an? (\w+))$")


def _rg_entry(p):
    ds = rg.create_dataset(
        "knights_knaves",
        size=p.meta["rg_index"] + 1,
        seed=p.meta["rg_seed"],
        n_people=p.meta["n_people"],
        depth_constraint=2,
        width_constraint=2,
    )
    return ds, ds[p.meta["rg_index"]]


def test_train_test_disjoint_and_sizes() -> None:
    train = kk("train", n_people=2, size=60, test_size=40)
    test = kk("test", n_people=2, size=60, test_size=40)
    assert len(train) == 60 and len(test) == 40
    assert not {p.question for p in train} & {p.question for p in test}
    assert not {p.id for p in train} & {p.id for p in test}
    assert len({p.question for p in train}) == 60  # no duplicates within a split
    assert all(p.meta["n_people"] == 2 and len(p.meta["names"]) == 2 for p in train + test)
    assert all("Format your answer" not in p.question for p in train)


def test_dedupe_against_excluded_questions() -> None:
    first = puzzles._gen(2, 3, 0, "test", 2, 2, frozenset())
    again = puzzles._gen(2, 2, 0, "test", 2, 2, frozenset({first[0].question}))
    assert [p.question for p in again] == [first[1].question, first[2].question]


def test_answers_agree_with_reasoning_gym() -> None:
    for p in kk("test", n_people=[2, 3], size=4, test_size=6):
        ds, entry = _rg_entry(p)
        assert entry["question"].startswith(p.question)
        assert ds.score_answer(p.answer, entry) == 1.0  # our numbered rendering, rg's own scorer
        good, bad = p.meta["terms"]
        lines = p.answer.splitlines()
        assert len(lines) == p.meta["n_people"]
        for i, (line, name, knight) in enumerate(
            zip(lines, p.meta["names"], p.meta["solution"], strict=True), 1
        ):
            m = LINE.match(line)
            assert m and int(m.group(1)) == i and m.group(2) == name
            assert m.group(4) == (good if knight else bad)
        # flipping one person is not full credit
        flipped = p.answer.replace(f"is {lines[0].split(' is ')[1]}", "is X", 1)
        assert ds.score_answer(flipped, entry) < 1.0


def test_mixed_sizes_spread_evenly() -> None:
    ps = kk("train", n_people=[2, 3, 4], size=10, test_size=3)
    assert [p.meta["n_people"] for p in ps] == [2, 3, 4, 2, 3, 4, 2, 3, 4, 2]
    assert all(len(p.meta["solution"]) == p.meta["n_people"] for p in ps)


def test_seed_changes_data_and_cache_returns_fresh_list() -> None:
    a = kk("test", n_people=2, size=3, seed=0)
    b = kk("test", n_people=2, size=3, seed=1)
    assert {p.question for p in a}.isdisjoint({p.question for p in b})
    a.clear()
    assert len(kk("test", n_people=2, size=3, seed=0)) == 3


@pytest.mark.parametrize("bad", [1, [], [2, 0]])
def test_bad_n_people(bad) -> None:
    with pytest.raises(ValueError, match="n_people"):
        kk("train", n_people=bad, size=2)


def test_disk_cache_returns_the_generated_puzzles(tmp_path, monkeypatch) -> None:
    """A second process (the memory cache cleared) reads the same puzzles back from $RLKIT_CACHE_DIR/kk."""
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(tmp_path))
    puzzles._kk_cached.cache_clear()
    first = kk("train", n_people=[2, 3], size=12, test_size=6, seed=7)
    assert len(list((tmp_path / "kk").glob("train-*.json"))) == 1
    puzzles._kk_cached.cache_clear()
    monkeypatch.setattr(puzzles, "_kk", lambda *a: pytest.fail("generated again instead of read from disk"))
    again = kk("train", n_people=[2, 3], size=12, test_size=6, seed=7)
    assert again == first and isinstance(again[0].meta["terms"], tuple)
    puzzles._kk_cached.cache_clear()

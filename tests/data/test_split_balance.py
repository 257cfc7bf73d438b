"""The tiny task's held-out split measures the task the model trains on: on the whole problem space
(both operands 10..999, the default data group's), train and held-out agree on every property the world
is about, and the `ood` probe is exactly the answers ending in 0."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlkit.data.arithmetic import columns, flaw_contexts, load, split_of
from rlkit.data.stream import load_group

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"


def features(a: int, b: int) -> dict[str, object]:
    cols = columns(a, b)
    carries = sum(1 for i in range(1, len(cols)) if cols[i][2]) + int((cols[-1][0] + cols[-1][1] + cols[-1][2]) >= 10)
    flaws = flaw_contexts(a, b)
    return {"last_digit": (a + b) % 10, "carries": carries, "len_a": len(str(a)), "len_b": len(str(b)),
            "answer_len": len(str(a + b)), "flaw_A": "A" in flaws, "flaw_B": "B" in flaws, "flaw_C": "C" in flaws,
            "any_flaw": bool(flaws)}


def test_train_and_heldout_agree_on_every_property_of_the_world():
    counts: dict[str, Counter] = {"train": Counter(), "test": Counter(), "ood": Counter()}
    sizes = Counter()
    for a in range(10, 1000):
        for b in range(10, 1000):
            s = split_of(a, b)
            sizes[s] += 1
            if s == "ood":
                assert (a + b) % 10 == 0
                continue
            assert (a + b) % 10 != 0
            for k, v in features(a, b).items():
                counts[s][(k, v)] += 1
    n = sum(sizes.values())
    assert n == 990 * 990
    assert abs(sizes["ood"] / n - 0.10) < 0.005             # answers ending in 0: the generalisation probe
    assert abs(sizes["test"] / (n - sizes["ood"]) - 0.10) < 0.005
    keys = set(counts["train"]) | set(counts["test"])
    gaps = {k: abs(counts["train"][k] / sizes["train"] - counts["test"][k] / sizes["test"]) for k in keys}
    worst = max(gaps, key=gaps.get)
    assert gaps[worst] <= 0.02, f"train and held-out differ on {worst}: {gaps[worst]:.4f}"
    # every property takes several values, so the comparison is not vacuous
    assert {k for k, _ in keys} == {"last_digit", "carries", "len_a", "len_b", "answer_len", "flaw_A", "flaw_B",
                                    "flaw_C", "any_flaw"}
    assert len({v for k, v in keys if k == "last_digit"}) == 9 and len({v for k, v in keys if k == "carries"}) == 4


def test_the_three_splits_are_disjoint_and_loadable():
    train = {p.id for p in load("train", size=3000)}
    test = {p.id for p in load("test", size=3000)}
    ood = load("ood", size=500)
    assert not train & test and not {p.id for p in ood} & (train | test)
    assert all(int(p.answer) % 10 == 0 for p in ood)
    assert any(int(p.answer) % 10 == 0 for p in ood) and not any(p.answer.endswith("0") for p in load("test", size=500))


@pytest.mark.parametrize("name", ["arith", "arith_2d", "arith_3d", "arith_hard", "arith_ood", "ladder_1", "ladder_2"])
def test_every_tiny_data_group_loads_both_splits(name):
    """Each shipped procedural group yields its train split and its val_size held-out problems (a size the
    split cannot hold fails here, not in the middle of a sweep)."""
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    group = load_group(cfg)
    assert len(group.train) > 100 and len(group.val) == cfg.val_size
    assert not {p.id for p in group.train} & {p.id for p in group.val}


def test_a_passrate_band_filters_the_train_split_only(tmp_path):
    cfg = OmegaConf.load(CONF / "arith_hard.yaml")
    plain = load_group(cfg)
    rates = {p.id: (0.25 if i % 3 == 0 else 0.0) for i, p in enumerate(plain.train)}
    (tmp_path / "rates.json").write_text(json.dumps(rates))
    cfg.passrate_band = {"rates_file": str(tmp_path / "rates.json"), "lo": 0.2, "hi": 0.625}
    banded = load_group(cfg)
    assert [p.id for p in banded.train] == [p.id for i, p in enumerate(plain.train) if i % 3 == 0]
    assert [p.id for p in banded.val] == [p.id for p in plain.val]

"""conf/data/*.yaml follow the data-group contract and their sources load."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rlkit.data.templates import TEMPLATES

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"
OURS = sorted(p for p in CONF.glob("*.yaml") if not p.name.startswith(("arith", "ladder")))  # (tiny world: test_tiny_world)
KEYS = {"name", "source", "train_split", "val_split", "val_size", "template", "correct"}
CORRECT = {"rlkit.rewards.kk.kk_is_correct", "rlkit.rewards.accuracy.is_correct"}


def test_expected_files() -> None:
    names = {p.stem for p in OURS}
    assert {"gsm8k", "math", "math_l3_5", "kk_logic_rl", "kk_mixed"} | {
        f"kk_{n}ppl" for n in range(2, 8)
    } <= names


@pytest.mark.parametrize("f", OURS, ids=lambda p: p.stem)
def test_schema(f: Path, data_dir: Path) -> None:
    assert f.read_text().splitlines()[0] == "# @package data"
    cfg = OmegaConf.merge({"paths": {"data": str(data_dir)}}, {"data": OmegaConf.load(f)}).data
    assert set(cfg) == KEYS and cfg.name == f.stem
    assert cfg.template in TEMPLATES and cfg.train_split == "train" and cfg.val_split == "test"
    assert cfg.correct._target_ in CORRECT and cfg.correct._partial_ is True
    raw = OmegaConf.to_container(OmegaConf.load(f), resolve=False)
    procedural = cfg.source._target_ == "rlkit.data.puzzles.kk"
    assert cfg.source._partial_ is True
    if not procedural:
        assert raw["source"]["path"].startswith("${paths.data}/")
    is_kk = procedural or cfg.source._target_ == "rlkit.data.files.kk_logic_rl"
    assert (cfg.correct._target_ == "rlkit.rewards.kk.kk_is_correct") == is_kk
    if not is_kk:
        assert cfg.correct.answer_from == ("boxed" if cfg.template == "r1_boxed" else "any")
    if procedural:
        assert cfg.source.test_size >= cfg.val_size
        cfg.source.size, cfg.source.test_size = 2, 2  # keep the test fast; full sizes timed by hand
    test = instantiate(cfg.source)(cfg.val_split)
    assert len(test) >= (2 if procedural else cfg.val_size)

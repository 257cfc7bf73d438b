"""File/hub loaders on the real shared data: row counts, literal gold answers, filters, path errors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from rlkit.data import files
from rlkit.data.files import gsm8k, kk_logic_rl, math
from rlkit.text import extract_boxed

KK_SIZES = [3, 4, 5, 6, 7]


@pytest.mark.parametrize(("split", "n"), [("train", 7473), ("test", 1319)])
def test_gsm8k_counts(data_dir: Path, split: str, n: int) -> None:
    ps = gsm8k(split, path=str(data_dir / "gsm8k"))
    assert len(ps) == n
    assert len({p.id for p in ps}) == n
    assert all(p.answer and "," not in p.answer for p in ps)


def test_gsm8k_gold(data_dir: Path) -> None:
    train = gsm8k("train", path=str(data_dir / "gsm8k"))
    assert train[0].question.startswith("Natalia sold clips to 48 of her friends")
    assert train[0].answer == "72"
    assert train[345].answer == "1080"  # "#### 1,080" in the file: commas stripped
    assert gsm8k("test", path=str(data_dir / "gsm8k"))[0].answer == "18"


@pytest.mark.parametrize(("split", "n"), [("train", 7500), ("test", 5000)])
def test_math_counts(data_dir: Path, split: str, n: int) -> None:
    ps = math(split, path=str(data_dir / "math"))
    assert len(ps) == n
    assert len({p.id for p in ps}) == n


def test_math_gold(data_dir: Path) -> None:
    train = {p.id: p for p in math("train", path=str(data_dir / "math"))}
    assert train["math/train/algebra/0"].answer == "0"
    assert train["math/train/algebra/0"].meta["level"] == 5
    assert train["math/train/algebra/0"].meta["type"] == "Algebra"
    assert train["math/train/algebra/24014"].answer == "2"  # brace-less "\boxed 2$."
    test = {p.id: p for p in math("test", path=str(data_dir / "math"))}
    assert test["math/test/algebra/1"].answer == "2"
    assert test["math/test/geometry/0"].answer == "\\frac34"


def test_math_filters(data_dir: Path) -> None:
    path = str(data_dir / "math")
    assert len(math("train", path=path, levels=[3, 4, 5])) == 5586
    assert len(math("test", path=path, levels=[3, 4, 5])) == 3669
    geo = math("train", path=path, types=["Geometry"])
    assert len(geo) == 870 and {p.meta["type"] for p in geo} == {"Geometry"}
    both = math("train", path=path, levels=[1], types=["Algebra", "Prealgebra"])
    assert both and all(p.meta["level"] == 1 and p.meta["type"] in ("Algebra", "Prealgebra") for p in both)
    with pytest.raises(ValueError, match="Algebr'"):
        math("train", path=path, types=["Algebr"])


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        ("so $x=\\boxed{1}$ and then $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("$\\boxed{\\{1,2\\}}$", "\\{1,2\\}"),
        ("$\\boxed{\\left\\{ x \\right.}$", "\\left\\{ x \\right."),
        ("old \\boxed{3} new \\fbox{4}", "4"),
        ("answer \\boxed 9$.", "9"),
        ("no box here", None),
        ("\\boxed{unbalanced", None),
        ("$\\boxed{ 5 }$", "5"),
    ],
)
def test_gold_boxed(text: str, gold: str | None) -> None:
    """MATH golds go through the same extractor as predictions, with the brace-less form allowed."""
    assert extract_boxed(text, bare=True) == gold


@pytest.mark.parametrize("n", KK_SIZES)
def test_kk_logic_rl_counts(data_dir: Path, n: int) -> None:
    for split, rows in (("train", 900), ("test", 100)):
        ps = kk_logic_rl(split, path=str(data_dir / "kk"), sizes=[n])
        assert len(ps) == rows and len({p.id for p in ps}) == rows
        assert all(p.meta["n_people"] == n and len(p.meta["solution"]) == n for p in ps)


def test_kk_logic_rl_gold_and_interleave(data_dir: Path) -> None:
    train = kk_logic_rl("train", path=str(data_dir / "kk"))
    assert len(train) == 4500
    first = train[0]
    assert first.id == "kk_logic_rl/3ppl/train/100"
    assert first.question.startswith("A very special island is inhabited only by knights and knaves.")
    assert first.answer == "(1) Michael is a knight\n(2) Zoey is a knight\n(3) Ethan is a knight"
    assert first.meta["names"] == ["Michael", "Zoey", "Ethan"] and first.meta["solution"] == [True] * 3
    assert first.meta["terms"] == ("knight", "knave")
    assert [p.meta["n_people"] for p in train[:10]] == KK_SIZES * 2  # round-robin over sizes
    test = {p.id: p for p in kk_logic_rl("test", path=str(data_dir / "kk"))}
    assert len(test) == 500
    p = test["kk_logic_rl/7ppl/test/1003"]
    assert p.meta["names"] == ["Alexander", "Avery", "Riley", "Chloe", "Jack", "Emily", "Jacob"]
    assert p.meta["solution"] == [True, False, False, False, True, False, True]
    assert p.answer.splitlines()[1] == "(2) Avery is a knave"


def test_bad_split(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="train, test"):
        gsm8k("validation", path=str(data_dir / "gsm8k"))


def test_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gsm8k"
    with pytest.raises(FileNotFoundError) as e:
        gsm8k("train", path=str(missing))
    msg = str(e.value)
    assert str(missing) in msg and "paths.data" in msg and "RLKIT_DATA_DIR" in msg
    with pytest.raises(FileNotFoundError, match="RLKIT_DATA_DIR"):
        kk_logic_rl("test", path=str(missing), sizes=[3])


def test_missing_split_file_in_existing_dir(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "x #### 1"}) + "\n")
    assert gsm8k("train", path=str(tmp_path))[0].answer == "1"
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        gsm8k("test", path=str(tmp_path))


def test_split_placeholder_and_single_file(tmp_path: Path) -> None:
    f = tmp_path / "g_test.jsonl"
    f.write_text(json.dumps({"question": "q", "answer": "#### 2,000"}) + "\n")
    assert gsm8k("test", path=str(tmp_path / "g_{split}.jsonl"))[0].answer == "2000"
    assert gsm8k("train", path=str(f))[0].answer == "2000"


def test_hub_name_without_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails even if installed
    with pytest.raises(ImportError, match="pip install datasets"):
        gsm8k("train", path="someone/gsm8k-copy")
    with pytest.raises(ImportError, match="pip install datasets"):
        math("train", path="someone/math-copy")


def test_hub_loading_with_fake_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(name, config=None, *, split, data_files=None):
        calls.append((name, config, split, data_files))
        if name.endswith("kk"):
            return [
                {
                    "quiz": "Q",
                    "names": ["A", "B"],
                    "solution": [True, False],
                    "solution_text_format": "(1) A is a knight\n(2) B is a knave",
                    "index": 7,
                }
            ]
        return [{"question": "What?", "answer": "work\n#### 1,234"}]

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert gsm8k("test", path="openai/gsm8k", hub_config="main")[0].answer == "1234"
    ps = kk_logic_rl("train", path="someone/kk", sizes=[2])
    assert ps[0].id == "kk_logic_rl/2ppl/train/7" and ps[0].meta["solution"] == [True, False]
    assert calls == [
        ("openai/gsm8k", "main", "test", None),
        ("someone/kk", None, "train", {"train": "2ppl/train.parquet"}),
    ]


def test_cached_but_fresh_list(data_dir: Path) -> None:
    a = files.gsm8k("test", path=str(data_dir / "gsm8k"))
    a.clear()
    assert len(files.gsm8k("test", path=str(data_dir / "gsm8k"))) == 1319

"""File and hub loaders: GSM8K, MATH and Logic-RL's Knights-and-Knaves parquet files -> `Problem` lists.

Every loader has the data-group source signature `source(split, *, path, ...)` (all but `split` bound in
YAML). `path` is a local directory (holding `{split}.jsonl` / `{N}ppl/{split}.parquet`), a local file
(optionally with a `{split}` placeholder), or a hub dataset name `owner/name` loaded with the optional
`datasets` package. Results are cached per argument set, so a curriculum or a val pass that asks for the
same split again does not re-parse the file; callers get a fresh list each time.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from rlkit.data.problem import Problem
from rlkit.text import extract_boxed

SPLITS = ("train", "test")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FIX_HINT = (
    "Set the data root with `paths.data=/dir/with/data` on the command line or the RLKIT_DATA_DIR "
    "environment variable, or give a hub dataset name such as `owner/name` (needs `pip install datasets`)."
)


# ----------------------------------------------------------------------------------------- locating
def check_split(split: str) -> str:
    """Only train/test exist in every source; failing early beats silently loading the wrong rows."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def _locate(path: str, rel: str, split: str) -> Path | str:
    """Return the local file for `split` (Path) or the hub name (str); raise FileNotFoundError otherwise.

    `rel` is the file below a directory `path`, e.g. "train.jsonl" or "3ppl/train.parquet".
    """
    path = str(path)
    if "{split}" in path:
        cand: Path | None = Path(path.replace("{split}", split)).expanduser()
    else:
        p = Path(path).expanduser()
        cand = p / rel if p.is_dir() else (p if p.is_file() else None)
    if cand is not None and cand.is_file():
        return cand
    if cand is not None and cand.parent.exists() and Path(path).expanduser().exists():
        # the dataset directory exists but this split's file is missing: a layout error, not a hub name
        raise FileNotFoundError(
            f"data file not found: {cand.resolve()} (split {split!r} of {path}). {_FIX_HINT}"
        )
    if _HUB_NAME.match(path) and not path.startswith((".", "~")):
        return path
    missing = (cand if cand is not None else Path(path).expanduser() / rel).resolve()
    raise FileNotFoundError(f"data not found: {missing} does not exist. {_FIX_HINT}")


def _hub_rows(name: str, split: str, *, config: str | None = None, data_files: Any = None) -> list[dict]:
    """Load one split of a hub dataset; `datasets` is imported lazily because it is an optional extra."""
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError as e:
        raise ImportError(
            f"{name!r} is not a local path ({Path(name).resolve()} does not exist), so it was read as a hub "
            f"dataset name, which needs the optional `datasets` package: pip install datasets. "
            f"For local files set `paths.data=...` or RLKIT_DATA_DIR instead."
        ) from e
    kwargs: dict[str, Any] = {"split": split}
    if data_files is not None:
        kwargs["data_files"] = data_files
    ds = datasets.load_dataset(name, config, **kwargs)
    return [dict(r) for r in ds]


def _read_jsonl(file: Path) -> list[dict]:
    with open(file, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _rows(path: str, split: str, suffix: str, hub_config: str | None) -> list[dict]:
    where = _locate(path, f"{split}{suffix}", split)
    if isinstance(where, Path):
        if where.suffix == ".parquet":
            import pandas as pd

            return pd.read_parquet(where).to_dict("records")
        return _read_jsonl(where)
    return _hub_rows(where, split, config=hub_config)


def _tuple(xs: Iterable[Any] | None) -> tuple | None:
    """Hydra hands ListConfig; lru_cache needs hashables."""
    return None if xs is None else tuple(xs)


# ---------------------------------------------------------------------------------------- GSM8K
def gsm8k_gold(answer: str) -> str:
    """GSM8K's gold number is the text after the last `#### `, with thousands separators removed."""
    if "####" not in answer:
        raise ValueError(f"GSM8K answer has no '####' marker: {answer[-80:]!r}")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


@lru_cache(maxsize=16)
def _gsm8k(split: str, path: str, hub_config: str | None) -> tuple[Problem, ...]:
    rows = _rows(path, split, ".jsonl", hub_config)
    return tuple(
        Problem(
            id=f"gsm8k/{split}/{i}",
            question=r["question"],
            answer=gsm8k_gold(r["answer"]),
            meta={"source": "gsm8k", "solution": r["answer"]},
        )
        for i, r in enumerate(rows)
    )


def gsm8k(split: str, *, path: str, hub_config: str | None = None) -> list[Problem]:
    """GSM8K (`question`, `answer` jsonl). For the hub copy use path=openai/gsm8k, hub_config=main."""
    return list(_gsm8k(check_split(split), str(path), hub_config))


# ----------------------------------------------------------------------------------------- MATH
def _level(v: Any) -> int | None:
    """ "Level 5" -> 5; MATH has two "Level ?" rows -> None (they never pass a level filter)."""
    if isinstance(v, int):
        return v
    m = re.search(r"\d+", str(v))
    return int(m.group(0)) if m else None


@lru_cache(maxsize=16)
def _math(
    split: str, path: str, levels: tuple | None, types: tuple | None, hub_config: str | None
) -> tuple[Problem, ...]:
    rows = _rows(path, split, ".jsonl", hub_config)
    if types is not None:
        present = {r.get("type") for r in rows}
        unknown = [t for t in types if t not in present]
        if unknown:
            raise ValueError(
                f"MATH types {unknown} not in {path} ({split}); available: {sorted(map(str, present))}"
            )
    out, no_box = [], 0
    for i, r in enumerate(rows):
        level = _level(r.get("level"))
        if levels is not None and level not in levels:
            continue
        if types is not None and r.get("type") not in types:
            continue
        gold = extract_boxed(r["solution"], bare=True)
        if gold is None:
            no_box += 1
            continue
        pid = r.get("id") or f"{r.get('type', 'unknown')}/{i}"
        out.append(
            Problem(
                id=f"math/{split}/{pid}",
                question=r["problem"],
                answer=gold,
                meta={"source": "math", "level": level, "type": r.get("type"), "solution": r["solution"]},
            )
        )
    if no_box:
        warnings.warn(f"MATH {path} ({split}): skipped {no_box} rows without a \\boxed answer", stacklevel=3)
    return tuple(out)


def math(
    split: str,
    *,
    path: str,
    levels: Sequence[int] | None = None,
    types: Sequence[str] | None = None,
    hub_config: str | None = None,
) -> list[Problem]:
    """MATH (`problem`, `level`, `type`, `solution`, `id` jsonl); gold = last boxed expression.

    `levels` (1..5) and `types` (exact names, e.g. "Counting & Probability") filter; a type absent from
    the data is an error because a typo would otherwise silently yield an empty data set.
    """
    lv = _tuple(levels)
    if lv is not None:
        lv = tuple(int(x) for x in lv)
    return list(_math(check_split(split), str(path), lv, _tuple(types), hub_config))


# ------------------------------------------------------------------------- Logic-RL Knights-and-Knaves
def _as_dict(v: Any) -> dict:
    return v if isinstance(v, dict) else dict(v)


def _kk_problem(r: dict, n: int, split: str, pos: int) -> Problem:
    names = [str(x) for x in r["names"]]
    solution = [bool(x) for x in r["solution"]]
    kk_terms = _as_dict(r.get("knight_knave") or {"knight": "knight", "knave": "knave"})
    answer = (
        r.get("solution_text_format") or _as_dict(r["reward_model"])["ground_truth"]["solution_text_format"]
    )
    idx = r.get("index", pos)
    return Problem(
        id=f"kk_logic_rl/{n}ppl/{split}/{idx}",
        question=str(r["quiz"]),
        answer=str(answer),
        meta={
            "source": "kk_logic_rl",
            "names": names,
            "solution": solution,
            "n_people": len(names),
            "terms": (str(kk_terms["knight"]), str(kk_terms["knave"])),
            "statements": str(r.get("statements", "")),
        },
    )


def _interleave(groups: Sequence[Sequence[Problem]]) -> list[Problem]:
    """Round-robin merge so the first N items (the val slice) cover every group evenly."""
    out: list[Problem] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


@lru_cache(maxsize=16)
def _kk_logic_rl(split: str, path: str, sizes: tuple[int, ...]) -> tuple[Problem, ...]:
    groups = []
    for n in sizes:
        rel = f"{n}ppl/{split}.parquet"
        where = _locate(path, rel, split)
        if isinstance(where, Path):
            import pandas as pd

            rows = pd.read_parquet(where).to_dict("records")
        else:
            rows = _hub_rows(where, split, data_files={split: rel})
        groups.append([_kk_problem(r, n, split, i) for i, r in enumerate(rows)])
    return tuple(_interleave(groups))


def kk_logic_rl(split: str, *, path: str, sizes: Sequence[int] = (3, 4, 5, 6, 7)) -> list[Problem]:
    """Logic-RL's K&K puzzles from `path/{N}ppl/{split}.parquet` (a hub repo with the same layout works).

    Sizes are interleaved round-robin (not concatenated) so `val_size` first items span all sizes;
    `meta["n_people"]` gives per-size accuracy.
    """
    sz = tuple(int(n) for n in sizes)
    if not sz:
        raise ValueError("kk_logic_rl: `sizes` is empty")
    return list(_kk_logic_rl(check_split(split), str(path), sz))

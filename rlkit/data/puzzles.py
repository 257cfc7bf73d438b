"""Procedural Knights-and-Knaves puzzles from reasoning-gym, in Logic-RL's answer format.

Why procedural: the curriculum that worked for small models (RESEARCH.md §1) starts on 2-person puzzles,
which Logic-RL's files do not have, and any size/depth can be made on demand.

Held-out guarantee (by construction): reasoning-gym seeds item `i` of a dataset with `Random(seed + i)`,
so datasets with nearby seeds share items. Each split therefore draws from its own index range of one
stream (test: `seed*10**9 + i`, train: `seed*10**9 + 5*10**8 + i`, disjoint for < 5*10**8 items), AND
the train split drops every puzzle whose question text occurs in the test split (and duplicates within a
split). Train generation therefore always generates the test split first (cached).

The question is reasoning-gym's text minus its trailing `(Format your answer like: "A is a x/y, ...")`
hint, which contradicts Logic-RL's numbered format; the templates ask for the format instead. Each item
keeps its own term pair (knight/knave, saint/sinner, altruist/egoist, ...): the answer is
"(1) Name is a saint\\n(2) Name is a sinner" and `meta["terms"] == ("saint", "sinner")`.

Speed: about 1 ms/item at 2 people, 4 ms at 5, 7 ms at 6, 15 ms at 7 (this machine); results are cached
per parameter set in memory and on disk ($RLKIT_CACHE_DIR/kk, keyed by the parameters and the
reasoning-gym version), so the jobs of a sweep generate each set once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rlkit.data.files import _interleave, check_split
from rlkit.data.problem import Problem

_STREAM = 10**9
_TRAIN_OFFSET = 5 * 10**8
_FORMAT_HINT = " (Format your answer like:"


def rg_seed(seed: int, split: str) -> int:
    """reasoning-gym base seed of a split: disjoint index ranges of one per-`seed` stream."""
    return seed * _STREAM + (_TRAIN_OFFSET if split == "train" else 0)


def render_answer(names: Sequence[str], solution: Sequence[bool], a_good: str, a_bad: str) -> str:
    """Logic-RL answer lines, e.g. "(1) Zoey is a knight\\n(2) Oliver is a knave"."""
    return "\n".join(
        f"({i}) {n} is {a_good if s else a_bad}"
        for i, (n, s) in enumerate(zip(names, solution, strict=True), 1)
    )


def _strip_hint(question: str) -> str:
    k = question.rfind(_FORMAT_HINT)
    return question[:k] if k >= 0 else question


def _gen(
    n: int, count: int, seed: int, split: str, depth: int, width: int, exclude: frozenset[str]
) -> list[Problem]:
    import reasoning_gym as rg

    base = rg_seed(seed, split)
    max_tries = 20 * count + 1000
    ds = rg.create_dataset(
        "knights_knaves",
        size=max_tries,
        seed=base,
        n_people=n,
        depth_constraint=depth,
        width_constraint=width,
    )
    out: list[Problem] = []
    seen: set[str] = set()
    idx = 0
    while len(out) < count:
        if idx >= max_tries:
            raise RuntimeError(
                f"kk: only {len(out)} distinct {n}-person puzzles after {max_tries} draws (wanted {count}); "
                "lower `size` or raise depth/width_constraint"
            )
        item = ds[idx]
        idx += 1
        q = _strip_hint(item["question"])
        if q in exclude or q in seen:
            continue
        seen.add(q)
        md = item["metadata"]
        t = md["knight_knave_terms"]
        names = [str(x) for x in md["names"]]
        solution = [bool(x) for x in md["solution"]]
        out.append(
            Problem(
                id=f"kk{n}ppl-d{depth}w{width}-s{seed}-{split}-{idx - 1}",
                question=q,
                answer=render_answer(names, solution, str(t["a_knight"]), str(t["a_knave"])),
                meta={
                    "source": "kk_procedural",
                    "names": names,
                    "solution": solution,
                    "n_people": n,
                    "terms": (str(t["knight"]), str(t["knave"])),
                    "statements": repr(md["statements"]),
                    "rg_seed": base,
                    "rg_index": idx - 1,
                },
            )
        )
    return out


def _spread(total: int, k: int) -> list[int]:
    """Even split of `total` over k sizes, the remainder going to the first sizes."""
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def _kk(
    split: str, ns: tuple[int, ...], size: int, test_size: int, seed: int, depth: int, width: int
) -> tuple[Problem, ...]:
    if split == "test":
        exclude: frozenset[str] = frozenset()
        total = test_size
    else:
        exclude = frozenset(p.question for p in _kk_cached("test", ns, size, test_size, seed, depth, width))
        total = size
    groups = [
        _gen(n, c, seed, split, depth, width, exclude)
        for n, c in zip(ns, _spread(total, len(ns)), strict=True)
        if c > 0
    ]
    return tuple(_interleave(groups))


def kk(
    split: str,
    *,
    n_people: int | Sequence[int],
    size: int,
    seed: int = 0,
    depth_constraint: int = 2,
    width_constraint: int = 2,
    test_size: int | None = None,
) -> list[Problem]:
    """`size` train puzzles (or `test_size`, default `size`, test puzzles) with `n_people` people.

    A list `n_people` spreads the items evenly over the sizes, interleaved round-robin so any prefix
    (the val slice) is balanced. Train and test are disjoint (see module docstring).
    """
    check_split(split)
    ns = (int(n_people),) if isinstance(n_people, int) else tuple(int(n) for n in n_people)
    if not ns or any(n < 2 for n in ns):
        raise ValueError(f"kk: n_people must be >= 2 (an int or a non-empty list), got {n_people!r}")
    test_n = int(size if test_size is None else test_size)
    if int(size) < 0 or test_n < 0:
        raise ValueError(f"kk: size/test_size must be >= 0, got {size}/{test_n}")
    return list(_kk_cached(split, ns, int(size), test_n, int(seed), int(depth_constraint), int(width_constraint)))


CACHE_VERSION = 1  # bump when generation changes what it produces


@lru_cache(maxsize=64)
def _kk_cached(split: str, *key) -> tuple[Problem, ...]:
    """_kk through an on-disk JSON cache under $RLKIT_CACHE_DIR/kk (6-7 people took 7-12 s per process,
    paid again by every job of a sweep), keyed by the parameters and the reasoning-gym version."""
    import hashlib
    import json
    import os
    from importlib.metadata import version

    from rlkit.paths import cache_root

    root = cache_root() / "kk"
    blob = json.dumps([CACHE_VERSION, version("reasoning-gym"), split, *key])
    path = root / f"{split}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
    try:
        rows = json.loads(path.read_text())
        return tuple(Problem(r["id"], r["question"], r["answer"], {**r["meta"], "terms": tuple(r["meta"]["terms"])})
                     for r in rows)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    out = _kk(split, *key)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps([{"id": p.id, "question": p.question, "answer": p.answer, "meta": p.meta}
                                   for p in out]))
        tmp.replace(path)  # atomic: parallel jobs never read a half-written file
    except OSError:
        pass  # a read-only cache costs time, not correctness
    return out

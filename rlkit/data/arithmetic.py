"""Procedural multi-digit addition: the task of the embedded tiny default.

Three disjoint splits by construction. `ood`: every pair whose answer ends in 0 — a labelled
generalisation probe (`eval=tiny_ood`) that no training problem, demonstration or held-out problem
touches. The rest is dealt by a keyed 64-bit hash of (a, b) (splitmix64's finaliser): about 10% `test`,
90% `train`, uncorrelated with everything the world is about — the answer's last digit, carries, flaw
contexts, operand and answer lengths (tests/data/test_split_balance.py) — so held-out accuracy measures
the task the model trains on.
`meta["flaws"]` names the flaw contexts of the warm-up teacher that fire on the problem (see
rlkit/models/teacher.py; defined here, where the data owns them), so accuracy can be broken down by how hard a problem is for the model.
"""
from __future__ import annotations

import random
from functools import lru_cache

from rlkit.data.problem import Problem

SPLIT_KEY = 0x2026_5EED_C0FF_EE01  # the split's key: a new key deals a new held-out set
_MASK = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: every input bit flips each output bit with probability about 1/2."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def split_of(a: int, b: int) -> str:
    """The fixed partition of the problem space: "ood" (answer ends in 0), else "test" (~10%) or "train"."""
    if (a + b) % 10 == 0:
        return "ood"
    return "test" if _mix64(((a << 32) | b) ^ SPLIT_KEY) % 10 == 0 else "train"


def is_heldout(a: int, b: int) -> bool:
    """Whether (a, b) is in the held-out `test` split."""
    return split_of(a, b) == "test"


def columns(a: int, b: int) -> list[tuple[int, int, int]]:
    """Right-to-left columns as (digit of a, digit of b, carry in)."""
    cols, carry = [], 0
    while a or b or carry:
        da, db = a % 10, b % 10
        if a == 0 and b == 0:
            break
        cols.append((da, db, carry))
        carry = (da + db + carry) // 10
        a, b = a // 10, b // 10
    return cols


def _flaw_at(col: int, da: int, db: int, carry: int) -> str | None:
    """The flaw context of column `col` (0 = ones) on the correct chain, if any (teacher.py's A/B/C/E)."""
    if not carry:
        return None
    if da + db == 9:
        return "C"
    if 6 <= da + db <= 8 and col == 1:
        return "A"
    if 6 <= da + db <= 8 and col == 2:
        return "B"
    if 6 <= da + db <= 8 and col >= 3:  # only 4+ digit operands (conf/model/tiny_ladder.yaml)
        return "E"
    return None


def flaw_count(a: int, b: int, kinds: tuple[str, ...] = ("A", "B", "C", "E")) -> int:
    """How many columns of a + b's correct chain are flaw contexts of these kinds (the ladder's rung)."""
    return sum(1 for i, (da, db, c) in enumerate(columns(a, b)) if _flaw_at(i, da, db, c) in kinds)


def flaw_contexts(a: int, b: int) -> list[str]:
    """Flaw contexts met on the correct chain of a + b (what greedy decoding would get wrong)."""
    found = [_flaw_at(i, da, db, c) for i, (da, db, c) in enumerate(columns(a, b))]
    return sorted({f for f in found if f})


def accuracy_by_context(correct: list[bool], problems: list[Problem]) -> dict[str, float]:
    """Accuracy per flaw context (`none`: problems without one); empty for problems without flaw tags."""
    by_ctx: dict[str, list[bool]] = {}
    for c, p in zip(correct, problems):
        for ctx in p.meta.get("flaws", None) or (["none"] if "flaws" in p.meta else []):
            by_ctx.setdefault(ctx, []).append(c)
    return {ctx: sum(cs) / len(cs) for ctx, cs in sorted(by_ctx.items())}


def question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def make_problem(a: int, b: int, flaw_fn=None) -> Problem:
    meta = {"a": a, "b": b}
    if flaw_fn is not None:
        meta["flaws"] = flaw_fn(a, b)
    return Problem(id=f"{a}+{b}", question=question(a, b), answer=str(a + b), meta=meta)


@lru_cache(maxsize=16)
def _draw(split: str, size: int, min_value: int, max_value: int, seed: int,
          flaw_counts: tuple[int, ...] | None = None, flaw_kinds: tuple[str, ...] = ("A", "B", "C", "E"),
          ) -> tuple[tuple[int, int], ...]:
    def wanted(a: int, b: int) -> bool:
        return split_of(a, b) == split and (flaw_counts is None or flaw_count(a, b, flaw_kinds) in flaw_counts)

    rng = random.Random(f"arith-{split}-{seed}")
    span = max_value - min_value + 1
    if span * span <= 4 * size:  # small space (e.g. 2-digit): enumerate, so asking for more than exists ends
        pairs = [(a, b) for a in range(min_value, max_value + 1) for b in range(min_value, max_value + 1)
                 if wanted(a, b)]
        rng.shuffle(pairs)
        return tuple(pairs[:size])
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    tries = 0
    while len(out) < size:
        a, b = rng.randint(min_value, max_value), rng.randint(min_value, max_value)
        tries += 1
        if wanted(a, b) and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
        elif tries > max(1_000_000, 50 * size):  # rare strata (a ladder rung: ~1e-3 of pairs) need ~1e5 tries
            raise ValueError(f"arithmetic: found only {len(out)} of {size} {split} problems in {min_value}..{max_value}"
                             f" with flaw_counts={list(flaw_counts or [])}; lower `size` or widen the range")
    return tuple(out)


def load(split: str, *, size: int = 20000, min_value: int = 10, max_value: int = 999, seed: int = 0,
         flaw_counts: list[int] | None = None, flaw_kinds: list[str] | None = None) -> list[Problem]:
    """`size` distinct problems of the split ("train", "test" or the "ood" probe), or all of them when the range holds
    fewer; deterministic in (split, size, seed). `flaw_counts` (e.g. [3]) keeps only problems whose
    correct chain meets that many flaw columns of `flaw_kinds` (default all): the rungs of the
    difficulty ladder (conf/data/ladder_*.yaml)."""
    if split not in ("train", "test", "ood"):
        raise ValueError(f"arithmetic split must be 'train', 'test' or 'ood', got {split!r}")
    kinds = tuple(sorted(flaw_kinds or ("A", "B", "C", "E")))
    if set(kinds) - {"A", "B", "C", "E"}:
        raise ValueError(f"arithmetic flaw_kinds {list(kinds)}: use A, B, C or E (rlkit/models/teacher.py)")
    counts = None if flaw_counts is None else tuple(sorted(int(k) for k in flaw_counts))
    pairs = _draw(split, size, min_value, max_value, seed, counts, kinds)
    return [make_problem(a, b, flaw_contexts) for a, b in pairs]

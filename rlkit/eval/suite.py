"""Eval suites (conf/eval/*.yaml): fixed problems, a correctness rule, decoding settings and a budget.

A suite names data groups (conf/data) whose held-out split it scores, how many problems of each (or a
committed id list, e.g. MATH-500), k samples per problem at a temperature/top-p (or greedy) and the
token budget. `run_suite` generates with the run's own engine (no second generation code), scores every
sample with the data group's correctness rule, and returns the metrics (rlkit/eval/metrics.py) and the
per-problem table that is saved as the artifact `eval/<suite>/step_<N:06d>.parquet` (one row per
problem and sample: problem_id, sample, correct, answer, length, truncated; docs/contracts.md).
Sampling runs under its own seed inside `torch.random.fork_rng`, so evaluating never changes training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from rlkit.data.problem import Problem
from rlkit.data.stream import DataGroup, bound
from rlkit.eval.metrics import suite_metrics
from rlkit.paths import eval_artifact
from rlkit.rewards.accuracy import extract_answer, same_answer
from rlkit.rollout.base import SamplingParams

COLUMNS = ["group", "problem_id", "sample", "correct", "answer", "length", "truncated", "formatted"]


@dataclass
class Suite:
    name: str
    groups: list[tuple[DataGroup, list[Problem]]]
    cfg: DictConfig

    @property
    def problems(self) -> int:
        return sum(len(p) for _, p in self.groups)


def load_suite(ev: DictConfig, root: DictConfig) -> Suite:
    """The suite's data groups and problems, read before any compute (a missing file fails here)."""
    from rlkit.config import load_group as group_config
    from rlkit.data.stream import load_group

    groups = []
    for name in ev.groups:
        dcfg = group_config("data", str(name), root)
        ids = _ids(ev.get("ids_file"))
        dcfg.val_size = int(ev.size) if ids is None and ev.get("size") is not None else 10**9  # null: all of it
        group = load_group(dcfg, need_train=False)
        problems = group.val if ids is None else _select(group.val, ids, ev.ids_file)
        groups.append((group, problems))
    return Suite(str(ev.name), groups, ev)


def _ids(path: str | None) -> list[str] | None:
    if not path:
        return None
    p = Path(path)
    if not p.is_absolute():
        p = Path(__file__).resolve().parents[2] / p
    return [line.strip() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _select(problems: list[Problem], ids: list[str], source: str) -> list[Problem]:
    by_id = {p.id: p for p in problems}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"eval ids file {source}: {len(missing)} ids not in the data (first: {missing[:3]})")
    return [by_id[i] for i in ids]


def save_table(table: pd.DataFrame, directory: str | Path, suite: str, step: int) -> Path:
    """The per-problem table as the artifact's file (its name from rlkit.paths.eval_artifact) in `directory`."""
    path = Path(directory) / Path(eval_artifact(suite, step)).name
    table.to_parquet(path, index=False)
    return path


def sampling(ev: DictConfig, budget: int) -> tuple[int, SamplingParams]:
    """(samples per problem, sampling params) of a suite; greedy means one sample."""
    max_tokens = int(ev.max_tokens) if ev.get("max_tokens") else budget
    if ev.greedy:
        return 1, SamplingParams(max_tokens, 1.0, 1.0, greedy=True)
    return int(ev.k), SamplingParams(max_tokens, float(ev.temperature), float(ev.top_p))


def decoding_params(ev: DictConfig, budget: int) -> dict[str, Any]:
    """What is written beside every number: decoding, k, budget, problems, seed."""
    k, params = sampling(ev, budget)
    return {"k": k, "greedy": bool(ev.greedy), "temperature": params.temperature, "top_p": params.top_p,
            "max_tokens": params.max_new_tokens, "seed": int(ev.seed), "groups": ",".join(map(str, ev.groups))}


@torch.no_grad()
def run_suite(suite: Suite, engine, prompt_ids, budget_of) -> tuple[dict[str, float], pd.DataFrame]:
    """Generate and score the suite; `prompt_ids(template, problems)` renders prompts the run's way and
    `budget_of(prompts)` is the run's response budget for them (as for val/acc)."""
    ev = suite.cfg
    answer_from = str(ev.get("answer_from") or "tag")
    formatted = bound(ev.format) if ev.get("format") else None
    rows: list[dict[str, Any]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(ev.seed))
        for group, problems in suite.groups:
            prompts = prompt_ids(group.template, problems)
            k, params = sampling(ev, budget_of(prompts))
            for i in range(0, len(prompts), 64):
                out = engine.generate(prompts[i:i + 64], k, params)
                lengths = out.lengths.tolist()
                for j, text in enumerate(out.texts):
                    p = problems[i + j // k]
                    rows.append({"group": group.name, "problem_id": p.id, "sample": j % k,
                                 "correct": bool(group.correct(text, p)),
                                 "answer": extract_answer(text, answer_from) or "",
                                 "length": int(lengths[j]), "truncated": bool(out.truncated[j]),
                                 "formatted": bool(formatted(text) > 0) if formatted else True})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return aggregate(table), table


def aggregate(table: pd.DataFrame) -> dict[str, float]:
    """The suite's metrics from its per-problem table (the saved artifact re-aggregates to the same)."""
    ordered = table.sort_values(["group", "problem_id", "sample"])
    keys = list(zip(ordered["group"].tolist(), ordered["problem_id"].tolist()))
    starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]] + [len(keys)]
    cols = {}  # per problem, its samples in order (one pass over plain lists: pandas' per-group slicing cost ~1 s)
    for c in ("correct", "answer", "length", "truncated", "formatted"):
        values = ordered[c].tolist()
        cols[c] = [values[a:b] for a, b in zip(starts, starts[1:])]
    answers = [[a or None for a in row] for row in cols["answer"]]
    return suite_metrics(cols["correct"], answers, cols["length"], cols["truncated"], cols["formatted"], same_answer)


def default_suite(root: DictConfig) -> DictConfig:
    """The eval config of a run (conf/eval, chosen with `eval=`), resolved."""
    return OmegaConf.create(OmegaConf.to_container(root.eval, resolve=True))

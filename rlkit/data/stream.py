"""The training prompt stream: which problems each step sees, with the curriculum stage by step.

The cursor (a seeded permutation per stage) is part of the checkpoint, so a resumed run sees exactly
the prompts it would have seen without the interruption.
"""
from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from hydra.utils import instantiate
from omegaconf import DictConfig

from rlkit.data.curriculum import Stage, stage_at
from rlkit.data.problem import Problem


@dataclass
class DataGroup:
    """A data group's problems and its correctness rule, loaded once."""

    name: str
    train: list[Problem]
    val: list[Problem]
    template: str
    correct: object  # Callable[[str, Problem], bool]


def load_group(cfg: DictConfig, need_train: bool = True) -> DataGroup:
    """Read the data files first, so a missing file fails before any model is built."""
    source = instantiate(cfg.source)
    val = source(split=cfg.val_split)[: cfg.val_size]
    train = source(split=cfg.train_split) if need_train else []
    band = cfg.get("passrate_band")
    if band and need_train:  # a pass-rate band over any group's train split (conf/arm/grpo_passrate_band.yaml)
        from rlkit.data.difficulty import band_filter, check_band, load_rates

        check_band(float(band.lo), float(band.hi))
        train = band_filter(train, load_rates(str(band.rates_file)), float(band.lo), float(band.hi))
    if need_train and not train:
        raise ValueError(f"data={cfg.name}: the {cfg.train_split!r} split is empty")
    if not val:
        raise ValueError(f"data={cfg.name}: the {cfg.val_split!r} split is empty")
    return DataGroup(cfg.name, train, val, cfg.template, bound(cfg.correct))


def bound(node: DictConfig) -> Callable:
    """`instantiate` of a `_partial_` node called once per completion (a correctness or format rule). Hydra
    1.3.8 re-authorises a partial's target on every call (~0.15 ms: ~0.3 s of a run's step-0 evaluation);
    the target was authorised by `instantiate` itself, so a plain Python function is bound once as a plain
    partial. Anything else (a class, a builtin) keeps Hydra's per-call checks."""
    fn = instantiate(node)
    if isinstance(fn, functools.partial) and type(fn) is not functools.partial and inspect.isfunction(fn.func):
        return functools.partial(fn.func, *fn.args, **fn.keywords)
    return fn


@dataclass
class PromptStream:
    """Samples `per_step` problems per step without replacement (reshuffled each pass)."""

    stages: list[tuple[DataGroup, int | None]]  # (group, steps or None = rest)
    per_step: int
    seed: int
    cursor: dict = field(default_factory=dict)  # stage index -> (epoch, position)
    _pass: tuple = field(default=(), repr=False, compare=False)  # ((stage, epoch, n), its shuffled order)

    def stage_at(self, step: int) -> int:
        return stage_at(step, [Stage(group.name, n) for group, n in self.stages])[0]

    def next(self, step: int) -> tuple[int, list[Problem]]:
        i = self.stage_at(step)
        pool = self.stages[i][0].train
        epoch, pos = self.cursor.get(i, (0, 0))
        out: list[Problem] = []
        while len(out) < self.per_step:
            order = self._order(i, epoch, len(pool))
            take = order[pos: pos + self.per_step - len(out)]
            out += [pool[j] for j in take]
            pos += len(take)
            if pos >= len(pool):
                epoch, pos = epoch + 1, 0
        self.cursor[i] = (epoch, pos)
        return i, out

    def _order(self, stage: int, epoch: int, n: int) -> list[int]:
        """The pass's shuffled order, kept until the pass ends (reshuffling 20k items cost ~10 ms a step)."""
        key = (stage, epoch, n)
        if not self._pass or self._pass[0] != key:
            order = list(range(n))
            random.Random(f"{self.seed}-{stage}-{epoch}").shuffle(order)
            self._pass = (key, order)
        return self._pass[1]


class RunData(NamedTuple):
    """A run's data: its groups in stage order, each stage's step count (None: the rest), the held-out groups."""

    groups: list[DataGroup]
    stage_steps: list[int | None]
    held_out: list[DataGroup]


def load_data(cfg: DictConfig, stages: list[DictConfig]) -> RunData:
    """Every data file a run reads, before compute; `stages` are the curriculum stages' data-group
    configs (rlkit.config.check_curriculum(cfg); empty without a curriculum).

    One group without a curriculum. With one, `val/acc` is still the run's `data` group, so the arms of
    a curriculum study (a schedule vs `data` mixed throughout) are scored on the same held-out set;
    each stage's group adds `val/<group>/acc`. Every caller of rlkit.train.train() starts here."""
    if not stages:
        group = load_group(cfg.data)
        return RunData([group], [None], [group])
    groups = [load_group(g) for g in stages]
    by_name = {g.name: g for g in groups}
    anchor = by_name.get(cfg.data.name) or load_group(cfg.data, need_train=False)
    held_out = [anchor] + [g for name, g in by_name.items() if name != anchor.name]
    return RunData(groups, [st.get("steps") for st in cfg.curriculum.stages], held_out)

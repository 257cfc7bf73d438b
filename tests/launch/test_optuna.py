"""rlkit's Optuna sweeper: search-space syntax, stale-trial retry, and a persistent study whose trials are
child MLflow runs of the sweep, continued by re-running the command in the same sweep dir."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from rlkit.launch.optuna_sweeper import (
    as_overrides,
    corners,
    distribution,
    retry_stale,
    search_space,
    split_arguments,
)
from tests.launch.checks import TINY, client, rlkit, sweep_runs


@pytest.mark.parametrize(("spec", "expected"), [
    ("tag(log, interval(1e-5, 3e-4))", FloatDistribution(1e-5, 3e-4, log=True)),
    ("interval(0.0, 0.01)", FloatDistribution(0.0, 0.01)),
    ("interval(2, 8)", FloatDistribution(2.0, 8.0)),  # Hydra intervals are continuous; ints: range or a mapping
    ("range(4, 17, 4)", IntDistribution(4, 16, step=4)),
    ("range(4, 16, 4)", IntDistribution(4, 12, step=4)),
    ("range(0.0, 1.0, 0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
    ("choice(grpo, rloo)", CategoricalDistribution(["grpo", "rloo"])),
    ("grpo,rloo", CategoricalDistribution(["grpo", "rloo"])),
    ({"low": 1e-5, "high": 1e-3, "log": True}, FloatDistribution(1e-5, 1e-3, log=True)),
    ({"low": 4, "high": 16, "step": 4}, IntDistribution(4, 16, step=4)),
    ({"choices": [0.0, 0.001]}, CategoricalDistribution([0.0, 0.001])),
])
def test_search_space_syntax(spec, expected):
    assert distribution("k", spec) == expected


def test_fixed_value_is_not_a_search_space():
    with pytest.raises(ValueError, match="not a search space"):
        distribution("trainer.lr", "0.001")


def test_command_line_sweeps_join_the_space_and_corners_span_it():
    fixed, sweeps = split_arguments(["trainer.steps=3", "algo=grpo,rloo"])
    space = search_space({"trainer.lr": "tag(log, interval(1e-5, 1e-3))"}, sweeps)
    assert fixed == ["trainer.steps=3"] and set(space) == {"trainer.lr", "algo"}
    assert [as_overrides(c) for c in corners(space)] == [["trainer.lr=1e-05", "algo=grpo"],
                                                          ["trainer.lr=0.001", "algo=rloo"]]


def test_stale_running_trials_are_asked_again(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    space = {"x": FloatDistribution(0, 1)}
    study = optuna.create_study(study_name="s", storage=storage)
    left = study.ask(space)  # a driver died while this trial's job ran
    study = optuna.load_study(study_name="s", storage=storage)
    assert retry_stale(study) == [left.number]
    again = study.ask(space)
    assert again.params == left.params and again.user_attrs["retry_of"] == left.number
    assert study.trials[left.number].state == optuna.trial.TrialState.FAIL


@pytest.mark.slow
def test_study_persists_and_trials_are_child_runs(tmp_path, tiny_path):
    args = ["+sweep=tune_lr_kl", "launcher=local_parallel", "trainer.steps=2", "trainer.eval_every=2", *TINY[:2],
            f"hydra.sweep.dir={tmp_path}/multirun", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"]
    r = rlkit("rlkit.run", [*args, "hydra.sweeper.n_trials=2"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = rlkit("rlkit.run", [*args, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1"], tmp_path)  # continue it
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name="tune_lr_kl", storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3 and all(0.0 <= t.value <= 1.0 for t in trials)
    [parent], children = sweep_runs(client(tmp_path), "tune_lr_kl")  # same sweep dir: same parent
    assert len(children) == 3 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {c.info.run_id for c in children}
    for t in trials:
        run = next(c for c in children if c.info.run_id == t.user_attrs["mlflow_run_id"])
        assert float(run.data.tags["override.trainer.lr"]) == pytest.approx(t.params["trainer.lr"])
        assert run.data.metrics["val/acc"] == pytest.approx(t.value)
    best = json.loads((tmp_path / "multirun" / "optuna_best.json").read_text())
    assert best["best_value"] == max(t.value for t in trials) and best["n_complete"] == 3

"""Shared assertions of the launch/resume tests: MLflow runs of a sweep and clean step histories."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from tests.conftest import DATA, REPO

# a job that takes seconds on the tiny model
TINY = ["trainer.prompts_per_step=4", "data.val_size=32", "trainer.threads=1"]
CORE = ("timing_s/step", "critic/score/mean", "response_length/mean", "actor/pg_loss")  # logged every step


def env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "RLKIT_CHECKPOINT_DIR": str(tmp / "ck"),
            "RLKIT_DATA_DIR": str(DATA)}


def rlkit(module: str, args: list[str], tmp: Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` from the repo root against tmp's MLflow store and checkpoints."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env(tmp), capture_output=True,
                          text=True, timeout=timeout, **kw)


def client(tmp: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp}/mlflow.db")


def sweep_runs(mc: MlflowClient, experiment: str) -> tuple[list, list]:
    """(parent runs, child runs) of an experiment."""
    exp = mc.get_experiment_by_name(experiment)
    runs = mc.search_runs([exp.experiment_id]) if exp else []
    return ([r for r in runs if r.data.tags.get("rlkit.role") == "parent"],
            [r for r in runs if r.data.tags.get("rlkit.role") != "parent"])


def assert_clean_history(mc: MlflowClient, run_id: str, steps: int, eval_every: int) -> None:
    """Exactly one value per step for every metric; every step 1..steps of the per-step metrics and
    every evaluation step of val/acc present (none lost to a kill, none logged twice by a resume)."""
    run = mc.get_run(run_id)
    for key in run.data.metrics:
        logged = [m.step for m in mc.get_metric_history(run_id, key)]
        assert len(logged) == len(set(logged)), f"{key} logged twice at a step: {sorted(logged)}"
    for key in CORE:
        assert sorted(m.step for m in mc.get_metric_history(run_id, key)) == list(range(1, steps + 1)), key
    evals = sorted({0, steps, *range(eval_every, steps + 1, eval_every)})
    assert sorted(m.step for m in mc.get_metric_history(run_id, "val/acc")) == evals


def checkpoint_step(ck: Path) -> int:
    """Loop index of the newest checkpoint of the only run key under `ck` (-1 if none yet)."""
    files = list(ck.glob("*/state.pt"))
    if not files:
        return -1
    try:
        return int(torch.load(files[0], map_location="cpu", weights_only=False)["step"])
    except Exception:  # replaced while reading
        return -1

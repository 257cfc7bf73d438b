"""Log synthetic sweeps into an MLflow store with the tags of docs/contracts.md (tests, benchmark, demos).

A sweep = one parent run (`rlkit.role=parent`, `sweep`, `sweep_id`) and child runs (`mlflow.parentRunId`,
`rlkit.role=child`, group tags, `seed`, `override.*`, `rlkit.status`), metrics logged with
`MlflowClient.log_batch` in chunks of at most 1000.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

BATCH = 1000
MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "running": None}


def experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name, artifact_location=artifact_location)


def parent_run(client: MlflowClient, experiment_id: str, sweep: str, sweep_id: str) -> str:
    run = client.create_run(experiment_id, run_name=f"{sweep}-{sweep_id}",
                            tags={"rlkit.role": "parent", "sweep": sweep, "sweep_id": sweep_id})
    return run.info.run_id


def _points(series) -> list[tuple[int, float]]:
    if isinstance(series, Mapping):
        return [(int(s), float(v)) for s, v in series.items()]
    pts = list(series)
    if pts and isinstance(pts[0], tuple | list):
        return [(int(s), float(v)) for s, v in pts]
    return [(i, float(v)) for i, v in enumerate(pts)]


def child_run(client: MlflowClient, experiment_id: str, *, parent_id: str | None, sweep: str, sweep_id: str,
              tags: Mapping[str, str], seed: int | str, series: Mapping[str, Sequence | Mapping],
              summary: Mapping[str, float] | None = None, status: str = "finished",
              set_status_tag: bool = True, start_time: int | None = None) -> str:
    """One job's run. `series`: key → values at steps 0,1,… or (step, value) pairs or {step: value}.
    `summary` metrics are logged at the last step. `status` goes to tag rlkit.status (unless
    `set_status_tag` is False) and to MLflow's status ("running" leaves the run RUNNING)."""
    all_tags = {"rlkit.role": "child", "sweep": sweep, "sweep_id": sweep_id, "seed": str(seed),
                "git_sha": "0" * 40, "git_dirty": "False", **{k: str(v) for k, v in tags.items()}}
    if parent_id:
        all_tags["mlflow.parentRunId"] = parent_id
    if set_status_tag:
        all_tags["rlkit.status"] = status
    run = client.create_run(experiment_id, tags=all_tags, start_time=start_time)
    rid = run.info.run_id
    ts = int(time.time() * 1000)
    metrics = [Metric(k, v, ts + s, s) for k, pts in series.items() for s, v in _points(pts)]
    last = max((m.step for m in metrics), default=0)
    metrics += [Metric(k, float(v), ts + last + 1, last) for k, v in (summary or {}).items()]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(rid, metrics=metrics[i:i + BATCH], synchronous=True)
    if MLFLOW_STATUS.get(status):
        client.set_terminated(rid, MLFLOW_STATUS[status])
    return rid


def tag(client: MlflowClient, run_id: str, **tags: str) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True)

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


def eval_artifact(client: MlflowClient, run_id: str, suite: str, step: int, problem_ids: Sequence[str],
                  correct, lengths=None, tmp_dir: str | None = None) -> str:
    """Log `eval/<suite>/step_<step:06d>.parquet` (the per-problem contract of docs/contracts.md) from a
    [problems, k] boolean array; answers are "" and nothing is truncated unless `lengths` says so."""
    import os
    import tempfile

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlkit.report.paired import artifact_path

    correct = np.asarray(correct, dtype=bool)
    P, k = correct.shape
    lengths = np.full((P, k), 100, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    table = pa.table({"problem_id": pa.array(np.repeat(np.asarray(problem_ids, dtype=object), k), pa.string()),
                      "sample": pa.array(np.tile(np.arange(k), P), pa.int64()),
                      "correct": pa.array(correct.ravel()), "answer": pa.array([""] * (P * k), pa.string()),
                      "length": pa.array(lengths.ravel()), "truncated": pa.array(np.zeros(P * k, dtype=bool))})
    rel = artifact_path(suite, step)
    d = tempfile.mkdtemp(dir=tmp_dir)
    path = os.path.join(d, os.path.basename(rel))
    pq.write_table(table, path)
    client.log_artifact(run_id, path, artifact_path=os.path.dirname(rel))
    os.remove(path)
    os.rmdir(d)
    return rel


def _sigmoid(x):
    import numpy as np

    return 1.0 / (1.0 + np.exp(-x))


class World:
    """A synthetic eval world with the structure of real sweeps: P problems whose difficulty (logit b_p ~
    N(0, sd_problem)) every arm shares, a seed effect per run (u ~ N(0, sd_seed)), a run × problem
    interaction (e ~ N(0, sd_interaction)), and k Bernoulli samples per problem with
    P(correct) = sigmoid(mu + arm_shift + u + b_p + e)."""

    def __init__(self, problems: int = 200, k: int = 4, mu: float = 0.0, sd_problem: float = 1.5,
                 sd_seed: float = 0.15, sd_interaction: float = 0.5):
        self.problems, self.k, self.mu = problems, k, mu
        self.sd_problem, self.sd_seed, self.sd_interaction = sd_problem, sd_seed, sd_interaction

    def difficulties(self, rng):
        return rng.normal(0.0, self.sd_problem, self.problems)

    def run(self, rng, b, shift: float = 0.0):
        """[problems, k] correct of one run."""
        u = rng.normal(0.0, self.sd_seed)
        e = rng.normal(0.0, self.sd_interaction, self.problems)
        p = _sigmoid(self.mu + shift + u + b + e)
        return rng.random((self.problems, self.k)) < p[:, None]

    def expected_acc(self, shift: float = 0.0) -> float:
        """Population accuracy (over problems, seeds, interactions) at a logit shift: Gauss–Hermite."""
        import numpy as np

        z, w = np.polynomial.hermite_e.hermegauss(80)
        sd = float(np.sqrt(self.sd_problem ** 2 + self.sd_seed ** 2 + self.sd_interaction ** 2))
        return float((w * _sigmoid(self.mu + shift + sd * z)).sum() / w.sum())

    def shift_for(self, delta_acc: float) -> float:
        """The logit shift that raises population accuracy by delta_acc."""
        from scipy.optimize import brentq

        base = self.expected_acc(0.0)
        return float(brentq(lambda s: self.expected_acc(s) - base - delta_acc, -10, 10))


def world_sweep(client: MlflowClient, name: str, world: World, rng, *, arms: int = 4, seeds: int = 3,
                shifts: Sequence[float] | None = None, suite: str = "test", step: int = 100,
                artifact_location: str | None = None) -> str:
    """One sweep of `arms` arms (algo=a0 the baseline, a1, …) × `seeds` runs in `world`, each run logging
    its per-problem artifact at `step` and the run-level `eval/<suite>/avg_<k>` (avg@k as MLflow stores it) at
    steps 0 and `step`."""
    import numpy as np

    shifts = list(shifts) if shifts is not None else [0.0] * arms
    exp = experiment(client, name, artifact_location=artifact_location)
    parent = parent_run(client, exp, name, name)
    b = world.difficulties(rng)
    ids = [f"p{i:04d}" for i in range(world.problems)]
    for a in range(arms):
        for s in range(seeds):
            correct = world.run(rng, b, shifts[a])
            acc = float(correct.mean())
            rid = child_run(client, exp, parent_id=parent, sweep=name, sweep_id=name, tags={"algo": f"a{a}"},
                            seed=s, series={f"eval/{suite}/avg_{world.k}": {0: float(np.nan_to_num(acc * 0.5)),
                                                                            step: acc}})
            eval_artifact(client, rid, suite, step, ids, correct)
    client.set_terminated(parent)
    return name

"""rlkit.status's view of a job: rlkit's own records first (SLURM says COMPLETED when Python raised inside
Hydra), then SLURM or the local process table for jobs that died without a word."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from rlkit.launch.status import job_state, varying

HERE, DEAD = socket.gethostname(), 2**22 + 12345  # a pid beyond the default pid_max: never alive


@pytest.mark.parametrize(("status", "tags", "slurm", "local_pid", "expected"), [
    ({"state": "failed"}, {}, "COMPLETED", None, "failed"),            # raised inside Hydra: SLURM says COMPLETED
    ({"state": "finished"}, {}, "COMPLETED", None, "finished"),
    ({"state": "running"}, {}, "RUNNING", None, "running"),
    ({"state": "running"}, {}, "CANCELLED", None, "killed"),           # scancel: SIGKILL after KillWait
    ({"state": "running"}, {}, "PENDING", None, "requeued"),           # USR2 -> submitit requeued it
    ({"state": "killed"}, {}, "REQUEUED", None, "requeued"),
    ({}, {}, "PENDING", None, "pending"),
    ({}, {}, "COMPLETED", None, "failed"),                             # ended before rlkit recorded anything
    ({}, {}, "CANCELLED", None, "killed"),
    ({"state": "running", "host": HERE, "pid": os.getpid()}, {}, None, None, "running"),
    ({"state": "running", "host": HERE, "pid": DEAD}, {}, None, None, "killed"),  # SIGKILL between checkpoints
    ({"state": "running", "host": "elsewhere", "pid": DEAD}, {}, None, None, "running"),
    ({}, {"rlkit.status": "failed"}, None, None, "failed"),             # no status.json: MLflow's tag
    ({}, {}, None, str(os.getpid()), "running"),                       # local_parallel job starting up
    ({}, {}, None, None, "pending"),
])
def test_job_state(status, tags, slurm, local_pid, expected):
    assert job_state(status, tags, slurm, local_pid) == expected


def test_only_the_overrides_that_differ_are_shown():
    rows = [{"overrides": ["algo=grpo", "seed=0", "trainer.steps=3"]},
            {"overrides": ["algo=ppo", "seed=0", "trainer.steps=3"]}]
    assert varying(rows) == ["algo"]


def test_status_and_report_pick_the_same_sweep(tmp_path):
    """One lookup rule: an experiment named like the target wins over a newer run tagged sweep_id=<target>."""
    from mlflow import MlflowClient

    from rlkit.launch.status import find_sweep
    from rlkit.report.collect import find_sweep as report_sweep

    uri = f"sqlite:///{tmp_path}/m.db"
    mc = MlflowClient(uri)
    for exp, sweep_id, sweep_dir in (("abl", "s1", "/sweeps/abl"), ("other", "abl", "/sweeps/other")):
        eid = mc.create_experiment(exp)
        mc.create_run(eid, tags={"rlkit.role": "parent", "sweep": exp, "sweep_id": sweep_id, "sweep_dir": sweep_dir})
        mc.create_run(eid, tags={"rlkit.role": "child", "sweep": exp, "sweep_id": sweep_id})
    chosen = report_sweep(mc, "abl")
    assert chosen.sweep_id == "s1"
    assert find_sweep("abl", uri) == Path("/sweeps/abl")  # the old status rule took the sweep_id match first

"""rlkit.status's view of a job: rlkit's own records first (SLURM says COMPLETED when Python raised inside
Hydra), then SLURM or the local process table for jobs that died without a word."""
from __future__ import annotations

import os
import socket

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

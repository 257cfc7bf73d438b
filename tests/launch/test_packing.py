"""launcher=local_parallel packs several runs on one multi-GPU machine: each job gets its own devices
(CUDA_VISIBLE_DEVICES, model.resources.gpus_per_node of them), never a device another running job holds,
and waits for devices when all are taken. On this CPU machine `hydra.launcher.devices=3` stands in for
three GPUs; real job processes (submitit's local executor) record the environment they saw and when."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
from hydra._internal.callbacks import Callbacks
from hydra.core.utils import JobStatus
from hydra.types import HydraContext

from rlkit.config import ConfigError
from rlkit.launch.launchers import device_pool, read_jobs, take_devices
from tests.launch.test_launchers import launcher_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the task function runs in the job processes
NEEDS = [2, 1, 1, 2, 1]  # devices per job, in sweep order


def record_environment(cfg) -> float:
    """The job: what it was given, and when it ran (long enough that the scheduler sees it running)."""
    start = time.time()
    time.sleep(2.0)
    Path(os.environ["PACK_OUT"], f"{cfg.model.resources.gpus_per_node}_{cfg.trainer.steps}.json").write_text(
        json.dumps({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}))
    return 0.0


def test_jobs_get_their_own_devices_and_wait_for_free_ones(tmp_path, monkeypatch):
    # trainer.steps tells the jobs apart (1..5) and fixes the sweep order together with the zip below
    overrides = ["launcher=local_parallel", "seed=0", "hydra.launcher.devices=3", "hydra.launcher.timeout_min=5"]
    launcher, _ = launcher_for(overrides, tmp_path)
    launcher.task_function = record_environment
    launcher.hydra_context = HydraContext(config_loader=launcher.hydra_context.config_loader, callbacks=Callbacks())
    jobs = [["launcher=local_parallel", f"model.resources.gpus_per_node={n}", f"trainer.steps={k + 1}", "seed=0"]
            for k, n in enumerate(NEEDS)]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))  # CPU slots are not the limit here
    monkeypatch.setenv("PACK_OUT", str(tmp_path))
    t0 = time.time()
    returns = launcher.launch(jobs, initial_job_idx=0)
    assert [r.status for r in returns] == [JobStatus.COMPLETED] * 5, [r.return_value for r in returns if r.status]
    seen = [json.loads((tmp_path / f"{n}_{k + 1}.json").read_text()) for k, n in enumerate(NEEDS)]
    given = [j["devices"] for j in read_jobs(tmp_path)]
    for saw, got, need in zip(seen, given, NEEDS):
        assert saw["cuda"] == ",".join(map(str, got)) and len(got) == need  # the job sees exactly its devices
    for a in range(5):
        for b in range(a + 1, 5):
            overlap = seen[a]["start"] < seen[b]["end"] and seen[b]["start"] < seen[a]["end"]
            assert not (overlap and set(given[a]) & set(given[b])), (a, b, given)  # never two jobs on a device
    starts = [s["start"] for s in seen]
    assert starts == sorted(starts)  # in sweep order
    assert given[:2] == [[0, 1], [2]]  # job 0 takes 2 of the 3 devices, job 1 the last one
    assert seen[2]["start"] >= min(seen[0]["end"], seen[1]["end"]) - 0.05  # job 2 waited for one to end
    print(f"5 jobs on 3 devices: {time.time() - t0:.1f} s; devices {given}")


def test_device_pool_and_take():
    assert device_pool(3) == [0, 1, 2] and device_pool([4, 6]) == [4, 6] and device_pool(None, needed=False) == []
    with pytest.raises(ConfigError, match="hydra.launcher.devices"):
        device_pool([1, 1])
    assert take_devices([0, 1, 2, 3], [[1], [2]], 2) == [0, 3]
    assert take_devices([0, 1, 2, 3], [[0, 1, 2]], 2) is None
    assert take_devices([0, 1], [], 0) == []


def test_a_job_needing_more_devices_than_the_machine_has_fails_before_any_starts(tmp_path):
    lp = ["launcher=local_parallel", "seed=0"]
    launcher, _ = launcher_for([*lp, "hydra.launcher.devices=2"], tmp_path)
    with pytest.raises(ConfigError, match="needs 4 devices .* has 2"):
        launcher.launch([[*lp, "model.resources.gpus_per_node=1"], [*lp, "model.resources.gpus_per_node=4"]], 0)
    assert read_jobs(tmp_path) == []

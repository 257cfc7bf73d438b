"""rlkit's submitit launchers without a cluster (submitit's executor replaced by a recorder): SLURM jobs
whose resources differ go to separate arrays, job ids are recorded as submitted, a job that ends without
a result is a failed JobReturn; local_parallel keeps at most cores // cpus_per_task jobs running."""
from __future__ import annotations

import os

import pytest
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext

from rlkit.launch.launchers import read_jobs
from rlkit.launch.submit import compose_multirun
from rlkit.launch.sweep import config_loader, job_overrides


class FakeJob:
    def __init__(self, job_id: str, polls: int = 0, fail: bool = False) -> None:
        self.job_id, self.polls, self.fail = job_id, polls, fail

    def done(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def results(self):
        if self.fail:
            raise RuntimeError("Job 7_1 has not produced any output (state: CANCELLED by 0)")
        return [JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)]

    def cancel(self) -> None:
        pass


def launcher_for(overrides: list[str], tmp_path):
    import hydra_plugins.rlkit_plugins as plugins  # on sys.path once rlkit.launch is imported

    cfg = compose_multirun([*overrides, f"hydra.sweep.dir={tmp_path}"])
    for cls in (plugins.RlkitSlurmLauncher, plugins.RlkitLocalLauncher):
        Plugins.instance().register(cls)  # in case Hydra scanned plugins before rlkit.launch was imported
    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=HydraContext(config_loader=config_loader(), callbacks=None), task_function=lambda c: 0.0,
        config=cfg)
    return launcher, job_overrides(cfg)


def test_slurm_arrays_per_resource_shape(tmp_path, monkeypatch):
    launcher, jobs = launcher_for(["launcher=slurm", "model.resources.cpus_per_task=1,2", "seed=0,1"], tmp_path)
    arrays = []

    class Executor:
        def __init__(self, params):
            self.params = params

        def map_array(self, fn, *args):
            arrays.append((self.params, list(args[2])))
            return [FakeJob(f"{len(arrays)}_{i}", fail=(len(arrays), i) == (2, 1)) for i in range(len(args[0]))]

    monkeypatch.setattr(type(launcher), "_executor", lambda self, params: Executor(params))
    returns = launcher.launch(jobs, initial_job_idx=0)
    # jobs: seed is the outer loop (the root config's default seeds come first in hydra.sweeper.params)
    assert [(p["cpus_per_task"], nums) for p, nums in arrays] == [(1, [0, 2]), (2, [1, 3])]
    assert all("gpus_per_node" not in p and p["tasks_per_node"] == 1 and p["mem_gb"] == 4 and p["max_num_timeout"] == 30
               for p, _ in arrays)  # tiny: no GPU, one process
    assert [j["job_id"] for j in read_jobs(tmp_path)] == ["1_0", "1_1", "2_0", "2_1"]
    assert [r.status for r in returns] == [JobStatus.COMPLETED] * 3 + [JobStatus.FAILED]  # the others still count
    with pytest.raises(RuntimeError, match="CANCELLED"):
        _ = returns[3].return_value


def test_local_parallel_caps_running_jobs(tmp_path, monkeypatch):
    launcher, jobs = launcher_for(["launcher=local_parallel", "seed=0,1,2,3,4"], tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    running, peak, threads = [], [0], []

    class Executor:
        def update_parameters(self, **kw):
            assert kw == {"gpus_per_node": 0, "visible_gpus": ()}  # tiny: no device, CUDA_VISIBLE_DEVICES=""

        def submit(self, fn, *args):
            running[:] = [j for j in running if j.polls >= 0]
            job = FakeJob(str(100 + len(threads)), polls=1)
            running.append(job)
            peak[0] = max(peak[0], len(running))
            threads.append(os.environ["RLKIT_THREADS"])
            return job

    monkeypatch.setattr(type(launcher), "_executor", lambda self, params: Executor())
    returns = launcher.launch(jobs, initial_job_idx=0)
    assert len(returns) == 5 and all(r.status == JobStatus.COMPLETED for r in returns)
    assert peak[0] == 2 and threads == ["1"] * 5  # 2 cores // 1 thread per job
    assert [j["job_num"] for j in read_jobs(tmp_path)] == [0, 1, 2, 3, 4]


def test_slurm_resources_come_from_each_jobs_model_preset(tmp_path):
    launcher, jobs = launcher_for(["launcher=slurm", "model=qwen2.5-1.5b,qwen2.5-7b", "seed=0"], tmp_path)
    shapes = [launcher._job_params(ov) for ov in jobs]
    assert [(p["gpus_per_node"], p["tasks_per_node"]) for p in shapes] == [(2, 2), (8, 8)]  # one task per GPU
    assert shapes[0]["cpus_per_task"] != shapes[1]["cpus_per_task"] or shapes[0]["mem_gb"] != shapes[1]["mem_gb"]

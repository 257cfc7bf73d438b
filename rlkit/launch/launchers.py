"""rlkit's submitit launchers (conf/launcher/local_parallel.yaml, conf/launcher/slurm.yaml).

Both extend hydra-submitit-launcher's launchers (same config keys, same checkpointable job function,
so a SLURM requeue reruns the job with the same overrides and rlkit resumes it from its checkpoint):

- every job's id is appended to `<sweep dir>/rlkit_jobs.jsonl` the moment it is submitted (what
  `python -m rlkit.submit` prints and `python -m rlkit.status` reads);
- a job that ends without a result (scancel, node failure, time limit without requeue) comes back
  as a FAILED JobReturn instead of aborting the wait for the others;
- SLURM: resources are resolved per job (`hydra.launcher.*` interpolates `model.resources.*`), and
  jobs needing different resources (a model-size sweep) go to separate job arrays;
- local: at most `cores // hydra.launcher.cpus_per_task` jobs run at once, each with
  `RLKIT_THREADS=cpus_per_task` torch threads and its own devices (CUDA_VISIBLE_DEVICES: its
  model.resources.gpus_per_node ids out of `hydra.launcher.devices`, never shared; a job waits for them).

The Hydra plugin classes are thin subclasses in rlkit/launch/plugins/hydra_plugins/rlkit_plugins.py.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

JOBS_FILE = "rlkit_jobs.jsonl"


def read_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Submitted jobs of a sweep, in submission order (a requeued SLURM job keeps its id)."""
    f = Path(sweep_dir) / JOBS_FILE
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def _record(sweep_dir: Path, launcher: str, job_num: int, job_id: str, overrides: Sequence[str],
            devices: Sequence[int] | None = None) -> None:
    row = {"job_num": job_num, "job_id": str(job_id), "launcher": launcher, "overrides": list(overrides),
           "submitted": time.time()}
    if devices is not None:
        row["devices"] = list(devices)
    with open(sweep_dir / JOBS_FILE, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def _failed(overrides: Sequence[str], error: BaseException) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret.return_value = error
    return ret


class _SubmititMixin:
    """Shared by both launchers; mixed into hydra-submitit-launcher's BaseSubmititLauncher subclasses."""

    _EXECUTOR: str
    params: dict[str, Any]

    def _executor(self, params: dict[str, Any]):
        """submitit executor for `params` (hydra.launcher keys), as BaseSubmititLauncher.launch builds it."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        init: dict[str, Any] = {"folder": params["submitit_folder"]}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params["max_num_timeout"]
        ex = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        ex.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items()
                                if k not in ("submitit_folder", "max_num_timeout")})
        return ex

    def _job_args(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[tuple]:
        import sys

        import cloudpickle
        from hydra.core.singleton import Singleton

        # the plugin class lives in a directory only the driver has on sys.path: send it by value
        cloudpickle.register_pickle_by_value(sys.modules[type(self).__module__])

        return [(list(ov), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}",
                 Singleton.get_state()) for i, ov in enumerate(job_overrides)]

    def _launcher_params(self, overrides: Sequence[str]) -> dict[str, Any]:
        """hydra.launcher resolved in the job's own config (so model.resources of its model apply)."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))  # type: ignore[attr-defined]
        params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        params.pop("_target_", None)
        return params

    def _sweep_dir(self) -> Path:
        d = Path(str(self.config.hydra.sweep.dir))  # type: ignore[attr-defined]
        d.mkdir(parents=True, exist_ok=True)
        return d

    @staticmethod
    def _collect(jobs: list, job_overrides: Sequence[Sequence[str]]) -> list[JobReturn]:
        out = []
        for job, ov in zip(jobs, job_overrides):
            try:
                out.append(job.results()[0])
            except Exception as e:  # cancelled, killed, timed out without requeue: the others still count
                log.error(f"job {job.job_id} ({' '.join(ov)}) ended without a result: {str(e)[:500]}")
                out.append(_failed(ov, e))
        return out


class SlurmMixin(_SubmititMixin):
    _EXECUTOR = "slurm"

    def _job_params(self, overrides: Sequence[str]) -> dict[str, Any]:
        """The job's hydra.launcher with SLURM's conventions: one task per GPU, no zero-GPU request."""
        params = self._launcher_params(overrides)
        params["tasks_per_node"] = max(1, int(params.get("tasks_per_node") or 1))  # = GPUs per node, 1 on CPU
        if not params.get("gpus_per_node"):  # --gpus-per-node=0 is rejected by clusters without GPU GRES
            params.pop("gpus_per_node", None)
        return {k: v for k, v in params.items() if v is not None}

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        sweep_dir = self._sweep_dir()
        args = self._job_args(job_overrides, initial_job_idx)
        arrays: dict[str, tuple[dict, list[int]]] = {}
        for i, ov in enumerate(job_overrides):
            params = self._job_params(ov)
            arrays.setdefault(json.dumps(params, sort_keys=True, default=str), (params, []))[1].append(i)
        jobs: list = [None] * len(job_overrides)
        for params, idxs in arrays.values():
            submitted = self._executor(params).map_array(self, *zip(*[args[i] for i in idxs]))
            for i, job in zip(idxs, submitted):
                jobs[i] = job
                _record(sweep_dir, "slurm", initial_job_idx + i, job.job_id, job_overrides[i])
                log.info(f"\t#{initial_job_idx + i} slurm job {job.job_id}: {' '.join(job_overrides[i])}")
            log.info(f"submitted {len(idxs)} jobs with {params.get('gpus_per_node', 0)} GPUs, "
                     f"{params.get('cpus_per_task')} CPUs, {params.get('mem_gb')} GB, {params.get('timeout_min')} min")
        return self._collect(jobs, job_overrides)


class LocalParallelMixin(_SubmititMixin):
    """Jobs on this machine, each with its own devices: a job asks for `hydra.launcher.gpus_per_node`
    (= its model.resources.gpus_per_node) and is started with CUDA_VISIBLE_DEVICES set to that many ids
    from `hydra.launcher.devices` that no running job holds. Jobs start in sweep order: the next job waits
    (and the ones after it) until enough devices and a CPU slot are free, so no device is ever shared."""

    _EXECUTOR = "local"

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        sweep_dir = self._sweep_dir()
        threads = max(1, int(self.params.get("cpus_per_task") or 1))
        parallel = max(1, len(os.sched_getaffinity(0)) // threads)
        base = {k: v for k, v in self.params.items() if k not in ("devices", "gpus_per_node")}
        needs = [int(self._launcher_params(ov).get("gpus_per_node") or 0) for ov in job_overrides]
        pool = device_pool(self.params.get("devices"), needed=max(needs, default=0) > 0)
        for ov, need in zip(job_overrides, needs):
            if need > len(pool):
                from rlkit.config import ConfigError

                raise ConfigError(f"job {' '.join(ov)} needs {need} devices (model.resources.gpus_per_node) but "
                                  f"launcher=local_parallel has {len(pool)}: {pool} (hydra.launcher.devices)")
        executor = self._executor(base)
        args = self._job_args(job_overrides, initial_job_idx)
        log.info(f"running {len(args)} jobs, {parallel} at a time with {threads} thread(s) each, devices {pool}")
        jobs: list = [None] * len(args)
        held: dict[int, list[int]] = {}  # running job -> its devices
        pending, running = list(range(len(args))), []
        old = os.environ.get("RLKIT_THREADS")
        os.environ["RLKIT_THREADS"] = str(threads)  # inherited by the job processes; trainer.threads wins
        try:
            while pending or running:
                running = [i for i in running if not jobs[i].done()]
                held = {i: held[i] for i in running if i in held}
                while pending and len(running) < parallel:
                    i = pending[0]
                    devices = take_devices(pool, held.values(), needs[i])
                    if devices is None:
                        break  # wait for a running job to give devices back
                    pending.pop(0)
                    set_devices(executor, devices)
                    jobs[i] = executor.submit(self, *args[i])  # CUDA_VISIBLE_DEVICES=<devices> in its process
                    running.append(i)
                    held[i] = devices
                    _record(sweep_dir, "local", initial_job_idx + i, jobs[i].job_id, job_overrides[i], devices)
                    log.info(f"\t#{initial_job_idx + i} pid {jobs[i].job_id} devices {devices}: {' '.join(job_overrides[i])}")
                time.sleep(0.5)
        except BaseException:
            for i in running:
                jobs[i].cancel()
            raise
        finally:
            if old is None:
                os.environ.pop("RLKIT_THREADS", None)
            else:
                os.environ["RLKIT_THREADS"] = old
        return self._collect(jobs, job_overrides)


def set_devices(executor, devices: list[int]) -> None:
    """The devices of the next submitted job: submitit's LocalExecutor exports CUDA_VISIBLE_DEVICES from
    `visible_gpus[:gpus_per_node]` (AutoExecutor does not pass `visible_gpus` through, hence its inner executor)."""
    inner = getattr(executor, "_executor", executor)
    inner.update_parameters(gpus_per_node=len(devices), visible_gpus=tuple(devices))


def device_pool(devices: Any, needed: bool = True) -> list[int]:
    """The device ids local jobs share: a list as given, an int N as 0..N-1, None as every GPU torch sees
    (torch is imported only when some job needs a device)."""
    if devices is None:
        if not needed:
            return []
        import torch

        return list(range(torch.cuda.device_count()))
    if isinstance(devices, int) and not isinstance(devices, bool):
        return list(range(devices))
    if isinstance(devices, (list, tuple)) and all(isinstance(d, int) for d in devices) and len(set(devices)) == len(devices):
        return list(devices)
    from rlkit.config import ConfigError

    raise ConfigError(f"hydra.launcher.devices={devices!r}: a device count, a list of distinct device ids, or null")


def take_devices(pool: list[int], held, need: int) -> list[int] | None:
    """The `need` lowest free ids of `pool` (none held by a running job), or None if too few are free."""
    busy = {d for ds in held for d in ds}
    free = [d for d in pool if d not in busy]
    return free[:need] if len(free) >= need else None

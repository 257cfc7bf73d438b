"""Hydra callback: check the sweep, then one parent MLflow run per multirun, before any job starts.

The parent's id and the sweep id go to `<sweep dir>/rlkit_sweep.json`, which every job (local, a
local_parallel subprocess, or a SLURM node sharing the filesystem) reads to attach its child run,
and which `python -m rlkit.status` reads back (with the jobs' overrides and the checkpoint root).
Re-running a multirun in the same sweep dir (`python -m rlkit.submit --resume <dir>`) keeps its
parent and sweep id: finished jobs are skipped, killed ones resume from their checkpoints.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

SWEEP_FILE = "rlkit_sweep.json"


def read_sweep_info(sweep_dir: str | Path) -> dict[str, Any] | None:
    f = Path(sweep_dir) / SWEEP_FILE
    return json.loads(f.read_text()) if f.exists() else None


def write_sweep_info(sweep_dir: Path, info: dict[str, Any]) -> None:
    tmp = sweep_dir / (SWEEP_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(sweep_dir / SWEEP_FILE)


def driver() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}


class SweepTracking(Callback):
    def __init__(self) -> None:
        self._ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra only warns when a callback raises; a sweep must not start unchecked or without its
        parent run, so any error here ends the process before a job is submitted."""
        from rlkit.config import ConfigError
        from rlkit.tracking import StoreError, TrackingUnreachable

        try:
            self._start(config)
        except ConfigError as e:
            print(f"rlkit: config error: {e}", file=sys.stderr)
            sys.exit(2)
        except (TrackingUnreachable, StoreError) as e:  # the message single runs give, in seconds
            print(f"rlkit: {e}", file=sys.stderr)
            sys.exit(2)
        except Exception as e:
            print(f"rlkit: cannot start the sweep: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)

    def _start(self, config: DictConfig) -> None:
        from rlkit import tracking
        from rlkit.launch.sweep import check_sweep

        jobs = check_sweep(config)  # before a parent run exists or any job is submitted
        uri = config.tracking.uri
        tracking.check_reachable(uri)  # seconds, not MLflow's minutes of retries (a sweep hung 251 s / forever)
        tracking.bound_http_retries(uri)
        launcher = OmegaConf.select(config, "hydra.runtime.choices.launcher")
        if launcher == "slurm" and uri.startswith("sqlite:"):
            print("[rlkit] warning: a SQLite MLflow store on a shared filesystem is not safe under concurrent "
                  "SLURM jobs on several nodes; use an `mlflow server` (tracking.uri=http://host:5000), "
                  "see docs/launch.md", file=sys.stderr)
        tracking.prepare_store(uri, wal=launcher != "slurm")
        sweep_dir = Path(config.hydra.sweep.dir)
        mc = tracking.client(uri)
        info = read_sweep_info(sweep_dir)
        if info:  # a re-run of the same sweep dir keeps its parent and sweep id
            info["resumes"] = info.get("resumes", 0) + 1
            mc.update_run(info["parent_run_id"], status="RUNNING")
            mc.set_tag(info["parent_run_id"], "rlkit.status", "running")
            mc.set_tag(info["parent_run_id"], "rlkit.resumes", str(info["resumes"]))
            info["driver"] = driver()
            write_sweep_info(sweep_dir, info)
            print(f"[rlkit] sweep {info['sweep']} id {info['sweep_id']} resumed (#{info['resumes']}) in {sweep_dir}")
        else:
            exp = tracking.experiment_id(mc, config.tracking.experiment)
            sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            sha, dirty = tracking.git_info()
            overrides = list(config.hydra.overrides.task)
            run = mc.create_run(exp, run_name=f"{config.sweep.name} {sweep_id}", tags={
                "rlkit.role": "parent", "sweep": config.sweep.name, "sweep_id": sweep_id, "git_sha": sha,
                "git_dirty": str(dirty), "rlkit.overrides": " ".join(overrides), "rlkit.status": "running",
                "launcher": str(launcher), "sweep_dir": str(sweep_dir.resolve())})
            sweep_dir.mkdir(parents=True, exist_ok=True)
            sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_"))
            info = {"parent_run_id": run.info.run_id, "sweep_id": sweep_id, "sweep": config.sweep.name,
                    "experiment": config.tracking.experiment, "tracking_uri": uri, "launcher": launcher,
                    "sweeper": sweeper, "overrides": overrides, "hydra_overrides": list(config.hydra.overrides.hydra),
                    "sweep_dir": str(sweep_dir.resolve()), "checkpoints": str(Path(config.paths.checkpoints).resolve()),
                    "jobs": None if "Optuna" in sweeper else jobs,  # a grid's jobs; Optuna's are known as asked
                    "created": time.time(), "driver": driver()}
            write_sweep_info(sweep_dir, info)
            print(f"[rlkit] sweep {config.sweep.name} id {sweep_id}: parent MLflow run {run.info.run_id} "
                  f"in {uri} (experiment {config.tracking.experiment!r}), {len(jobs or [])} jobs, dir {sweep_dir}")
        atexit.register(self._mark_failed_unless_ended, uri, info["parent_run_id"])

    def _mark_failed_unless_ended(self, uri: str, parent_run_id: str) -> None:
        """The sweep driver exited without on_multirun_end (a job failed or the driver crashed)."""
        if self._ended:
            return
        from rlkit import tracking

        try:
            mc = tracking.client(uri)
            mc.set_tag(parent_run_id, "rlkit.status", "failed")
            mc.set_terminated(parent_run_id, "FAILED")
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rlkit import tracking

        self._ended = True
        info = read_sweep_info(config.hydra.sweep.dir)
        if not info:
            return
        mc = tracking.client(info["tracking_uri"])
        mc.set_tag(info["parent_run_id"], "rlkit.status", "finished")
        mc.set_terminated(info["parent_run_id"], "FINISHED")
        print(f"[rlkit] sweep {info['sweep']} done; report: python -m rlkit.report {info['sweep']}"
              + ("" if OmegaConf.select(config, "tracking.uri") == "sqlite:///mlflow.db" else
                 f" --tracking-uri {info['tracking_uri']}"))

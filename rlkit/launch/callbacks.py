"""Hydra callback: one parent MLflow run per multirun, created before any job starts.

The parent's id and the sweep id go to `<sweep dir>/rlkit_sweep.json`, which every job (local or on
a SLURM node sharing the filesystem) reads to attach its child run.
"""
from __future__ import annotations

import json
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


class SweepTracking(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from rlkit import tracking

        sweep_dir = Path(config.hydra.sweep.dir)
        if read_sweep_info(sweep_dir):  # a re-run of the same sweep dir keeps its parent
            return
        mc = tracking.client(config.tracking.uri)
        exp = tracking.experiment_id(mc, config.tracking.experiment)
        sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        sha, dirty = tracking.git_info()
        overrides = list(config.hydra.overrides.task)
        run = mc.create_run(exp, run_name=f"{config.sweep.name} {sweep_id}", tags={
            "rlkit.role": "parent", "sweep": config.sweep.name, "sweep_id": sweep_id, "git_sha": sha,
            "git_dirty": str(dirty), "rlkit.overrides": " ".join(overrides), "rlkit.status": "running"})
        sweep_dir.mkdir(parents=True, exist_ok=True)
        info = {"parent_run_id": run.info.run_id, "sweep_id": sweep_id, "sweep": config.sweep.name,
                "experiment": config.tracking.experiment, "tracking_uri": config.tracking.uri,
                "overrides": overrides, "sweep_dir": str(sweep_dir.resolve())}
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(info, indent=1))
        print(f"[rlkit] sweep {config.sweep.name} id {sweep_id}: parent MLflow run {run.info.run_id} "
              f"in {config.tracking.uri} (experiment {config.tracking.experiment!r})")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rlkit import tracking

        info = read_sweep_info(config.hydra.sweep.dir)
        if not info:
            return
        mc = tracking.client(info["tracking_uri"])
        mc.set_tag(info["parent_run_id"], "rlkit.status", "finished")
        mc.set_terminated(info["parent_run_id"], "FINISHED")
        print(f"[rlkit] sweep {info['sweep']} done; report: python -m rlkit.report {info['sweep']}"
              + ("" if OmegaConf.select(config, "tracking.uri") == "sqlite:///mlflow.db" else
                 f" --tracking-uri {info['tracking_uri']}"))

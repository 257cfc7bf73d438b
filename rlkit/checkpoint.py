"""Save and restore everything a resumed run needs, so a killed or preempted job loses nothing.

A run's checkpoint directory is keyed by the experiment and the job's own overrides (not by
Hydra's timestamped output dir), so the same command started again - by hand, by a SLURM requeue
or by a resubmitted sweep - finds it. `status.json` beside it is rlkit's own record of the job's
state, because SLURM reports a job whose Python raised inside Hydra as COMPLETED.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import torch


def run_key(experiment: str, overrides: list[str]) -> str:
    """Stable id of a job: its experiment plus its sorted overrides (launcher choice excluded)."""
    kept = sorted(o for o in overrides if not o.startswith(("launcher=", "hydra.", "+sweep=")))
    digest = hashlib.sha256(json.dumps([experiment, kept]).encode()).hexdigest()[:12]
    return digest


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Atomic: write to a temp file then rename, so a kill mid-write leaves the previous checkpoint."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f"state.pt.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path / "state.pt")


def load(path: Path) -> dict[str, Any] | None:
    f = path / "state.pt"
    if not f.exists():
        return None
    return torch.load(f, map_location="cpu", weights_only=False)


def read_status(path: Path) -> dict[str, Any]:
    f = path / "status.json"
    return json.loads(f.read_text()) if f.exists() else {}


def write_status(path: Path, **fields: Any) -> dict[str, Any]:
    path.mkdir(parents=True, exist_ok=True)
    status = {**read_status(path), **fields, "updated": time.time()}
    tmp = path / f"status.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(status, indent=1))
    os.replace(tmp, path / "status.json")
    return status

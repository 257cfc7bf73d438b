"""Repo-wide fixtures: the real data root, the embedded tiny warm start, and a runner for
`python -m rlkit.run` in a subprocess against a throwaway MLflow store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_CANDIDATES = [os.environ.get("RLKIT_DATA_DIR"), REPO.parent / "shared" / "data", "/work/shared/data"]
DATA = next((Path(c) for c in _CANDIDATES if c and Path(c).is_dir()), REPO.parent / "shared" / "data")
os.environ.setdefault("RLKIT_DATA_DIR", str(DATA))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full-rebuild", action="store_true",
                     help="also run tests marked full_rebuild (the ~11-min rebuild of the shipped warm start)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`full_rebuild` tests are opt-in: each is a cheaper test's long form (see CONTRIBUTING.md)."""
    if config.getoption("--full-rebuild"):
        return
    skip = pytest.mark.skip(reason="opt-in: --full-rebuild (its prefix is checked by default)")
    for item in items:
        if "full_rebuild" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    """The cached warm start of model=tiny (built once, ~4 min on 2 cores, if absent)."""
    from omegaconf import OmegaConf

    from rlkit.models.load import tiny_spec
    from rlkit.models.tiny import ensure_tiny

    return ensure_tiny(tiny_spec(OmegaConf.load(REPO / "conf" / "model" / "tiny.yaml")))


def run_rlkit(args: list[str], tmp: Path, timeout: float = 600, env: dict | None = None, module: str = "rlkit.run"):
    """Run rlkit's CLI from the repo root with MLflow and checkpoints under `tmp`."""
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
                "RLKIT_CHECKPOINT_DIR": str(tmp / "ck"), "RLKIT_DATA_DIR": str(DATA), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args, f"hydra.run.dir={tmp}/out",
                           f"hydra.sweep.dir={tmp}/multirun"],
                          cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)

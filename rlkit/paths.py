"""Where things live, for every part (a leaf module): rlkit's one on-disk cache (warm starts, puzzle sets,
benchmark models; `RLKIT_CACHE_DIR`, else ~/.cache/rlkit) and the per-problem eval artifact's name."""
from __future__ import annotations

import os
from pathlib import Path


def eval_artifact(suite: str, step: int) -> str:
    """The per-problem results of one evaluation (docs/contracts.md): written by rlkit/eval, read by the report."""
    return f"eval/{suite}/step_{int(step):06d}.parquet"


def cache_root() -> Path:
    return Path(os.environ.get("RLKIT_CACHE_DIR", Path.home() / ".cache" / "rlkit"))

"""Shared fixtures for the data tests: the read-only real data root, and a private puzzle cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Data root: RLKIT_DATA_DIR, else the shared read-only copy; skip when neither exists."""
    root = Path(os.environ.get("RLKIT_DATA_DIR", "/work/shared/data"))
    if not root.is_dir():
        pytest.skip(f"data root {root} not found (set RLKIT_DATA_DIR)")
    return root


@pytest.fixture(scope="session", autouse=True)
def private_puzzle_cache(tmp_path_factory):
    """Puzzle tests check freshly generated puzzles, never the user's ~/.cache/rlkit/kk (a generator change
    without a CACHE_VERSION bump would otherwise pass on the cached copy)."""
    from rlkit.data import puzzles

    old = os.environ.get("RLKIT_CACHE_DIR")
    os.environ["RLKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("rlkit_cache"))
    puzzles._kk_cached.cache_clear()
    yield
    puzzles._kk_cached.cache_clear()
    if old is None:
        os.environ.pop("RLKIT_CACHE_DIR", None)
    else:
        os.environ["RLKIT_CACHE_DIR"] = old

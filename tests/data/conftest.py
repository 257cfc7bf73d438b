"""Shared fixtures for the data tests: the read-only real data root."""

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

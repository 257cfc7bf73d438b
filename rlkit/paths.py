"""rlkit's one on-disk cache (warm starts, puzzle sets, benchmark models): `RLKIT_CACHE_DIR`, else
~/.cache/rlkit. A leaf module every part may import."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("RLKIT_CACHE_DIR", Path.home() / ".cache" / "rlkit"))

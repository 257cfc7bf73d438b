"""What the loop logs to: rlkit.tracking.Tracker on rank 0, NullTracker on other ranks, or a caller's own
recorder (the benchmark's, a test's) — passed in, never patched in."""
from __future__ import annotations

from typing import Protocol


class StepLog(Protocol):
    run_id: str | None

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def log_text(self, text: str, name: str) -> None: ...

    def log_file(self, path: str, artifact_path: str) -> None: ...


class NullTracker:
    """What ranks other than 0 hold: they compute and reduce metrics, rank 0 alone logs them."""

    run_id = None

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def log_text(self, text: str, name: str) -> None: ...

    def log_file(self, path: str, artifact_path: str) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def finish(self, status: str) -> None: ...

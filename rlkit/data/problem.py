"""The one record every data source yields, so rewards, templates and the loop never see a file format."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A prompt-level item. `answer` is the gold answer as a string (e.g. "132", "\\frac{1}{2}",
    or for Knights-and-Knaves "(1) Zoey is a knight\n(2) Oliver is a knave"); `meta` holds source
    specific facts (puzzle names and solution, MATH level/type, flaw tags of the tiny default)."""

    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)

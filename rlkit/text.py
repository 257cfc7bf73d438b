"""Text parsing shared by data loaders (gold answers) and rewards (predictions): one `\\boxed{}` extractor.
A leaf module every part may import."""
from __future__ import annotations

import re

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BARE_RE = re.compile(r"\\(?:boxed|fbox)\s+([^\s${}]+)")  # `\boxed 5$` (two MATH training solutions)
_BRACE_RE = re.compile(r"\\.|[{}]", re.DOTALL)


def extract_boxed(text: str, bare: bool = False) -> str | None:
    r"""Content of the last `\boxed{…}` whose braces balance; None if there is none.

    One left-to-right pass matches every brace (escaped `\{`, `\}` skipped), so this is linear even on
    100k characters full of unclosed `\boxed{`. `bare=True` also reads the brace-less `\boxed 5` form
    when it is the last box (gold solutions; a model's `\boxed 5` is not an answer)."""
    starts = [m.end() - 1 for m in _BOXED_RE.finditer(text)]  # index of each "{"
    if bare:
        bares = list(_BARE_RE.finditer(text))
        last = bares[-1] if bares else None
        if last is not None and (not starts or last.start() > starts[-1]):
            return last.group(1)
    if not starts:
        return None
    close_of: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text, starts[0]):
        ch = m.group()
        if ch == "{":
            stack.append(m.start())
        elif ch == "}":
            if stack:
                close_of[stack.pop()] = m.start()
    for s in reversed(starts):
        if s in close_of:
            return text[s + 1 : close_of[s]].strip()
    return None

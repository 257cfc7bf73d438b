r"""Answer correctness: extract the model's answer, compare it with the gold answer (`problem.answer`).

Extraction (`answer_from`):
  "tag"   content of the last complete `<answer>…</answer>` pair (math-verify finds nothing inside tags,
          so we must cut the answer out ourselves).
  "boxed" content of the last `\boxed{…}` / `\fbox{…}` whose braces balance (escaped `\{ \}` ignored).
  "any"   the tag, else the boxed answer, else math-verify's own extraction on the last ANY_TAIL_CHARS
          characters of the completion.

Comparison, cheapest first:
  1. identical strings (after trimming whitespace, surrounding `$`, and one whole-string `\boxed{}`) → correct.
  2. both plain numbers (ints/decimals, `1,234` thousands commas allowed) → exact Decimal comparison, no
     sympy. This is the hot path of the arithmetic/GSM8K data (hundreds of checks per step): microseconds.
  3. math-verify, gold first (`verify(gold, pred)` is asymmetric). The parsed gold is cached. A string
     without `$`, `\boxed`, `\(` or `\[` is wrapped in `$…$` before parsing: bare LaTeX such as
     `3\sqrt{13}`, `(1,2]`, `\dfrac12` or `\text{(C)}` is otherwise not recognised as math. Results are
     memoised per (gold, prediction) — GRPO groups repeat the same answer many times.

Timeouts. math-verify's own timeout is `signal.alarm`: whole seconds only (≥ 1 s) and, in a worker thread,
`parse` raises ValueError. We therefore disable it and bound step 3 ourselves:
  * main thread (including the main thread of a subprocess or multiprocessing worker): a real-time
    interval timer (`setitimer`) raises a BaseException subclass after `timeout_s` (default 0.5 s) and
    re-fires every 50 ms, so math-verify's internal `except Exception` cannot swallow it.
  * any other thread (signals are main-thread only): step 3 runs in a helper *process*
    (`python -m rlkit.rewards._mv_worker`, started on first use, one per parent process, shared behind a
    lock) that applies the same timer in its own main thread. If it does not answer within
    `timeout_s + 0.25 s` (e.g. stuck in C code a signal cannot interrupt) it is killed and restarted on the
    next call. A plain subprocess rather than multiprocessing: it works inside daemonic pool workers and
    never re-imports the user's `__main__`. The first use from a thread pays its start-up (~1 s, sympy).
  * always: a prediction longer than MAX_ANSWER_CHARS or nested deeper than MAX_NESTING is scored wrong
    without parsing (real answers are never like that; parse time grows with both).
A timed-out comparison scores 0; after MAX_TIMEOUTS (2) timeouts the same (gold, prediction) pair is
wrong without trying, so a policy that repeats a pathological answer stops paying for it.
Net effect: a pathological prediction (100k characters, `2^{2^{2^{2^{2^2}}}}`, thousands of nested
braces) costs at most about `timeout_s`, scores 0, and nothing here raises. The one-time import and
warm-up of math-verify (~1 s) happens outside any deadline; call `warmup()` at start-up to pay it early.
Caveat: the main-thread path takes over SIGALRM / ITIMER_REAL for the duration of one comparison (a
timer the caller had running is re-armed with its remaining time afterwards).

Gold answers math-verify cannot parse score 0 unless the prediction equals the gold string (Open-R1 scores
them 1 to "skip" the example; 0 gives the same zero advantage in GRPO without inflating reward curves).
"""
from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from rlkit.rewards.base import RewardContext
from rlkit.text import _BOXED_RE, _BRACE_RE, extract_boxed  # the one \boxed{} extractor (re-exported)

logger = logging.getLogger(__name__)

AnswerFrom = Literal["tag", "boxed", "any"]
ANSWER_FROM = ("tag", "boxed", "any")

DEFAULT_TIMEOUT_S = 0.5
MAX_ANSWER_CHARS = 1000
ANY_TAIL_CHARS = 2000
MAX_NESTING = 40
_REFIRE_S = 0.05
_HELPER_GRACE_S = 0.25
_HELPER_START_S = 60.0


# --------------------------------------------------------------------------- extraction

def extract_tag(text: str, tag: str = "answer") -> str | None:
    """Content of the last complete `<tag>…</tag>` pair (innermost if nested), stripped; None if absent."""
    open_t, close_t = f"<{tag}>", f"</{tag}>"
    last_close = text.rfind(close_t)
    if last_close < 0:
        return None
    start = text.rfind(open_t, 0, last_close)
    if start < 0:
        return None
    start += len(open_t)
    end = text.find(close_t, start)  # first close after that open: the innermost pair
    return text[start:end].strip()


def _extract(completion: str, answer_from: str) -> tuple[str | None, bool]:
    """(prediction, raw): raw=True means 'whole-text tail for math-verify's own extraction'."""
    if answer_from == "tag":
        return extract_tag(completion), False
    if answer_from == "boxed":
        return extract_boxed(completion), False
    if answer_from == "any":
        for pred in (extract_tag(completion), extract_boxed(completion)):
            if pred is not None:
                return pred, False
        return completion[-ANY_TAIL_CHARS:], True
    raise ValueError(f"answer_from must be one of {ANSWER_FROM}, got {answer_from!r}")


# --------------------------------------------------------------------------- cheap comparisons

def _normalize(s: str) -> str:
    s = s.strip()
    if s.startswith("$") and s.endswith("$") and "$" not in s.strip("$"):  # one $…$ / $$…$$ span only
        s = s.strip("$").strip()
    m = _BOXED_RE.match(s)
    if m and s.endswith("}") and _closing_brace(s, m.end() - 1) == len(s) - 1:
        s = s[m.end() : -1].strip()
    return s


@functools.lru_cache(maxsize=65536)
def _normalize_gold(gold: str) -> str:
    return _normalize(gold)


def _closing_brace(s: str, open_idx: int) -> int:
    """Index of the brace closing s[open_idx] ("{"), or -1."""
    depth = 0
    for m in _BRACE_RE.finditer(s, open_idx):
        ch = m.group()
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return m.start()
    return -1


_NUM_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def _as_number(s: str) -> Decimal | None:
    """Decimal value of a plain number ('42', '-0.50', '1,234.5'); None for anything else."""
    if len(s) > 200:
        return None
    if "\\" in s:  # MATH/GSM8K money and spacing: `\$15,\!000`
        s = s.replace("\\!", "").replace("\\$", "")
    if "," in s:
        if not _THOUSANDS_RE.fullmatch(s):
            return None
        s = s.replace(",", "")
    if not _NUM_RE.fullmatch(s):
        return None
    try:
        return Decimal(s)
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        return None


@functools.lru_cache(maxsize=65536)
def _gold_number(gold: str) -> Decimal | None:
    return _as_number(gold)


def _too_deep(s: str) -> bool:
    depth = 0
    for ch in s:
        if ch in "{([":
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif ch in "})]":
            depth -= 1
    return False


# --------------------------------------------------------------------------- math-verify, main thread

@functools.cache
def _math_verify() -> Any:
    """Import math-verify once (0.4 s) outside any deadline, and mute its 'timeout disabled' warning."""
    import math_verify

    class _NoTimeoutWarning(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith(("Timeout is disabled", "Timeout during"))

    for name in ("math_verify.parser", "math_verify.grader", "math_verify.utils"):
        logging.getLogger(name).addFilter(_NoTimeoutWarning())
    # Warm up outside any deadline: the first parse builds the LaTeX grammar (~0.5 s), which would
    # otherwise eat the first real comparison's time budget.
    math_verify.verify(
        math_verify.parse("$\\frac{1}{2}$", parsing_timeout=None),
        math_verify.parse("$x^2+\\sqrt{2}$", parsing_timeout=None),
        timeout_seconds=None,
    )
    return math_verify


def warmup() -> None:
    """Import and warm up math-verify now (~1 s once per process) instead of inside the first check.

    Call it at trainer start-up so the first reward step's timing is not inflated."""
    _math_verify()


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _has_delimiters(s: str) -> bool:
    # `\$` is an escaped dollar sign (MATH writes `\$40`), not a math delimiter
    return bool(_UNESCAPED_DOLLAR.search(s)) or "\\boxed" in s or "\\(" in s or "\\[" in s


def _wrap(s: str) -> str:
    return s if _has_delimiters(s) else f"${s}$"


@functools.lru_cache(maxsize=65536)
def _parse_gold(gold: str) -> tuple:
    mv = _math_verify()
    return tuple(mv.parse(_wrap(gold), parsing_timeout=None))


def _mv_compare(gold: str, pred: str, raw: bool) -> bool:
    mv = _math_verify()
    try:
        g = _parse_gold(gold)
        if not g:
            return False
        p = mv.parse(pred if raw else _wrap(pred), parsing_timeout=None)
        if not p:
            return False
        return bool(mv.verify(list(g), p, timeout_seconds=None))
    except Exception:  # math-verify/sympy bugs on odd input: a wrong answer, not a crash
        logger.debug("math-verify failed on gold=%r pred=%r", gold[:100], pred[:100], exc_info=True)
        return False


class _Deadline(BaseException):
    """Raised by our SIGALRM handler; BaseException so math-verify's `except Exception` lets it through."""


_armed = False


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed:
        raise _Deadline


def _disarm() -> None:
    global _armed
    while True:  # a last alarm may land while disarming: retry until the timer is really off
        try:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            _armed = False
            return
        except _Deadline:
            continue


def _run_with_deadline(fn: Callable[[], bool], timeout_s: float) -> bool | None:
    """fn() under a real-time timer; None if it ran out of time. Main thread only. A timer the caller
    had running (e.g. their own signal.alarm) is re-armed with its remaining time afterwards."""
    global _armed
    if _armed:  # nested call: the outer deadline already bounds us
        return fn()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    start = time.monotonic()
    prev_delay, prev_interval = 0.0, 0.0
    try:
        _armed = True
        prev_delay, prev_interval = signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 0.001), _REFIRE_S)
        try:
            return fn()
        finally:
            _disarm()
    except _Deadline:
        return None
    finally:
        signal.signal(signal.SIGALRM, old if old is not None else signal.SIG_DFL)
        if prev_delay > 0:
            left = max(prev_delay - (time.monotonic() - start), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, prev_interval)


def _mv_equal_main(gold: str, pred: str, raw: bool, timeout_s: float) -> bool | None:
    """math-verify comparison bounded by `timeout_s`; must run in a main thread. None = timed out."""
    _math_verify()
    return _run_with_deadline(lambda: _mv_compare(gold, pred, raw), timeout_s)


def _can_use_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


# --------------------------------------------------------------------------- math-verify, other threads

class _Helper:
    """A math-verify subprocess for callers outside the main thread (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.buf = b""

    def _start(self) -> None:
        import rlkit

        root = os.path.dirname(os.path.dirname(os.path.abspath(rlkit.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.buf = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rlkit.rewards._mv_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        if self._readline(_HELPER_START_S) != b"ready":
            self._kill()
            raise RuntimeError("math-verify helper process did not start")

    def _readline(self, timeout_s: float) -> bytes | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.strip()

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:
                pass
        self.proc = None

    def ask(self, gold: str, pred: str, raw: bool, timeout_s: float) -> bool | None:
        with self.lock:
            try:
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
                assert self.proc is not None and self.proc.stdin is not None
                self.proc.stdin.write((json.dumps([gold, pred, raw, timeout_s]) + "\n").encode())
                self.proc.stdin.flush()
                line = self._readline(timeout_s + _HELPER_GRACE_S)
            except Exception:
                logger.warning("math-verify helper failed; scoring as wrong", exc_info=True)
                self._kill()
                return None
            if line is None:
                self._kill()
                return None
            return {b"1": True, b"0": False}.get(line)


_HELPER = _Helper()
atexit.register(_HELPER._kill)


# --------------------------------------------------------------------------- public API

class _TimedOut(Exception):
    """A comparison ran out of time (raised so that lru_cache does not memoise it)."""


@functools.lru_cache(maxsize=16384)
def _mv_equal_cached(gold: str, pred: str, raw: bool, timeout_s: float) -> bool:
    if _can_use_alarm():
        try:
            result = _mv_equal_main(gold, pred, raw, timeout_s)
        except ValueError:  # signals unavailable here after all (e.g. a sub-interpreter)
            result = _HELPER.ask(gold, pred, raw, timeout_s)
    else:
        result = _HELPER.ask(gold, pred, raw, timeout_s)
    if result is None:
        raise _TimedOut
    return result


_timeouts: dict[tuple, int] = {}
MAX_TIMEOUTS = 2


def _mv_equal(gold: str, pred: str, raw: bool, timeout_s: float) -> bool:
    """Memoised math-verify comparison; a pair that timed out MAX_TIMEOUTS times is wrong from then on
    (one retry absorbs a load spike; a policy repeating a pathological answer stops paying for it)."""
    key = (gold, pred, raw, timeout_s)
    if _timeouts.get(key, 0) >= MAX_TIMEOUTS:
        return False
    try:
        return _mv_equal_cached(*key)
    except _TimedOut:
        if len(_timeouts) > 65536:
            _timeouts.clear()
        _timeouts[key] = _timeouts.get(key, 0) + 1
        return False


def _equal(gold: str, pred: str, raw: bool, timeout_s: float) -> bool:
    g = _normalize_gold(gold)
    if raw:
        p = pred
        if not p.strip():
            return False
    else:
        p = _normalize(pred)
        if not p:
            return False
        if p == g:
            return True
        if len(p) > MAX_ANSWER_CHARS:
            return False
        gn = _gold_number(g)
        if gn is not None:
            pn = _as_number(p)
            if pn is not None:
                return pn == gn
    if _too_deep(p):
        return False
    return _mv_equal(g, p, raw, float(timeout_s))


def is_correct(
    completion: str, problem: Any, *, answer_from: AnswerFrom = "tag", timeout_s: float = DEFAULT_TIMEOUT_S
) -> bool:
    """True iff the answer extracted per `answer_from` equals `problem.answer` (see the module docstring).

    Never raises for any completion; an unknown `answer_from` is a configuration error (ValueError)."""
    if answer_from not in ANSWER_FROM:
        raise ValueError(f"answer_from must be one of {ANSWER_FROM}, got {answer_from!r}")
    try:
        if not isinstance(completion, str):
            return False
        pred, raw = _extract(completion, answer_from)
        if pred is None:
            return False
        return _equal(str(problem.answer), pred, raw, timeout_s)
    except Exception:
        logger.warning("is_correct failed; scoring as wrong", exc_info=True)
        return False


def accuracy(
    completion: str,
    problem: Any,
    ctx: RewardContext | None = None,
    *,
    answer_from: AnswerFrom = "tag",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> float:
    """Binary correctness reward. Range {0.0, 1.0}."""
    return 1.0 if is_correct(completion, problem, answer_from=answer_from, timeout_s=timeout_s) else 0.0


def extract_answer(completion: str, answer_from: AnswerFrom = "tag") -> str | None:
    """The prediction `is_correct` would compare (None when there is none): what maj@k votes on."""
    pred, raw = _extract(completion, answer_from) if isinstance(completion, str) else (None, False)
    return None if raw else pred


def same_answer(a: str, b: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether two predictions are the same answer under the verifier the reward uses (`0.5` ~ `1/2`)."""
    try:
        return _equal(a, b, False, timeout_s)
    except Exception:
        return False

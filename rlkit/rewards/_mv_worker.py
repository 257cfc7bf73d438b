"""Helper process for math-verify comparisons requested from non-main threads (see accuracy.py).

Protocol, one line each way: stdin `[gold, pred, raw, timeout_s]` as JSON; stdout `1` (equal), `0`
(not equal) or `?` (timed out / failed). Runs each comparison in this process's main thread under the
same interval-timer deadline as the in-process path, so it answers within about timeout_s; the parent
kills it if it does not. Exits when stdin closes (the parent died or shut it down).
"""
from __future__ import annotations

import json
import os
import sys


def main() -> None:
    # Keep the protocol channel private: anything else printing to stdout goes to stderr instead.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from rlkit.rewards import accuracy

    accuracy._math_verify()
    proto.write(b"ready\n")
    for line in sys.stdin.buffer:
        try:
            gold, pred, raw, timeout_s = json.loads(line)
            result = accuracy._mv_equal_main(str(gold), str(pred), bool(raw), float(timeout_s))
            answer = b"?\n" if result is None else (b"1\n" if result else b"0\n")
        except Exception:
            answer = b"?\n"
        proto.write(answer)


if __name__ == "__main__":
    main()

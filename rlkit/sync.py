"""`python -m rlkit.sync [DIR ...] [--tracking-uri URI]`: send what jobs left in their tracking spools.

A job that ended while its tracking server was down keeps its unsent values in
`<checkpoint dir>/<run key>/spool/` (rlkit/spool.py). The next start of the same job sends them; this
command sends them without starting the job. DIR is a spool dir or any directory above spools
(default: $RLKIT_CHECKPOINT_DIR, else ./checkpoints). No value is sent twice (see rlkit/spool.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def find_spools(roots: list[Path]) -> list[Path]:
    from rlkit.spool import LOG

    out = []
    for root in roots:
        out += [root] if (root / LOG).exists() else sorted(p.parent for p in root.rglob(f"spool/{LOG}"))
    return out


def main(argv: list[str] | None = None) -> int:
    from rlkit.spool import read, replay

    p = argparse.ArgumentParser(prog="python -m rlkit.sync", description=__doc__.split("\n")[0])
    p.add_argument("dirs", nargs="*", type=Path)
    p.add_argument("--tracking-uri", help="send to this MLflow URI instead of the one each spool recorded")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # a server still down: say so in seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    roots = args.dirs or [Path(os.environ.get("RLKIT_CHECKPOINT_DIR", "checkpoints"))]
    failed = 0
    spools = find_spools(roots)
    for s in spools:
        left, _ = read(s)
        try:
            n = replay(s, args.tracking_uri)
            print(f"{s}: sent {n} records")
        except Exception as e:  # noqa: BLE001 - report, keep the spool, go on with the others
            failed += 1
            print(f"{s}: {len(left)} records kept, cannot send: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
    if not spools:
        print(f"no spool under {', '.join(map(str, roots))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

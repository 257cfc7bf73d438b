"""`python -m rlkit.bench [options]`: the benchmark's old command, kept as a thin entry.

The benchmark lives outside the package (bench/rl_bench.py, run from a checkout) so nothing in rlkit
imports it; this module only hands the command line over to it."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "bench" / "rl_bench.py").exists():
        sys.exit("rlkit.bench: the benchmark runs from a checkout of rlkit (bench/rl_bench.py is not here)")
    sys.path.insert(0, str(checkout))
    runpy.run_module("bench.rl_bench", run_name="__main__", alter_sys=True)

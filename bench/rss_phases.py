"""`python -m rlkit.run` with each rank's resident memory printed at every phase of a DeepSpeed run: where does
the memory go? Prints `[mem r<rank> <time>] <phase>: rss=<VmRSS> hwm=<VmHWM>` (GB, from /proc/self/status) to
stderr around model loading, the reference, each engine's set-up, every ZeRO-3 gather, backward and step.
Its arguments are rlkit.run's overrides; run it where rlkit.run would run (docs/scale.md):

    torchrun --standalone --nproc_per_node 2 bench/rss_phases.py model=qwen2.5-0.5b-instruct model.path=<dir> \\
        trainer.backend=deepspeed model.resources.zero_stage=3 trainer.offload_optimizer=true ...
"""
from __future__ import annotations

import contextlib
import os
import runpy
import sys
import time


def mem(tag: str) -> None:
    d = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                d[k] = int(v.split()[0]) / 1e6
    print(f"[mem r{os.environ.get('RANK', '0')} {time.strftime('%X')}] {tag}: rss={d['VmRSS']:.2f} GB "
          f"hwm={d['VmHWM']:.2f} GB", file=sys.stderr, flush=True)


def traced(owner, name: str) -> None:
    f = getattr(owner, name)

    def g(*a, **k):
        mem(f"before {name}")
        r = f(*a, **k)
        mem(f"after {name}")
        return r

    setattr(owner, name, g)


def main() -> None:
    import rlkit.backends.deepspeed_backend as ds
    import rlkit.steps.parts as parts

    for name in ("make_backend", "load_policy", "reference", "make_engine"):
        traced(parts, name)
    for name in ("frozen", "trainer"):
        traced(ds.DeepSpeedBackend, name)
    for name in ("backward", "step"):
        traced(ds.DeepSpeedTrained, name)
    gathered = ds.DeepSpeedTrained.gathered

    @contextlib.contextmanager
    def traced_gathered(self):
        mem("before gather")
        with gathered(self):
            mem("gathered")
            yield
        mem("after gather")

    ds.DeepSpeedTrained.gathered = traced_gathered
    runpy.run_module("rlkit.run", run_name="__main__", alter_sys=True)  # argv[0] = rlkit/run.py; overrides kept


if __name__ == "__main__":
    main()

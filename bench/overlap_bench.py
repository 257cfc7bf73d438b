"""What trainer.overlap buys: the same staleness-1 run (per-prompt seeds, so every arm trains on the same
batches) sequential and with the next batch generated in a worker thread beside the update, at each
thread count. Real runs of `python -m rlkit.run` into a temporary SQLite store; prints seconds per step
(mean over steps 2..N: step 1 has nothing generating beside it), the time the loop waited for the worker,
the generation seconds hidden behind the update, and whether the trained metrics are identical (with more
than one torch thread, two threads sharing the intra-op pool change reductions' rounding: not bit for bit).

    python bench/overlap_bench.py [--steps 20] [--threads 1 2] [--prompts 8]

On a GPU add the engine's overrides (e.g. `-- rollout.engine=vllm rollout.vllm.sleep=false model=...`).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
TIMING = ("timing_s/", "perf/", "summary/wall_time_s")


def one_run(tmp: Path, overrides: list[str]) -> dict[str, dict[int, float]]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/m.db", "RLKIT_CHECKPOINT_DIR": str(tmp / "ck")}
    r = subprocess.run([sys.executable, "-m", "rlkit.run", *overrides, f"hydra.run.dir={tmp}/out"], cwd=REPO,
                       env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    mc = MlflowClient(f"sqlite:///{tmp}/m.db")
    [run] = mc.search_runs([mc.get_experiment_by_name("default").experiment_id])
    return {k: {m.step: m.value for m in mc.get_metric_history(run.info.run_id, k)} for k in run.data.metrics}


def mean_after_first(h: dict[str, dict[int, float]], key: str) -> float:
    vals = [v for s, v in h.get(key, {}).items() if s >= 2]
    return statistics.fmean(vals) if vals else 0.0


def diff(a: dict[str, dict[int, float]], b: dict[str, dict[int, float]]) -> float:
    """Largest |a - b| / max(|b|, 1e-3) over every trained metric and step (timings excluded)."""
    return max((abs(a[k].get(s, float("nan")) - v) / max(abs(v), 1e-3) for k in b for s, v in b[k].items()),
               default=0.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("extra", nargs="*", help="more rlkit.run overrides (after --)")
    a = ap.parse_args(argv)
    base = [f"trainer.steps={a.steps}", "trainer.staleness=1", "rollout.seed_per_prompt=true", "eval=none",
            f"trainer.eval_every={a.steps}", f"trainer.prompts_per_step={a.prompts}", "seed=0", *a.extra]
    print(f"{'threads':>7} {'overlap':>7} {'s/step':>7} {'gen':>7} {'gen_wait':>8} {'hidden gen':>10}  same metrics")
    for threads in a.threads:
        ref = None
        for overlap in (False, True):
            with tempfile.TemporaryDirectory() as d:
                h = one_run(Path(d), [*base, f"trainer.threads={threads}", f"trainer.overlap={str(overlap).lower()}"])
            trained = {k: v for k, v in h.items() if not k.startswith(TIMING)}
            same = "" if ref is None else ("yes (bit for bit)" if trained == ref else f"no: largest difference {diff(trained, ref):.2g}")
            ref = ref or trained
            print(f"{threads:>7} {str(overlap):>7} {mean_after_first(h, 'timing_s/step'):7.3f} {mean_after_first(h, 'timing_s/gen'):7.3f} "
                  f"{mean_after_first(h, 'timing_s/gen_wait'):8.3f} {mean_after_first(h, 'timing_s/gen_background'):10.3f}"
                  f"  {same}", flush=True)


if __name__ == "__main__":
    main()

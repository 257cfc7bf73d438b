"""Benchmark: the report of a 1,000-run sweep (200 steps x 20 metrics each, and a per-problem eval
artifact of 500 problems x 4 samples per run) in a SQLite MLflow store.

    python bench/report_bench.py [--runs 1000] [--steps 200] [--problems 500] [--k 4]
                                 [--db /tmp/rlkit_report_bench/mlflow.db] [--fresh]

Prints the logging time (MlflowClient.log_batch, 1000 metrics per call) and the report time separately,
the report's own phase timings, and the cost of the per-(run, metric) `get_metric_history` path the
report avoids (measured on a sample, extrapolated). The store is reused when it already holds the sweep
(pass --fresh to rebuild it). Target: report < 30 s on the 2-core project machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from itertools import product
from pathlib import Path

import numpy as np

ALGOS = ["grpo", "dr_grpo", "rloo", "reinforce_pp", "ppo"]
LENGTHS = ["16k", "24k"]
REWARDS = ["strict", "lenient", "tag_count", "accuracy_only"]
ENTROPY = ["0", "0.0001", "0.001", "0.003", "0.01"]
METRICS = ["critic/score/mean", "response_length/mean", "response_length/max", "response_length/min",
           "response_length/clip_ratio", "actor/entropy", "actor/pg_loss", "actor/kl_loss", "actor/grad_norm",
           "actor/pg_clipfrac", "actor/ppo_kl", "rewards/format/mean", "rewards/accuracy/mean",
           "groups/all_correct_frac", "groups/all_wrong_frac", "rollout/distinct_frac", "timing_s/step",
           "perf/throughput", "val/acc", "val/response_length/mean"]
SWEEP = "bench_sweep"


def synthetic_series(rng: np.random.Generator, steps: int, skill: float) -> dict[str, np.ndarray]:
    t = np.linspace(0, 1, steps)
    noise = lambda s: rng.normal(0, s, steps)  # noqa: E731
    acc = np.clip(0.1 + skill * t + noise(0.02), 0, 1)
    length = 400 + 600 * t * skill + noise(20)
    ent = 1.2 * np.exp(-2 * t * (1 - skill)) + noise(0.01)
    return {
        "critic/score/mean": 2 * acc - 1 + noise(0.02), "response_length/mean": length,
        "response_length/max": length * 2.5, "response_length/min": length * 0.2,
        "response_length/clip_ratio": np.clip(0.05 + noise(0.01), 0, 1), "actor/entropy": ent,
        "actor/pg_loss": noise(0.05), "actor/kl_loss": np.abs(0.01 * t + noise(0.002)),
        "actor/grad_norm": np.abs(1 + noise(0.1)), "actor/pg_clipfrac": np.abs(0.02 + noise(0.005)),
        "actor/ppo_kl": np.abs(0.001 + noise(0.0003)), "rewards/format/mean": np.clip(0.5 + 0.5 * t + noise(0.02), 0, 1),
        "rewards/accuracy/mean": acc, "groups/all_correct_frac": np.clip(0.1 + 0.3 * t * skill + noise(0.02), 0, 1),
        "groups/all_wrong_frac": np.clip(0.5 - 0.4 * t * skill + noise(0.02), 0, 1),
        "rollout/distinct_frac": np.clip(0.9 - 0.2 * t + noise(0.02), 0, 1), "timing_s/step": 30 + noise(1),
        "perf/throughput": 1000 + noise(30), "val/acc": np.clip(acc + noise(0.01), 0, 1),
        "val/response_length/mean": length + noise(10),
    }


def log_sweep(uri: str, artifact_root: str, runs: int, steps: int, problems: int = 500, k: int = 4) -> float:
    from mlflow import MlflowClient

    from rlkit.report import fake

    client = MlflowClient(uri)
    exp = fake.experiment(client, SWEEP, artifact_location=artifact_root)
    parent = fake.parent_run(client, exp, SWEEP, "bench0001")
    grid = list(product(ALGOS, LENGTHS, REWARDS, ENTROPY))
    seeds = max(runs // len(grid), 1)
    rng = np.random.default_rng(0)
    world = fake.World(problems=max(problems, 1), k=k)
    difficulty = world.difficulties(rng)
    ids = [f"p{i:04d}" for i in range(problems)]
    t0 = time.perf_counter()
    n = 0
    for (algo, length, reward, ent), seed in product(grid, range(seeds)):
        if n >= runs:
            break
        skill = 0.3 + 0.1 * ALGOS.index(algo) / 4 + (0.05 if length == "24k" else 0)
        series = synthetic_series(rng, steps, skill)
        rid = fake.child_run(client, exp, parent_id=parent, sweep=SWEEP, sweep_id="bench0001",
                             tags={"algo": algo, "length": length, "reward": reward, "model": "qwen0.5b",
                                   "data": "kk", "launcher": "local", "override.algo.entropy_coef": ent},
                             seed=seed, series=series, summary={"summary/wall_time_s": 3600 + 100 * seed})
        if problems:
            fake.eval_artifact(client, rid, "test", steps - 1, ids, world.run(rng, difficulty, 2 * (skill - 0.35)))
        n += 1
        if n % 100 == 0:
            print(f"  logged {n}/{runs} runs ({time.perf_counter() - t0:.0f} s)", flush=True)
    client.set_terminated(parent)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--db", default=str(Path(tempfile.gettempdir()) / "rlkit_report_bench" / "mlflow.db"))
    p.add_argument("--problems", type=int, default=500, help="problems per eval artifact (0: none)")
    p.add_argument("--k", type=int, default=4, help="samples per problem")
    p.add_argument("--fresh", action="store_true", help="rebuild the store even if it exists")
    p.add_argument("--report-only", action="store_true", help="time the report on the store as it is (no logging)")
    p.add_argument("--out", default=None, help="report output root [a temp dir]")
    args = p.parse_args()

    db = Path(args.db)
    uri = f"sqlite:///{db}"
    marker = db.with_suffix(f".{args.runs}x{args.steps}x{args.problems}x{args.k}.done")
    if args.report_only:
        print(f"report only: {uri} as it is")
    elif args.fresh or not marker.exists():
        if db.parent.exists():
            shutil.rmtree(db.parent)
        db.parent.mkdir(parents=True)
        t = time.perf_counter()
        from mlflow import MlflowClient

        MlflowClient(uri).search_experiments()  # creates the schema
        print(f"store created in {time.perf_counter() - t:.1f} s: {uri}")
        secs = log_sweep(uri, str(db.parent / "artifacts"), args.runs, args.steps, args.problems, args.k)
        n_metrics = args.runs * args.steps * len(METRICS)
        print(f"LOGGING: {args.runs} runs x {args.steps} steps x {len(METRICS)} metrics = {n_metrics:,} values "
              f"in {secs:.1f} s ({n_metrics / secs:,.0f} values/s, log_batch of 1000)")
        marker.write_text(f"{secs:.1f}\n")
    else:
        print(f"reusing {uri} (logged in {marker.read_text().strip()} s; --fresh to rebuild)")

    from rlkit.report.build import build_report
    from rlkit.report.spec import ReportSpec

    out = args.out or tempfile.mkdtemp(prefix="rlkit_report_out_")
    load = os.getloadavg()[0]
    t, cpu = time.perf_counter(), time.process_time()
    report = build_report(uri, SWEEP, ReportSpec.from_dict({"baseline": {"algo": "grpo"}}), out)
    secs, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(f"REPORT: {secs:.1f} s wall ({cpu:.1f} s CPU of this process; load average {load:.1f} on "
          f"{os.cpu_count()} cores at start) for {len(report.sweep.runs)} runs, {len(report.ablation.rows)} rows, "
          f"{len(report.figures)} figures, {len(report.paired)} paired rows over "
          f"{sum(len(su.problems) for su in report.suites.values())} problems -> {report.out_dir}")
    print("  phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items()))

    # the per-(run, metric) API path the report avoids, measured on a sample
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    ids = report.sweep.runs["run_id"].tolist()[:20]
    keys = METRICS[:5]
    t = time.perf_counter()
    for r in ids:
        for k in keys:
            client.get_metric_history(r, k)
    per = (time.perf_counter() - t) / (len(ids) * len(keys))
    n_keys = len(report.history_keys)
    print(f"get_metric_history: {per * 1000:.1f} ms per (run, metric) -> {per * len(report.sweep.runs) * n_keys:.0f} s "
          f"for {len(report.sweep.runs)} runs x {n_keys} metrics; the report's bulk SQL read took "
          f"{report.timings['read history']:.2f} s")
    print(f"TARGET <30 s: {'OK' if secs < 30 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

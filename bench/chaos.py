"""Chaos: kill a small local sweep's jobs at random points with random signals, restart each until it
finishes, then count lost and duplicated metric values in the MLflow store (both must be 0).

    python bench/chaos.py --kills 20 --jobs 2 --steps 30 [--seed 0] [--dir /tmp/chaos]

Each job is a plain `python -m rlkit.run seed=<k> ...` (the same command restarted, as a requeue does)
against one SQLite store; `--parallel` jobs run at once. A kill is SIGKILL, SIGTERM, SIGUSR2 or SIGINT,
sent either a random delay after the start (`--startup-frac` of them: imports, validation, run creation)
or 0-1.5 s after the job logged a random step (a step, an evaluation, a checkpoint write). Expected
values per run: every step metric at steps 1..N, `val*` at 0, every eval_every and N, `timing_s/eval`
at the evaluation steps after 0, `summary/*` once at N; exactly one MLflow run per job, FINISHED.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGUSR2, signal.SIGINT]
FAST = ["trainer.prompts_per_step=2", "trainer.group_size=4", "data.val_size=8", "trainer.threads=1"]


def command(args, seed: int, root: Path) -> list[str]:
    return [sys.executable, "-m", "rlkit.run", f"seed={seed}", f"trainer.steps={args.steps}",
            f"trainer.eval_every={args.eval_every}", f"trainer.checkpoint_every={args.checkpoint_every}", *FAST,
            "sweep.name=chaos", f"tracking.uri=sqlite:///{root}/mlflow.db", f"paths.checkpoints={root}/ck",
            f"hydra.run.dir={root}/out/{seed}"]


def progress(root: Path, seed: int) -> int:
    """The last step job `seed` has in the store (-1: no run or no step yet)."""
    import sqlite3

    try:
        with sqlite3.connect(root / "mlflow.db", timeout=1) as con:
            row = con.execute("select max(m.step) from metrics m join tags t on m.run_uuid = t.run_uuid "
                              "where t.key = 'seed' and t.value = ? and m.key = 'timing_s/step'", (str(seed),)).fetchone()
        return -1 if row[0] is None else int(row[0])
    except sqlite3.Error:
        return -1


def finished(root: Path, seed: int) -> bool:
    """status.json says the job finished (a kill during interpreter shutdown still exits non-zero; the same
    command again would start a new run, by design: rlkit.status shows such a job as finished)."""
    import json

    for f in (root / "ck").glob("*/status.json"):
        st = json.loads(f.read_text())
        if f"seed={seed}" in st.get("overrides", []):
            return st.get("state") == "finished"
    return False


def expected_steps(key: str, steps: int, eval_every: int) -> set[int]:
    evals = {0, steps, *range(eval_every, steps + 1, eval_every)}
    if key.startswith("eval/") or key == "timing_s/eval_suite":  # the eval suite: base model and last step
        return {0, steps}  # (eval.every = 0, the default)
    if key == "timing_s/setup":  # a fresh start's step 0
        return {0}
    if key.startswith(("val/", "val_ctx/")):
        return evals
    if key == "timing_s/eval":
        return evals - {0}
    if key.startswith("summary/"):
        return {steps}
    return set(range(1, steps + 1))


def audit(root: Path, args) -> dict[str, int]:
    from mlflow.tracking import MlflowClient

    mc = MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = mc.search_runs([mc.get_experiment_by_name("chaos").experiment_id], max_results=1000)
    out = {"runs": len(runs), "jobs": args.jobs, "not_finished": 0, "values": 0, "lost": 0, "duplicated": 0}
    for seed in range(args.jobs):
        mine = [r for r in runs if r.data.tags.get("seed") == str(seed)]
        if len(mine) != 1:
            out["extra_runs"] = out.get("extra_runs", 0) + len(mine) - 1
        for r in mine:
            out["not_finished"] += r.info.status != "FINISHED"
            for key in r.data.metrics:
                hist = [m.step for m in mc.get_metric_history(r.info.run_id, key)]
                out["values"] += len(hist)
                out["duplicated"] += len(hist) - len(set(hist))
                out["lost"] += len(expected_steps(key, args.steps, args.eval_every) - set(hist))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument("--min-delay", type=float, default=0.2)
    p.add_argument("--max-delay", type=float, default=15.0, help="kill at uniform(min, max) s after a start")
    p.add_argument("--startup-frac", type=float, default=0.25, help="share of kills timed from the start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", type=Path)
    args = p.parse_args()
    rng = random.Random(args.seed)
    root = args.dir or Path(tempfile.mkdtemp(prefix="rlkit-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from rlkit.tracking import prepare_store

    prepare_store(f"sqlite:///{root}/mlflow.db")  # WAL: parallel jobs on one store
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    todo = list(range(args.jobs))
    # seed -> (proc, kill at (time), kill after (step, then a random delay), signal)
    live: dict[int, tuple[subprocess.Popen, float | None, int | None, int]] = {}
    kills_left, log = args.kills, []
    t0 = time.time()
    while todo or live:
        while todo and len(live) < args.parallel:
            seed = todo.pop(0)
            proc = subprocess.Popen(command(args, seed, root), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                    stderr=open(root / f"job{seed}.log", "a"))
            kill, after = None, None
            if kills_left > 0:
                kills_left -= 1
                if rng.random() < args.startup_frac:  # start-up: imports, validation, run creation, warm start
                    kill = time.time() + rng.uniform(args.min_delay, args.max_delay)
                else:  # training: after a random logged step, a random moment later (step, eval, checkpoint)
                    after = rng.randrange(-1, args.steps)
            live[seed] = (proc, kill, after, rng.choice(SIGNALS))
        time.sleep(0.05)
        for seed, (proc, kill, after, sig) in list(live.items()):
            code = proc.poll()
            if code is None and after is not None and progress(root, seed) >= after:
                kill, after = time.time() + rng.uniform(0, 1.5), None
                live[seed] = (proc, kill, after, sig)
            if code is None and kill is not None and time.time() >= kill:
                proc.send_signal(sig)
                log.append((round(time.time() - t0, 1), seed, signal.Signals(sig).name))
                live[seed] = (proc, None, None, sig)
                continue
            if code is None:
                continue
            del live[seed]
            if code != 0 and not finished(root, seed):  # killed (or preempted: 128 + signal): the same command again
                todo.append(seed)
                if code not in (0, -9, 130, 128 + signal.SIGTERM, 128 + signal.SIGUSR2, 1, -2):
                    print(f"job {seed}: unexpected exit {code} (see {root}/job{seed}.log)", file=sys.stderr)
    print(f"{len(log)} kills in {time.time() - t0:.0f} s:", ", ".join(f"t={t} job{s} {n}" for t, s, n in log))
    result = audit(root, args)
    resumed = sum(open(root / f"job{s}.log", errors="replace").read().count("resuming MLflow run")
                  for s in range(args.jobs))
    print("audit:", {**result, "resumed_attempts": resumed})
    bad = result["lost"] or result["duplicated"] or result["not_finished"] or result["runs"] != args.jobs
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

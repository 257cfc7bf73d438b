"""Running rlkit under torchrun (gloo, CPU) against a throwaway MLflow store, and reading runs back."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.conftest import DATA, REPO

# a small, deterministic run: 4 prompts x 8 samples per step, per-prompt seeded sampling (identical samples
# whatever the number of processes), 2 micro-batches per rank (gradient accumulation on both paths)
SMALL = ["trainer.prompts_per_step=4", "data.val_size=16", "trainer.threads=1", "rollout.seed_per_prompt=true",
         "trainer.micro_batch_size=8", "trainer.eval_every=2", "trainer.checkpoint_every=2"]


def env(tmp: Path, extra: dict | None = None) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "RLKIT_CHECKPOINT_DIR": str(tmp / "ck"),
            "RLKIT_DATA_DIR": str(DATA), "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", **(extra or {})}


def run(args: list[str], tmp: Path, nproc: int = 1, timeout: float = 900, extra_env: dict | None = None):
    """`python -m rlkit.run` (nproc 1) or `torchrun --standalone --nproc_per_node N -m rlkit.run`."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    return subprocess.run([*launcher, "-m", "rlkit.run", *args, f"hydra.run.dir={tmp}/out"], cwd=REPO,
                          env=env(tmp, extra_env), capture_output=True, text=True, timeout=timeout)


def runs(tmp: Path, experiment: str = "default"):
    mc = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    return mc, mc.search_runs([mc.get_experiment_by_name(experiment).experiment_id])


def history(tmp: Path) -> dict[str, dict[int, float]]:
    """{metric: {step: value}} of the only run in `tmp`'s store (asserts there is exactly one)."""
    mc, found = runs(tmp)
    assert len(found) == 1, f"{len(found)} MLflow runs"
    rid = found[0].info.run_id
    out: dict[str, dict[int, float]] = {}
    for key in found[0].data.metrics:
        hist = mc.get_metric_history(rid, key)
        steps = [m.step for m in hist]
        assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {steps}"
        out[key] = {m.step: m.value for m in hist}
    return out


NOT_COMPARED = ("timing_s/", "perf/", "summary/wall_time_s")


def assert_metrics_match(got: dict, want: dict, rtol: float = 1e-4, atol: float = 1e-6) -> float:
    """Every metric at every step equal within |a - b| <= atol + rtol |b| (timings excluded); returns the
    largest relative difference seen."""
    keys = {k for k in want if not k.startswith(NOT_COMPARED)}
    assert keys == {k for k in got if not k.startswith(NOT_COMPARED)}, set(got) ^ set(want)
    worst = 0.0
    for k in sorted(keys):
        assert got[k].keys() == want[k].keys(), (k, sorted(got[k]), sorted(want[k]))
        for step, b in want[k].items():
            a = got[k][step]
            assert abs(a - b) <= atol + rtol * abs(b), f"{k} at step {step}: {a} vs {b}"
            if abs(b) > 1e-6:
                worst = max(worst, abs(a - b) / abs(b))
    return worst


CRASH_HOOK = '''
import os
if os.environ.get("RLKIT_TEST_EXIT_AFTER_CHECKPOINT"):
    import rlkit.checkpoint as _c
    _save = _c.save
    def save(path, state):
        _save(path, state)
        if state["step"] + 1 >= int(os.environ["RLKIT_TEST_EXIT_AFTER_CHECKPOINT"]):
            os._exit(17)  # like a SIGKILL right after the checkpoint: no cleanup, status stays "running"
    _c.save = save
'''


def crash_env(tmp: Path, after_step: int) -> dict:
    """Environment whose rank 0 dies right after writing the checkpoint of `after_step` (a sitecustomize hook)."""
    hook = tmp / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    return {"PYTHONPATH": os.pathsep.join([str(hook), str(REPO), os.environ.get("PYTHONPATH", "")]),
            "RLKIT_TEST_EXIT_AFTER_CHECKPOINT": str(after_step)}

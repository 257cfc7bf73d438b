"""The golden loop: 10-step runs of grpo, ppo and dapo at one torch thread, every non-timing metric at
every step, recorded from the code *before* a refactor of the loop and compared bit for bit after it.

    python -m tests.spine.golden_loop record      # writes tests/spine/golden/<machine>.json (on the old code)
    python -m tests.spine.golden_loop check       # what tests/spine/test_golden_loop.py asserts

One torch thread because two-thread CPU reductions are not bitwise reproducible (README). Bit-identity
holds per machine kind only: MKL/oneDNN pick other kernels on another CPU vendor (an AMD EPYC and an
Intel Xeon, both AVX512, differ by ~1e-8 on the same code), so each kind has its own expectation,
recorded from the same code; on a kind with none, the closest recorded one must agree within
`UNRECORDED_RTOL`. The model the expectation was recorded with is named by its weights' SHA-256: a
different warm start is a different expectation (re-record on the old code), not a regression.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden")
UNRECORDED_RTOL = 1e-5  # a machine kind without its own expectation: rounding-level agreement only
ALGOS = ("grpo", "ppo", "dapo")
ARGS = ["trainer.steps=10", "trainer.threads=1", "trainer.eval_every=4", "trainer.checkpoint_every=3",
        "trainer.prompts_per_step=4", "data.val_size=32", "seed=0", "sweep.name=golden"]
SKIP = ("timing_s/", "perf/", "summary/wall_time_s")  # wall-clock measurements, never bit-stable
# metrics added after the expectation was recorded; the others staying bit-identical proves they change nothing
ADDED = ("eval/", "rollout/mismatch_", "rollout/is_", "rewards/timeout_frac")


def machine() -> str:
    """The machine kind a bit-exact expectation belongs to: CPU vendor and torch's kernel level."""
    import platform

    import torch

    vendor = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            vendor = next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), vendor)
    except OSError:
        pass
    return f"{vendor}-{torch.backends.cpu.get_cpu_capability()}"


def expectations() -> dict[str, dict]:
    """{machine kind: recorded expectation}."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(GOLDEN.glob("*.json"))}


def model_sha(env: dict[str, str]) -> str:
    """SHA-256 of model=tiny's weights as the runs load them (builds the warm start if needed)."""
    code = ("from hydra import compose, initialize_config_dir; from rlkit.models.load import model_path\n"
            f"with initialize_config_dir(config_dir={str(REPO / 'conf')!r}, version_base='1.3'):\n"
            "    print(model_path(compose('config').model))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip().splitlines()[-1])
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def run(tmp: Path) -> dict:
    """{algo: {metric: [[step, value], ...]}} of one fresh multirun in `tmp`, plus the model's sha."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "RLKIT_CHECKPOINT_DIR": str(tmp / "ck"),
           "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "rlkit.run", "-m", f"algo={','.join(ALGOS)}", *ARGS,
           f"hydra.sweep.dir={tmp}/multirun"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-4000:]}")
    from mlflow.tracking import MlflowClient

    mc = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    exp = mc.get_experiment_by_name("golden")
    out: dict = {"model_sha256": model_sha(env), "args": ARGS, "runs": {}}
    for r in mc.search_runs([exp.experiment_id]):
        if r.data.tags.get("rlkit.role") == "parent":
            continue
        hist = {}
        for key in sorted(r.data.metrics):
            if key.startswith(SKIP):
                continue
            hist[key] = sorted([m.step, m.value] for m in mc.get_metric_history(r.info.run_id, key))
        if r.data.tags["algo"] in out["runs"]:
            raise RuntimeError(f"two runs of algo={r.data.tags['algo']} (a seed sweep?): the golden run is one per algo")
        out["runs"][r.data.tags["algo"]] = hist
    return out


def differences(expected: dict, got: dict, rtol: float = 0.0) -> list[str]:
    """Every metric/step whose value differs by more than `rtol` relative (0: not bit-identical; NaN equals
    NaN), and every missing/extra key."""
    diffs = []
    for algo in ALGOS:
        e, g = expected["runs"].get(algo, {}), got["runs"].get(algo, {})
        for key in sorted(set(e) | set(g)):
            if key not in e and key.startswith(ADDED):
                continue
            if key not in g or key not in e:
                diffs.append(f"{algo} {key}: {'missing' if key not in g else 'new'}")
                continue
            ev, gv = dict(map(tuple, e[key])), dict(map(tuple, g[key]))
            if ev.keys() != gv.keys():
                diffs.append(f"{algo} {key}: steps {sorted(ev)} != {sorted(gv)}")
            for step in sorted(ev.keys() & gv.keys()):
                a, b = ev[step], gv[step]
                if not (a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rtol * max(abs(a), abs(b))):
                    diffs.append(f"{algo} {key} step {step}: expected {a!r} got {b!r}")
    return diffs


def dumps(rec: dict) -> str:
    """JSON with one line per metric history (floats as repr: they read back bit-identical)."""
    runs = ",\n".join(f" {json.dumps(algo)}: {{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}"
                                                         for k, v in sorted(hist.items())) + "\n }"
                      for algo, hist in sorted(rec["runs"].items()))
    head = {k: v for k, v in rec.items() if k != "runs"}
    return json.dumps(head, indent=1)[:-2] + ',\n "runs": {\n' + runs + "\n }\n}\n"


def check(got: dict) -> tuple[str, list[str]]:
    """(what `got` was compared with, the differences): this machine kind's expectation bit for bit, or,
    where none is recorded, the closest recorded one within UNRECORDED_RTOL."""
    recorded, here = expectations(), machine()
    if here in recorded:
        return f"{here} (bit-identical)", differences(recorded[here], got)
    tried = {kind: differences(exp, got, UNRECORDED_RTOL) for kind, exp in recorded.items()}
    kind = min(tried, key=lambda k: len(tried[k]))
    return f"{kind} within rtol {UNRECORDED_RTOL} (no expectation recorded for {here})", tried[kind]


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="rlkit-golden-") as d:
        got = run(Path(d))
    if argv[:1] == ["record"]:
        path = GOLDEN / f"{machine()}.json"
        path.write_text(dumps(got))
        print(f"wrote {path} ({sum(len(v) for v in got['runs'].values())} metric histories)")
        return 0
    shas = {e["model_sha256"] for e in expectations().values()}
    if got["model_sha256"] not in shas:
        print(f"model differs from the recorded one ({got['model_sha256'][:12]} vs {sorted(shas)})")
        return 2
    against, diffs = check(got)
    print(f"compared with {against}:\n" + ("\n".join(diffs[:50]) or "identical"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

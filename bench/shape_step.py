"""One RL step of a real preset's exact shape on the CPU, with peak memory: does the full-size code path run?

Builds the preset from its committed architecture (rlkit.models.shapes: random bf16 weights, the real
special tokens and chat template) into a temporary directory, then runs `python -m rlkit.run model=<preset>
model.path=<dir>` for one step of 2 prompts x 2 samples x 16 new tokens in each mode:
  torch         the plain backend, one process (the preset's own backend at zero_stage 0)
  zero3_offload DeepSpeed ZeRO-3 with the optimizer state offloaded to the CPU, 2 processes (torchrun, gloo)
  lora          LoRA rank 32 on every projection, one process
and prints wall time, peak RSS (the largest process, and all processes of the run together, sampled every
0.2 s from /proc) and the step's logged loss.

    python bench/shape_step.py [--preset qwen2.5-0.5b-instruct] [--modes torch zero3_offload lora]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEP = ["trainer.steps=1", "trainer.prompts_per_step=2", "trainer.group_size=2", "length.max_response_tokens=16",
        "length.overlong_buffer=4", "data.val_size=2", "eval=none", "trainer.eval_every=100", "trainer.threads=1",
        "rollout.seed_per_prompt=true", "trainer.micro_batch_size=2",
        # a random model scores 0 everywhere (zero advantages): the entropy bonus gives the update a real gradient
        "algo.entropy_coef=0.01", "trainer.skip_idle_rows=false"]
MODES = {
    "torch": (1, ["trainer.backend=torch"]),
    "zero3_offload": (2, ["trainer.backend=deepspeed", "model.resources.zero_stage=3", "trainer.offload_optimizer=true"]),
    "lora": (1, ["trainer.backend=torch", "model.lora.rank=32"]),
}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*") if Path(f"/proc/{p}/task").exists() else []:
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def run(mode: str, preset: str, ckpt: Path, tmp: Path, extra_args: list[str] = ()) -> dict:
    nproc, extra = MODES[mode]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/{mode}.db", "RLKIT_CHECKPOINT_DIR": str(tmp / mode),
           "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO)}
    cmd = [*launcher, "-m", "rlkit.run", f"model={preset}", f"model.path={ckpt}", *STEP, *extra, *extra_args,
           f"hydra.run.dir={tmp}/{mode}_out"]
    t0 = time.time()
    log = open(tmp / f"{mode}.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    peak_one = peak_all = 0.0
    while proc.poll() is None:
        sizes = [rss_mb(p) for p in tree(proc.pid)]
        peak_one, peak_all = max(peak_one, max(sizes, default=0)), max(peak_all, sum(sizes))
        time.sleep(0.2)
    wall = time.time() - t0
    out = {"mode": mode, "rc": proc.returncode, "wall_s": round(wall, 1), "peak_rss_process_mb": round(peak_one),
           "peak_rss_total_mb": round(peak_all), "processes": nproc}
    if proc.returncode == 0:
        from mlflow.tracking import MlflowClient

        mc = MlflowClient(f"sqlite:///{tmp}/{mode}.db")
        [r] = mc.search_runs([mc.get_experiment_by_name("default").experiment_id])
        m = r.data.metrics
        out.update({k: m.get(k) for k in ("actor/pg_loss", "actor/grad_norm", "response_length/mean", "timing_s/step")})
    else:
        out["log_tail"] = (tmp / f"{mode}.log").read_text()[-2000:]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--override", action="append", default=[], help="an rlkit.run override for every mode (repeatable)")
    args = ap.parse_args()
    from rlkit.models.shapes import write_random_checkpoint

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.time()
        ckpt = write_random_checkpoint(args.preset, tmp / "ckpt")
        print(f"{args.preset}: random checkpoint written in {time.time() - t0:.1f} s", flush=True)
        for mode in args.modes:
            print(run(mode, args.preset, ckpt, tmp, args.override), flush=True)


if __name__ == "__main__":
    main()

"""`python -m rlkit.run [-m] key=value ...`: the only Hydra-aware module.

Validates everything (config, algorithm, reward, data files, model) before compute, starts or
resumes the job's MLflow run, calls train(), and returns held-out accuracy as the sweep objective.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import rlkit.launch  # noqa: F401  (puts rlkit's Hydra launcher/sweeper plugins where Hydra's scan finds them)
from rlkit import checkpoint, distributed
from rlkit.config import GROUPS, ConfigError, check_curriculum, validate
from rlkit.data.stream import load_data


def job_tags(cfg: DictConfig, hc, sweep: dict | None) -> dict[str, str]:
    from rlkit.tracking import git_info

    choices = hc.runtime.choices
    tags = {g: str(choices.get(g)) for g in GROUPS if choices.get(g) is not None}
    sha, dirty = git_info()
    tags.update(seed=str(cfg.seed), sweep=cfg.sweep.name, git_sha=sha, git_dirty=str(dirty),
                sweep_id=(sweep or {}).get("sweep_id", "none"), **{"rlkit.overrides": " ".join(hc.overrides.task),
                                                                   # the budget at this model's scale (16k -> 40 on tiny)
                                                                   "rlkit.max_response_tokens": str(cfg.length.max_response_tokens)})
    for o in hc.overrides.task:
        key, _, value = o.lstrip("+~").partition("=")
        if key not in GROUPS and key not in ("seed",) and not key.startswith(("hydra", "sweep")):
            tags[f"override.{key}"] = value
    if os.environ.get("SLURM_JOB_ID"):
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def run_job(cfg: DictConfig) -> float:
    from rlkit.launch.callbacks import read_sweep_info
    from rlkit.tracking import Tracker

    hc = HydraConfig.get()
    validate(cfg)
    dist = distributed.init(cfg)  # the ranks of a torchrun / multi-task SLURM job (one process: nothing to join)
    distributed.check(cfg, dist)
    groups, stage_steps, held_out = load_data(cfg, check_curriculum(cfg))
    sweep = read_sweep_info(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    ckpt_dir = Path(cfg.paths.checkpoints) / checkpoint.run_key(cfg.tracking.experiment, list(hc.overrides.task))
    status = checkpoint.read_status(ckpt_dir)
    dist.barrier()  # every rank has read the status before rank 0 changes it
    resume_id = status.get("run_id") if status and status.get("state") != "finished" else None
    if status.get("state") == "finished":
        if sweep and status.get("sweep_id") == sweep.get("sweep_id"):  # a resumed sweep skips its finished jobs
            print(f"[rlkit] already finished in sweep {sweep['sweep_id']}: MLflow run {status['run_id']}", file=sys.stderr)
            dist.close()
            return float(status.get("val_acc", float("nan")))
        if dist.is_main:
            shutil.rmtree(ckpt_dir)  # the same command after a finished run starts a new run
        status = {}
    if not dist.is_main:  # only rank 0 holds the MLflow run and the status file; it logs the reduced metrics
        from rlkit.steps.log import NullTracker
        from rlkit.train import train

        dist.barrier()
        result = train(cfg, NullTracker(), ckpt_dir, groups, stage_steps, held_out)
        dist.close()
        return float(result["val/acc"])
    name = " ".join(o for o in hc.overrides.task if not o.startswith("hydra")) or "default"
    tracker = Tracker.start(cfg, job_tags(cfg, hc, sweep), name, (sweep or {}).get("parent_run_id"), resume_id)
    resumes = status.get("resumes", -1) + 1
    checkpoint.write_status(ckpt_dir, state="running", run_id=tracker.run_id, resumes=resumes,
                            experiment=cfg.tracking.experiment, sweep_id=(sweep or {}).get("sweep_id"),
                            overrides=list(hc.overrides.task), slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                            slurm_array=slurm_array_id(), host=socket.gethostname(), pid=os.getpid(),
                            output_dir=hc.runtime.output_dir)
    if resume_id:
        tracker.set_tags({"rlkit.resumes": str(resumes)})
        print(f"[rlkit] resuming MLflow run {resume_id} from {ckpt_dir} (resume #{resumes})", file=sys.stderr)
    from rlkit.train import train

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # (submitit installs its own handlers)
        signal.signal(signal.SIGTERM, _interrupt)
    from rlkit.models.load import model_path

    model_path(cfg.model)  # a first run builds the embedded warm start here (once, before the other ranks
    dist.barrier()  # load it), outside its summary/wall_time_s; the other ranks start once the run is resolved
    t0 = time.time()
    try:
        result = train(cfg, tracker, ckpt_dir, groups, stage_steps, held_out)
    except BaseException as e:  # KeyboardInterrupt/SIGTERM, SystemExit (submitit's requeue): resumable
        state = "failed" if isinstance(e, Exception) else "killed"
        checkpoint.write_status(ckpt_dir, state=state, error=repr(e)[:2000])
        tracker.finish(state)
        raise
    tracker.log({"summary/wall_time_s": time.time() - t0, "summary/final_val_acc": result["val/acc"]}, cfg.trainer.steps)
    tracker.finish("finished")
    checkpoint.write_status(ckpt_dir, state="finished", val_acc=result["val/acc"])
    dist.close()
    return float(result["val/acc"])


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def slurm_array_id() -> str | None:
    """`<array job id>_<task id>` (what squeue shows for an array task), else the plain job id."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    return env.get("SLURM_JOB_ID")


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    try:
        return run_job(cfg)
    except ConfigError as e:
        print(f"rlkit: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as e:
        print(f"rlkit: missing file: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

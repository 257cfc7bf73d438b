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
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import rlkit.launch  # noqa: F401  (puts rlkit's Hydra launcher/sweeper plugins where Hydra's scan finds them)
from rlkit.config import GROUPS, ConfigError, check_curriculum, validate
from rlkit.data.stream import load_data

# (torch, MLflow and the rest are imported after validation, so a bad value fails in about a second)


def job_tags(cfg: DictConfig, hc, sweep: dict | None) -> dict[str, str]:
    from rlkit.tracking import git_info

    choices = hc.runtime.choices
    tags = {g: str(choices.get(g)) for g in GROUPS if choices.get(g) is not None}
    sha, dirty = git_info()
    tags.update(seed=str(cfg.seed), sweep=cfg.sweep.name, git_sha=sha, git_dirty=str(dirty),
                sweep_id=(sweep or {}).get("sweep_id", "none"), **{"rlkit.overrides": " ".join(hc.overrides.task)})
    for o in hc.overrides.task:
        key, _, value = o.lstrip("+~").partition("=")
        if key not in GROUPS and key not in ("seed",) and not key.startswith(("hydra", "sweep")):
            tags[f"override.{key}"] = value
    if os.environ.get("SLURM_JOB_ID"):
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def run_job(cfg: DictConfig) -> float:
    from rlkit.launch.callbacks import read_sweep_info

    hc = HydraConfig.get()
    install_stop_handlers()  # first: a signal during start-up is then a request, not a kill
    validate(cfg)
    cfg.seed = int(cfg.seed) + int(cfg.seed_block)  # the run's seed from here on (tags, RNGs, checkpoints)
    from rlkit import checkpoint, distributed
    from rlkit.tracking import Tracker, check_reachable

    dist = distributed.init(cfg)  # the ranks of a torchrun / multi-task SLURM job (one process: nothing to join)
    distributed.check(cfg, dist)
    placement = dist.all_gather_object(os.environ.get("SLURMD_NODENAME") or socket.gethostname())  # node of each rank
    groups, stage_steps, held_out = load_data(cfg, check_curriculum(cfg))
    sweep = read_sweep_info(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    ckpt_dir = Path(cfg.paths.checkpoints) / checkpoint.run_key(cfg.tracking.experiment, list(hc.overrides.task))
    status = checkpoint.read_status(ckpt_dir)
    dist.barrier()  # every rank has read the status before rank 0 changes it
    fingerprint = checkpoint.config_fingerprint(cfg)
    superseded, aside = None, None  # an unfinished run of these overrides under another config: kept aside
    if status.get("state") not in (None, "finished") and "config" in status:
        if changes := checkpoint.config_changes(status["config"], fingerprint):
            superseded = status.get("run_id")
            if dist.is_main:
                aside = checkpoint.supersede(ckpt_dir, changes)
            status = {}
    resume_id = status.get("run_id") if status and status.get("state") != "finished" else None
    if status.get("state") == "finished":
        if sweep and status.get("sweep_id") == sweep.get("sweep_id"):  # a resumed sweep skips its finished jobs
            print(f"[rlkit] already finished in sweep {sweep['sweep_id']}: MLflow run {status['run_id']}", file=sys.stderr)
            dist.close()
            return float(status.get("val_acc", float("nan")))
        if dist.is_main:
            if spool_path(cfg, ckpt_dir).exists():  # values the finished run could not send yet go first
                from rlkit import spool

                check_reachable(cfg.tracking.uri)
                spool.replay(spool_path(cfg, ckpt_dir), cfg.tracking.uri)
            shutil.rmtree(ckpt_dir)  # the same command after a finished run starts a new run
        status = {}
    if not dist.is_main:  # only rank 0 holds the MLflow run and the status file; it logs the reduced metrics
        from rlkit.steps.log import NullTracker
        from rlkit.train import train

        dist.barrier()
        try:
            result = train(cfg, NullTracker(), ckpt_dir, groups, stage_steps, held_out)
        except checkpoint.Preempted as e:
            raise SystemExit(128 + e.signum) from None
        dist.close()
        return float(result["val/acc"])
    checkpoint.check_writable(ckpt_dir)  # before a run exists: an unwritable dir must not leave it RUNNING
    check_reachable(cfg.tracking.uri)  # seconds, not MLflow's minutes of retries
    if checkpoint.stop_requested() and dist.world == 1:  # asked to stop before the run exists: nothing to record
        print(f"[rlkit] signal {checkpoint.stop_requested()} before the run started: exiting", file=sys.stderr)
        raise SystemExit(128 + checkpoint.stop_requested())
    name = " ".join(o for o in hc.overrides.task if not o.startswith("hydra")) or "default"
    tags = {**job_tags(cfg, hc, sweep), "rlkit.run_key": ckpt_dir.name, "rlkit.world_size": str(dist.world),
            "rlkit.nodes": ",".join(placement)}
    resume_id = resume_id or orphan_run(cfg, ckpt_dir.name)
    tracker = Tracker.start(cfg, tags, name, (sweep or {}).get("parent_run_id"), resume_id, spool_path(cfg, ckpt_dir))
    from rlkit.steps.metrics import NonFinite
    try:  # from here on the run exists: whatever happens, it ends FAILED / KILLED / preempted, never RUNNING
        resumes = status.get("resumes", -1) + 1
        checkpoint.write_status(ckpt_dir, state="running", run_id=tracker.run_id, resumes=resumes, error=None,
                                experiment=cfg.tracking.experiment, sweep_id=(sweep or {}).get("sweep_id"),
                                overrides=list(hc.overrides.task), slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                                slurm_array=slurm_array_id(), host=socket.gethostname(), pid=os.getpid(),
                                output_dir=hc.runtime.output_dir, config=fingerprint)
        if superseded:
            mark_superseded(cfg, superseded, tracker.run_id, aside)
        if resume_id:
            tracker.set_tags({"rlkit.resumes": str(resumes)})
            print(f"[rlkit] resuming MLflow run {resume_id} from {ckpt_dir} (resume #{resumes})", file=sys.stderr)
        from rlkit.models.load import model_path
        from rlkit.steps.parts import torch_threads
        from rlkit.train import train

        tracker.log_provenance(torch_threads(cfg), bool(cfg.trainer.get("deterministic")), resumes)

        model_path(cfg.model)  # a first run builds the embedded warm start here (once, before the other ranks
        dist.barrier()  # load it), outside its summary/wall_time_s; the other ranks start once the run is resolved
        result = train(cfg, tracker, ckpt_dir, groups, stage_steps, held_out)
        tracker.log_summary({"summary/wall_time_s": result["wall_time_s"], "summary/final_val_acc": result["val/acc"]},
                            cfg.trainer.steps)
        tracker.finish("finished")
    except checkpoint.Preempted as e:  # checkpointed at a step boundary: the same command resumes it
        _record_end(tracker, ckpt_dir, "preempted", str(e))
        print(f"[rlkit] {e}; checkpoint in {ckpt_dir}; run the same command to resume MLflow run {tracker.run_id}",
              file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    except NonFinite as e:  # diverged: FAILED with a diagnosis, its last checkpoint is the last finite state
        tracker.set_tags({"rlkit.diagnosis": e.diagnosis})
        _record_end(tracker, ckpt_dir, "failed", str(e))
        print(f"rlkit: run {tracker.run_id} FAILED: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except BaseException as e:  # an error, KeyboardInterrupt, SystemExit (submitit's requeue): resumable
        _record_end(tracker, ckpt_dir, "failed" if isinstance(e, Exception) else "killed",
                    f"{type(e).__name__}: {e}")
        raise
    checkpoint.write_status(ckpt_dir, state="finished", val_acc=result["val/acc"], error=None)
    dist.close()
    return float(result["val/acc"])


def spool_path(cfg: DictConfig, ckpt_dir: Path) -> Path:
    """The job's tracking spool: beside its checkpoint, or under tracking.spool_dir (another filesystem,
    so a checkpoint filling the disk cannot also stop the tracking of the run's end)."""
    root = cfg.tracking.get("spool_dir")
    return Path(root) / ckpt_dir.name / "spool" if root else ckpt_dir / "spool"


def orphan_run(cfg: DictConfig, key: str) -> str | None:
    """A run of this job created by an attempt killed before it could record the run id in status.json
    (nothing logged yet): adopted instead of leaving a second, empty run behind."""
    from rlkit.tracking import client

    mc = client(cfg.tracking.uri)
    exp = mc.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    runs = mc.search_runs([exp.experiment_id], f"tags.`rlkit.run_key` = '{key}' and attributes.status != 'FINISHED'",
                          max_results=5)
    empty = [r for r in runs if not r.data.metrics]
    return empty[0].info.run_id if empty else None


def mark_superseded(cfg: DictConfig, old_run: str, new_run: str, aside: Path | None = None) -> None:
    """End the run whose checkpoint was set aside: first the values its spool still held (a job killed
    before it sent them), then KILLED (unless it already ended) with `rlkit.status=superseded`, pointing
    to its successor; the report lists it as superseded."""
    from rlkit import spool
    from rlkit.tracking import client

    try:
        if aside is not None and (aside / "spool").is_dir():
            sent = spool.replay(aside / "spool", cfg.tracking.uri)
            if sent:
                print(f"[rlkit] sent {sent} records the superseded run {old_run} left in {aside / 'spool'}",
                      file=sys.stderr)
        mc = client(cfg.tracking.uri)
        mc.set_tag(old_run, "rlkit.status", "superseded")
        mc.set_tag(old_run, "rlkit.state", "superseded")
        mc.set_tag(old_run, "rlkit.superseded_by", new_run)
        if mc.get_run(old_run).info.status == "RUNNING":  # (a FAILED or KILLED one keeps its status)
            mc.set_terminated(old_run, "KILLED")
    except Exception as e:  # noqa: BLE001  (a missing old run must not stop the new one)
        print(f"[rlkit] cannot end superseded run {old_run}: {type(e).__name__}: {e}", file=sys.stderr)


def _record_end(tracker, ckpt_dir: Path, state: str, error: str) -> None:
    """Mark the run and status.json; a tracking failure here must not hide the original error."""
    from rlkit import checkpoint

    try:
        checkpoint.write_status(ckpt_dir, state=state, error=error[:2000])
    except OSError as e:
        print(f"[rlkit] cannot write {ckpt_dir}/status.json: {e}", file=sys.stderr)
    try:
        tracker.finish(state, error=error)
    except Exception as e:  # noqa: BLE001
        print(f"[rlkit] cannot mark MLflow run {tracker.run_id} {state}: {type(e).__name__}: {e}", file=sys.stderr)


def install_stop_handlers() -> None:
    """SIGTERM / SIGUSR2 (SLURM preemption, a time-limit warning, `kill`) ask train() to checkpoint at
    the next step boundary and exit 128 + signal. Installed only where nobody else handles them:
    submitit's own handlers (SLURM/local launchers: checkpoint-and-requeue) stay in charge there."""
    from rlkit import checkpoint

    for sig in (signal.SIGTERM, signal.SIGUSR2):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, checkpoint.request_stop)


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
    except Exception as e:
        from rlkit.checkpoint import CheckpointUnreadable, DiskFull, NotWritable

        if isinstance(e, (CheckpointUnreadable, DiskFull)):  # the run is marked FAILED with it; the message says what to do
            print(f"rlkit: {e}", file=sys.stderr)
            sys.exit(1)
        from rlkit.tracking import StoreError, TrackingUnreachable

        if isinstance(e, (TrackingUnreachable, NotWritable, StoreError)):
            print(f"rlkit: {e}", file=sys.stderr)  # a user error: the message says what to do, no traceback
            sys.exit(2)
        raise


if __name__ == "__main__":
    from rlkit.algos.params import moved_override

    if (moved := moved_override(sys.argv[1:])) is not None:  # before Hydra, whose message does not say where it went
        print(f"rlkit: config error: {moved}", file=sys.stderr)
        sys.exit(2)
    main()

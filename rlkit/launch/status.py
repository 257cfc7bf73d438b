"""`python -m rlkit.status <sweep dir | sweep id | sweep name>`: each job's state, from rlkit's own records.

Sources, in order of authority: the job's `status.json` in its checkpoint dir (written by rlkit.run:
running / finished / failed / killed, resumes, run id, pid, SLURM ids), the job's MLflow child run
(`rlkit.status`, `rlkit.resumes`, last logged step, val/acc), and SLURM (`squeue`, then `sacct`) or
the local process table for jobs that have not written a status yet or died without a word. SLURM
alone is not enough: it reports a job whose Python raised inside Hydra as COMPLETED.

States: pending (submitted, not started), running, requeued (killed/preempted, waiting to resume),
killed (stopped before the end: resubmit to resume it), failed (raised), finished.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from rlkit import checkpoint
from rlkit.launch.callbacks import read_sweep_info
from rlkit.launch.launchers import read_jobs

SLURM_LIVE = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING"}
SLURM_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}


def find_sweep(target: str, tracking_uri: str | None = None) -> Path:
    """The sweep dir of a path, else of the sweep `rlkit.report` would pick for the same name (one rule:
    rlkit.report.collect.find_sweep — experiment name, then sweep id, then sweep tag; newest parent)."""
    p = Path(target)
    if (p / "rlkit_sweep.json").exists():
        return p
    from rlkit import tracking
    from rlkit.report.collect import SweepNotFound
    from rlkit.report.collect import find_sweep as report_sweep

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():  # (MLflow would create it)
        raise SystemExit(f"rlkit.status: no sweep {target!r}: not a sweep dir (with rlkit_sweep.json), and there "
                         f"is no MLflow store at {uri}")
    mc = tracking.client(uri)
    try:
        sweep = report_sweep(mc, target)
    except SweepNotFound as e:
        raise SystemExit(f"rlkit.status: no sweep {target!r}: not a sweep dir (with rlkit_sweep.json); {e}") from None
    sweep_dir = mc.get_run(sweep.parent_run_id).data.tags.get("sweep_dir") if sweep.parent_run_id else None
    if not sweep_dir:
        raise SystemExit(f"rlkit.status: {target!r} in {uri} has no sweep parent run with a sweep dir (single runs?)")
    return Path(sweep_dir)


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """State of each SLURM job id (`123` or array task `123_4`): squeue for live jobs, else sacct."""
    if not job_ids or not shutil.which("squeue"):
        return {}
    ids = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    out: dict[str, str] = {}
    if shutil.which("sacct"):
        for line in _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ids]).splitlines():
            jid, _, state = line.partition("|")
            if jid and state:
                out[jid.strip()] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    for line in _run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ids]).splitlines():
        jid, _, state = line.partition("|")
        if jid and state:
            out[jid.strip()] = state.strip()
    return out


def pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def job_state(status: dict, run_tags: dict, slurm: str | None, local_pid: str | None) -> str:
    """One job's state from its status.json, MLflow tags, SLURM state and local submitit pid."""
    here = status.get("host") == socket.gethostname()
    st = status.get("state") or run_tags.get("rlkit.status")
    if st in ("finished", "failed"):
        return st
    if slurm:
        if slurm in SLURM_LIVE:
            return "running"
        if slurm in SLURM_WAITING:
            return "requeued" if st else "pending"
        if st is None:  # ended without rlkit ever starting the run (or without a record)
            return "failed" if slurm == "COMPLETED" else "killed"
        return "killed"  # CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, OUT_OF_MEMORY ... or COMPLETED while 'running'
    if st == "running":
        if here and not pid_alive(status.get("pid")):
            return "killed"  # SIGKILL or a crash between checkpoints
        return "running"
    if st in ("killed", "preempted"):
        return "requeued" if local_pid and pid_alive(local_pid) else "killed"
    if local_pid:
        return "running" if pid_alive(local_pid) else "failed"
    return "pending"


def collect(sweep_dir: Path, tracking_uri: str | None = None) -> tuple[dict, list[dict[str, Any]]]:
    from rlkit import tracking

    info = read_sweep_info(sweep_dir)
    if info is None:
        raise SystemExit(f"rlkit.status: {sweep_dir} has no rlkit_sweep.json")
    submitted = read_jobs(sweep_dir)
    jobs: dict[str, dict[str, Any]] = {}
    for ov in info.get("jobs") or []:
        jobs.setdefault(checkpoint.run_key(info["experiment"], ov), {"overrides": ov})
    for row in submitted:  # later submissions of the same job (a resumed sweep) win
        j = jobs.setdefault(checkpoint.run_key(info["experiment"], row["overrides"]), {"overrides": row["overrides"]})
        j.update(job_id=row["job_id"], launcher=row["launcher"])
    mc = tracking.client(tracking_uri or info["tracking_uri"])
    children = {r.info.run_id: r for r in mc.search_runs(
        [mc.get_run(info["parent_run_id"]).info.experiment_id],
        f"tags.mlflow.parentRunId = '{info['parent_run_id']}'", max_results=5000)}
    by_overrides = {r.data.tags.get("rlkit.overrides"): r for r in children.values()}
    slurm = slurm_states([j["job_id"] for j in jobs.values() if j.get("launcher") == "slurm"])
    rows = []
    for i, (key, j) in enumerate(jobs.items()):
        status = checkpoint.read_status(Path(info["checkpoints"]) / key)
        run = children.get(status.get("run_id")) or by_overrides.get(" ".join(j["overrides"]))
        tags = run.data.tags if run else {}
        sl = None
        if j.get("launcher") == "slurm":
            sl = slurm.get(status.get("slurm_array") or "") or slurm.get(j.get("job_id", ""))
        local_pid = j.get("job_id") if j.get("launcher") == "local" else None
        rows.append({
            "job": i, "state": job_state(status, tags, sl, local_pid),
            "resumes": int(status.get("resumes", tags.get("rlkit.resumes", 0)) or 0),
            "step": tracking.last_logged_step(mc, run.info.run_id, ("timing_s/step",)) if run else None,
            "val_acc": run.data.metrics.get("val/acc") if run else None,
            "job_id": j.get("job_id"), "slurm_state": sl, "run_id": run.info.run_id if run else status.get("run_id"),
            "overrides": j["overrides"], "run_key": key, "error": status.get("error"),
        })
    return info, rows


def varying(rows: list[dict]) -> list[str]:
    """Override keys whose value differs between jobs (what tells them apart)."""
    values: dict[str, set] = {}
    for r in rows:
        for o in r["overrides"]:
            k, _, v = o.partition("=")
            values.setdefault(k, set()).add(v)
    return [k for k, vs in values.items() if len(vs) > 1]


def render(info: dict, rows: list[dict]) -> str:
    keys = varying(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    drv = info.get("driver") or {}
    here = drv.get("host") == socket.gethostname()
    drv_state = ("running" if pid_alive(drv.get("pid")) else "exited") if here else "(another host)"
    lines = [f"sweep {info['sweep']} id {info['sweep_id']} ({info.get('launcher')}) in {info['sweep_dir']}",
             f"MLflow {info['tracking_uri']} experiment {info['experiment']!r} parent run {info['parent_run_id']}",
             f"driver pid {drv.get('pid')} on {drv.get('host')}: {drv_state}",
             "  ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs yet", ""]
    header = f"{'#':>3}  {'state':<9} {'resumes':>7} {'step':>6} {'val/acc':>7}  {'job id':<12} overrides"
    lines.append(header)
    for r in rows:
        ov = " ".join(o for o in r["overrides"] if o.partition("=")[0] in keys) or " ".join(r["overrides"])
        acc = "" if r["val_acc"] is None else f"{r['val_acc']:.3f}"
        step = "" if r["step"] is None or r["step"] < 0 else str(r["step"])
        job = (r["job_id"] or "") + (f" {r['slurm_state']}" if r["slurm_state"] else "")
        lines.append(f"{r['job']:>3}  {r['state']:<9} {r['resumes']:>7} {step:>6} {acc:>7}  {job:<12} {ov}")
        if r["state"] == "failed" and r["error"]:
            lines.append(f"{'':>5}error: {' '.join(r['error'].split())[:300]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rlkit.status", description=__doc__.split("\n")[0])
    p.add_argument("sweep", help="sweep dir (with rlkit_sweep.json), sweep id, or sweep name (newest)")
    p.add_argument("--tracking-uri", help="MLflow URI [the sweep's, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db]")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = p.parse_args(argv)
    sweep_dir = find_sweep(args.sweep, args.tracking_uri)
    info, rows = collect(sweep_dir, args.tracking_uri)
    if args.json:
        print(json.dumps({"sweep": info, "jobs": rows}, indent=1, default=str))
    else:
        print(render(info, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m rlkit.submit <same args as python -m rlkit.run -m>`: submit a sweep and return at once.

Hydra's launchers block until every job ends. This command checks every job's config in the
foreground (a bad sweep fails here, before anything is submitted), pins the sweep dir, starts the
Hydra multirun as a detached process (new session, survives the terminal; log in
`<sweep dir>/rlkit_submit.log`), waits until the parent MLflow run exists and the jobs are submitted,
prints the sweep id, job ids and where results go, and exits. The detached driver waits for the jobs
and closes the parent run; the jobs themselves do not depend on it (SLURM requeues, rlkit resumes).

    python -m rlkit.submit +sweep=format_reward launcher=slurm      # any rlkit.run -m arguments
    python -m rlkit.submit +sweep=length --cluster                  # the sweep file's full-scale `cluster:` block
    python -m rlkit.submit --resume <sweep dir | sweep id | name>   # same sweep again: finished jobs are
                                                                    # skipped, killed ones resume
    python -m rlkit.status <sweep dir | sweep id | name>
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rlkit.config import CONF_DIR, ConfigError
from rlkit.launch.callbacks import read_sweep_info
from rlkit.launch.launchers import read_jobs
from rlkit.launch.status import find_sweep, pid_alive
from rlkit.tracking import TrackingUnreachable, check_reachable

SWEEPS_DIR = CONF_DIR.parent / "sweeps"
LOG = "rlkit_submit.log"


def cluster_overrides(args: list[str]) -> list[str]:
    """The `cluster:` block of the sweep file named by `+sweep=<name>` as overrides. A non-empty
    `grid` is the whole full-scale grid: it replaces the file's tiny-scale `hydra.sweeper.params`
    (an empty one keeps them, e.g. an Optuna search space)."""
    names = [a.split("=", 1)[1] for a in args if a.startswith("+sweep=")]
    if not names:
        raise ConfigError("--cluster needs +sweep=<name>")
    f = SWEEPS_DIR / f"{names[0]}.yaml"
    block = (yaml.safe_load(f.read_text()) or {}).get("cluster") if f.exists() else None
    if not block:
        raise ConfigError(f"{f} has no `cluster:` block")
    grid = [f"{k}={v}" for k, v in (block.get("grid") or {}).items()]
    return list(block.get("overrides") or []) + (["hydra.sweeper.params=null"] + grid if grid else [])


def compose_multirun(overrides: list[str]):
    """The multirun config of `python -m rlkit.run -m <overrides>`, composed in this process."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    import rlkit.launch  # noqa: F401  (rlkit's Hydra plugins on sys.path)

    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run")
    cfg = GlobalHydra.instance().hydra.compose_config(  # type: ignore[union-attr]
        "config", overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
    HydraConfig.instance().set_config(cfg)
    return cfg


def spawn(cmd: list[str], sweep_dir: Path) -> subprocess.Popen:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log = open(sweep_dir / LOG, "a")
    log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
    log.flush()
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=os.getcwd())


def wait_submitted(proc: subprocess.Popen, sweep_dir: Path, since: float, timeout: float) -> tuple[dict | None, list]:
    """Until the parent run exists and the jobs are submitted, the driver exits, or `timeout`."""
    end = time.time() + timeout
    info, jobs = None, []
    while time.time() < end:
        info = read_sweep_info(sweep_dir)
        if info and info.get("driver", {}).get("pid") == proc.pid:
            jobs = [j for j in read_jobs(sweep_dir) if j["submitted"] >= since]
            expected = 1 if "Optuna" in str(info.get("sweeper")) else len(info.get("jobs") or [])
            if info.get("launcher") not in ("slurm", "local_parallel") or len(jobs) >= max(1, expected):
                return info, jobs
        if proc.poll() is not None:
            return read_sweep_info(sweep_dir), [j for j in read_jobs(sweep_dir) if j["submitted"] >= since]
        time.sleep(0.5)
    return info, jobs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rlkit.submit", description=__doc__.split("\n")[0],
                                epilog="Other arguments are passed to `python -m rlkit.run -m`.")
    p.add_argument("--resume", metavar="SWEEP", help="re-run this sweep (dir, sweep id or name) in its own sweep dir")
    p.add_argument("--cluster", action="store_true", help="apply the sweep file's full-scale `cluster:` block")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the jobs to be submitted [300]")
    args, overrides = p.parse_known_args(argv)
    overrides = [o for o in overrides if o not in ("-m", "--multirun")]  # always a multirun
    try:
        if args.resume:
            sweep_dir = find_sweep(args.resume).resolve()
            old = read_sweep_info(sweep_dir)
            drv = old.get("driver") or {}
            if drv.get("host") == socket.gethostname() and drv.get("pid") and pid_alive(drv["pid"]):
                print(f"rlkit.submit: the sweep's driver (pid {drv['pid']}) is still running", file=sys.stderr)
                return 1
            check_reachable(str(old["tracking_uri"]))  # before the detached driver: fail here, in seconds
            keep = [o for o in old["hydra_overrides"] + overrides if not o.startswith("hydra.sweep.dir=")]
            overrides = old["overrides"] + keep
        else:
            if args.cluster:
                overrides = cluster_overrides(overrides) + overrides
            cfg = compose_multirun(overrides)
            from rlkit.launch.sweep import check_sweep

            check_sweep(cfg)
            check_reachable(str(cfg.tracking.uri))  # before the detached driver: fail here, in seconds
            sweep_dir = Path(str(cfg.hydra.sweep.dir)).resolve()
            if (sweep_dir / "rlkit_sweep.json").exists():
                raise ConfigError(f"{sweep_dir} already holds a sweep; use --resume {sweep_dir}")
    except ConfigError as e:
        print(f"rlkit: config error: {e}", file=sys.stderr)
        return 2
    except TrackingUnreachable as e:
        print(f"rlkit: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # Hydra composition errors name the group/key
        print(f"rlkit: config error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "rlkit.run", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    since = time.time()
    proc = spawn(cmd, sweep_dir)
    info, jobs = wait_submitted(proc, sweep_dir, since, args.timeout)
    rc = proc.poll()
    if info is None or (rc not in (None, 0) and not jobs):
        tail = (sweep_dir / LOG).read_text()[-3000:]
        why = f"driver pid {proc.pid} still starting after {args.timeout:.0f} s" if rc is None else f"driver exit code {rc}"
        print(f"rlkit.submit: the sweep did not start ({why}); log {sweep_dir / LOG}:\n{tail}", file=sys.stderr)
        return rc or 1
    ids = " ".join(j["job_id"] for j in jobs) or "(jobs run inside the driver)"
    uri = info["tracking_uri"]
    print(f"sweep:      {info['sweep']}  id {info['sweep_id']}  ({len(info.get('jobs') or jobs)} jobs, "
          f"launcher {info.get('launcher')})\n"
          f"sweep dir:  {sweep_dir}\n"
          f"job ids:    {ids}\n"
          f"driver:     pid {proc.pid} ({'running' if rc is None else f'exited {rc}'}), log {sweep_dir / LOG}\n"
          f"MLflow:     {uri}  experiment {info['experiment']!r}  parent run {info['parent_run_id']}\n"
          f"status:     python -m rlkit.status {sweep_dir}\n"
          f"report:     python -m rlkit.report {info['sweep']} --tracking-uri {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

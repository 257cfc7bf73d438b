"""Save and restore everything a resumed run needs, so a killed or preempted job loses nothing.

A run's checkpoint directory is keyed by the experiment and the job's own overrides (not by
Hydra's timestamped output dir), so the same command started again - by hand, by a SLURM requeue
or by a resubmitted sweep - finds it. `status.json` beside it is rlkit's own record of the job's
state, because SLURM reports a job whose Python raised inside Hydra as COMPLETED.

A checkpoint must survive its own failure: `state.pt` (newest) and `state.prev.pt` (the one before)
are each written to a temp file, checksummed (`<name>.sha256`) and renamed into place; `load`
verifies the checksum and falls back to the previous file, naming the bad one and moving it aside,
so a truncated file cannot make every requeue fail the same way.

A checkpoint is resumed only under the configuration that wrote it: `status.json` keeps the composed
config's fingerprint (`config_fingerprint`), and a start whose config differs (an edited preset, a
changed default, another sweep file with the same overrides) moves the old directory aside and starts
a fresh run (`supersede`) instead of silently continuing the old model under the new name.

Preemption: rlkit.run turns SIGTERM/SIGUSR2 into a request (`request_stop`) that train() reads at
the next step boundary: it checkpoints and raises `Preempted`, and rlkit.run exits 128 + signal.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

NEWEST, PREVIOUS = "state.pt", "state.prev.pt"
_STOP = 0  # the signal number asking this process to stop at the next step boundary (0: none)


class Preempted(BaseException):
    """Raised by train() after the checkpoint that follows a stop request (not an Exception: nothing
    on the way up may swallow it)."""

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"preempted by signal {signum} after step {step}")
        self.signum, self.step = signum, step


def request_stop(signum: int, frame: Any = None) -> None:
    """Signal handler: remember the request; the loop checkpoints and stops at its next step boundary."""
    global _STOP
    _STOP = signum
    print(f"[rlkit] signal {signum}: checkpointing at the next step boundary, then exiting", file=sys.stderr, flush=True)


def stop_requested(dist: Any = None) -> int:
    """The signal asking to stop (0: none), agreed by every rank so they checkpoint together."""
    if dist is None or getattr(dist, "world", 1) == 1:
        return _STOP
    anyone = dist.sum(float(_STOP > 0))[0] > 0
    return _STOP or (15 if anyone else 0)


def run_key(experiment: str, overrides: list[str]) -> str:
    """Stable id of a job: its experiment plus its sorted overrides (launcher choice excluded)."""
    kept = sorted(o for o in overrides if not o.startswith(("launcher=", "hydra.", "+sweep=")))
    digest = hashlib.sha256(json.dumps([experiment, kept]).encode()).hexdigest()[:12]
    return digest


# What may differ between attempts of one run without changing what it trains: where files and metrics
# go, threads (a requeue may land on another node), checkpoint cadence, the report/cluster blocks, and the
# guards (divergence stop, reward time budget and its workers: a checkpoint from before them resumes).
RESUME_IGNORES = ("paths", "tracking", "sweep", "report", "cluster", "evaluate", "passrate", "trainer.threads",
                  "trainer.checkpoint_every", "trainer.on_nonfinite", "trainer.reward_workers", "trainer.reward_budget_s")


def config_fingerprint(cfg: Any) -> dict[str, str]:
    """The resolved config as flat key -> JSON value, minus RESUME_IGNORES: what a resume must match."""
    from omegaconf import OmegaConf

    def flat(x: Any, prefix: str) -> dict[str, str]:
        if isinstance(x, dict):
            return {k: v for key, val in x.items() for k, v in flat(val, f"{prefix}{key}.").items()}
        return {prefix[:-1]: json.dumps(x, sort_keys=True, default=str)}

    items = flat(OmegaConf.to_container(cfg, resolve=True), "")
    return {k: v for k, v in sorted(items.items())
            if not any(k == i or k.startswith(i + ".") for i in RESUME_IGNORES)}


def config_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """`key: old -> new` for every key whose value differs (added or removed keys included)."""
    return [f"{k}: {old.get(k, '(absent)')} -> {new.get(k, '(absent)')}" for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)]


def supersede(ckpt_dir: Path, changes: list[str]) -> Path:
    """Move a checkpoint written under another configuration aside (kept, never deleted) so the job
    starts fresh; returns where it went."""
    n = 1
    while (aside := ckpt_dir.with_name(f"{ckpt_dir.name}.superseded-{n}")).exists():
        n += 1
    ckpt_dir.rename(aside)
    shown = "; ".join(changes[:6]) + (f"; ... {len(changes) - 6} more" if len(changes) > 6 else "")
    print(f"[rlkit] the checkpoint of this job was written under a different configuration ({shown}); "
          f"not resuming it: starting a fresh run. The old checkpoint is kept in {aside}", file=sys.stderr)
    return aside


def rng_state() -> dict[str, Any]:
    import torch

    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


class NotWritable(OSError):
    """The checkpoint directory cannot be written (a user error, reported without a traceback)."""


def check_writable(path: Path) -> None:
    """Create `path` and write/remove a probe file in it; raises NotWritable naming the directory."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise NotWritable(f"checkpoint directory {path} is not writable ({e.strerror or e}); set paths.checkpoints= "
                      f"(or RLKIT_CHECKPOINT_DIR) to a writable directory") from e


def _sha256(f: Path) -> str:
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(f: Path, text: str) -> None:
    tmp = f.with_name(f"{f.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, f)
    except OSError:
        tmp.unlink(missing_ok=True)  # (a full disk: no partial file left behind)
        raise


class DiskFull(OSError):
    """A checkpoint cannot be written for lack of space: the message names the disk and the path."""


def _free(path: Path) -> int:
    import shutil

    try:
        return shutil.disk_usage(path).free
    except OSError:
        return -1


def write_failed(path: Path, e: BaseException) -> Exception:
    """The error to raise for a failed checkpoint write: DiskFull naming the directory when the disk is full
    (torch.save reports ENOSPC as `[enforce fail at inline_container.cc] unexpected pos ...`), else `e`."""
    free = _free(path)
    full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e) \
        or (0 <= free < 1 << 20)
    if not full or not isinstance(e, Exception):
        return e if isinstance(e, Exception) else RuntimeError(str(e))
    return DiskFull(errno.ENOSPC, f"No space left on device at {path} ({max(free, 0) / 1e6:.1f} MB free) while "
                    f"writing its checkpoint ({type(e).__name__}: {str(e)[:200]}); the partial file was removed. "
                    "Free space there (or set paths.checkpoints= to a larger filesystem) and run the same command: "
                    "it resumes from the last complete checkpoint")


def preflight(path: Path, estimate: int) -> None:
    """Before the first checkpoint: the directory's filesystem must hold the checkpoints a run keeps at
    its peak (newest + previous + the temp file being written), else fail now naming the disk, rather
    than after the first steps' compute."""
    have = sum(f.stat().st_size for f in path.glob("state*.pt") if f.is_file()) if path.is_dir() else 0
    need = 3 * estimate - have
    free = _free(path)
    if 0 <= free < need:
        raise DiskFull(errno.ENOSPC, f"No space left on device at {path} for this run's checkpoints: about "
                       f"{need / 1e6:.1f} MB needed (3 x {estimate / 1e6:.1f} MB: newest, previous and the one being "
                       f"written), {free / 1e6:.1f} MB free. Free space there or set paths.checkpoints= "
                       "(RLKIT_CHECKPOINT_DIR) to a larger filesystem")


def save(path: Path, state: dict[str, Any]) -> None:
    """Write state.pt atomically with its checksum, keeping the previous one as state.prev.pt.
    Order: temp file + fsync; newest -> previous; checksum; temp -> newest. A kill at any point leaves
    a verifiable newest or previous file; a failed write (a full disk) removes its temp files and raises
    DiskFull naming the directory."""
    import torch

    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f"{NEWEST}.tmp{os.getpid()}"
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        digest = _sha256(tmp)
        _rotate(path, tmp, digest)
    except Exception as e:
        for f in (tmp, path / f"{NEWEST}.sha256.tmp{os.getpid()}"):
            f.unlink(missing_ok=True)
        err = write_failed(path, e)
        if err is e:
            raise
        raise err from e


def _rotate(path: Path, tmp: Path, digest: str) -> None:
    new, prev = path / NEWEST, path / PREVIOUS
    if new.exists():
        os.replace(new, prev)
        if (path / f"{NEWEST}.sha256").exists():
            os.replace(path / f"{NEWEST}.sha256", path / f"{PREVIOUS}.sha256")
        else:
            (path / f"{PREVIOUS}.sha256").unlink(missing_ok=True)
    _write_atomic(path / f"{NEWEST}.sha256", digest + "\n")
    os.replace(tmp, new)


def clean_stale(path: Path) -> list[Path]:
    """Remove temp files left by a process killed mid-write (any `*.tmp<pid>` not of this process)."""
    mine = f".tmp{os.getpid()}"
    stale = [f for f in path.glob("*.tmp*") if not f.name.endswith(mine)] if path.is_dir() else []
    for f in stale:
        f.unlink(missing_ok=True)
    return stale


def _verify_and_load(f: Path) -> dict[str, Any]:
    import torch

    sidecar = f.with_name(f.name + ".sha256")
    if sidecar.exists():  # (a checkpoint written before checksums has none: loading it is the check)
        want = sidecar.read_text().strip()
        got = _sha256(f)
        if got != want:
            raise ValueError(f"checksum mismatch (sha256 {got[:12]}..., expected {want[:12]}...; "
                             f"{f.stat().st_size} bytes: truncated or overwritten)")
    return torch.load(f, map_location="cpu", weights_only=False)


class CheckpointUnreadable(RuntimeError):
    """Checkpoints exist but none loads: resuming from step 0 inside the same MLflow run would join two
    trajectories in one history, so the job stops and says how to start fresh."""


def fresh_start_hint(path: Path) -> str:
    import shlex

    cmd = " ".join(shlex.quote(a) for a in ["python", "-m", "rlkit.run", *sys.argv[1:]])
    return (f"to start this job afresh (a new MLflow run), move its directory aside and run it again: "
            f"mv {shlex.quote(str(path))} {shlex.quote(str(path))}.unreadable && {cmd}")


def load(path: Path) -> dict[str, Any] | None:
    """The newest checkpoint that verifies (state.pt, else state.prev.pt), or None when there is none.
    A bad file is named on stderr and renamed `<name>.corrupt` (kept for inspection, never loaded again).
    Raises CheckpointUnreadable when every checkpoint is bad (now or at an earlier start): never a silent
    restart from step 0."""
    clean_stale(path)
    bad: list[str] = [str(f) for f in sorted(path.glob("state*.pt.corrupt"))] if path.is_dir() else []
    names = [n for n in (NEWEST, PREVIOUS) if (path / n).exists()]
    for i, name in enumerate(names):
        f = path / name
        try:
            return _verify_and_load(f)
        except Exception as e:  # truncated zip, bad checksum, unpickling error
            then = "falling back to the previous checkpoint" if i + 1 < len(names) else "no other checkpoint left"
            print(f"[rlkit] checkpoint {f} is unreadable ({type(e).__name__}: {str(e)[:300]}); moved to "
                  f"{f.name}.corrupt, {then}", file=sys.stderr, flush=True)
            bad.append(f"{f} ({type(e).__name__}: {str(e)[:200]})")
            for moved in (f, f.with_name(f.name + ".sha256")):
                try:  # (another rank of the same job may have moved it already)
                    os.replace(moved, moved.with_name(moved.name + ".corrupt"))
                except FileNotFoundError:
                    pass
    if bad:
        raise CheckpointUnreadable(f"every checkpoint of this job is unreadable: {'; '.join(bad)}. Not restarting "
                                   f"from step 0 inside the same MLflow run; {fresh_start_hint(path)}")
    return None


def read_status(path: Path) -> dict[str, Any]:
    f = path / "status.json"
    if not f.exists():
        return {}
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError) as e:  # unreadable: treated as no record (the checkpoint still holds the run id)
        print(f"[rlkit] {f} is unreadable ({e}); ignoring it", file=sys.stderr)
        return {}


def write_status(path: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into status.json (a field set to None is removed, e.g. an earlier attempt's error)."""
    path.mkdir(parents=True, exist_ok=True)
    status = {**read_status(path), **fields, "updated": time.time()}
    status = {k: v for k, v in status.items() if v is not None}
    _write_atomic(path / "status.json", json.dumps(status, indent=1))
    return status

"""A write-ahead spool between the training loop and MLflow, so tracking never blocks training.

Every tracking call (metrics, params, tags, text artifacts, the run's end) is appended to
`<spool dir>/log.jsonl` (one JSON record per line, numbered) and returns at once; a background
sender applies the records to MLflow in order and records the last one applied in `acked`. A
tracking-server outage of any length only delays values. A job that ends while the server is down
leaves its spool; the next start of the same job (rlkit.run) or `python -m rlkit.sync` sends the rest.

Exactly once: params and tags are idempotent in MLflow, text artifacts are overwritten; a metric value
is (key, step, timestamp, value), so a record that may already have been applied (a send that failed
half-way, or the first unacked record of an earlier process) is sent without the (key, step,
timestamp) triples the run already has.
"""
from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

LOG, ACKED, META, FILES = "log.jsonl", "acked", "meta.json", "files"


def _metric_items(rec: dict[str, Any]):
    from mlflow.entities import Metric

    return [Metric(k, float(v), rec["ts"], rec["step"]) for k, v in rec["metrics"].items()]


def _present(mc, run_id: str, keys) -> set[tuple[str, int, int]]:
    """(key, step, timestamp) of every value the run already has for `keys`."""
    return {(k, m.step, m.timestamp) for k in keys for m in mc.get_metric_history(run_id, k)}


def apply(mc, rec: dict[str, Any], present: set | None = None) -> None:
    """Send one record; with `present`, skip the metric values already in the run."""
    from mlflow.entities import Param, RunTag

    op, run_id = rec["op"], rec["run_id"]
    if op == "metrics":
        items = _metric_items(rec)
        if present is not None:
            items = [m for m in items if (m.key, m.step, m.timestamp) not in present]
        for i in range(0, len(items), 1000):
            mc.log_batch(run_id, metrics=items[i:i + 1000])
    elif op == "params":
        items = [Param(k, v) for k, v in rec["params"].items()]
        for i in range(0, len(items), 100):
            mc.log_batch(run_id, params=items[i:i + 100])
    elif op == "tags":
        items = [RunTag(k, v) for k, v in rec["tags"].items()]
        for i in range(0, len(items), 100):
            mc.log_batch(run_id, tags=items[i:i + 100])
    elif op == "text":
        mc.log_text(run_id, rec["text"], rec["name"])
    elif op == "file":  # a copy kept under the spool's files/ until the spool is cleared
        mc.log_artifact(run_id, rec["path"], rec["artifact_path"])
    elif op == "terminate":
        mc.set_terminated(run_id, rec["status"])
    else:
        raise ValueError(f"unknown spool record {op!r}")


def read(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(records not yet acknowledged, last acknowledged seq); a torn last line (a kill mid-write) is dropped."""
    recs = []
    if (path / LOG).exists():
        for line in (path / LOG).read_text().splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:  # a line torn by a kill mid-write (only ever the last one)
                continue
    acked = int((path / ACKED).read_text() or 0) if (path / ACKED).exists() else 0
    return [r for r in recs if r["seq"] > acked], acked


def _ack(path: Path, seq: int) -> None:
    tmp = path / f"{ACKED}.tmp{os.getpid()}"
    tmp.write_text(str(seq))
    os.replace(tmp, path / ACKED)


def _clear(path: Path) -> None:
    import shutil

    for name in (LOG, ACKED, META):
        (path / name).unlink(missing_ok=True)
    shutil.rmtree(path / FILES, ignore_errors=True)


def replay(path: Path, uri: str | None = None) -> int:
    """Send what an earlier process left in the spool at `path` (its URI unless `uri`); returns the
    number of records sent. Every metric is checked against the run, since the earlier process may have
    sent any of them just before it died. Raises if the server cannot take them (the spool is kept)."""
    from rlkit.tracking import client

    todo, _ = read(path)
    if not todo:
        _clear(path)
        return 0
    meta = json.loads((path / META).read_text()) if (path / META).exists() else {}
    mc = client(uri or meta["uri"])
    keys: dict[str, set[str]] = {}
    for r in todo:
        if r["op"] == "metrics":
            keys.setdefault(r["run_id"], set()).update(r["metrics"])
    present = {run: _present(mc, run, ks) for run, ks in keys.items()}
    for r in todo:
        apply(mc, r, present.get(r["run_id"], set()))
        try:
            _ack(path, r["seq"])
        except OSError:  # a full disk: the spool is cleared below anyway (a crash before resends, deduplicated)
            pass
    _clear(path)
    return len(todo)


class Spool:
    """The live spool of one process: `append` writes a record and returns; a daemon thread sends.

    A spool that cannot be written (a full disk) degrades instead of failing the loop: records are then
    kept in memory only (at most MEMORY_LIMIT metric records; tags, params and the run's end always) and
    sent as usual, so training and the run's final status go on; only a kill before they are sent loses them."""

    COMPACT_AFTER = 1000  # records: the log is truncated when everything in it is acknowledged
    MEMORY_LIMIT = 100_000  # unsent metric records held in memory once the spool file cannot be written

    def __init__(self, path: Path, uri: str, mc) -> None:
        self.path, self.uri, self.mc = path, uri, mc
        self.seq, self.compacted, self.pending = 0, 0, deque()
        self.cv = threading.Condition()
        self.outage_since: float | None = None
        self.ack_warned = False
        self.dropped = 0
        self.fh = None
        path.mkdir(parents=True, exist_ok=True)
        replay(path, uri)  # (an earlier attempt's leftovers first, so the order holds)
        try:
            (path / META).write_text(json.dumps({"uri": uri, "pid": os.getpid(), "started": time.time()}))
            self.fh = open(path / LOG, "a")
        except OSError as e:
            self._degrade(e)
        self.thread = threading.Thread(target=self._send_loop, name="rlkit-spool", daemon=True)
        self.thread.start()

    def keep(self, src: str) -> Path:
        """A durable copy of a file to send (the caller's may be temporary), under files/<seq>/ with its own
        name: MLflow names the artifact after the file (the report reads eval/<suite>/step_N.parquet)."""
        import shutil

        dest = self.path / FILES / f"{self.seq + 1:08d}" / Path(src).name
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        except OSError:
            dest.unlink(missing_ok=True)  # (no partial copy left on a full disk)
            raise
        return dest

    def _degrade(self, e: OSError) -> None:
        """Stop writing the spool file (called with the lock held, or before the thread starts)."""
        why = "No space left on device" if getattr(e, "errno", None) == errno.ENOSPC else (e.strerror or str(e))
        print(f"[rlkit] cannot write the tracking spool: {why} at {self.path}; training goes on and values are "
              f"sent from memory (a kill before they are sent loses them). Free space there or set "
              f"tracking.spool_dir= to another filesystem", file=sys.stderr, flush=True)
        if self.fh is not None:
            try:
                self.fh.close()
            except OSError:  # (the buffered tail cannot be written either; a torn last line is dropped on read)
                pass
        self.fh = None

    def append(self, op: str, run_id: str, **payload: Any) -> None:
        with self.cv:
            self.seq += 1
            rec = {"seq": self.seq, "op": op, "run_id": run_id, **payload}
            if self.fh is not None:
                try:
                    self.fh.write(json.dumps(rec) + "\n")
                    self.fh.flush()  # in the kernel's page cache: survives a kill of this process
                except OSError as e:  # ENOSPC (a full disk), EIO: keep training, keep the record in memory
                    self._degrade(e)
            if self.fh is None and op == "metrics" and len(self.pending) >= self.MEMORY_LIMIT:
                self.dropped += 1
                if self.dropped == 1:
                    print(f"[rlkit] tracking unreachable and spool unwritable: {self.MEMORY_LIMIT} records held in "
                          "memory; further step metrics are dropped until they are sent", file=sys.stderr, flush=True)
                return
            self.pending.append(rec)
            self.cv.notify()

    def _send_loop(self) -> None:
        uncertain, delay = False, 0.5
        while True:
            with self.cv:
                while not self.pending:
                    self.cv.wait()
                rec = self.pending[0]
            try:
                present = None
                if uncertain and rec["op"] == "metrics":  # the failed attempt may have been applied
                    present = _present(self.mc, rec["run_id"], rec["metrics"])
                apply(self.mc, rec, present)
            except Exception as e:  # noqa: BLE001 - any failure: keep the record, retry with backoff
                if self.outage_since is None:
                    self.outage_since = time.time()
                    print(f"[rlkit] tracking {self.uri} unavailable ({type(e).__name__}: {str(e)[:200]}); "
                          f"training goes on, values are spooled in {self.path}", file=sys.stderr, flush=True)
                uncertain, delay = True, min(delay * 2, 10.0)
                time.sleep(delay)
                continue
            try:
                _ack(self.path, rec["seq"])
            except OSError as e:  # the spool dir is gone (e.g. the checkpoint dir replaced): keep sending
                if not self.ack_warned:
                    self.ack_warned = True
                    print(f"[rlkit] cannot record sent values in {self.path} ({e}); a restart may resend "
                          "the last ones (deduplicated)", file=sys.stderr, flush=True)
            with self.cv:
                self.pending.popleft()
                if not self.pending and self.seq - self.compacted >= self.COMPACT_AFTER and self.fh is not None:
                    self.fh.truncate(0)  # everything written is acknowledged: keep the file small
                    self.compacted = self.seq
                self.cv.notify_all()
            if self.outage_since is not None:
                print(f"[rlkit] tracking {self.uri} back after {time.time() - self.outage_since:.0f} s; "
                      f"{len(self.pending)} records left to send", file=sys.stderr, flush=True)
                self.outage_since = None
            uncertain, delay = False, 0.5

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for everything to be sent; True when the spool is empty."""
        deadline = time.time() + timeout
        with self.cv:
            while self.pending and time.time() < deadline:
                self.cv.wait(timeout=max(0.0, min(1.0, deadline - time.time())))
            return not self.pending

    def close(self, timeout: float) -> bool:
        """Flush (up to `timeout` s); an empty spool is removed, else it is left for the next start."""
        done = self.wait(timeout)
        with self.cv:
            if self.fh is not None:
                try:
                    self.fh.close()
                except OSError:
                    pass
                self.fh = None
            if done:
                try:
                    _clear(self.path)
                except OSError:
                    pass
            else:
                print(f"[rlkit] tracking {self.uri} still unavailable: {len(self.pending)} records kept in "
                      f"{self.path}; they are sent by the next start of this job or `python -m rlkit.sync "
                      f"{self.path}`", file=sys.stderr, flush=True)
        return done

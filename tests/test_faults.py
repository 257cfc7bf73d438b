"""Fault injection on real components (real signals, real files, a real SQLite MLflow store): a run
that fails after start ends FAILED with its error, a preempted run (SIGTERM / SIGUSR2) checkpoints,
is marked preempted and resumes into the same run, a truncated checkpoint falls back to the previous
one, and a job killed before its summary resumes to log it exactly once."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlkit import checkpoint
from tests.conftest import REPO
from tests.launch.checks import assert_clean_history, client, env

FAST = ["trainer.prompts_per_step=2", "trainer.group_size=4", "data.val_size=8", "trainer.threads=1"]
SUMMARY = ("summary/wall_time_s", "summary/final_val_acc")


def args(tmp: Path, steps: int, name: str, *extra: str) -> list[str]:
    return [f"trainer.steps={steps}", "trainer.checkpoint_every=2", "trainer.eval_every=2", *FAST,
            f"sweep.name={name}", f"hydra.run.dir={tmp}/out", *extra]


def popen(tmp: Path, a: list[str], code: str | None = None) -> subprocess.Popen:
    """`python -m rlkit.run a...`, or the same through `code` run first in the process (a kill point)."""
    cmd = [sys.executable, "-m", "rlkit.run", *a] if code is None else \
        [sys.executable, "-c", code + "\nimport runpy, sys\nsys.argv = ['rlkit.run', *sys.argv[1:]]\n"
         "runpy.run_module('rlkit.run', run_name='__main__')", *a]
    return subprocess.Popen(cmd, cwd=REPO, env=env(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run(tmp: Path, a: list[str], code: str | None = None, timeout: float = 600) -> tuple[int, str]:
    p = popen(tmp, a, code)
    _, err = p.communicate(timeout=timeout)
    return p.returncode, err


def the_run(tmp: Path, name: str):
    mc = client(tmp)
    [r] = mc.search_runs([mc.get_experiment_by_name(name).experiment_id])
    return mc, r


def logged_step(tmp: Path, key: str = "timing_s/step") -> int:
    import sqlite3

    db = tmp / "mlflow.db"
    if not db.exists():
        return -1
    try:
        with sqlite3.connect(db, timeout=1) as con:
            row = con.execute("select max(step) from metrics where key = ?", (key,)).fetchone()
        return -1 if row[0] is None else int(row[0])
    except sqlite3.Error:
        return -1


def assert_once(mc, run_id: str, keys=SUMMARY) -> None:
    for k in keys:
        assert len(mc.get_metric_history(run_id, k)) == 1, (k, mc.get_metric_history(run_id, k))


# -- the checkpoint module on real files --------------------------------------------------------------

def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, capfd):
    ck = tmp_path / "ck"
    checkpoint.save(ck, {"step": 1})
    checkpoint.save(ck, {"step": 3})
    assert checkpoint.load(ck)["step"] == 3
    data = (ck / "state.pt").read_bytes()
    (ck / "state.pt").write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a dying node
    (ck / "state.pt.tmp999999").write_bytes(b"half")  # a writer killed mid-write
    assert checkpoint.load(ck)["step"] == 1
    err = capfd.readouterr().err
    assert str(ck / "state.pt") in err and "checksum mismatch" in err
    assert (ck / "state.pt.corrupt").exists() and not (ck / "state.pt.tmp999999").exists()
    checkpoint.save(ck, {"step": 5})  # the next save rotates only good files
    assert checkpoint.load(ck)["step"] == 5 and checkpoint.load(ck)["step"] == 5


def test_bit_flip_and_garbage_without_checksum_are_caught(tmp_path, capfd):
    ck = tmp_path / "ck"
    checkpoint.save(ck, {"step": 1})
    checkpoint.save(ck, {"step": 3})
    data = bytearray((ck / "state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed: only the checksum sees it
    (ck / "state.pt").write_bytes(bytes(data))
    assert checkpoint.load(ck)["step"] == 1
    (ck / "state.prev.pt").write_bytes(b"not a zip")
    (ck / "state.prev.pt.sha256").unlink()  # (a checkpoint from before checksums: loading is the check)
    with pytest.raises(checkpoint.CheckpointUnreadable, match="every checkpoint of this job is unreadable") as e:
        checkpoint.load(ck)  # nothing readable left: stop, never a silent restart from step 0 (issue 29)
    assert "state.prev.pt" in str(e.value) and f"mv {ck} {ck}.unreadable" in str(e.value)
    with pytest.raises(checkpoint.CheckpointUnreadable):  # the next start too (the bad files were moved aside)
        checkpoint.load(ck)


def test_status_drops_an_earlier_error(tmp_path):
    checkpoint.write_status(tmp_path, state="failed", error="boom")
    checkpoint.write_status(tmp_path, state="running", error=None)
    assert "error" not in checkpoint.read_status(tmp_path)
    (tmp_path / "status.json").write_text("{trunc")
    assert checkpoint.read_status(tmp_path) == {}


def test_status_of_an_unknown_sweep_creates_no_store(tmp_path):
    r = subprocess.run([sys.executable, "-m", "rlkit.status", "nope"], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"},
                       timeout=120)
    assert r.returncode != 0 and "no sweep 'nope'" in r.stderr
    assert not (tmp_path / "m.db").exists()


# -- user errors at start: a clear message in seconds, no run left behind -------------------------------

def test_unwritable_checkpoint_dir_fails_before_the_run_exists(tmp_path):
    (tmp_path / "afile").write_text("x")
    t = time.time()
    code, err = run(tmp_path, args(tmp_path, 2, "unwritable", f"paths.checkpoints={tmp_path}/afile/ck"))
    assert code == 2 and "not writable" in err and f"{tmp_path}/afile/ck" in err and "Traceback" not in err, err
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run created, so none left RUNNING
    print(f"unwritable checkpoint dir: {time.time() - t:.1f} s")


def test_unreachable_tracking_server_fails_within_seconds(tmp_path):
    t = time.time()
    code, err = run(tmp_path, args(tmp_path, 2, "unreachable", "tracking.uri=http://127.0.0.1:1"))
    elapsed = time.time() - t
    assert code == 2 and "cannot be reached" in err and "127.0.0.1:1" in err and "Traceback" not in err, err
    assert elapsed < 60, elapsed  # was 252 s of MLflow's retries
    print(f"unreachable tracking server: {elapsed:.1f} s")


@pytest.mark.slow
def test_failure_after_start_is_marked_failed_with_its_error(tmp_path, tiny_path):
    """The checkpoint dir is replaced by a file while the job runs: its first checkpoint write fails."""
    p = popen(tmp_path, args(tmp_path, 4, "fails"))
    deadline = time.time() + 300
    while logged_step(tmp_path, "val/acc") < 0:  # step-0 evaluation logged: the run exists and trains
        assert p.poll() is None and time.time() < deadline, p.stderr.read()[-3000:]
        time.sleep(0.05)
    [key_dir] = (tmp_path / "ck").iterdir()
    shutil.rmtree(key_dir)
    key_dir.write_text("in the way")
    _, err = p.communicate(timeout=300)
    assert p.returncode != 0
    mc, r = the_run(tmp_path, "fails")
    assert r.info.status == "FAILED" and r.data.tags["rlkit.status"] == "failed", r.data.tags
    assert str(key_dir) in r.data.tags["rlkit.error"], r.data.tags["rlkit.error"]


# -- preemption, corruption, resume ----------------------------------------------------------------------

def preempt(tmp: Path, a: list[str], sig: int, after_step: int) -> tuple[int, str]:
    p = popen(tmp, a)
    deadline = time.time() + 300
    while logged_step(tmp) < after_step:
        assert p.poll() is None and time.time() < deadline, p.stderr.read()[-3000:]
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=300)
    return p.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM], ids=["SIGUSR2", "SIGTERM"])
def test_preempted_run_checkpoints_is_marked_and_resumes_exactly_once(tmp_path, tiny_path, sig):
    steps, a = 5, args(tmp_path, 5, "preempt")
    code, err = preempt(tmp_path, a, sig, after_step=1)
    assert code == 128 + sig, err[-3000:]
    assert "preempted by signal" in err
    mc, r = the_run(tmp_path, "preempt")
    assert r.info.status == "KILLED" and r.data.tags["rlkit.state"] == "preempted", (r.info.status, r.data.tags)
    [key_dir] = (tmp_path / "ck").iterdir()
    assert json.loads((key_dir / "status.json").read_text())["state"] == "preempted"
    stopped_at = checkpoint.load(key_dir)["step"] + 1
    assert stopped_at == logged_step(tmp_path) < steps  # checkpointed at the boundary of the last logged step
    if sig == signal.SIGTERM:  # a stale temp file of a killed writer is cleaned (an unreadable only checkpoint
        (key_dir / "state.pt.tmp4242").write_bytes(b"x")  # stops the job: tests/test_reliability.py)
    code, err = run(tmp_path, a)
    assert code == 0, err[-3000:]
    assert f"resuming MLflow run {r.info.run_id}" in err
    if sig == signal.SIGTERM:
        assert not (key_dir / "state.pt.tmp4242").exists()
    mc, after = the_run(tmp_path, "preempt")
    assert after.info.run_id == r.info.run_id and after.info.status == "FINISHED"
    assert after.data.tags["rlkit.state"] == "finished" and not after.data.tags.get("rlkit.error")
    assert "error" not in json.loads((key_dir / "status.json").read_text())  # the preemption is history
    assert_clean_history(mc, r.info.run_id, steps, 2)
    assert_once(mc, r.info.run_id)


KILL_BEFORE = """
import os, signal
import rlkit.tracking as t
def _die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
t.Tracker.{method} = _die
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["log_summary", "finish"])
def test_killed_after_its_last_step_resumes_with_its_summary_once(tmp_path, tiny_path, method):
    """SIGKILL right before the summary is logged (or right after it, before the run is closed)."""
    a = args(tmp_path, 2, "summary")
    code, _ = run(tmp_path, a, KILL_BEFORE.format(method=method))
    assert code == -signal.SIGKILL
    mc, r = the_run(tmp_path, "summary")
    assert r.info.status == "RUNNING"  # (the last values may still be in its spool: sent by the next start)
    code, err = run(tmp_path, a)
    assert code == 0, err[-3000:]
    mc, after = the_run(tmp_path, "summary")
    assert after.info.run_id == r.info.run_id and after.info.status == "FINISHED"
    assert_clean_history(mc, r.info.run_id, 2, 2)
    assert_once(mc, r.info.run_id)
    assert after.data.metrics["summary/wall_time_s"] > 0

"""A full disk on a real small filesystem (tmpfs, mounted per test; skipped where mounting is not allowed):
a checkpoint write that runs out of space removes its partial file and says "No space left on device at
<dir>"; a checkpoint disk too small for the run fails before the first step; a spool that cannot be
written degrades to memory and the run still finishes with every value; a disk that fills mid-run ends
the run FAILED with that message, its final status sent although the spool beside it cannot be written."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlkit import checkpoint
from tests.conftest import REPO
from tests.launch.checks import assert_clean_history, checkpoint_step, client, env, rlkit


@contextlib.contextmanager
def small_fs(where: Path, size: str):
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()[:200]})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path, leave: int = 0) -> None:
    """Write zeros until the filesystem is full (then free `leave` bytes)."""
    with open(fs / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    if leave:
        with open(fs / "filler", "r+b") as f:
            f.truncate(max(0, (fs / "filler").stat().st_size - leave))


def test_checkpoint_write_on_a_full_disk_names_the_disk_and_leaves_no_partial_file(tmp_path):
    with small_fs(tmp_path / "fs", "1m") as fs:
        ck = fs / "ck"
        checkpoint.save(ck, {"w": torch.zeros(1000)})  # a small one fits
        with pytest.raises(checkpoint.DiskFull, match=f"No space left on device at {ck}"):
            checkpoint.save(ck, {"w": torch.zeros(1_000_000)})  # 4 MB on a 1 MB disk
        assert sorted(f.name for f in ck.iterdir()) == ["state.pt", "state.pt.sha256"]  # no *.tmp<pid>
        assert checkpoint.load(ck)["w"].shape == (1000,)  # the last complete one still loads


FAST = ["trainer.prompts_per_step=2", "trainer.group_size=4", "data.val_size=8", "trainer.threads=1", "eval=none"]


@pytest.mark.slow
def test_a_checkpoint_disk_too_small_fails_before_the_first_step(tmp_path, tiny_path):
    with small_fs(tmp_path / "fs", "2m") as fs:
        t0 = time.time()
        r = rlkit("rlkit.run", ["trainer.steps=4", *FAST, "sweep.name=small", f"paths.checkpoints={fs}",
                                f"hydra.run.dir={tmp_path}/out"], tmp_path, timeout=600)
        assert r.returncode == 1, r.stderr[-3000:]
        assert f"No space left on device at {fs}/" in r.stderr and "for this run's checkpoints" in r.stderr
        mc = client(tmp_path)
        [run] = mc.search_runs([mc.get_experiment_by_name("small").experiment_id])
        assert run.info.status == "FAILED" and "No space left on device" in run.data.tags["rlkit.error"]
        assert not mc.get_metric_history(run.info.run_id, "timing_s/step")  # no step was spent
        print(f"failed in {time.time() - t0:.1f} s")


@pytest.mark.slow
def test_an_unwritable_spool_degrades_and_the_run_finishes_with_every_value(tmp_path, tiny_path):
    with small_fs(tmp_path / "fs", "256k") as fs:
        fill(fs, leave=8192)  # room for the first records only
        r = rlkit("rlkit.run", ["trainer.steps=6", "trainer.eval_every=3", *FAST, "sweep.name=spoolfull",
                                f"tracking.spool_dir={fs}", f"hydra.run.dir={tmp_path}/out"], tmp_path, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"No space left on device at {fs}/" in r.stderr
        mc = client(tmp_path)
        [run] = mc.search_runs([mc.get_experiment_by_name("spoolfull").experiment_id])
        assert run.info.status == "FINISHED" and run.data.tags["rlkit.status"] == "finished"
        assert_clean_history(mc, run.info.run_id, 6, 3)  # every step once


@pytest.mark.slow
def test_a_disk_filling_mid_run_ends_failed_with_its_message(tmp_path, tiny_path):
    """Checkpoints and spool on one 32 MB disk, filled by another process after the first checkpoint: the
    spool degrades (training goes on), the next checkpoint fails cleanly, the run ends FAILED (not RUNNING)."""
    with small_fs(tmp_path / "fs", "32m") as fs:
        args = ["trainer.steps=8", "trainer.checkpoint_every=2", "trainer.eval_every=4", *FAST, "sweep.name=fills",
                f"paths.checkpoints={fs}", f"hydra.run.dir={tmp_path}/out"]
        proc = subprocess.Popen([sys.executable, "-m", "rlkit.run", *args], cwd=REPO, env=env(tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while checkpoint_step(fs) < 0:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "no checkpoint in 300 s"
            time.sleep(0.05)
        fill(fs)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 1, err[-3000:]
        assert f"No space left on device at {fs}/" in err, err[-3000:]
        assert not list(fs.glob("*/*.tmp*")), list(fs.glob("*/*"))  # the partial checkpoint was removed
        mc = client(tmp_path)
        [run] = mc.search_runs([mc.get_experiment_by_name("fills").experiment_id])
        assert run.info.status == "FAILED" and run.data.tags["rlkit.status"] == "failed"
        assert "No space left on device at" in run.data.tags["rlkit.error"]
        steps = [m.step for m in mc.get_metric_history(run.info.run_id, "timing_s/step")]
        assert len(steps) == len(set(steps)) and max(steps) >= 3  # logged past the fill, each step once


def test_a_spool_on_a_full_disk_sends_from_memory_and_delivers_the_end(tmp_path, capfd):
    from rlkit import tracking
    from rlkit.spool import Spool

    uri = f"sqlite:///{tmp_path}/m.db"
    mc = tracking.client(uri)
    run = mc.create_run(tracking.experiment_id(mc, "full"))
    with small_fs(tmp_path / "fs", "64k") as fs:
        (fs / "spool").mkdir()
        sp = Spool(fs / "spool", uri, mc)
        sp.append("metrics", run.info.run_id, metrics={"a": 1.0}, step=1, ts=1)
        fill(fs)  # the disk fills while the run goes on
        for step in range(2, 40):
            sp.append("metrics", run.info.run_id, metrics={"a": float(step), "b" * 200: 0.0}, step=step, ts=step)
        sp.append("terminate", run.info.run_id, status="FINISHED")  # the run's end, through the full spool
        assert sp.close(60)
    assert f"No space left on device at {fs}/spool" in capfd.readouterr().err
    assert [m.value for m in mc.get_metric_history(run.info.run_id, "a")] == [float(s) for s in range(1, 40)]
    assert mc.get_run(run.info.run_id).info.status == "FINISHED"

"""rlkit on a real SLURM cluster (tests/slurm/local_slurm.sh starts one on this machine; .ci/run does).

A 2x2 sweep submitted detached lands 4 finished child runs under one parent; a job that raises is shown
as failed although SLURM says COMPLETED; a job cancelled mid-run (scancel) and resubmitted, then preempted
(USR2: submitit requeues it), resumes from its checkpoint into the same MLflow run each time with a
gap-free, duplicate-free step history.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rlkit.launch.callbacks import read_sweep_info
from rlkit.launch.launchers import read_jobs
from rlkit.launch.status import pid_alive
from tests.launch.checks import TINY, assert_clean_history, checkpoint_step, client, rlkit, sweep_runs

pytestmark = [pytest.mark.slurm, pytest.mark.skipif(shutil.which("sbatch") is None, reason="no sbatch (SLURM)")]

# one CPU and 2 GB per job so two jobs share this 2-core node; hydra.* overrides do not change run keys
SLURM = ["launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=15"]


@pytest.fixture(scope="module", autouse=True)
def cluster(tiny_path):
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        pytest.skip("SLURM controller not reachable: bash tests/slurm/local_slurm.sh")


def wait_until(pred, timeout: float, what: str, every: float = 1.0):
    end = time.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.time() < end, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def jobs(tmp: Path, sweep: Path) -> list[dict]:
    r = rlkit("rlkit.status", [str(sweep), "--json"], tmp, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)["jobs"]


def submit(tmp: Path, args: list[str]) -> tuple[Path, subprocess.CompletedProcess]:
    sweep = tmp / "multirun"
    r = rlkit("rlkit.submit", [*args, f"hydra.sweep.dir={sweep}"], tmp, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    return sweep, r


def test_detached_2x2_sweep_lands_under_one_parent(tmp_path):
    t0 = time.time()
    sweep, r = submit(tmp_path, [*SLURM, "algo=grpo,rloo", "seed=0,1", "trainer.steps=3", "trainer.eval_every=3",
                                 *TINY, "sweep.name=grid"])
    submitted = read_jobs(sweep)
    assert len(submitted) == 4 and all(j["job_id"] in r.stdout for j in submitted)
    states = [j["state"] for j in jobs(tmp_path, sweep)]
    assert len(states) == 4 and states != ["finished"] * 4, states  # submit returned before the jobs finished
    assert set(states) <= {"pending", "running"}, states
    wait_until(lambda: [j["state"] for j in jobs(tmp_path, sweep)] == ["finished"] * 4, 600, "4 finished jobs", 3)
    mc = client(tmp_path)
    wait_until(lambda: sweep_runs(mc, "grid")[0][0].data.tags["rlkit.status"] == "finished", 120, "parent closed")
    [parent], children = sweep_runs(mc, "grid")
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep_id"] == read_sweep_info(sweep)["sweep_id"]
    assert sorted((c.data.tags["algo"], c.data.tags["seed"]) for c in children) == [
        ("grpo", "0"), ("grpo", "1"), ("rloo", "0"), ("rloo", "1")]
    for c in children:
        assert c.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert c.data.tags["rlkit.status"] == "finished" and c.info.status == "FINISHED"
        assert c.data.tags["launcher"] == "slurm" and c.data.tags["slurm_job_id"]
        assert c.data.tags["sweep_id"] == parent.data.tags["sweep_id"]
    print(f"2x2 sweep on SLURM: {time.time() - t0:.0f} s")


def test_job_that_raises_is_failed_although_slurm_says_completed(tmp_path):
    empty = tmp_path / "empty_model_dir"  # exists (passes validation), but holds no model: train() raises
    empty.mkdir()
    r = rlkit("rlkit.run", ["-m", *SLURM, "seed=0", "trainer.steps=2", *TINY, f"model.path={empty}", "sweep.name=raises",
                            f"hydra.sweep.dir={tmp_path}/multirun"], tmp_path, timeout=600)
    assert r.returncode != 0  # the sweep reports the failure
    [job] = wait_until(lambda: [j for j in jobs(tmp_path, tmp_path / "multirun") if j["slurm_state"] == "COMPLETED"],
                       120, "sacct to record the job")
    assert job["state"] == "failed" and "tokenizer" in job["error"]
    shown = rlkit("rlkit.status", [str(tmp_path / "multirun")], tmp_path, timeout=120).stdout
    assert "failed" in shown and "COMPLETED" in shown
    [parent], [child] = sweep_runs(client(tmp_path), "raises")
    assert child.data.tags["rlkit.status"] == "failed" and parent.data.tags["rlkit.status"] == "failed"


# long enough that the job cannot finish in the KillWait (5 s) between scancel's SIGTERM and its SIGKILL
# (at 14 steps a quiet machine finished the job inside that window and the test waited for 'killed' in vain)
STEPS, EVAL = 48, 16


def test_cancelled_then_preempted_job_resumes_into_the_same_run(tmp_path):
    ck = tmp_path / "ck"
    sweep, _ = submit(tmp_path, [*SLURM, "seed=0", f"trainer.steps={STEPS}", "trainer.checkpoint_every=2",
                                 f"trainer.eval_every={EVAL}", *TINY, "sweep.name=cancel"])
    first = read_jobs(sweep)[0]["job_id"]
    wait_until(lambda: checkpoint_step(ck) >= 3, 300, "the second checkpoint", 0.2)
    subprocess.run(["scancel", first], check=True)  # SIGTERM (bypassed by submitit), SIGKILL after KillWait
    state = wait_until(lambda: jobs(tmp_path, sweep)[0]["state"] in ("killed", "finished") and
                       jobs(tmp_path, sweep)[0]["state"], 120, "the job to show as killed")
    assert state == "killed", "the job finished inside scancel's KillWait: raise STEPS"
    driver = read_sweep_info(sweep)["driver"]["pid"]
    wait_until(lambda: not pid_alive(driver), 180, "the first driver to give up on the cancelled job")
    mc = client(tmp_path)
    [run] = sweep_runs(mc, "cancel")[1]

    r = rlkit("rlkit.submit", ["--resume", str(sweep)], tmp_path, timeout=300)  # same sweep, same overrides
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    second = read_jobs(sweep)[-1]["job_id"]
    assert second != first
    resumed_at = checkpoint_step(ck)
    wait_until(lambda: checkpoint_step(ck) >= resumed_at + 2, 300, "a checkpoint after the resume", 0.2)
    subprocess.run(["scancel", "--signal=USR2", second], check=True)  # preemption: submitit requeues the job
    wait_until(lambda: "PENDING" in subprocess.run(["squeue", "-h", "-o", "%T", "-j", second], capture_output=True,
                                                   text=True).stdout, 300, "the requeued job")
    subprocess.run(["scontrol", "update", f"JobId={second}", "StartTime=now"], check=True)  # skip the requeue delay
    [job] = wait_until(lambda: [j for j in jobs(tmp_path, sweep) if j["state"] == "finished"], 600, "the job to finish",
                       3)
    assert job["resumes"] == 2 and job["step"] == STEPS

    [parent], [after] = sweep_runs(mc, "cancel")  # one parent (the resumed sweep kept it), one child
    assert after.info.run_id == run.info.run_id
    assert after.data.tags["rlkit.status"] == "finished" and after.data.tags["rlkit.resumes"] == "2"
    assert_clean_history(mc, run.info.run_id, STEPS, EVAL)

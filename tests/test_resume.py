"""A run SIGKILLed after its second checkpoint and started again with the same command resumes into the
same MLflow run and ends with the full step count and exactly one value per step for every metric."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from rlkit.launch.status import pid_alive
from tests.conftest import REPO
from tests.launch.checks import TINY, assert_clean_history, checkpoint_step, client, env, rlkit

STEPS, CKPT, EVAL = 8, 2, 3


@pytest.mark.slow
def test_sigkill_after_second_checkpoint_resumes(tmp_path, tiny_path):
    args = [f"trainer.steps={STEPS}", f"trainer.checkpoint_every={CKPT}", f"trainer.eval_every={EVAL}", *TINY,
            "sweep.name=resume", f"hydra.run.dir={tmp_path}/out"]
    proc = subprocess.Popen([sys.executable, "-m", "rlkit.run", *args], cwd=REPO, env=env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while checkpoint_step(tmp_path / "ck") < 2 * CKPT - 1:  # the second checkpoint (after step 4) is on disk
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no second checkpoint in 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()

    mc = client(tmp_path)
    [run] = mc.search_runs([mc.get_experiment_by_name("resume").experiment_id])
    assert run.data.tags["rlkit.status"] == "running"  # SIGKILL: no chance to record anything
    logged = max(m.step for m in mc.get_metric_history(run.info.run_id, "timing_s/step"))
    assert 2 * CKPT <= logged < STEPS, logged
    [status] = (tmp_path / "ck").glob("*/status.json")
    st = json.loads(status.read_text())
    assert st["state"] == "running" and not pid_alive(st["pid"])  # what rlkit.status reports as killed

    r = rlkit("rlkit.run", args, tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming MLflow run {run.info.run_id}" in r.stderr
    [after] = mc.search_runs([mc.get_experiment_by_name("resume").experiment_id])
    assert after.info.run_id == run.info.run_id
    assert after.data.tags["rlkit.status"] == "finished" and after.info.status == "FINISHED"
    assert after.data.tags["rlkit.resumes"] == "1"
    assert_clean_history(mc, run.info.run_id, STEPS, EVAL)


def test_killed_after_the_final_checkpoint_still_returns_val_acc(tmp_path, tiny_path):
    """The sweep objective (Optuna) of a job killed between its final checkpoint and being marked
    finished: started again, train() has no step left to run and returns the val/acc it had."""
    from hydra import compose, initialize_config_dir

    from rlkit.config import check_curriculum
    from rlkit.data.stream import load_data
    from rlkit.steps.log import NullTracker
    from rlkit.train import train

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["trainer.steps=2", "trainer.eval_every=2", "trainer.prompts_per_step=4",
                                           "data.val_size=16", "trainer.threads=1"])
    data = load_data(cfg, check_curriculum(cfg))
    first = train(cfg, NullTracker(), tmp_path / "ck", *data, progress=False)["val/acc"]
    again = train(cfg, NullTracker(), tmp_path / "ck", *data, progress=False)["val/acc"]  # the checkpoint is at the last step
    assert first == first and 0 <= first <= 1 and again == first


@pytest.mark.slow
def test_a_changed_config_starts_fresh_instead_of_resuming(tmp_path, tiny_path):
    """Same overrides, edited preset: the preempted run's checkpoint was trained under the old preset, so
    the second start must not continue it. It is moved aside (kept), the old run is tagged superseded and
    a new run trains the edited config from step 0."""
    conf = tmp_path / "conf" / "model"
    conf.mkdir(parents=True)
    preset = conf / "tiny_edit.yaml"
    preset.write_text("defaults:\n  - tiny\n  - _self_\nrl_lr: 5.0e-5\n")
    args = ["--config-dir", str(tmp_path / "conf"), "model=tiny_edit", "trainer.steps=6", "trainer.checkpoint_every=1",
            "trainer.eval_every=3", *TINY, "sweep.name=edited", f"hydra.run.dir={tmp_path}/out"]
    proc = subprocess.Popen([sys.executable, "-m", "rlkit.run", *args], cwd=REPO, env=env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while checkpoint_step(tmp_path / "ck") < 0:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint in 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # preempted: checkpointed, resumable
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    proc.stderr.close()
    mc = client(tmp_path)
    exp = mc.get_experiment_by_name("edited").experiment_id
    [old] = mc.search_runs([exp])
    [key] = [d.name for d in (tmp_path / "ck").iterdir()]

    preset.write_text("defaults:\n  - tiny\n  - _self_\nrl_lr: 1.0e-4\n")  # the same command, another model
    r = rlkit("rlkit.run", args, tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "different configuration (model.rl_lr: 5e-05 -> 0.0001" in r.stderr, r.stderr[-3000:]
    assert "resuming MLflow run" not in r.stderr
    assert (tmp_path / "ck" / f"{key}.superseded-1" / "state.pt").exists()  # the old checkpoint is kept
    runs = {x.info.run_id: x for x in mc.search_runs([exp])}
    [new] = [x for i, x in runs.items() if i != old.info.run_id]
    assert runs[old.info.run_id].data.tags["rlkit.status"] == "superseded"
    assert runs[old.info.run_id].data.tags["rlkit.superseded_by"] == new.info.run_id
    assert new.data.tags["rlkit.status"] == "finished" and new.data.params["trainer.lr"] == "0.0001"
    assert_clean_history(mc, new.info.run_id, 6, 3)  # every step 1..6 in the new run, from step 0

    again = rlkit("rlkit.run", args, tmp_path, timeout=600)  # finished under this config: a new run, nothing superseded
    assert again.returncode == 0 and "different configuration" not in again.stderr

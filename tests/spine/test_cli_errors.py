"""Bad input fails before any compute, with a message naming the problem and the valid choices."""
from __future__ import annotations

from tests.conftest import run_rlkit


def test_unknown_algo_lists_choices(tmp_path):
    r = run_rlkit(["algo=nope"], tmp_path, timeout=60)
    assert r.returncode != 0
    assert "algo/nope" in r.stderr
    for valid in ("grpo", "ppo", "reinforce_pp", "dapo"):
        assert valid in r.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing started, nothing trained


def test_unknown_length_lists_choices(tmp_path):
    r = run_rlkit(["length=17k"], tmp_path, timeout=60)
    assert r.returncode != 0
    assert "length/17k" in r.stderr and "16k" in r.stderr and "24k" in r.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_data_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    r = run_rlkit(["data=gsm8k", f"paths.data={missing}"], tmp_path, timeout=60)
    assert r.returncode == 2
    assert str(missing / "gsm8k") in r.stderr
    assert not (tmp_path / "ck").exists()


def test_malformed_algo_names_the_key(tmp_path):
    r = run_rlkit(["algo=sapo", "algo.policy_loss.tau_neg=0"], tmp_path, timeout=60)
    assert r.returncode == 2
    assert "algo.policy_loss.tau_neg=0 is invalid; valid: a positive number" in r.stderr


def test_moved_clip_key_names_its_new_place(tmp_path):
    """algo.clip_high moved into the loss (algo.policy_loss.clip_high): the error says where, before Hydra."""
    r = run_rlkit(["algo=dapo", "algo.clip_high=0.3"], tmp_path, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "write algo.policy_loss.clip_high=0.3 instead of algo.clip_high=0.3" in r.stderr
    assert not (tmp_path / "out").exists()  # rejected before Hydra made its output dir


def test_bad_trainer_type_names_the_key(tmp_path):
    r = run_rlkit(["trainer.steps=many"], tmp_path, timeout=60)
    assert r.returncode == 2
    assert "trainer.steps" in r.stderr and "many" in r.stderr

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
    r = run_rlkit(["algo.clip_low=-0.1"], tmp_path, timeout=60)
    assert r.returncode == 2
    assert "algo.clip_low" in r.stderr


def test_bad_trainer_type_names_the_key(tmp_path):
    r = run_rlkit(["trainer.steps=many"], tmp_path, timeout=60)
    assert r.returncode == 2
    assert "trainer.steps" in r.stderr and "many" in r.stderr

"""A 2-step run through `python -m rlkit.run` lands one MLflow run with the params, tags and
metrics the report and the users rely on."""
from __future__ import annotations

from mlflow.tracking import MlflowClient

from tests.conftest import run_rlkit

STEP_METRICS = [
    "critic/score/mean", "response_length/mean", "response_length/max", "response_length/min",
    "response_length/clip_ratio", "actor/entropy", "actor/pg_loss", "actor/kl_loss", "actor/grad_norm",
    "timing_s/gen", "timing_s/step", "groups/all_correct_frac", "groups/all_wrong_frac",
    "rewards/accuracy/mean", "rewards/format/mean", "rollout/distinct_frac",
]


def test_two_step_run_is_tracked(tmp_path, tiny_path):
    r = run_rlkit(["trainer.steps=2", "trainer.eval_every=1", "trainer.prompts_per_step=4",
                   "data.val_size=16", "seed=3"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    mc = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = mc.get_experiment_by_name("default")
    runs = mc.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    tags = run.data.tags
    assert {k: tags[k] for k in ("algo", "reward", "length", "model", "data", "launcher", "seed", "sweep")} == {
        "algo": "grpo", "reward": "strict", "length": "16k", "model": "tiny", "data": "arith", "launcher": "local",
        "seed": "3", "sweep": "default"}
    assert len(tags["git_sha"]) in (7, 40) or tags["git_sha"] == "unknown"
    assert tags["rlkit.status"] == "finished" and run.info.status == "FINISHED"
    params = run.data.params
    assert params["trainer.steps"] == "2" and params["algo.kl.estimator"] == "k3" and params["seed"] == "3"
    for key in STEP_METRICS:
        assert [m.step for m in mc.get_metric_history(run.info.run_id, key)] == [1, 2], key
    val = mc.get_metric_history(run.info.run_id, "val/acc")
    assert sorted(m.step for m in val) == [0, 1, 2]
    assert all(0.0 <= m.value <= 1.0 for m in val)
    # 16k at the tiny model's scale is 44 tokens (conf/model/tiny.yaml length_scale), logged as a param
    assert params["length.max_response_tokens"] == "44"
    assert params["length.full_scale_tokens"] == "16384"
    assert max(m.value for m in mc.get_metric_history(run.info.run_id, "response_length/max")) <= 44

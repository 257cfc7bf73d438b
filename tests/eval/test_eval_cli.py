"""`python -m rlkit.eval` on the shipped tiny model and on a finished run's checkpoint, real MLflow store."""
from __future__ import annotations

import json

import pandas as pd
from mlflow.tracking import MlflowClient
from pytest import approx

from rlkit.eval.suite import aggregate
from rlkit.models.tiny import SHIPPED
from tests.conftest import run_rlkit


def _runs(tmp, experiment):
    mc = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    return mc, mc.search_runs([mc.get_experiment_by_name(experiment).experiment_id])


def test_greedy_eval_of_the_shipped_model_reproduces_its_val_acc(tmp_path):
    r = run_rlkit(["evaluate.target=" + str(SHIPPED / "tiny"), "eval.greedy=true", "eval.size=200"], tmp_path,
                  module="rlkit.eval")
    assert r.returncode == 0, r.stderr[-3000:]
    mc, [run] = _runs(tmp_path, "eval")
    m = run.data.metrics
    shipped = json.loads((SHIPPED / "tiny" / "warmup.json").read_text())["measured"]["heldout_greedy_acc"]
    assert m["eval/tiny_arith/avg_at_1"] == shipped == 0.74  # = val/acc at step 0 of every default run (200, greedy)
    assert run.data.params["eval/tiny_arith/greedy"] == "True" and run.data.params["eval/tiny_arith/max_tokens"] == "44"
    # the per-problem artifact, read back and re-aggregated, gives the logged numbers
    path = mc.download_artifacts(run.info.run_id, "eval/tiny_arith/step_000000.parquet", str(tmp_path))
    table = pd.read_parquet(path)
    assert len(table) == 200 and set(table.columns) >= {"problem_id", "sample", "correct", "answer", "length", "truncated"}
    again = aggregate(table)
    assert {f"eval/tiny_arith/{k}": v for k, v in again.items()} == approx(
        {k: v for k, v in m.items() if k.startswith("eval/tiny_arith/")}, nan_ok=True)


def test_eval_of_a_finished_run_logs_into_it_and_resumes(tmp_path):
    r = run_rlkit(["trainer.steps=2", "trainer.prompts_per_step=4", "data.val_size=16", "trainer.eval_every=2",
                   "eval=none", "sweep.name=ev"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    mc, [run] = _runs(tmp_path, "ev")
    args = ["evaluate.target=" + run.info.run_id, "eval.k=4", "eval.size=16"]
    r = run_rlkit(args, tmp_path, module="rlkit.eval")
    assert r.returncode == 0, r.stderr[-3000:]
    hist = mc.get_metric_history(run.info.run_id, "eval/tiny_arith/pass_at_4")
    assert [h.step for h in hist] == [2] and 0.0 <= hist[0].value <= 1.0
    assert mc.get_run(run.info.run_id).data.metrics["eval/tiny_arith/pass_at_1"] <= hist[0].value
    r = run_rlkit(args, tmp_path, module="rlkit.eval")  # the same command again: nothing to do
    assert r.returncode == 0 and "already logged" in r.stderr
    assert len(mc.get_metric_history(run.info.run_id, "eval/tiny_arith/pass_at_4")) == 1


def test_eval_of_a_sweep_is_a_multirun_over_its_finished_runs(tmp_path):
    r = run_rlkit(["-m", "seed=0,1", "trainer.steps=2", "trainer.prompts_per_step=4", "data.val_size=16",
                   "trainer.eval_every=2", "eval=none", "sweep.name=evs"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_rlkit(["evaluate.target=evs", "eval.k=2", "eval.size=8"], tmp_path, module="rlkit.eval")
    assert r.returncode == 0, r.stderr[-3000:]
    mc, runs = _runs(tmp_path, "evs")
    children = [x for x in runs if x.data.tags.get("rlkit.role") == "child"]
    assert len(children) == 2 and len(runs) == 3  # the sweep's parent and its two runs: no new parent run
    for run in children:
        assert [h.step for h in mc.get_metric_history(run.info.run_id, "eval/tiny_arith/pass_at_2")] == [2]

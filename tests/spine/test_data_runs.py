"""Data-side features through the real CLI: a curriculum switches stage at the configured step
(read back from MLflow), and the offline pass-rate filter yields a band-filtered data group."""
from __future__ import annotations

import json

from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from tests.conftest import REPO, run_rlkit

SMALL = ["trainer.prompts_per_step=4", "trainer.group_size=4", "data.val_size=16", "trainer.eval_every=100"]


def test_curriculum_switches_stage_at_configured_step(tmp_path, tiny_path):
    r = run_rlkit(["trainer.steps=4", *SMALL,
                   "curriculum.stages=[{data:arith_2d,steps:2},{data:arith_3d,steps:null}]"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    mc = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = mc.search_runs([mc.get_experiment_by_name("default").experiment_id])[0]
    stages = {m.step: m.value for m in mc.get_metric_history(run.info.run_id, "data/stage")}
    assert stages == {1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0}
    # val/acc is the run's data group (arith, as for a run without curriculum); each stage's group is added
    keys = set(run.data.metrics)
    assert {"val/acc", "val/arith/acc", "val/arith_2d/acc", "val/arith_3d/acc"} <= keys
    assert run.data.metrics["val/acc"] == run.data.metrics["val/arith/acc"]


def test_passrate_filter_makes_a_band_group(tmp_path, tiny_path):
    cache = tmp_path / "cache"
    r = run_rlkit(["passrate.limit=40", "passrate.k=4", f"paths.cache={cache}"], tmp_path, module="rlkit.passrate")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pass rate histogram (n=40)" in r.stdout
    rates = json.loads((cache / "passrate-tiny-arith-k4.json").read_text())["rates"]
    assert len(rates) == 40 and all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in rates.values())
    group = OmegaConf.load(REPO / "conf" / "data" / "arith_band.yaml")
    group.source.rates_file = str(cache / "passrate-tiny-arith-k4.json")
    kept = instantiate(group.source)(split="train")
    expected = {pid for pid, v in rates.items() if 0.2 <= v <= 0.625}
    assert {p.id for p in kept} == expected
    assert 0 < len(expected) < 40  # the tiny default's mixture gives mid-band prompts

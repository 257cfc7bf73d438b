"""Every shipped sweep file composes (each job, validated), declares a sweep name, seeds and a report block
the report generator accepts, and its `cluster:` block composes; a bad sweep file fails before anything
is submitted, naming the key; a shipped sweep runs to completion with launcher=local_parallel."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from rlkit.config import ConfigError, vllm_build
from rlkit.launch.submit import SWEEPS_DIR, cluster_overrides, compose_multirun
from rlkit.launch.sweep import check_sweep, config_loader, job_overrides
from rlkit.report.spec import ReportSpec, load_sweep_file
from tests.launch.checks import TINY, client, rlkit, sweep_runs

SWEEPS = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml") if not p.name.startswith("_"))
STUDIES = {"format_reward", "curriculum", "length", "algo_low_signal", "entropy", "kl_placement", "model_size",
           "tune_lr_kl"}


def test_the_studies_are_shipped():
    assert STUDIES <= set(SWEEPS)


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_composes_and_declares_its_report(name):
    if name == "engine" and vllm_build() is None:  # its vllm arm validates only where vLLM is installed
        pytest.skip("sweeps/engine.yaml needs vLLM (.ci/run's vLLM venv runs this test)")
    cfg = compose_multirun([f"+sweep={name}"])
    jobs = check_sweep(cfg)  # every job composed and passed rlkit.config.validate
    assert jobs and all(f"+sweep={name}" in ov for ov in jobs)
    assert cfg.sweep.name == name == cfg.tracking.experiment  # the report finds sweeps/<name>.yaml
    assert cfg.hydra.mode.name == "MULTIRUN"  # `python -m rlkit.run +sweep=<name>` runs the grid
    spec = ReportSpec().merged(load_sweep_file(SWEEPS_DIR / f"{name}.yaml"))  # unknown keys would raise
    assert spec.metrics and spec.rows
    if "Optuna" not in cfg.hydra.sweeper._target_:
        seeds = {o for ov in jobs for o in ov if o.startswith("seed=")}
        assert len(seeds) >= 3, seeds
        factors = {o.split("=")[0].lstrip("+~") for ov in jobs for o in ov} - {"seed", "sweep"}
        assert {f for f in spec.rows} <= factors, (spec.rows, factors)


@pytest.mark.parametrize("name", SWEEPS)
def test_cluster_block_composes(name):
    """Full-scale values compose, model presets included (not validated: the checkpoints are not here)."""
    cfg = compose_multirun(cluster_overrides([f"+sweep={name}"]) + [f"+sweep={name}"])
    for ov in {tuple(o for o in ov if not o.startswith("seed=")): ov for ov in job_overrides(cfg)}.values():
        job = config_loader().load_sweep_config(cfg, ov)
        assert job.hydra.runtime.choices.launcher == "slurm"
        assert job.trainer.steps >= 100 and job.sweep.name == name


def test_submit_cluster_needs_a_block():
    with pytest.raises(ConfigError, match="needs \\+sweep"):
        cluster_overrides(["algo=grpo"])


BAD = {
    "bad_group": ("hydra: {mode: MULTIRUN, sweeper: {params: {reward: 'strict,nope', seed: '0,1'}}}", "reward/nope"),
    "bad_key": ("hydra: {mode: MULTIRUN, sweeper: {params: {algo.entropy_coeff: '0,0.001'}}}", "algo.entropy_coeff"),
    # typos in the body (issue 29: both ran to FINISHED without a word), named with the nearest valid key
    "typo_top": ("seeed: 3\nhydra: {mode: MULTIRUN, sweeper: {params: {seed: '0'}}}", "seeed: unknown key; did you mean seed"),
    "typo_data": ("data: {val_sizee: 5}\nhydra: {mode: MULTIRUN, sweeper: {params: {seed: '0'}}}",
                  "data.val_sizee: unknown key; did you mean data.val_size"),
    "typo_model": ("model: {resources: {gpus_per_nod: 1}}\nhydra: {mode: MULTIRUN, sweeper: {params: {seed: '0'}}}",
                   "did you mean model.resources.gpus_per_node"),
    "typo_report": ("report: {metricz: [val/acc]}\nhydra: {mode: MULTIRUN, sweeper: {params: {seed: '0'}}}", "metricz"),
}


def bad_sweep(tmp_path, bad) -> tuple[list[str], str]:
    body, key = BAD[bad]
    (tmp_path / "sweeps" / "sweep").mkdir(parents=True)
    (tmp_path / "sweeps" / "sweep" / f"{bad}.yaml").write_text(f"# @package _global_\nsweep: {{name: {bad}}}\n{body}\n")
    return [f"+sweep={bad}", f"hydra.searchpath=[file://{tmp_path}/sweeps]", "launcher=local_parallel",
            f"hydra.sweep.dir={tmp_path}/multirun", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"], key


@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_sweep_fails_before_anything_is_submitted(tmp_path, bad):
    args, key = bad_sweep(tmp_path, bad)
    r = rlkit("rlkit.run", args, tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert key in r.stderr and "config error" in r.stderr
    assert not (tmp_path / "mlflow.db").exists()  # no parent run
    assert not (tmp_path / "multirun").exists()  # no job dir, nothing submitted


@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_sweep_is_not_submitted(tmp_path, bad, capsys):
    from rlkit.launch import submit

    args, key = bad_sweep(tmp_path, bad)
    assert submit.main(args) == 2
    assert key in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_sweep_runs_with_local_parallel(tmp_path, tiny_path):
    """sweeps/entropy.yaml at two of its arms, one seed and a few steps: 2 jobs at once, one parent, and the
    report generator builds the sweep's report from MLflow alone."""
    r = rlkit("rlkit.run", ["+sweep=entropy", "algo.entropy_coef=0,0.001", "launcher=local_parallel", "seed=0",
                            "trainer.steps=3",
                            "trainer.eval_every=3", *TINY[:2], f"hydra.sweep.dir={tmp_path}/multirun"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    mc = client(tmp_path)
    [parent], children = sweep_runs(mc, "entropy")
    assert parent.data.tags["rlkit.status"] == "finished"
    assert sorted(c.data.tags["override.algo.entropy_coef"] for c in children) == ["0", "0.001"]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.data.tags["rlkit.status"] == "finished" and c.data.tags["launcher"] == "local_parallel"
               for c in children)
    jobs = [json.loads(line) for line in (tmp_path / "multirun" / "rlkit_jobs.jsonl").read_text().splitlines()]
    assert len(jobs) == 2 and all(j["launcher"] == "local" for j in jobs)
    st = rlkit("rlkit.status", [str(tmp_path / "multirun"), "--json"], tmp_path, timeout=120)
    assert [j["state"] for j in json.loads(st.stdout)["jobs"]] == ["finished", "finished"]
    rep = rlkit("rlkit.report", ["entropy", "--out", str(tmp_path / "reports"), "--no-log-artifacts"], tmp_path,
                timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (tmp_path / "reports" / "entropy" / "report.md").exists()


def test_sweep_file_values_reach_the_job():
    cfg = compose_multirun(["+sweep=curriculum"])
    [mixed, staged] = {tuple(o for o in ov if o.startswith("curriculum")): ov for ov in job_overrides(cfg)}.values()
    job = config_loader().load_sweep_config(cfg, staged)
    assert [s.data for s in job.curriculum.stages] == ["ladder_1", "ladder_2"]
    assert [s.steps for s in job.curriculum.stages] == [30, None]
    assert job.curriculum.reset_ref is True and job.data.name == "ladder_2" and job.model.name == "tiny_ladder"
    assert OmegaConf.to_container(config_loader().load_sweep_config(cfg, mixed).curriculum.stages) == []


def test_the_band_arm_trains_on_the_pass_rate_band():
    """In a multirun the sweep's own `override /data:` comes after +arm: the band must survive it."""
    cfg = compose_multirun(["+sweep=algo_low_signal"])
    jobs = {" ".join(o for o in ov if o.startswith("+arm=")): ov for ov in job_overrides(cfg)}
    band = config_loader().load_sweep_config(cfg, jobs["+arm=grpo_passrate_band"])
    plain = config_loader().load_sweep_config(cfg, jobs["+arm=grpo"])
    assert band.data.source == plain.data.source and band.data.name == plain.data.name == "arith_hard"
    assert (band.data.passrate_band.lo, band.data.passrate_band.hi) == (0.2, 0.625) and plain.data.passrate_band is None
    assert band.data.passrate_band.rates_file.endswith("passrate-tiny-arith_hard-k8.json")

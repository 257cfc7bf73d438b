"""`python -m rlkit.eval evaluate.target=<run id | sweep | model dir | hub name> [eval=<suite>] [eval.k=16]`.

Scores a model on an eval suite (conf/eval) with the training engines and logs the metrics
(`eval/<suite>/avg_at_k`, `pass_at_k`, `maj_at_k`, `pass_hat_k`, ...), the decoding settings and the per-problem artifact
`eval/<suite>/step_<N>.parquet`:
* an MLflow run id: the run's checkpoint (`evaluate.step=last` or a step still on disk) composed with the
  run's own overrides, logged into that same run at that step;
* a sweep name: every finished run of the sweep, launched as a multirun through the chosen launcher
  (`launcher=slurm` makes it a job array);
* a local model directory or a hub name: a new run in the `eval` experiment, at step 0.
Resumable: a (run, suite, step) whose artifact is already logged is skipped, so the same command
started again evaluates only what is missing.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import rlkit.launch  # noqa: F401  (rlkit's Hydra plugins)
from rlkit.config import ConfigError
from rlkit.paths import eval_artifact


def _client(cfg: DictConfig):
    from rlkit.tracking import client

    return client(str(cfg.tracking.uri))


def _is_run(mc, target: str) -> bool:
    try:
        mc.get_run(target)
        return True
    except Exception:
        return False


def _sweep_runs(mc, target: str) -> list[str]:
    from rlkit.report.collect import find_sweep

    try:
        sweep = find_sweep(mc, target)
    except Exception:
        return []
    runs = sweep.runs
    return runs[runs["status"] == "finished"]["run_id"].tolist()


def run_checkpoint(cfg: DictConfig, mc, run_id: str) -> tuple[DictConfig, dict, int]:
    """(the run's composed config, its policy weights, the step they are from)."""
    from hydra import compose

    from rlkit import checkpoint

    run = mc.get_run(run_id)
    overrides = [o for o in run.data.tags.get("rlkit.overrides", "").split() if o]
    rcfg = compose("config", overrides=overrides)
    experiment = mc.get_experiment(run.info.experiment_id).name
    ckpt = Path(cfg.paths.checkpoints) / checkpoint.run_key(experiment, overrides)  # (this command's paths)
    state = checkpoint.load(ckpt)
    if state is None or state.get("policy") is None:
        raise ConfigError(f"run {run_id}: no torch-backend checkpoint under {ckpt} (evaluate it where it ran, "
                          "or pass its model directory as evaluate.target)")
    step = int(state["step"]) + 1
    want = str(cfg.evaluate.step)
    if want != "last" and int(want) != step:
        raise ConfigError(f"run {run_id}: evaluate.step={want} is not on disk; the checkpoint there is step {step} "
                          "(use evaluate.step=last)")
    return rcfg, state["policy"], step


def evaluate_model(cfg: DictConfig, model_cfg: DictConfig, weights: dict | None):
    """(metrics prefixed eval/<suite>/, per-problem table, decoding params) of one model on cfg.eval."""
    from rlkit.eval.suite import decoding_params, load_suite, run_suite
    from rlkit.models.load import load_policy
    from rlkit.steps.parts import make_engine
    from rlkit.steps.sample import prompt_ids, response_budget

    suite = load_suite(cfg.eval, cfg)
    policy, tokenizer = load_policy(model_cfg)
    if weights is not None:
        policy.load_state_dict(weights)
    policy.eval()
    engine = make_engine(cfg, policy, tokenizer)
    cache: dict = {}
    prompts = lambda template, problems: prompt_ids(tokenizer, cache, template, problems)  # noqa: E731
    budget_of = lambda ids: response_budget(cfg, ids)  # noqa: E731
    metrics, table = run_suite(suite, engine, prompts, budget_of)
    first, problems = suite.groups[0]
    decoding = decoding_params(cfg.eval, budget_of(prompts(first.template, problems)))  # (the first group's budget)
    name = suite.name
    return ({f"eval/{name}/{k}": v for k, v in metrics.items()}, table,
            {f"eval/{name}/{k}": str(v) for k, v in decoding.items()})


def log_eval(cfg: DictConfig, run_id: str, suite: str, step: int, metrics: dict, table, params: dict) -> None:
    """Into an existing run, through the run's own Tracker (direct, no spool); a param the run already has
    (an earlier evaluation's decoding) is kept: MLflow params cannot change."""
    from rlkit.eval.suite import save_table
    from rlkit.tracking import Tracker, sanitize

    tracker = Tracker(str(cfg.tracking.uri), run_id)
    tracker.log(metrics, step)
    existing = tracker.mc.get_run(run_id).data.params
    tracker.log_params({k: v for k, v in params.items() if sanitize(k) not in existing})
    with tempfile.TemporaryDirectory() as d:
        tracker.log_file(str(save_table(table, d, suite, step)), f"eval/{suite}")


def already_logged(mc, run_id: str, suite: str, step: int) -> bool:
    try:
        names = [Path(f.path).name for f in mc.list_artifacts(run_id, f"eval/{suite}")]
    except Exception:
        return False
    return Path(eval_artifact(suite, step)).name in names


def evaluate_target(cfg: DictConfig) -> None:
    from rlkit.tracking import experiment_id, prepare_store

    target = cfg.evaluate.target
    if not target:
        raise ConfigError("evaluate.target is required: an MLflow run id, a sweep name, a model directory or a hub name")
    prepare_store(str(cfg.tracking.uri))
    mc = _client(cfg)
    suite = str(cfg.eval.name)
    if _is_run(mc, str(target)):
        rcfg, weights, step = run_checkpoint(cfg, mc, str(target))
        if already_logged(mc, str(target), suite, step):
            print(f"[rlkit.eval] {target}: {suite} at step {step} already logged; skipping", file=sys.stderr)
            return
        rcfg = OmegaConf.merge(rcfg, {"eval": cfg.eval, "rollout": {"engine": cfg.rollout.engine}})
        metrics, table, params = evaluate_model(rcfg, rcfg.model, weights)
        log_eval(cfg, str(target), suite, step, metrics, table, params)
        run_id = str(target)
    else:
        runs = _sweep_runs(mc, str(target))
        if runs:
            launch_sweep(runs)
            return
        model_cfg = OmegaConf.merge(cfg.model, {"path": str(target)})
        metrics, table, params = evaluate_model(cfg, model_cfg, None)
        exp = experiment_id(mc, "eval")
        run_id = mc.create_run(exp, run_name=f"{suite} {target}", tags={"rlkit.kind": "eval", "eval_target": str(target),
                                                                         "model": str(cfg.model.name)}).info.run_id
        step = 0
        log_eval(cfg, run_id, suite, step, metrics, table, params)
        mc.set_terminated(run_id, "FINISHED")
    shown = {k.split("/", 2)[2]: round(v, 4) for k, v in metrics.items() if "/" not in k.split("/", 2)[2]}
    print(f"[rlkit.eval] run {run_id} step {step} {suite}: {shown}")


def launch_sweep(run_ids: list[str]) -> None:
    """Each finished run of the sweep as one job of a multirun through the configured launcher."""
    passed = [a for a in sys.argv[1:] if not a.startswith(("evaluate.target=", "-m", "--multirun"))]
    cmd = [sys.executable, "-m", "rlkit.eval", "-m", f"evaluate.target={','.join(run_ids)}", "seed=0",
           "~hydra.callbacks.sweep_tracking", *passed]  # (the jobs log into the sweep's runs: no new parent run)
    print(f"[rlkit.eval] {len(run_ids)} finished runs: {' '.join(cmd[2:])}", file=sys.stderr)
    raise SystemExit(subprocess.call(cmd))


@hydra.main(config_path="../../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        evaluate_target(cfg)
    except ConfigError as e:
        print(f"rlkit.eval: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

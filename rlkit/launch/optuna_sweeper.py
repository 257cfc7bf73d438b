"""A Hydra sweeper on Optuna's ask/tell API (Optuna >= 4; hydra-optuna-sweeper pins optuna < 3).

Selected with `override /hydra/sweeper: rlkit_optuna` (conf/hydra/sweeper/rlkit_optuna.yaml; see
sweeps/tune_lr_kl.yaml). Each trial is one rlkit job launched through the configured launcher
(basic, local_parallel or slurm; `n_jobs` trials per launch = one SLURM job array), so each trial is
a child MLflow run of the sweep's parent run. Objective: the job's return value (rlkit.run returns
the final held-out val/acc). A trial whose job failed is told FAIL.

The study is persistent (`storage`, SQLite by default) and `n_trials` counts its COMPLETE trials, so
re-running the same command continues the study. Trials left RUNNING by a driver that was killed are
failed and asked again with the same parameters: same overrides, so rlkit resumes each from its
checkpoint into the same MLflow run.

Search space (`hydra.sweeper.params`), per key either Hydra's sweep syntax or a mapping:

    trainer.lr: tag(log, interval(1e-5, 3e-4))      # or {low: 1.0e-5, high: 3.0e-4, log: true}
    algo.kl.coef: interval(0.0, 0.01)               # or {low: 0.0, high: 0.01}
    trainer.group_size: range(4, 17, 4)             # ints 4..16 step 4, or {low: 4, high: 16, step: 4, type: int}
    algo: choice(grpo, rloo)                        # or grpo,rloo or {choices: [grpo, rloo]}

Sweep overrides on the command line (`algo=grpo,rloo`) join the search space; other overrides are
fixed for every trial.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _is_int(*xs: Any) -> bool:
    return all(isinstance(x, int) and not isinstance(x, bool) for x in xs)


def distribution(key: str, spec: Any):
    """An Optuna distribution from a Hydra sweep string or a {low, high, log, step, type}/{choices} mapping."""
    from optuna import distributions as D

    if isinstance(spec, dict):
        if "choices" in spec:
            return D.CategoricalDistribution(list(spec["choices"]))
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"hydra.sweeper.params.{key}: a mapping needs low and high (or choices), got {spec}")
        low, high, log_, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
        if spec.get("type", "int" if _is_int(low, high) else "float") == "int":
            return D.IntDistribution(int(low), int(high), log=log_, step=int(step or 1))
        return D.FloatDistribution(float(low), float(high), log=log_, step=step)
    return _from_sweep(key, OverridesParser.create().parse_override(f"{key}={spec}").value())


def _from_sweep(key: str, value: Any):
    from optuna import distributions as D

    if isinstance(value, ChoiceSweep):
        return D.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):  # stop is exclusive, as in Python's range
        last = value.start + (math.ceil((value.stop - value.start) / value.step) - 1) * value.step
        if _is_int(value.start, value.stop, value.step):
            return D.IntDistribution(value.start, last, step=value.step)
        return D.FloatDistribution(value.start, last, step=value.step)
    if isinstance(value, IntervalSweep):
        log_ = "log" in value.tags
        if _is_int(value.start, value.end):
            return D.IntDistribution(value.start, value.end, log=log_)
        return D.FloatDistribution(float(value.start), float(value.end), log=log_)
    raise ValueError(f"hydra.sweeper.params.{key}={value!r} is not a search space "
                     "(use interval(a,b), tag(log,interval(a,b)), range(a,b,step), choice(a,b) or a mapping)")


def search_space(params: dict[str, Any] | None, sweep_args: list[Override]) -> dict[str, Any]:
    # a null entry is a key not searched (the root config's default `seed: 0,1,2` is set to null by Optuna sweeps)
    space = {k: distribution(k, v) for k, v in (params or {}).items() if v is not None}
    for o in sweep_args:
        space[o.get_key_element()] = _from_sweep(o.get_key_element(), o.value())
    return space


def corners(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Two parameter sets spanning the space (every low / first choice, every high / last choice):
    composed and validated before the first trial so a bad key or value fails at once."""
    from optuna.distributions import CategoricalDistribution

    def ends(d):
        return (d.choices[0], d.choices[-1]) if isinstance(d, CategoricalDistribution) else (d.low, d.high)

    return [{k: ends(d)[i] for k, d in space.items()} for i in (0, 1)]


def as_overrides(params: dict[str, Any]) -> list[str]:
    return [f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]


def split_arguments(arguments: list[str]) -> tuple[list[str], list[Override]]:
    """(fixed overrides, sweep overrides) of the command line."""
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [o.input_line for o in parsed if not o.is_sweep_override()], [o for o in parsed if o.is_sweep_override()]


def retry_stale(study) -> list[int]:
    """Fail the trials an earlier (killed) driver left RUNNING and queue their parameters again."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        log.warning(f"trial {t.number} was left running by an earlier driver: failing it and asking "
                    f"its parameters again (its run resumes from its checkpoint)")
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return [t.number for t in stale]


class OptunaSweeperImpl(Sweeper):
    def __init__(self, study_name: str, storage: str | None, direction: str = "maximize", n_trials: int = 10,
                 n_jobs: int = 1, max_failures: int | None = None, sampler: Any = None,
                 params: dict[str, Any] | None = None) -> None:
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs = int(n_trials), max(1, int(n_jobs))
        self.max_failures = self.n_trials if max_failures is None else int(max_failures)
        self.sampler_cfg = sampler
        self.params = OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else params
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _study(self):
        import optuna
        from hydra.utils import instantiate

        if self.storage and self.storage.startswith("sqlite:///"):
            Path(self.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, direction=self.direction,
                                    load_if_exists=True)
        if self.sampler_cfg:
            cfg = OmegaConf.create(self.sampler_cfg)
            if cfg.get("seed") is not None:  # a continued study must not replay the first run's samples
                cfg.seed = int(cfg.seed) + len(study.trials)
            study.sampler = instantiate(cfg)
        return study

    def _run_id(self, overrides: list[str]) -> str | None:
        from rlkit import checkpoint

        cfg = self.config
        key = checkpoint.run_key(cfg.tracking.experiment, overrides)
        return checkpoint.read_status(Path(cfg.paths.checkpoints) / key).get("run_id")

    def sweep(self, arguments: list[str]) -> Any:
        from optuna.trial import TrialState

        assert self.config is not None and self.launcher is not None
        fixed, sweep_args = split_arguments(arguments)
        space = search_space(self.params, sweep_args)
        if not space:
            raise ValueError("rlkit_optuna sweeper: empty search space (set hydra.sweeper.params)")
        self.validate_batch_is_legal([fixed + as_overrides(c) for c in corners(space)])
        study = self._study()
        retry_stale(study)
        failures = 0
        while True:
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            if done >= self.n_trials or failures >= self.max_failures:
                break
            batch = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            overrides = [fixed + as_overrides(t.params) for t in batch]
            for t, ov in zip(batch, overrides):
                t.set_user_attr("overrides", ov)
            returns = self.launcher.launch(overrides, initial_job_idx=batch[0].number)
            for t, ov, r in zip(batch, overrides, returns):
                value = r._return_value if r.status == JobStatus.COMPLETED else None
                run_id = self._run_id(ov)
                if run_id:
                    t.set_user_attr("mlflow_run_id", run_id)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    study.tell(t, float(value))
                    log.info(f"trial {t.number}: {value:.4f} <- {' '.join(as_overrides(t.params))}")
                else:
                    study.tell(t, state=TrialState.FAIL)
                    failures += 1
                    log.error(f"trial {t.number} failed ({' '.join(ov)}): {str(r._return_value)[:300]}")
        return self._report(study)

    def _report(self, study) -> dict[str, Any] | None:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise RuntimeError(f"study {self.study_name}: no trial completed")
        best = study.best_trial
        out = {"study": self.study_name, "storage": self.storage, "best_value": best.value,
               "best_params": best.params, "best_trial": best.number,
               "best_mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
               "n_complete": len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))}
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "optuna_best.json").write_text(json.dumps(out, indent=1, default=str))
        log.info(f"best trial {best.number}: {best.value:.4f} with {best.params} (study {self.study_name} in {self.storage})")
        return out

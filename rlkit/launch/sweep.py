"""A sweep's jobs, enumerated and checked before anything is submitted.

`check_sweep` composes every job of a grid sweep (Hydra's BasicSweeper: `hydra.sweeper.params` plus
the command line's sweep overrides) the way the launcher will, and runs rlkit.config.validate on
each (once per job up to the seed), so an unknown group option, a key that does not exist or a bad value fails at once, naming the
job and the key, before a parent run is created or a job is submitted. For the Optuna sweeper it
checks two corners of the search space. Used by the sweep callback and by `python -m rlkit.submit`.
"""
from __future__ import annotations

import time

from omegaconf import DictConfig, OmegaConf

from rlkit.config import ConfigError

BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def config_loader():
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().config_loader()


def job_overrides(config: DictConfig) -> list[list[str]] | None:
    """Every job's overrides (grid sweeps), two corner jobs (Optuna), or None (another sweeper)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    args = [str(o) for o in config.hydra.overrides.task]
    params = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params else {}
    try:
        if target.endswith("OptunaSweeper"):
            from rlkit.launch.optuna_sweeper import as_overrides, corners, search_space, split_arguments

            fixed, sweep_args = split_arguments(args)
            return [fixed + as_overrides(c) for c in corners(search_space(params, sweep_args))]
        if target != BASIC:
            return None
        parsed = OverridesParser.create(config_loader=config_loader()).parse_overrides(
            [f"{k}={v}" for k, v in params.items()] + args)
        return BasicSweeper.split_arguments(parsed, None)[0]
    except Exception as e:
        raise ConfigError(f"sweep {config.sweep.name}: cannot parse the grid: {e}") from e


def check_sweep(config: DictConfig) -> list[list[str]] | None:
    """Compose and validate every job (see module doc); returns the jobs' overrides."""
    from rlkit.config import VALUE_RULES, validate

    report = OmegaConf.select(config, "report")
    if report is not None:  # its keys are the report's schema (rlkit.config leaves the block to it)
        from rlkit.report.spec import ReportSpec

        try:
            ReportSpec.from_dict(OmegaConf.to_container(report, resolve=True))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"sweep {config.sweep.name!r}: report: {e}") from None
    jobs = job_overrides(config)
    if jobs is None:
        return None
    loader = config_loader()
    t0 = time.perf_counter()
    seen = set()
    for i, ov in enumerate(jobs):
        shape = tuple(o for o in ov if not o.startswith("seed="))  # any int seed composes: check one per shape
        if shape in seen:  # composed like a job already checked: only its seed is left to check
            seed = next((o.partition("=")[2] for o in ov if o.startswith("seed=")), "0")
            ok, valid = VALUE_RULES["seed"]
            if not (seed.isdigit() and ok(int(seed))):
                raise ConfigError(f"sweep {config.sweep.name!r}: job #{i} ({' '.join(ov)}) is invalid:\n  "
                                  f"seed={seed!r} is invalid; valid: {valid}")
            continue
        seen.add(shape)
        try:
            validate(loader.load_sweep_config(config, list(ov)))
        except Exception as e:
            msg = str(e).strip()
            if e.__cause__ is not None and str(e.__cause__) not in msg:  # Hydra: "Key 'x' is not in struct"
                msg += f"\n  {str(e.__cause__).strip()}"
            raise ConfigError(f"sweep {config.sweep.name!r}: job #{i} ({' '.join(ov)}) is invalid:\n  {msg}") from e
    print(f"[rlkit] checked {len(jobs)} jobs ({len(seen)} configs up to the seed) in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return jobs

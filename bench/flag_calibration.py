"""False-alarm rates of the diagnosis flags, measured on no-effect runs (runs of unchanged configurations: the
negative control, A/A runs), at the thresholds in force and over a grid of each flag's main threshold.

    python bench/flag_calibration.py SWEEP [SWEEP ...] [--tracking-uri URI] [--write [FILE]] [--defaults YAML]

For each named sweep (resolved as the report does: experiment name, sweep_id or sweep tag) the finished runs
in its means (newest finished run per variant and seed) are diagnosed with `rlkit.report.diagnose.check_run`
— the report's own code — at the thresholds of conf/report/default.yaml (as a report would use them), and
again with each flag's main threshold (`diagnose.MAIN_THRESHOLD`) set to each value of its grid. Rate = runs
fired / runs checked (a run that did not log the flag's metric is not checked). Proposed threshold: the one in
force if it fires on ≤ 5% of the runs, else the least strict grid value that does (none if no grid value
does). Every run of a named sweep counts as a no-effect run: name only sweeps whose arms do not differ in
anything that should change training (an A/A sweep, the negative control), never a sweep with a real factor.

`--write` stores the measurement in rlkit/report/flag_rates.json (or FILE): flag → {params (the thresholds the
rule reads), runs, fired, rate, sweeps, date, grid [{params, runs, fired, rate}], main, proposed,
proposed_rate}; a report prints the rate beside each flag when its thresholds match a measured point.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def no_effect_series(uri: str, sweeps: list[str]) -> tuple[dict, dict[str, str]]:
    """run_id → key → (steps, values) of the diagnosis metrics, and run_id → sweep, over the finished runs in
    the means of each sweep."""
    from mlflow import MlflowClient

    from rlkit.report import collect, diagnose, tables

    client = MlflowClient(uri)
    series, sweep_of = {}, {}
    for name in sweeps:
        sw = collect.find_sweep(client, name)
        runs = sw.runs.copy()
        if runs.empty:
            raise collect.SweepNotFound(f"sweep {name!r} has no child runs")
        runs = runs[tables.in_means(runs)]
        ids = runs["run_id"].tolist()
        if not ids:
            raise ValueError(f"sweep {name!r} has no finished run")
        hist = collect.load_history(uri, ids, list(diagnose.METRICS))
        split = diagnose.split_history(hist)
        for r in ids:
            series[r] = split.get(r, {})
            sweep_of[r] = name
    return series, sweep_of


def rate_at(series: dict, flag: str, th) -> dict:
    """Runs fired / runs checked for one flag at thresholds `th`."""
    from rlkit.report import diagnose

    fired = checked = 0
    for s in series.values():
        state = diagnose.check_run(s, th)[flag][0]
        if state != "n/a":
            checked += 1
            fired += state == "fired"
    return {"runs": checked, "fired": fired, "rate": fired / checked if checked else None}


def _jsonable(v):
    return float(v) if isinstance(v, float | np.floating) else v


def calibrate(series: dict, th, sweeps: list[str], date: str, target: float = 0.05) -> dict:
    """Per flag: the rate at `th`, over the main threshold's grid, and the proposed threshold."""
    from rlkit.report import diagnose

    out = {}
    for flag in diagnose.FLAGS:
        main, direction, grid = diagnose.MAIN_THRESHOLD[flag]
        now = rate_at(series, flag, th)
        values = sorted(set(grid) | {getattr(th, main)})
        points = []
        for v in values:
            t2 = replace(th, **{main: type(getattr(th, main))(v)})
            points.append({"params": {k: _jsonable(x) for k, x in diagnose.flag_params(flag, t2).items()},
                           main: _jsonable(v), **rate_at(series, flag, t2)})
        ok = [p for p in points if p["rate"] is not None and p["rate"] <= target]
        cur = getattr(th, main)
        if not now["runs"]:  # no run logged the flag's metric: nothing measured, nothing proposed
            proposed = None
        elif now["rate"] <= target:
            proposed = cur
        elif ok:  # the least strict value that meets the target: the most sensitive acceptable flag
            proposed = (min if direction == "up" else max)(p[main] for p in ok)
        else:
            proposed = None
        prop_rate = next((p["rate"] for p in points if p[main] == proposed), None)
        out[flag] = {"params": {k: _jsonable(x) for k, x in diagnose.flag_params(flag, th).items()}, **now,
                     "sweeps": sweeps, "date": date, "main": main,
                     "stricter": "higher" if direction == "up" else "lower", "grid": points,
                     "proposed": {main: _jsonable(proposed)} if proposed is not None else None,
                     "proposed_rate": prop_rate}
    return out


def main(argv: list[str] | None = None) -> int:
    from rlkit.report import diagnose
    from rlkit.report.spec import ReportSpec, load_defaults

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweeps", nargs="+", help="no-effect sweeps (negative control, A/A runs)")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")
    p.add_argument("--defaults", help="report defaults YAML whose diagnose: block is in force [conf/report/default.yaml]")
    p.add_argument("--write", nargs="?", const=str(diagnose.RATES_FILE), default=None,
                   help=f"write the measurement (default file: {diagnose.RATES_FILE})")
    p.add_argument("--target", type=float, default=diagnose.FALSE_ALARM_TARGET)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    from rlkit.report.collect import SweepNotFound

    try:  # bad input: a clear message before any work
        th = ReportSpec.from_dict(load_defaults(a.defaults)).diagnose
        series, sweep_of = no_effect_series(a.tracking_uri, a.sweeps)
    except (SweepNotFound, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc} (tracking URI {a.tracking_uri})", file=sys.stderr)
        return 2
    date = time.strftime("%Y-%m-%d", time.gmtime())
    flags = calibrate(series, th, a.sweeps, date, a.target)
    per_sweep = {s: sum(1 for x in sweep_of.values() if x == s) for s in a.sweeps}
    print(f"{len(series)} no-effect runs ({', '.join(f'{s}: {n}' for s, n in per_sweep.items())}); target ≤ "
          f"{a.target:g} false alarms; thresholds of {a.defaults or 'conf/report/default.yaml'}")
    for flag, r in flags.items():
        rate = "—" if r["rate"] is None else f"{r['rate']:.3f}"
        grid = "  ".join(f"{g[r['main']]:g}:{g['fired']}/{g['runs']}" for g in r["grid"])
        prop = ("nothing (no run logged its metric)" if not r["runs"] else "none on the grid" if r["proposed"] is None
                else f"{r['main']}={r['proposed'][r['main']]:g}")
        print(f"{flag:24s} {r['fired']:3d}/{r['runs']:<3d} = {rate:>5s} at {r['main']}={r['params'][r['main']]:g}; "
              f"proposed {prop}\n{'':24s} grid ({r['main']}: fired/runs, {r['stricter']} = stricter) {grid}")
    if a.write:
        doc = {"about": "false-alarm rates of the diagnosis flags on no-effect runs, measured by "
                        "bench/flag_calibration.py (rlkit/report/README.md)",
               "command": "python bench/flag_calibration.py " + " ".join(a.sweeps) + " --write",
               "date": date, "runs": len(series), "sweeps": per_sweep, "target": a.target, "flags": flags}
        Path(a.write).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {a.write}")
    print(f"[{time.perf_counter() - t0:.1f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

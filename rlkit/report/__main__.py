"""python -m rlkit.report <sweep name or id> — the ablation report of a sweep, from MLflow alone.

    python -m rlkit.report length_ablation
    python -m rlkit.report 3f2c9a1e --step best --metrics val/acc response_length/mean
    python -m rlkit.report algo_x_length --baseline 'algo=grpo,length=16k' --step 200
    python -m rlkit.report my_sweep --tracking-uri http://host:5000 --out reports/ --sweep-file sweeps/my_sweep.yaml

The sweep is an experiment name (newest parent run's sweep_id, or --sweep-id), a sweep_id, or a `sweep`
tag. Writes `<out>/<sweep>/`: report.md, report.html (self-contained), table.tex, table.csv,
curve_<metric>.png/.svg, and logs them as artifacts (path `report/`) of the sweep's parent run.

Options beat the sweep file's `report:` block, which beats conf/report/default.yaml (lab-wide defaults,
same keys), which beats the built-in defaults. The sweep file defaults to
`sweeps/<sweep>.yaml` when it exists. Its `report:` block (every key optional):

    report:
      metrics: [val/acc, response_length/mean]  # table columns [held-out accuracy per group, length,
                                                #  truncation, all-correct/all-wrong, entropy, KL, wall time]
      rows: [algo, length]          # factors forming the rows [every varying factor]
      columns: [length]             # factorial view's columns; its rows = rows minus columns
                                    #  [automatic when exactly two factors vary]
      factorial_metrics: [val/acc]  # [the first table metric]
      baseline: {algo: grpo}        # Δ reference; unnamed factors match the row's own [first row]
      step: last                    # last | best | mean (over the run) | <int> [last]
      curves: [critic/score/mean, val/acc]  # [reward, val acc, length, entropy, clip ratio, all-correct/wrong]
      directions: {actor/entropy: max}      # max | min | none, for bold and `best`
      diagnose: {entropy_frac: 0.3, truncation_max: 0.1}  # see rlkit/report/diagnose.py Thresholds
      resamples: 10000              # bootstrap resamples (table) [10000]
      curve_resamples: 1000         # bootstrap resamples (curve bands) [1000]
      seed: 0                       # bootstrap seed [0]
      level: 0.95                   # CI level [0.95]
      interval: t                   # t | bootstrap: run-level intervals [t: Student-t; Welch for Δ]
      correction: holm              # holm | bh | none: adjusted p-values drive n.s., marks, bold [holm]
      family: column                # column | table: comparisons adjusted together [column]
      alpha: 0.05                   # test level [0.05]
      power: 0.8                    # for the MDE and seeds needed [0.8]
      target_delta: 0.02            # Δ to plan for → "seeds needed" [none]
      paired_resamples: 2000        # hierarchical bootstrap resamples (per-problem comparisons) [2000]
      per_problem: true             # read eval/<suite>/step_N.parquet artifacts [true]
      thresholds: {val/acc: 0.8}    # efficiency: AUC, steps/wall s/tokens to reach [none]
      last_k: 3                     # + per metric "mean of the last k evaluations" (after step 0) [null: off]

Planning: `python -m rlkit.report plan <sweep> --target-delta 0.02 [--metrics K ...] [--power 0.8] [--alpha 0.05]`
estimates, from an earlier (pilot) sweep, each metric's seed-to-seed SD and the seeds per arm a new sweep
needs to detect the target Δ (and, from per-problem results, the same for paired comparisons), before a
cluster sweep is submitted.

Full semantics in rlkit/report/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rlkit.report.spec import ReportSpec, load_defaults, load_sweep_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rlkit.report", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    p.add_argument("sweep", help="experiment name, sweep_id or sweep tag")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db",
                   help="MLflow tracking URI [MLFLOW_TRACKING_URI or sqlite:///mlflow.db]")
    p.add_argument("--out", default="reports", help="output root; the report goes to <out>/<sweep>/ [reports]")
    p.add_argument("--step", help="last | best | mean | <int> [report.step or last]")
    p.add_argument("--metrics", nargs="+", help="table metrics [report.metrics or defaults]")
    p.add_argument("--curves", nargs="+", help="curve metrics [report.curves or defaults]")
    p.add_argument("--rows", nargs="+", help="row factors [report.rows or all varying factors]")
    p.add_argument("--columns", nargs="+", help="factorial column factors [report.columns]")
    p.add_argument("--baseline", help="e.g. 'algo=grpo,length=16k' [report.baseline or first row]")
    p.add_argument("--last-k", type=int, help="add per metric the mean of each run's last k evaluations [report.last_k]")
    p.add_argument("--sweep-file", help="sweep YAML with a report: block [sweeps/<sweep>.yaml if it exists]")
    p.add_argument("--sweep-id", help="which sweep of the experiment [newest parent's]")
    p.add_argument("--defaults", help="lab-wide defaults YAML [conf/report/default.yaml of the repo]")
    p.add_argument("--no-log-artifacts", action="store_true", help="do not log the files to the parent run")
    return p.parse_args(argv)


def plan(argv: list[str]) -> int:
    """Seeds per arm for a target Δ, estimated from an earlier sweep (module docstring)."""
    import numpy as np

    from rlkit.report import stats
    from rlkit.report.build import analyze
    from rlkit.report.collect import SweepNotFound

    p = argparse.ArgumentParser(prog="python -m rlkit.report plan", description=plan.__doc__)
    p.add_argument("sweep")
    p.add_argument("--target-delta", type=float, required=True, help="the Δ the new sweep must detect")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")
    p.add_argument("--metrics", nargs="+")
    p.add_argument("--step")
    p.add_argument("--power", type=float)
    p.add_argument("--alpha", type=float)
    p.add_argument("--sweep-id")
    p.add_argument("--sweep-file")
    p.add_argument("--defaults")
    a = p.parse_args(argv)
    sweep_file = a.sweep_file or (f"sweeps/{a.sweep}.yaml" if Path(f"sweeps/{a.sweep}.yaml").is_file() else None)
    try:
        spec = ReportSpec.from_dict(load_defaults(a.defaults)).merged(load_sweep_file(sweep_file) if sweep_file else {})
        spec = spec.merged({"metrics": a.metrics, "step": a.step, "power": a.power, "alpha": a.alpha,
                            "target_delta": a.target_delta, "curves": [], "paired_resamples": 0})
        r = analyze(a.tracking_uri, a.sweep, spec, sweep_id=a.sweep_id)
    except (SweepNotFound, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"plan from sweep {r.sweep.name} ({len(r.sweep.runs)} runs): target Δ = {a.target_delta:g}, "
          f"power {spec.power:g}, Welch's two-sided test; seed SD pooled over all rows of the pilot, divided by "
          f"c4(df) (unbiased for σ); seeds per arm at α/m = {spec.alpha:g}/m ({spec.correction}'s most "
          f"conservative step, m = the pilot's comparisons per family; α itself with correction none)")
    print(f"{'metric':40s} {'seed SD':>10s} {'(df)':>5s} {'seeds run':>9s} {'MDE at α':>9s} {'MDE α/m':>9s} "
          f"{'m':>3s} {'seeds per arm':>13s}")
    for row in r.ablation.power.to_dict("records"):
        need = row["seeds_needed"]
        print(f"{row['metric']:40s} {row['sd']:10.4g} {row['sd_df']:5d} {row['seeds']:9d} {row['mde']:9.4g} "
              f"{row['mde_family']:9.4g} {row['family_m']:3d} {'>1000' if need is None else need:>13}")
    for name, su in r.suites.items():
        acc = su.metric("acc")
        row_of = {rid: i for i, rid in enumerate(su.run_ids)}
        arms = [acc[[row_of[x] for x in rs if x in row_of]] for rs in r.ablation.run_lists.values()]
        sd, df = stats.pooled_sd([np.nanmean(X, axis=1) for X in arms if len(X)])
        sd_unb = sd / stats.c4(df) if df else np.nan
        pr = r.paired[(r.paired["suite"] == name) & (r.paired["metric"] == "acc")]
        tau = float(np.nanmedian(pr["tau2"])) if pr["tau2"].notna().any() else 0.0
        m = int(pr["family_m"].max()) if len(pr) and pr["family_m"].notna().any() else 1
        a_fam = stats.family_alpha(spec.alpha, max(m, 1), spec.correction)
        P = len(su.problems)
        need = stats.seeds_needed(a.target_delta, sd_unb, alpha=a_fam, target_power=spec.power, extra_var=tau / P)
        print(f"{'paired ' + name + ' acc (per problem)':40s} {sd:10.4g} {df:5d} {'':9s} {'':9s} {'':9s} {m:3d} "
              f"{'>1000' if need is None else need:>13}  (τ² median {tau:.3g} over {P} problems)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plan"]:
        return plan(argv[1:])
    args = parse_args(argv)
    from rlkit.report.build import build_report
    from rlkit.report.collect import SweepNotFound, sqlite_path

    db = sqlite_path(args.tracking_uri)
    if db is not None and not Path(db).is_file():  # MLflow would create an empty store there
        print(f"error: no MLflow store at {db} (tracking URI {args.tracking_uri}); pass --tracking-uri or set "
              "MLFLOW_TRACKING_URI", file=sys.stderr)
        return 2

    sweep_file = args.sweep_file or (f"sweeps/{args.sweep}.yaml" if Path(f"sweeps/{args.sweep}.yaml").is_file() else None)
    try:
        spec = ReportSpec.from_dict(load_defaults(args.defaults))
        spec = spec.merged(load_sweep_file(sweep_file) if sweep_file else {})
        spec = spec.merged({"step": args.step, "metrics": args.metrics, "curves": args.curves, "rows": args.rows,
                            "columns": args.columns, "baseline": args.baseline, "last_k": args.last_k})
        report = build_report(args.tracking_uri, args.sweep, spec, args.out, sweep_id=args.sweep_id,
                              log_artifacts=not args.no_log_artifacts)
    except SweepNotFound as exc:
        print(f"error: {exc}\n(tracking URI: {args.tracking_uri})", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sw = report.sweep
    n = len(sw.runs)
    print(f"sweep {sw.name} (sweep_id={sw.sweep_id}): {n} runs, factors {sw.factors or 'none'}"
          + (f", sweep file {sweep_file}" if sweep_file else ""))
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {report.out_dir}/ (report.md, report.html, table.tex, table.csv, {len(report.figures)} figures)")
    if report.artifact_run_id:
        print(f"logged as artifacts report/ of parent run {report.artifact_run_id}")
    elif not args.no_log_artifacts:
        print("no parent run: artifacts not logged")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Assemble a sweep's report: collect → values at the chosen step → tables, curves, diagnosis → files.

Writes into `<out>/<sweep name>/`: report.md, report.html (self-contained: tables inline, figures as
base64 PNG), table.tex (ablation + factorial tables, booktabs), table.csv (the ablation numbers, tidy),
curve_<metric>.png/.svg; then logs the directory as artifact path `report/` of the sweep's parent run.
"""
from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from rlkit.report import collect, diagnose, efficiency, paired, plots, tables
from rlkit.report.spec import (
    EVAL_KEY,
    REEVAL_SUFFIX,
    ReportSpec,
    default_curves,
    default_metrics,
    reeval_twin,
)

OWNED = ("report.md", "report.html", "table.tex", "table.csv", "power.csv")


@dataclass
class Report:
    sweep: collect.Sweep
    spec: ReportSpec
    ablation: tables.Ablation
    factorials: list[tables.Factorial]
    values: pd.DataFrame
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # sweep.runs + in_means
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)  # paired.table: per-problem comparisons
    reeval: pd.DataFrame = field(default_factory=pd.DataFrame)  # paired.reeval_table: the base model evaluated twice
    suites: dict = field(default_factory=dict)  # suite name → paired.Suite
    suite_summary: pd.DataFrame = field(default_factory=pd.DataFrame)  # several suites: IQM, P(improvement)
    efficiency: pd.DataFrame = field(default_factory=pd.DataFrame)
    provenance: dict = field(default_factory=dict)
    curve_keys: list[str] = field(default_factory=list)
    out_dir: Path | None = None
    flags: pd.DataFrame = field(default_factory=pd.DataFrame)
    flag_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: list[plots.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    artifact_run_id: str | None = None
    history_keys: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [self.out_dir / f for f in OWNED] + [p for f in self.figures for p in (f.png, f.svg)]


def _safe_dirname(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) or "sweep"


def analyze(tracking_uri: str, target: str, spec: ReportSpec | None = None, *, sweep_id: str | None = None,
            bulk: bool | None = None, client: MlflowClient | None = None) -> Report:
    """Every number of the report (tables, paired per-problem comparisons, power, suites, efficiency,
    provenance), no files: what `build_report` renders and what bench/calibration.py measures."""
    spec = spec or ReportSpec()
    t0 = time.perf_counter()
    timings = {}
    client = client or MlflowClient(tracking_uri)
    sweep = collect.find_sweep(client, target, sweep_id=sweep_id)
    if sweep.runs.empty:
        raise collect.SweepNotFound(f"sweep {target!r} (sweep_id={sweep.sweep_id}) has no child runs")
    runs = sweep.runs.copy()
    runs["in_means"] = tables.in_means(runs)
    timings["find runs"] = time.perf_counter() - t0

    notes = []
    available = sweep.metric_keys
    metrics = default_metrics(available) if spec.metrics is None else list(spec.metrics)
    curve_keys = default_curves(available) if spec.curves is None else list(spec.curves)  # [] = no curves
    for k in sorted(set(metrics + curve_keys) - set(available)):
        notes.append(f"metric {k!r} was requested but no run logged it")
    tag_cols = [c for c in runs.columns if c in collect.GROUP_TAGS or c.startswith(collect.OVERRIDE_PREFIX)]
    row_factors = [tables.resolve_factor(f, tag_cols) for f in spec.rows] if spec.rows else list(sweep.factors)
    if spec.columns:
        col_factors = [tables.resolve_factor(f, tag_cols) for f in spec.columns]
        fac_rows = [f for f in (row_factors if spec.rows else sweep.factors) if f not in col_factors]
    elif len(sweep.factors) == 2:
        fac_rows, col_factors = [sweep.factors[0]], [sweep.factors[1]]
    else:
        fac_rows, col_factors = [], []
    fac_metrics = spec.factorial_metrics or metrics[:1]
    directions = {k: spec.direction(k) for k in set(metrics + fac_metrics + curve_keys)}

    t = time.perf_counter()
    twins = {m: tw for m in metrics if (tw := reeval_twin(m, available))}
    eff_keys = set(spec.thresholds) | ({efficiency.STEP_TIME, efficiency.LENGTH} if spec.thresholds else set())
    keys = sorted((set(metrics) | set(curve_keys) | set(fac_metrics) | set(diagnose.METRICS) | eff_keys
                   | set(twins.values())) & set(available))
    history = collect.load_history(tracking_uri, runs["run_id"].tolist(), keys, bulk=bulk)
    timings["read history"] = time.perf_counter() - t

    t = time.perf_counter()
    values = collect.values_at(history, sorted(set(metrics) | set(fac_metrics)), spec.step, directions)
    constant = {c: runs[c].iloc[0] for c in tag_cols if c not in sweep.factors}
    abl = tables.ablation(runs, values, metrics, row_factors, spec.baseline, directions, constant_tags=constant,
                          resamples=spec.resamples, level=spec.level, seed=spec.seed, interval=spec.interval,
                          correction=spec.correction, family=spec.family, alpha=spec.alpha, power=spec.power,
                          target_of=spec.target_for)
    abl.base = tables.base_rows(runs, collect.values_at(history, metrics + list(twins.values()), 0, directions),
                                metrics, twins)
    if spec.last_k:
        abl.k = spec.last_k
        abl.last_k = tables.ablation(runs, collect.values_last_k(history, metrics, spec.last_k), metrics, row_factors,
                                     spec.baseline, directions, constant_tags=constant, resamples=spec.resamples,
                                     level=spec.level, seed=spec.seed, interval=spec.interval,
                                     correction=spec.correction, family=spec.family, alpha=spec.alpha,
                                     power=spec.power, target_of=spec.target_for)
        short = {m: c for m, c in collect.window_counts(history, metrics, spec.last_k).items() if c < spec.last_k}
        if short:
            notes.append(f"last_k = {spec.last_k}: some runs logged fewer values after step 0 ("
                         + ", ".join(f"{m}: {c}" for m, c in short.items()) + "); their mean is over those")
    factorials = []
    if fac_rows and col_factors:
        factorials = [tables.factorial(runs, values, m, fac_rows, col_factors, sweep.factors)
                      for m in fac_metrics if m in values.columns]
    elif len(sweep.factors) > 2:
        notes.append("factorial view: more than two factors vary; choose them with report.rows/columns")
    timings["tables"] = time.perf_counter() - t

    report = Report(sweep=sweep, spec=spec, ablation=abl, factorials=factorials, values=values, runs=runs,
                    history=history, curve_keys=curve_keys, notes=notes, timings=timings, history_keys=keys)
    if spec.per_problem:
        t = time.perf_counter()
        listing = paired.listings(client, runs[runs["in_means"]])
        report.suites = paired.read_suites(client, runs[runs["in_means"]], spec.step, listing=listing)
        timings["read per-problem"] = time.perf_counter() - t
        t = time.perf_counter()
        report.paired = paired.table(report.suites, abl.run_lists, abl.base_of, resamples=spec.paired_resamples,
                                     level=spec.level, seed=spec.seed, alpha=spec.alpha, power=spec.power,
                                     correction=spec.correction, family=spec.family)
        if len(report.suites) >= 2:
            report.suite_summary = suites_summary(report.suites, abl.run_lists, abl.base_of, spec)
        twin_suites = paired.reeval_pairs(listing)
        if twin_suites:
            groups = base_groups(runs)
            suites0 = paired.read_suites(client, runs[runs["in_means"]], 0, reeval=True, listing=listing,
                                         only={x + sfx for x in twin_suites for sfx in ("", REEVAL_SUFFIX)})
            report.reeval = paired.reeval_table(suites0, {REEVAL_LABEL + sfx: rs for sfx, rs in groups.items()},
                                                resamples=spec.paired_resamples, level=spec.level, seed=spec.seed)
            attach_reeval_ci(abl.base, report.reeval)
        timings["paired"] = time.perf_counter() - t
    if spec.thresholds:
        rollouts = {}
        for r, p in sweep.params.items():
            try:
                rollouts[r] = float(p["trainer.prompts_per_step"]) * float(p["trainer.group_size"])
            except (KeyError, ValueError):
                pass
        report.efficiency = efficiency.table(history, abl.run_lists, spec.thresholds,
                                             {k: spec.direction(k) for k in spec.thresholds}, rollouts)
    report.provenance = provenance(sweep, runs, abl.run_lists)
    timings["total"] = time.perf_counter() - t0
    return report


REEVAL_LABEL = "base model re-evaluated (eval seed B − A)"


def base_groups(runs: pd.DataFrame) -> dict[str, list[str]]:
    """The base-model rows' groups of runs in the means: label suffix ("" or ", model=<m>") → run ids."""
    runs = runs[runs["in_means"]]
    if "model" in runs.columns and runs["model"].nunique() > 1:
        return {f", model={m}": g["run_id"].tolist() for m, g in runs.groupby("model", sort=False)}
    return {"": runs["run_id"].tolist()}


def attach_reeval_ci(base: pd.DataFrame, reeval: pd.DataFrame) -> None:
    """Row B's B − A interval for `eval/<suite>/avg@k` (per-problem acc) and `pass@k` at the suite's k, from
    the per-problem re-evaluation table (in place)."""
    if base.empty or reeval.empty:
        return
    ci = {(r["suite"], r["metric"], r["label"][len(REEVAL_LABEL):]): (r["lo"], r["hi"])
          for r in reeval.to_dict("records")}
    for i, b in base.iterrows():
        m = EVAL_KEY.match(b["metric"])
        if b["eval_seed"] != "B" or not m or m["kind"] not in ("avg", "pass"):
            continue
        sfx = b["label"].split(tables.SEED_B, 1)[1]
        pm = "acc" if m["kind"] == "avg" else f"pass@{m['k']}"
        if (m["suite"], pm, sfx) in ci:
            base.loc[i, ["dlo", "dhi"]] = ci[(m["suite"], pm, sfx)]


def suite_scores(suites: dict, runs: list[str]) -> np.ndarray:
    """[runs, suites] mean accuracy of each run on each suite (suites in name order; NaN = not evaluated)."""
    names = sorted(suites)
    cols = []
    for s in names:
        su = suites[s]
        row = {r: i for i, r in enumerate(su.run_ids)}
        acc = su.metric("acc")
        cols.append([np.nanmean(acc[row[r]]) if r in row else np.nan for r in runs])
    return np.array(cols, dtype=float).T.reshape(len(runs), len(names))


def suites_summary(suites: dict, run_lists: dict[str, list[str]], base_of: dict, spec: ReportSpec) -> pd.DataFrame:
    """Several suites: per row the IQM of its runs' suite accuracies, and P(row's run beats its baseline's
    run) averaged over suites, each with a stratified bootstrap CI (suites = strata)."""
    from rlkit.report import stats

    names = sorted(suites)

    def scores(runs):
        return suite_scores(suites, runs)

    recs = []
    for lab, runs in run_lists.items():
        if not runs:
            continue
        S = scores(runs)
        m, lo, hi = stats.stratified_ci(stats.iqm, [S], resamples=spec.paired_resamples, level=spec.level,
                                        seed=spec.seed)
        rec = {"label": lab, "n": len(runs), "suites": len(names), "iqm": m, "iqm_lo": lo, "iqm_hi": hi}
        b = base_of.get(lab)
        if b is not None and b != lab and run_lists.get(b):
            p, plo, phi = stats.stratified_ci(stats.prob_improvement, [S, scores(run_lists[b])],
                                              resamples=spec.paired_resamples, level=spec.level, seed=spec.seed)
            rec.update(baseline=b, poi=p, poi_lo=plo, poi_hi=phi)
        recs.append(rec)
    return pd.DataFrame(recs)


VERSION_TAGS = ("rlkit.versions", "versions", "python", "torch", "transformers")
MACHINE_TAGS = ("host", "machine", "gpu", "rlkit.machine", "slurm_job_id")


def provenance(sweep: collect.Sweep, runs: pd.DataFrame, run_lists: dict[str, list[str]]) -> dict:
    """Per row: git sha(s) + dirty flag, seeds and version/machine tags where runs logged them; the config
    params (the logged resolved config) whose values differ between rows; the report's own environment."""
    import platform
    import sys

    import mlflow
    import numpy

    by = runs.set_index("run_id")
    arms = []
    for lab, rs in run_lists.items():
        sub = by.loc[[r for r in rs if r in by.index]]
        tags = {f"{k}={v}" for r in rs for k, v in sweep.tags.get(r, {}).items()
                if k in VERSION_TAGS + MACHINE_TAGS or k.startswith(("versions.", "rlkit.version"))}
        arms.append({"label": lab, "git_sha": sorted({str(x)[:12] for x in sub["git_sha"] if x}),
                     "git_dirty": sorted({str(x) for x in sub["git_dirty"] if x}),
                     "seeds": [str(x) for x in sub["seed"]], "tags": sorted(tags)})
    keys = sorted({k for r in by.index for k in sweep.params.get(r, {})})
    per_arm = {lab: {k: sorted({sweep.params.get(r, {}).get(k, "(unset)") for r in rs}) for k in keys}
               for lab, rs in run_lists.items() if rs}
    differ = [k for k in keys if len({tuple(v[k]) for v in per_arm.values()}) > 1
              and not k.startswith(("seed", "tracking.", "paths.", "sweep.", "hydra."))]
    report_env = {"python": sys.version.split()[0], "numpy": numpy.__version__, "pandas": pd.__version__,
                  "mlflow": mlflow.__version__, "machine": f"{platform.node()} ({platform.machine()})"}
    return {"arms": arms, "config_diff": {k: {lab: v[k] for lab, v in per_arm.items()} for k in differ},
            "report_env": report_env}


def build_report(tracking_uri: str, target: str, spec: ReportSpec | None = None, out_root: str | Path = "reports",
                 *, sweep_id: str | None = None, log_artifacts: bool = True, bulk: bool | None = None) -> Report:
    spec = spec or ReportSpec()
    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri)
    report = analyze(tracking_uri, target, spec, sweep_id=sweep_id, bulk=bulk, client=client)
    timings, runs, sweep, history = report.timings, report.runs, report.sweep, report.history
    out_dir = Path(out_root) / _safe_dirname(sweep.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.out_dir = out_dir
    for old in [*out_dir.glob("curve_*.png"), *out_dir.glob("curve_*.svg"), *out_dir.glob("profile_*.png"),
                *out_dir.glob("profile_*.svg")]:
        old.unlink()
    t = time.perf_counter()
    variants = _variant_order(runs, sweep.factors)
    color_by = None
    if sweep.factors:
        first = sweep.factors[0]
        color_by = dict(zip(runs["variant"], collect.factor_label(first) + "=" + runs[first].astype(str), strict=True))
    report.figures = plots.curves(history, runs, report.curve_keys, variants, out_dir,
                                  resamples=spec.curve_resamples, level=spec.level, seed=spec.seed,
                                  color_by=color_by)
    if len(report.suites) >= 2:
        report.figures += plots.profiles({lab: suite_scores(report.suites, rs) for lab, rs in
                                          report.ablation.run_lists.items() if rs}, out_dir,
                                         resamples=min(spec.curve_resamples, 500), level=spec.level, seed=spec.seed)
    timings["curves"] = time.perf_counter() - t

    t = time.perf_counter()
    report.flags = diagnose.diagnose(history, runs["run_id"].tolist(), spec.diagnose)
    report.flag_summary = diagnose.summarize(report.flags, runs)
    timings["diagnose"] = time.perf_counter() - t

    last_step = history.groupby("run_id", observed=True)["step"].max()
    t = time.perf_counter()
    write_files(report, runs, variants, last_step)
    timings["write"] = time.perf_counter() - t
    if log_artifacts and sweep.parent_run_id:
        t = time.perf_counter()
        client.log_artifacts(sweep.parent_run_id, str(out_dir), artifact_path="report")
        report.artifact_run_id = sweep.parent_run_id
        timings["log artifacts"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return report


def _variant_order(runs: pd.DataFrame, factors: list[str]) -> list[str]:
    keys = tables.row_order(runs, factors)
    return [collect.variant_label(dict(zip(factors, k, strict=True))) for k in keys] if factors else ["all runs"]


# ------------------------------------------------------------------------------------------- sections

def _status_line(runs: pd.DataFrame) -> str:
    counts = runs["status"].value_counts()
    parts = ", ".join(f"{c} {s}" for s, c in counts.items())
    return f"{len(runs)} runs ({parts})"


def _factor_line(runs: pd.DataFrame, factors: list[str]) -> str:
    if not factors:
        return "no factor varies (one variant)"
    return "; ".join(
        f"{collect.factor_label(f)} ∈ {{{', '.join(sorted(runs[f].unique(), key=collect.natural_key))}}}"
        for f in factors)


def _legend(r: Report) -> str:
    s = r.spec
    step = {"last": "the last logged value", "best": "the best value over steps (optimistic: selected on the "
            "reported data)", "mean": "the average of the logged values over the run (per-problem comparisons: "
            "the last evaluation)"}.get(s.step, f"the value at step {s.step} (or the last one before it)") \
        if isinstance(s.step, str) else f"the value at step {s.step} (or the last one before it)"
    base = ", ".join(f"{k}={v}" for k, v in s.baseline.items()) or "the first row"
    matched = " (factors not named: matched to the row's own)" if s.baseline else ""
    ci = ("Student-t interval (mean ± t·s/√n)" if s.interval == "t" else
          f"percentile bootstrap ({s.resamples} resamples, seed {s.seed}; [min, max] at 2-3 seeds)")
    corr = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "no"}[s.correction]
    fam = "each metric column" if s.family == "column" else "all comparisons of the table"
    mde_level = (f"α/m = {s.alpha:g}/m, {corr}'s most conservative step, m = comparisons in the family"
                 if s.correction != "none" else f"α = {s.alpha:g}")
    return (f"Checkpoint: {step}. Each cell: mean [{int(s.level * 100)}% CI] over the row's n finished seeds; "
            f"CI = {ci}; one seed shows no CI; (n=k) where a metric has fewer values than the row. "
            f"Δ = difference to the baseline ({base}{matched}); p = Welch t-test; {corr} correction over {fam}; "
            f"* / ** / *** = adjusted p < {s.alpha:g} / {s.alpha / 5:g} / {s.alpha / 50:g}; "
            f"n.s. = adjusted p ≥ {s.alpha:g}, with the minimum detectable effect (MDE: the Δ this comparison's "
            f"Welch test detects with {int(s.power * 100)}% power at {mde_level}, from its own two rows' spread; "
            f"never below its CI half-width). Bold = best per column (↑ higher / "
            f"↓ lower is better) only where the table can tell: significantly better than its baseline. "
            f"Running, failed or superseded runs are counted in n's parenthesis and never averaged.")


FOOTNOTES = [
    ("mean [CI]", "mean over the row's finished runs; t: mean ± t_{n-1,1-a/2}·s/√n (s with ddof 1); bootstrap: "
     "percentile of resampled means (see rlkit/report/README.md)"),
    ("Δ, p (run level)", "mean − baseline mean; Welch's t-test (unequal variances, Welch–Satterthwaite df), "
     "two-sided; its CI is Δ ± t_df·SE"),
    ("adjusted p", "Holm: sorted p_(i) × (m − i + 1), running max, capped at 1 (family-wise error ≤ α); "
     "BH: p_(i) × m / i, running min from the top (false discovery rate ≤ α); m = comparisons in the family"),
    ("d", "Cohen's d: Δ / pooled SD of the two rows' runs (ddof 1)"),
    ("MDE", "per comparison: the true Δ that Welch's two-sided test detects with the stated power at α/m (Holm/BH: "
     "the family's most conservative step, m = comparisons with a p-value in the family; α with no correction), "
     "so Holm detects it with at least that power. MDE = SE / c4(ν) × F, SE = the comparison's own Welch SE "
     "(its two rows only), ν = (1/n + 1/n_b)² / (1/(n²(n−1)) + 1/(n_b²(n_b−1))) (= n + n_b − 2 for equal "
     "arms), c4(ν) = √(2/ν) Γ((ν+1)/2) / Γ(ν/2) (E[s] = c4 σ: SE / c4 is unbiased for the true SE), F = Welch's "
     "power factor (power averaged over the sampling distribution of both sample variances and Welch's df, "
     "simulated under equal variances, solved for Δ / SE); never below the comparison's CI half-width; none "
     "where the SE is 0 (both rows constant). Per-problem: the same with the crossed SE, c4 applied to its "
     "seed part only (τ²/P has ~P df), floor = half the hierarchical-bootstrap CI"),
    ("seeds needed", "Power table: seed SD pooled over all rows of the metric (df = Σ(n_i − 1)) divided by "
     "c4(df); smallest equal seeds per arm at which Welch's test at α/m reaches that power for the target Δ"),
    ("paired Δ (per problem)", "mean over the problems both arms have of (arm's mean − baseline's mean); CI = "
     "hierarchical bootstrap (runs resampled within each arm, one problem resample shared by both arms); "
     "p = t-test with seed variance (Welch on run means) + problem variance τ²/P (τ² = per-problem "
     "difference variance beyond run noise), Satterthwaite df"),
    ("base model, eval seeds A and B", "where the eval suite logged `<suite>_reeval` (eval.reeval_seed), the "
     "base model (step 0) is shown twice: A = the suite under eval.seed, B = the same checkpoint under the "
     "independent reeval seed; B's Δ cell = B − A (evaluation-only noise, beside the rows' seed CIs), with the "
     "per-problem CI where the suite logged per-problem results (per problem d = mean over runs of B − A; "
     "percentile bootstrap over problems; p = t over problems, df P − 1; in no correction family). Metrics "
     "without a second evaluation (val/acc: greedy, deterministic; step-0 training metrics) show their one value "
     "in both rows"),
    ("mean of last k", "with report.last_k: per run the mean of the metric's last k logged values after step 0 "
     "(fewer where a run logged fewer: said in a note), then mean [CI] over seeds, Δ, Welch p, correction "
     "(each last-k column its own family) and MDE exactly as for the checkpoint's columns"),
    ("acc / pass@k", "per run and problem: mean of correct over its k samples (avg@k); pass@k = "
     "1 − C(n−c, k)/C(n, k)"),
    ("IQM", "interquartile mean of the runs' suite scores (25% trimmed from each end); CI: stratified "
     "bootstrap, runs resampled within each suite"),
    ("P(improvement)", "probability that a run of the row beats a run of its baseline on a suite (ties ½), "
     "averaged over suites; stratified bootstrap CI"),
    ("AUC / to threshold", "time-average of the logged curve (trapezoid / step span); first step reaching the "
     "threshold, Σ timing_s/step and Σ response tokens up to it, over the runs that reached it"),
]


def _paired_grid(r: Report) -> tables.Grid:
    rows = []
    for c in r.paired.to_dict("records"):
        d = 3
        if c["baseline"] is None or c["baseline"] == c["label"]:
            dt, ci, p, q = "baseline" if c["baseline"] == c["label"] else "", "", "", ""
        elif not np.isfinite(c["delta"]):
            dt, ci, p, q = "—", "", "", ""
        else:
            st = tables.stars(c["p_adj"], r.spec.alpha)
            dt = tables.fmt(c["delta"], d, sign=True) + (" n.s." if st == "n.s." else st)
            ci = f"[{tables.fmt(c['lo'], d, sign=True)}, {tables.fmt(c['hi'], d, sign=True)}]" if np.isfinite(c["lo"]) else ""
            p, q = tables.fmt_p(c["p"]), tables.fmt_p(c["p_adj"])
        rows.append([tables.Cell(c["suite"]), tables.Cell(c["metric"]), tables.Cell(c["label"]),
                     tables.Cell(str(c["n"])), tables.Cell(tables.fmt(c["mean"], d)), tables.Cell(dt), tables.Cell(ci),
                     tables.Cell(p), tables.Cell(q), tables.Cell(tables.fmt(c.get("d", np.nan), 2)),
                     tables.Cell(tables.fmt(c.get("mde", np.nan), d)),
                     tables.Cell("" if not np.isfinite(c.get("problems", np.nan)) else str(int(c["problems"])))])
    for c in r.reeval.to_dict("records"):
        ci = f"[{tables.fmt(c['lo'], 3, sign=True)}, {tables.fmt(c['hi'], 3, sign=True)}]" if np.isfinite(c["lo"]) else ""
        rows.append([tables.Cell(c["suite"]), tables.Cell(c["metric"]), tables.Cell(c["label"]),
                     tables.Cell(str(c["n"])), tables.Cell(tables.fmt(c["mean"], 3)),
                     tables.Cell(tables.fmt(c["delta"], 3, sign=True) + " (eval only)"), tables.Cell(ci),
                     tables.Cell(tables.fmt_p(c["p"])), tables.Cell("not in a family"), tables.Cell(""),
                     tables.Cell(""), tables.Cell(str(int(c["problems"])))])
    return tables.Grid(header=["suite", "metric", "row", "n", "mean", "Δ (paired)", "CI (hier. bootstrap)", "p",
                               "p adj.", "d", "MDE", "problems"], rows=rows, n_index=1, left={1, 2},
                       caption="per-problem paired comparisons with the row's baseline"
                       + ("; last rows: the base model evaluated twice (eval seed B − A, same checkpoint: "
                          "evaluation-only noise; CI = bootstrap over problems, p = t over problems)"
                          if not r.reeval.empty else ""))


def _suites_grid(r: Report) -> tables.Grid:
    rows = []
    for c in r.suite_summary.to_dict("records"):
        poi = ""
        if isinstance(c.get("baseline"), str) and np.isfinite(c.get("poi", np.nan)):
            poi = f"{c['poi']:.2f} [{tables.fmt(c['poi_lo'], 2)}, {tables.fmt(c['poi_hi'], 2)}]"
        rows.append([tables.Cell(c["label"]), tables.Cell(str(c["n"])),
                     tables.Cell(f"{tables.fmt(c['iqm'], 3)} [{tables.fmt(c['iqm_lo'], 3)}, {tables.fmt(c['iqm_hi'], 3)}]"),
                     tables.Cell(poi)])
    return tables.Grid(header=["row", "n", f"IQM over {len(r.suites)} suites [CI]", "P(improvement) vs baseline [CI]"],
                       rows=rows, n_index=1, caption="several suites: rliable-style aggregates (accuracy)")


def _efficiency_grid(r: Report) -> tables.Grid:
    rows = [[tables.Cell(c["label"]), tables.Cell(f"{tables.metric_label(c['metric'])} → {c['threshold']:g}"),
             tables.Cell(tables.fmt(c["auc"], 3)), tables.Cell(c["reached"]),
             tables.Cell(tables.fmt(c["steps"], 0)), tables.Cell(tables.fmt(c["wall_s"], 0)),
             tables.Cell(tables.fmt(c["tokens"], 0))] for c in r.efficiency.to_dict("records")]
    return tables.Grid(header=["row", "threshold", "AUC", "reached", "steps", "wall s", "tokens"], rows=rows,
                       n_index=1, left={1})


def _provenance_lines(r: Report) -> list[str]:
    pv = r.provenance
    out = []
    for a in pv.get("arms", []):
        dirty = "dirty" if "True" in a["git_dirty"] else "clean" if a["git_dirty"] else "dirty flag not logged"
        out.append(f"{a['label']}: git {', '.join(a['git_sha']) or 'not logged'} ({dirty}); seeds "
                   f"{', '.join(a['seeds'])}" + (f"; {', '.join(a['tags'])}" if a["tags"] else
                                                 "; versions/machine not logged by the runs"))
    diff = pv.get("config_diff", {})
    if diff:
        out.append("config differences between rows: " + "; ".join(
            f"{k}: " + ", ".join(f"{lab}={'/'.join(v)}" for lab, v in vals.items()) for k, vals in list(diff.items())[:30]))
    else:
        out.append("config differences between rows: none in the logged params (or no params logged)")
    env = pv.get("report_env", {})
    if env:
        out.append("report built with " + ", ".join(f"{k} {v}" for k, v in env.items()))
    return out


def false_alarm_cells(r: Report) -> tuple[list[tables.Cell], str]:
    """Per flag: its measured false-alarm rate on no-effect runs at this report's thresholds (rlkit/report/
    flag_rates.json, bench/flag_calibration.py), and a note saying where it comes from."""
    rates = diagnose.load_rates()
    cells, sources = [], set()
    for f in diagnose.FLAGS:
        fa = diagnose.false_alarms(f, r.spec.diagnose, rates)
        if fa is None:
            known = bool(((rates.get("flags") or {}).get(f) or {}).get("runs"))  # measured, at other thresholds
            cells.append(tables.Cell("not measured" + (" at these thresholds" if known else ""),
                                     title="no false-alarm measurement for this flag at this report's thresholds"))
            continue
        sources.add((fa["date"], ", ".join(fa["sweeps"])))
        cells.append(tables.Cell(f"{fa['fired']}/{fa['runs']}",
                                 title=f"{f} fired on {fa['fired']} of {fa['runs']} no-effect runs ("
                                       + ", ".join(f"{k}={v}" for k, v in fa["params"].items()) + ")"))
    if sources:
        note = ("false alarms = runs flagged / runs checked among no-effect runs (unchanged configurations: "
                "negative control, A/A), at this report's thresholds; measured by bench/flag_calibration.py on "
                + "; ".join(f"{sw} ({d})" for d, sw in sorted(sources))
                + ". A flag's count in a row means little unless it is well above that rate.")
    else:
        note = ("false alarms: not measured (no rlkit/report/flag_rates.json entry at these thresholds; "
                "bench/flag_calibration.py measures them on no-effect sweeps)")
    return cells, note


def _flag_grid(r: Report, variants: list[str]) -> tables.Grid:
    header = ["variant", *diagnose.FLAGS]
    sm = {(e["variant"], e["flag"]): e for e in r.flag_summary.to_dict("records")}
    fa_cells, fa_note = false_alarm_cells(r)
    rows = [[tables.Cell("false alarms on no-effect runs", title=fa_note), *fa_cells]]
    for v in variants:
        row = [tables.Cell(v)]
        for f in diagnose.FLAGS:
            if (v, f) not in sm:
                row.append(tables.Cell(""))
                continue
            e = sm[(v, f)]
            if e["checked"] == 0:
                row.append(tables.Cell("n/a"))
            elif e["fired"] == 0:
                row.append(tables.Cell(f"0/{e['checked']}"))
            else:
                on = e["onsets"]
                at = f"@{on[0]}" if len(on) == 1 else f"@{on[0]}–{on[-1]}"
                extra = f", {e['unfinished_fired']} unfinished" if e["unfinished_fired"] else ""
                row.append(tables.Cell(f"{e['fired']}/{e['checked']} {at}{extra}", bold=True,
                                       title="onset steps: " + ", ".join(map(str, on))))
        rows.append(row)
    return tables.Grid(header=header, rows=rows, n_index=1,
                       caption="runs flagged / runs checked, onset step (range over runs); first row: the flag's "
                               "measured false-alarm rate", notes=[fa_note])


def _run_flag_grid(r: Report, runs: pd.DataFrame, last_step: pd.Series) -> tables.Grid:
    fired = r.flags[r.flags["state"] == "fired"]
    per_run = fired.groupby("run_id", sort=False).apply(
        lambda g: ", ".join(f"{f}@{int(o)}" for f, o in zip(g["flag"], g["onset"], strict=True)),
        include_groups=False) if not fired.empty else pd.Series(dtype=object)
    rows = []
    sub = runs[runs["run_id"].isin(per_run.index)]
    sub = sub.assign(_o=[(collect.natural_key(v), collect.natural_key(s)) for v, s in zip(sub["variant"], sub["seed"],
                                                                                          strict=True)])
    for _, x in sub.sort_values("_o").iterrows():
        ls = last_step.get(x["run_id"])
        rows.append([tables.Cell(x["variant"]), tables.Cell(str(x["seed"])), tables.Cell(x["status"]),
                     tables.Cell("" if ls is None else str(int(ls))), tables.Cell(per_run[x["run_id"]]),
                     tables.Cell(x["run_id"])])
    return tables.Grid(header=["variant", "seed", "status", "last step", "flags (onset step)", "run"], rows=rows,
                       n_index=1, left={2, 4, 5})


def _excluded_grid(runs: pd.DataFrame, last_step: pd.Series) -> tables.Grid:
    rows = []
    ex = runs[~runs["in_means"]]
    for _, x in ex.iterrows():
        status = "superseded (same seed rerun)" if x["status"] == "finished" else x["status"]
        ls = last_step.get(x["run_id"])
        rows.append([tables.Cell(x["variant"]), tables.Cell(str(x["seed"])), tables.Cell(status),
                     tables.Cell("" if ls is None else str(int(ls))), tables.Cell(x["run_id"])])
    return tables.Grid(header=["variant", "seed", "status", "last step", "run"], rows=rows, n_index=1, left={2, 4})


def _threshold_grid(r: Report) -> tables.Grid:
    return tables.Grid(header=["threshold", "value", "meaning"],
                       rows=[[tables.Cell(n), tables.Cell(str(v)), tables.Cell(d)]
                             for n, v, d in r.spec.diagnose.documented()], n_index=1, left={2})


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1600px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
tbody th{text-align:left;background:#f7f7f7;font-weight:normal}thead th{background:#dde6f3}
.tw{overflow-x:auto;max-width:100%}
td.ns{color:#888}td.l,th.l{text-align:left}.caption{font-style:italic;font-size:12px;margin:10px 0 2px}
.meta,.note,.legend{color:#555;font-size:12px}img{max-width:100%;border:1px solid #eee;margin:6px 0}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:8px}
"""


def _extra_grids(r: Report) -> list[tuple[str, tables.Grid]]:
    out = []
    if not r.paired.empty or not r.reeval.empty:
        out.append(("Per-problem comparisons (paired)", _paired_grid(r)))
    if not r.suite_summary.empty:
        out.append(("Several suites", _suites_grid(r)))
    if not r.efficiency.empty:
        out.append(("Efficiency", _efficiency_grid(r)))
    return out


def write_files(r: Report, runs: pd.DataFrame, variants: list[str], last_step: pd.Series) -> None:
    sw = r.sweep
    abl_grid = tables.ablation_grid(r.ablation)
    fac_grids = [tables.factorial_grid(f) for f in r.factorials]
    flag_grid = _flag_grid(r, variants)
    run_grid = _run_flag_grid(r, runs, last_step)
    ex_grid = _excluded_grid(runs, last_step)
    thr_grid = _threshold_grid(r)
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    meta = [f"sweep_id `{sw.sweep_id}`" if sw.sweep_id else "no sweep_id",
            f"parent run `{sw.parent_run_id}`" if sw.parent_run_id else "no parent run",
            f"experiment {', '.join(sw.experiment_ids)}", f"generated {generated}"]
    status = _status_line(runs) + ". Factors: " + _factor_line(runs, sw.factors) + "."
    legend = _legend(r)
    unchecked = r.flags[r.flags["state"] == "n/a"].groupby("flag").size()
    unchecked_note = "; ".join(f"{f}: not checked on {n} run(s) ({r.flags[(r.flags['flag'] == f) & (r.flags['state'] == 'n/a')]['detail'].iloc[0]})"
                               for f, n in unchecked.items())

    # ---- markdown
    esc = tables.md_escape  # every name and value a run can carry is rendered inert
    md = [f"# Ablation report: {esc(sw.name)}", "", esc(" · ".join(meta)), "", esc(status), ""]
    md += [f"> {esc(n)}" for n in r.notes] + ([""] if r.notes else [])
    md += ["## Ablation table", "", tables.to_markdown(abl_grid), "", esc(legend), ""]
    if fac_grids:
        md += ["## Factorial view", ""]
        for g in fac_grids:
            md += [tables.to_markdown(g), ""]
    power_grid = tables.power_grid(r.ablation, r.spec.level, r.spec.power)
    md += ["## Power", "", tables.to_markdown(power_grid), ""]
    extra = _extra_grids(r)
    for title, g in extra:
        md += [f"## {esc(title)}", "", tables.to_markdown(g), ""]
    md += ["## Provenance", ""] + [f"- {esc(x)}" for x in _provenance_lines(r)] + [""]
    md += ["## Curves", ""]
    md += [f"![{esc(f.metric).replace('[', '(').replace(']', ')')}]({f.png.name})" for f in r.figures] + [""]
    md += ["## Diagnosis", "", tables.to_markdown(flag_grid), ""]
    if unchecked_note:
        md += [esc(unchecked_note), ""]
    md += ["### Flagged runs", "", tables.to_markdown(run_grid) if run_grid.rows else "No run raised a flag.", ""]
    md += ["### Thresholds", "", tables.to_markdown(thr_grid), ""]
    md += ["## Runs not in the means", "",
           tables.to_markdown(ex_grid) if ex_grid.rows else "None: every run finished.", ""]
    md += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in FOOTNOTES] + [""]
    (r.out_dir / "report.md").write_text("\n".join(md))

    # ---- html
    def img(f: plots.Figure) -> str:
        b64 = base64.b64encode(f.png.read_bytes()).decode()
        return f'<img alt="{html.escape(f.metric)}" src="data:image/png;base64,{b64}">'

    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>Ablation report: {html.escape(sw.name)}</title>", f"<style>{CSS}</style></head><body>",
         f"<h1>Ablation report: {html.escape(sw.name)}</h1>",
         f'<p class="meta">{html.escape(" · ".join(meta).replace("`", ""))}</p>', f"<p>{html.escape(status)}</p>"]
    h += [f'<p class="note">{html.escape(n)}</p>' for n in r.notes]
    h += ["<h2>Ablation table</h2>", f'<div class="tw">{tables.to_html(abl_grid)}</div>',
          f'<p class="legend">{html.escape(legend)}</p>']
    if fac_grids:
        h += ["<h2>Factorial view</h2>"] + [tables.to_html(g, "factorial") for g in fac_grids]
    h += ["<h2>Power</h2>", tables.to_html(power_grid, "power")]
    for title, g in extra:
        h += [f"<h2>{html.escape(title)}</h2>", tables.to_html(g, "extra")]
    h += ["<h2>Provenance</h2>", "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in _provenance_lines(r)) + "</ul>"]
    h += ["<h2>Curves</h2>", '<div class="figs">', *[img(f) for f in r.figures], "</div>"]
    h += ["<h2>Diagnosis</h2>", tables.to_html(flag_grid, "diagnosis")]
    if unchecked_note:
        h.append(f'<p class="note">{html.escape(unchecked_note)}</p>')
    h += ["<h3>Flagged runs</h3>", tables.to_html(run_grid, "runs") if run_grid.rows else "<p>No run raised a flag.</p>"]
    h += ["<h3>Thresholds</h3>", tables.to_html(thr_grid, "thresholds")]
    h += ["<h2>Runs not in the means</h2>",
          tables.to_html(ex_grid, "excluded") if ex_grid.rows else "<p>None: every run finished.</p>"]
    h += ["<h2>Definitions</h2>", '<ul class="legend">' + "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in FOOTNOTES) + "</ul>"]
    h += ["</body></html>"]
    (r.out_dir / "report.html").write_text("\n".join(h))

    # ---- latex
    name = tables.tex_escape(sw.name)
    abl_grid.caption = (f"Ablation of {sw.name}: mean [{int(r.spec.level * 100)}% CI] over seeds; Δ to baseline; "
                        f"*/**/*** = {r.spec.correction}-adjusted p < {r.spec.alpha:g}/{r.spec.alpha / 5:g}/"
                        f"{r.spec.alpha / 50:g}; n.s. = not significant (in parentheses: its own MDE, at the family's "
                        f"most conservative level α/m; α with correction none)")
    tex = ["% generated by python -m rlkit.report; needs \\usepackage{booktabs,graphicx}",
           tables.to_latex(abl_grid, label=f"tab:{_safe_dirname(sw.name)}")]
    tex += [tables.to_latex(g, label=f"tab:{_safe_dirname(sw.name)}-factorial-{i}") for i, g in enumerate(fac_grids)]
    tex += [tables.to_latex(power_grid, label=f"tab:{_safe_dirname(sw.name)}-power")]
    tex += [tables.to_latex(g, label=f"tab:{_safe_dirname(sw.name)}-{plots.slug(t)}") for t, g in extra]
    tex += ["% Definitions\n\\begin{itemize}\\footnotesize\n" + "\n".join(
        f"\\item \\textbf{{{tables.tex_escape(k)}}}: {tables.tex_escape(v)}" for k, v in FOOTNOTES) + "\n\\end{itemize}"]
    (r.out_dir / "table.tex").write_text(f"% sweep {name}\n" + "\n\n".join(tex) + "\n")
    tables.csv_safe(tables.ablation_csv(r.ablation)).to_csv(r.out_dir / "table.csv", index=False)
    tables.csv_safe(r.ablation.power).to_csv(r.out_dir / "power.csv", index=False)
    paired_csv = pd.concat([r.paired, r.reeval], ignore_index=True) if not r.reeval.empty else r.paired
    for name, df in (("paired.csv", paired_csv), ("suites.csv", r.suite_summary), ("efficiency.csv", r.efficiency)):
        if not df.empty:
            tables.csv_safe(df).to_csv(r.out_dir / name, index=False)
        elif (r.out_dir / name).exists():
            (r.out_dir / name).unlink()

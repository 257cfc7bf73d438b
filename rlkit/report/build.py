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

import pandas as pd
from mlflow import MlflowClient

from rlkit.report import collect, diagnose, plots, tables
from rlkit.report.spec import ReportSpec, default_curves, default_metrics

OWNED = ("report.md", "report.html", "table.tex", "table.csv")


@dataclass
class Report:
    sweep: collect.Sweep
    spec: ReportSpec
    out_dir: Path
    ablation: tables.Ablation
    factorials: list[tables.Factorial]
    flags: pd.DataFrame
    flag_summary: pd.DataFrame
    figures: list[plots.Figure]
    values: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    artifact_run_id: str | None = None
    history_keys: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [self.out_dir / f for f in OWNED] + [p for f in self.figures for p in (f.png, f.svg)]


def _safe_dirname(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name) or "sweep"


def build_report(tracking_uri: str, target: str, spec: ReportSpec | None = None, out_root: str | Path = "reports",
                 *, sweep_id: str | None = None, log_artifacts: bool = True, bulk: bool | None = None) -> Report:
    spec = spec or ReportSpec()
    t0 = time.perf_counter()
    timings = {}
    client = MlflowClient(tracking_uri)
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
    keys = sorted((set(metrics) | set(curve_keys) | set(fac_metrics) | set(diagnose.METRICS)) & set(available))
    history = collect.load_history(tracking_uri, runs["run_id"].tolist(), keys, bulk=bulk)
    timings["read history"] = time.perf_counter() - t

    t = time.perf_counter()
    values = collect.values_at(history, sorted(set(metrics) | set(fac_metrics)), spec.step, directions)
    constant = {c: runs[c].iloc[0] for c in tag_cols if c not in sweep.factors}
    abl = tables.ablation(runs, values, metrics, row_factors, spec.baseline, directions, constant_tags=constant,
                          resamples=spec.resamples, level=spec.level, seed=spec.seed)
    factorials = []
    if fac_rows and col_factors:
        factorials = [tables.factorial(runs, values, m, fac_rows, col_factors, sweep.factors)
                      for m in fac_metrics if m in values.columns]
    elif len(sweep.factors) > 2:
        notes.append("factorial view: more than two factors vary; choose them with report.rows/columns")
    timings["tables"] = time.perf_counter() - t

    out_dir = Path(out_root) / _safe_dirname(sweep.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("curve_*.png")) + list(out_dir.glob("curve_*.svg")):
        old.unlink()
    t = time.perf_counter()
    variants = _variant_order(runs, sweep.factors)
    color_by = None
    if sweep.factors:
        first = sweep.factors[0]
        color_by = dict(zip(runs["variant"], collect.factor_label(first) + "=" + runs[first].astype(str), strict=True))
    figures = plots.curves(history, runs, curve_keys, variants, out_dir, resamples=spec.curve_resamples,
                           level=spec.level, seed=spec.seed, color_by=color_by)
    timings["curves"] = time.perf_counter() - t

    t = time.perf_counter()
    flags = diagnose.diagnose(history, runs["run_id"].tolist(), spec.diagnose)
    summary = diagnose.summarize(flags, runs)
    timings["diagnose"] = time.perf_counter() - t

    last_step = history.groupby("run_id", observed=True)["step"].max()
    report = Report(sweep=sweep, spec=spec, out_dir=out_dir, ablation=abl, factorials=factorials, flags=flags,
                    flag_summary=summary, figures=figures, values=values, notes=notes, timings=timings,
                    history_keys=keys)
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
    step = {"last": "the last logged value", "best": "the best value over steps"}.get(
        s.step, f"the value at step {s.step} (or the last one before it)") if isinstance(s.step, str) \
        else f"the value at step {s.step} (or the last one before it)"
    base = ", ".join(f"{k}={v}" for k, v in s.baseline.items()) or "the first row"
    matched = " (factors not named: matched to the row's own)" if s.baseline else ""
    return (f"Each cell: mean [{int(s.level * 100)}% CI] over the row's n finished seeds, read per run as {step}; "
            f"CI = stratified percentile bootstrap ({s.resamples} resamples, seed {s.seed}); one seed shows no CI; "
            f"(n=k) where a metric has fewer values than the row. Δ = difference to the baseline ({base}{matched}); "
            f"n.s. = the CI of the difference (both sides resampled) covers 0. Bold = best per column "
            f"(↑ higher / ↓ lower is better; no bold without a direction). Running, failed or superseded runs "
            f"are counted in n's parenthesis and never averaged.")


def _flag_grid(r: Report, variants: list[str]) -> tables.Grid:
    header = ["variant", *diagnose.FLAGS]
    sm = {(e["variant"], e["flag"]): e for e in r.flag_summary.to_dict("records")}
    rows = []
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
                       caption="runs flagged / runs checked, onset step (range over runs)")


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
    md = [f"# Ablation report: {sw.name}", "", " · ".join(meta), "", status, ""]
    md += [f"> {n}" for n in r.notes] + ([""] if r.notes else [])
    md += ["## Ablation table", "", tables.to_markdown(abl_grid), "", legend, ""]
    if fac_grids:
        md += ["## Factorial view", ""]
        for g in fac_grids:
            md += [tables.to_markdown(g), ""]
    md += ["## Curves", ""]
    md += [f"![{f.metric}]({f.png.name})" for f in r.figures] + [""]
    md += ["## Diagnosis", "", tables.to_markdown(flag_grid), ""]
    if unchecked_note:
        md += [unchecked_note, ""]
    md += ["### Flagged runs", "", tables.to_markdown(run_grid) if run_grid.rows else "No run raised a flag.", ""]
    md += ["### Thresholds", "", tables.to_markdown(thr_grid), ""]
    md += ["## Runs not in the means", "",
           tables.to_markdown(ex_grid) if ex_grid.rows else "None: every run finished.", ""]
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
    h += ["<h2>Curves</h2>", '<div class="figs">', *[img(f) for f in r.figures], "</div>"]
    h += ["<h2>Diagnosis</h2>", tables.to_html(flag_grid, "diagnosis")]
    if unchecked_note:
        h.append(f'<p class="note">{html.escape(unchecked_note)}</p>')
    h += ["<h3>Flagged runs</h3>", tables.to_html(run_grid, "runs") if run_grid.rows else "<p>No run raised a flag.</p>"]
    h += ["<h3>Thresholds</h3>", tables.to_html(thr_grid, "thresholds")]
    h += ["<h2>Runs not in the means</h2>",
          tables.to_html(ex_grid, "excluded") if ex_grid.rows else "<p>None: every run finished.</p>"]
    h += ["</body></html>"]
    (r.out_dir / "report.html").write_text("\n".join(h))

    # ---- latex
    name = tables.tex_escape(sw.name)
    abl_grid.caption = f"Ablation of {sw.name}: mean [95% CI] over seeds; Δ to baseline; n.s. = CI of Δ covers 0"
    tex = ["% generated by python -m rlkit.report; needs \\usepackage{booktabs,graphicx}",
           tables.to_latex(abl_grid, label=f"tab:{_safe_dirname(sw.name)}")]
    tex += [tables.to_latex(g, label=f"tab:{_safe_dirname(sw.name)}-factorial-{i}") for i, g in enumerate(fac_grids)]
    (r.out_dir / "table.tex").write_text(f"% sweep {name}\n" + "\n\n".join(tex) + "\n")
    tables.ablation_csv(r.ablation).to_csv(r.out_dir / "table.csv", index=False)

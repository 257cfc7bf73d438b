"""The ablation table and the factorial view, as numbers (DataFrames) and as markdown / HTML / LaTeX.

Ablation table: one row per combination of the row factors; per metric the mean over the row's finished
runs (seeds) with its CI (Student-t, or the percentile bootstrap), Δ to the row's baseline with Welch's
p-value, Holm/BH-adjusted over the column (or table); marks */**/*** or "n.s. (MDE x)" from the adjusted
p; bold = the best mean of a column only where it is significantly better than its baseline (direction
from `ReportSpec.direction`); Cohen's d and the MDE per comparison; a power summary per metric. A row's runs are ordered by seed
(natural order) then run id before resampling. Runs that are not finished (running, failed, killed) or were
superseded by a newer finished run of the same variant and seed are never in a mean: the n column says
how many were left out and why.

Factorial view: cells = mean of the variant means (variant = one combination of all factors, finished
runs only) that fall in the cell; row and column margins = the mean of the cells of that row/column
(each cell weighted equally: the marginal means of a balanced design); the corner is the grand mean.
Margins are shown only for a full grid.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rlkit.report import stats
from rlkit.report.collect import factor_label, natural_key, variant_label

LABELS = {
    "val/acc": "val acc",
    "critic/score/mean": "reward",
    "response_length/mean": "length",
    "response_length/clip_ratio": "truncation",
    "groups/all_correct_frac": "all-correct",
    "groups/all_wrong_frac": "all-wrong",
    "actor/entropy": "entropy",
    "actor/kl_loss": "KL (loss)",
    "actor/ppo_kl": "KL (ppo)",
    "summary/wall_time_s": "wall time (s)",
    "rollout/distinct_frac": "distinct",
    "rewards/format/mean": "format reward",
}


def metric_label(key: str) -> str:
    if key in LABELS:
        return LABELS[key]
    if key.startswith("val/") and "/acc" in key:
        return "val " + key[4:].replace("/", " ")
    return key


def decimals_for(values) -> int:
    """3 significant digits at the column's scale (max |value|): 0.5 → 3, 5 → 2, 50 → 1, 512 → 0, 0.0012 → 5."""
    v = np.abs(np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float))
    if len(v) == 0 or v.max() == 0:
        return 3
    return int(min(max(2 - math.floor(math.log10(v.max())), 0), 6))


def fmt(x: float, d: int, sign: bool = False) -> str:
    """Fixed `d` decimals ("—" for NaN); `sign` adds "+" to non-negative numbers; never "-0.00"."""
    if x is None or not np.isfinite(x):
        return "—"
    s = f"{x:+.{d}f}" if sign else f"{x:.{d}f}"
    if float(s) == 0.0:
        s = ("+" if sign else "") + f"{0.0:.{d}f}"
    return s


@dataclass
class Cell:
    text: str
    bold: bool = False
    title: str = ""


@dataclass
class Grid:
    """A rendered table: header labels and rows of cells; `n_index` leading columns are row labels."""

    header: list[str]
    rows: list[list[Cell]]
    n_index: int = 1
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    left: set[int] = field(default_factory=set)  # further left-aligned (text) columns

    def is_left(self, i: int) -> bool:
        return i < self.n_index or i in self.left


# ------------------------------------------------------------------------------------------- ablation

@dataclass
class Ablation:
    rows: pd.DataFrame  # row_key (tuple), label, <row factors>, n, excluded (dict status -> count), baseline_key
    cells: pd.DataFrame  # label, metric, mean, lo, hi, n, delta, dlo, dhi, se, df, p, d, mde, is_baseline,
    #                      p_adj, significant, stars, bold
    metrics: list[str]
    row_factors: list[str]
    directions: dict[str, str | None]
    power: pd.DataFrame = field(default_factory=pd.DataFrame)  # metric, sd, sd_df, seeds, mde, target_delta, seeds_needed
    run_lists: dict[str, list[str]] = field(default_factory=dict)  # row label → its runs in the means
    base_of: dict[str, str | None] = field(default_factory=dict)  # row label → its baseline row's label
    alpha: float = 0.05
    correction: str = "holm"
    family: str = "column"
    interval: str = "t"
    base: pd.DataFrame = field(default_factory=pd.DataFrame)  # label, metric, mean, n, eval_seed, same, delta,
    #                                                             dlo, dhi: the base model at step 0 (`base_rows`)
    last_k: Ablation | None = None  # the same table on the mean of each run's last k evaluations (`report.last_k`)
    k: int | None = None


BASE = "base model (step 0)"
SEED_A, SEED_B = "eval seed A", "eval seed B (re-evaluated)"


def base_rows(runs: pd.DataFrame, values0: pd.DataFrame, metrics: list[str],
              twins: dict[str, str] | None = None) -> pd.DataFrame:
    """The base model's row(s): each metric's mean at step 0 over the runs that start from it (one row per
    `model` when the sweep varies the model; a metric not logged at step 0, e.g. a training metric, is absent).
    Every arm starts from these weights, so the row is where each arm's Δ over training is read from.
    With `twins` (metric → its `eval/<suite>_reeval/...` key: the same checkpoint evaluated again under an
    independent eval seed), two rows: eval seed A (the metric) and B (its twin), B's Δ = B − A, the
    evaluation-only noise; a metric without a twin (val/acc: greedy, one measurement) shows its one value in
    both rows (`same`)."""
    twins = twins or {}
    runs = runs[runs["in_means"]]
    by_model = "model" in runs.columns and runs["model"].nunique() > 1
    out = []
    for model, g in (runs.groupby("model", sort=False) if by_model else [(None, runs)]):
        suffix = f", model={model}" if model is not None else ""
        v = values0.reindex(g["run_id"])

        def mean(key, v=v):
            x = v[key].dropna() if key in v.columns else pd.Series(dtype=float)
            return (float(x.mean()), len(x)) if len(x) else (np.nan, 0)

        for m in [m for m in metrics if not m.startswith("summary/")]:  # (summaries are read as "last")
            a, n = mean(m)
            if not n:
                continue
            if not twins:
                out.append({"label": BASE + suffix, "metric": m, "mean": a, "n": n, "eval_seed": "", "same": False,
                            "delta": np.nan})
                continue
            out.append({"label": f"{BASE}, {SEED_A}{suffix}", "metric": m, "mean": a, "n": n, "eval_seed": "A",
                        "same": m not in twins, "delta": np.nan})
            b, nb = mean(twins[m]) if m in twins else (a, n)
            out.append({"label": f"{BASE}, {SEED_B}{suffix}", "metric": m, "mean": b, "n": nb, "eval_seed": "B",
                        "same": m not in twins, "delta": b - a if m in twins else np.nan})
    cols = ["label", "metric", "mean", "n", "eval_seed", "same", "delta"]
    return pd.DataFrame(out, columns=cols).assign(dlo=np.nan, dhi=np.nan)


def _matches(value: str, wanted: str) -> bool:
    if str(value).split(" (")[0] == str(wanted):  # `16k` also matches the scaled label `16k (44 tok)`
        return True
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


def resolve_factor(name: str, columns) -> str:
    """Accept `override.algo.entropy_coef` or `algo.entropy_coef` for an override factor."""
    if name in columns:
        return name
    if "override." + name in columns:
        return "override." + name
    raise ValueError(f"unknown factor {name!r}; known: {[factor_label(c) for c in columns]}")


def in_means(runs: pd.DataFrame) -> pd.Series:
    """Finished runs, keeping only the newest finished run per (variant, seed)."""
    fin = runs["status"] == "finished"
    newest = runs[fin].sort_values("start_time").drop_duplicates(["variant", "seed"], keep="last")
    return runs["run_id"].isin(newest["run_id"])


def row_order(runs: pd.DataFrame, row_factors: list[str]) -> list[tuple]:
    keys = {tuple(r) for r in runs[row_factors].itertuples(index=False)} if row_factors else {()}
    return sorted(keys, key=lambda k: tuple(natural_key(v) for v in k))


def ablation(runs: pd.DataFrame, values: pd.DataFrame, metrics: list[str], row_factors: list[str],
             baseline: dict[str, str], directions: dict[str, str | None], *, constant_tags: dict[str, str],
             resamples: int = stats.DEFAULT_RESAMPLES, level: float = stats.DEFAULT_LEVEL,
             seed: int = stats.DEFAULT_SEED, interval: str = "t", correction: str = "holm",
             family: str = "column", alpha: float = 0.05, power: float = 0.8,
             target_of=None) -> Ablation:
    """Numbers of the ablation table. `runs` has `in_means`, `status`, `seed` and the factor columns;
    `values` is run_id × metric (from `collect.values_at`). `constant_tags` maps tags that do not vary
    to their value (a baseline may name them)."""
    keys = row_order(runs, row_factors)
    labels = {k: variant_label(dict(zip(row_factors, k, strict=True))) for k in keys}
    by_key = {k: g for k, g in runs.groupby(row_factors, sort=False)} if row_factors else {(): runs}
    by_key = {(k if isinstance(k, tuple) else (k,)): g for k, g in by_key.items()}

    # baseline of each row: named factors fixed, the others the row's own
    fixed = {}
    for name, want in baseline.items():
        if name in constant_tags or "override." + name in constant_tags:
            tag = name if name in constant_tags else "override." + name
            if not _matches(constant_tags[tag], want):
                raise ValueError(f"baseline {name}={want} but every run of the sweep has {name}={constant_tags[tag]}")
            continue
        f = resolve_factor(name, row_factors + [c for c in runs.columns if c.startswith("override.")])
        if f not in row_factors:
            raise ValueError(f"baseline names {name!r}, which is not a row factor ({row_factors})")
        fixed[f] = want

    def seeded(g):
        g = g[g["in_means"]]
        order = sorted(zip(g["seed"], g["run_id"], strict=True), key=lambda p: (natural_key(p[0]), p[1]))
        return [r for _, r in order]

    run_lists = {k: seeded(by_key[k]) for k in keys}
    default_base = next((k for k in keys if run_lists[k]), keys[0] if keys else None)
    base_of = {}
    for k in keys:
        if not fixed:
            base_of[k] = default_base
            continue
        target = tuple(fixed.get(f, v) for f, v in zip(row_factors, k, strict=True))
        hit = [kk for kk in keys if all(_matches(a, b) for a, b in zip(kk, target, strict=True))]
        base_of[k] = hit[0] if hit else None
    if fixed and all(b is None for b in base_of.values()):
        raise ValueError(f"baseline {baseline} matches no row; rows: {list(labels.values())}")

    row_recs = []
    for k in keys:
        g = by_key[k]
        excluded: dict[str, int] = {}
        for st in g.loc[~g["in_means"], "status"]:
            st = "superseded" if st == "finished" else st
            excluded[st] = excluded.get(st, 0) + 1
        row_recs.append({"row_key": k, "label": labels[k], **dict(zip(row_factors, k, strict=True)),
                         "n": len(run_lists[k]), "excluded": excluded,
                         "baseline": labels[base_of[k]] if base_of[k] is not None else None})
    rows = pd.DataFrame(row_recs)

    vals = values.reindex(columns=metrics)
    pos = {r: i for i, r in enumerate(vals.index)}
    at = {k: np.array([pos.get(r, -1) for r in run_lists[k]], dtype=int) for k in keys}
    cell_keys, samples, pair_cells, pairs = [], [], [], []
    for m in metrics:
        col = np.append(vals[m].to_numpy(dtype=float), np.nan)  # position -1 → NaN (run without values)
        for k in keys:
            x = col[at[k]]
            cell_keys.append((m, k))
            samples.append(x)
            b = base_of[k]
            if b is not None and b != k:
                pair_cells.append(len(cell_keys) - 1)
                pairs.append((x, col[at[b]]))
    if interval == "bootstrap":
        cis = stats.mean_cis(samples, resamples=resamples, level=level, seed=seed)
        boots = dict(zip(pair_cells, stats.diff_cis(pairs, resamples=resamples, level=level, seed=seed),
                         strict=True))
    else:
        cis = stats.t_cis(samples, level=level)
        boots = {}
    tests = {i: stats.welch(x, y, level=level) for i, (x, y) in zip(pair_cells, pairs, strict=True)}
    effects = {i: stats.cohens_d(x, y) for i, (x, y) in zip(pair_cells, pairs, strict=True)}
    sd = {m: stats.pooled_sd([samples[i] for i, (mm, _) in enumerate(cell_keys) if mm == m]) for m in metrics}
    cell_recs = []
    for i, ((m, k), ci) in enumerate(zip(cell_keys, cis, strict=True)):
        t = tests.get(i)
        b = boots.get(i)
        lo, hi = (b.lo, b.hi) if b else ((t.lo, t.hi) if t else (np.nan, np.nan))
        cell_recs.append({"label": labels[k], "metric": m, "mean": ci.mean, "lo": ci.lo, "hi": ci.hi, "n": ci.n,
                          "delta": t.delta if t else np.nan, "dlo": lo, "dhi": hi,
                          "se": t.se if t else np.nan, "df": t.df if t else np.nan, "p": t.p if t else np.nan,
                          "d": effects.get(i, np.nan), "n_base": t.n_base if t else 0, "is_baseline": base_of[k] == k})
    cells = pd.DataFrame(cell_recs, columns=["label", "metric", "mean", "lo", "hi", "n", "delta", "dlo", "dhi",
                                             "se", "df", "p", "d", "n_base", "is_baseline"])
    cells["p_adj"] = adjusted(cells, correction, family)
    cells["family_m"] = family_sizes(cells, family)
    cells["mde_alpha"] = [stats.family_alpha(alpha, int(m), correction) for m in cells["family_m"]]
    cells["mde"] = [stats.comparison_mde(c["se"], c["n"], int(c["n_base"]), alpha=c["mde_alpha"], target_power=power,
                                         floor=(c["dhi"] - c["dlo"]) / 2)
                    if np.isfinite(c["p"]) else np.nan for c in cells.to_dict("records")]
    cells["significant"] = [None if np.isnan(q) else bool(q < alpha) for q in cells["p_adj"]]
    cells["stars"] = [stars(q, alpha) for q in cells["p_adj"]]
    cells["bold"] = bold_cells(cells, directions, base_labels={labels[k]: labels[b] if b is not None else None
                                                               for k, b in base_of.items()})
    power_rows = []
    for m in metrics:
        s_, df_ = sd[m]
        s_unb = s_ / stats.c4(df_) if df_ else np.nan  # unbiased for σ (the per-comparison MDE's correction)
        ns = [len(stats._clean(samples[i])) for i, (mm, _) in enumerate(cell_keys) if mm == m]
        n_typ = int(np.median([n for n in ns if n > 0])) if any(ns) else 0
        fam = cells.loc[cells["metric"] == m, "family_m"]
        m_typ = int(fam.max()) if len(fam) and fam.max() > 0 else 1
        a_fam = stats.family_alpha(alpha, m_typ, correction)
        target = target_of(m) if target_of else None
        power_rows.append({"metric": m, "sd": s_, "sd_df": df_, "sd_unbiased": s_unb, "seeds": n_typ,
                           "mde": stats.welch_mde(s_unb, n_typ, n_typ, alpha=alpha, target_power=power),
                           "family_m": m_typ, "mde_alpha": a_fam,
                           "mde_family": stats.welch_mde(s_unb, n_typ, n_typ, alpha=a_fam, target_power=power),
                           "target_delta": target,
                           "seeds_needed": stats.seeds_needed(target, s_unb, alpha=a_fam, target_power=power)
                           if target else None})
    return Ablation(rows=rows, cells=cells, metrics=metrics, row_factors=row_factors, directions=directions,
                    power=pd.DataFrame(power_rows), run_lists={labels[k]: v for k, v in run_lists.items()},
                    base_of={labels[k]: (labels[b] if b is not None else None) for k, b in base_of.items()},
                    alpha=alpha, correction=correction, family=family, interval=interval)


def adjusted(cells: pd.DataFrame, correction: str, family: str) -> np.ndarray:
    """Adjusted p-values: one family per metric column (`family="column"`) or the whole table."""
    out = np.full(len(cells), np.nan)
    groups = [np.arange(len(cells))] if family == "table" else \
        [np.flatnonzero(cells["metric"].to_numpy() == m) for m in dict.fromkeys(cells["metric"])]
    for g in groups:
        out[g] = stats.adjust(cells["p"].to_numpy(dtype=float)[g], correction)
    return out


def family_sizes(cells: pd.DataFrame, family: str) -> np.ndarray:
    """m of each comparison's family: the comparisons with a p-value in its metric column (or the table)."""
    has_p = cells["p"].notna().to_numpy()
    if family == "table":
        return np.full(len(cells), int(has_p.sum()))
    metric = cells["metric"].to_numpy()
    counts = {m: int(has_p[metric == m].sum()) for m in dict.fromkeys(metric)}
    return np.array([counts[m] for m in metric], dtype=int)


def stars(p_adj: float, alpha: float) -> str:
    """"***" p_adj < alpha/50, "**" < alpha/5, "*" < alpha (0.001, 0.01, 0.05 at alpha 0.05), "n.s." else."""
    if p_adj is None or not np.isfinite(p_adj):
        return ""
    if p_adj >= alpha:
        return "n.s."
    return "***" if p_adj < alpha / 50 else "**" if p_adj < alpha / 5 else "*"


def bold_cells(cells: pd.DataFrame, directions: dict, base_labels: dict) -> list[bool]:
    """Bold = the best mean of a column (by its direction) when the table can tell it is best: a variant
    only if its Δ to its baseline is significant (adjusted p < alpha) in the better direction; a baseline
    only if every row compared with it is significantly worse. Ties and no direction: no bold."""
    bold = np.zeros(len(cells), dtype=bool)
    for m in dict.fromkeys(cells["metric"]):
        direction = directions.get(m)
        sel = np.flatnonzero((cells["metric"] == m).to_numpy() & cells["mean"].notna().to_numpy())
        if direction not in ("max", "min") or cells["mean"].iloc[sel].nunique() < 2:
            continue
        sign = 1.0 if direction == "max" else -1.0
        best = (cells["mean"].iloc[sel] * sign).max()
        for i in sel:
            c = cells.iloc[i]
            if c["mean"] * sign != best:
                continue
            if not c["is_baseline"]:
                bold[i] = bool(c["significant"]) and c["delta"] * sign > 0
            else:
                others = [j for j in sel if not cells["is_baseline"].iloc[j]
                          and base_labels.get(cells["label"].iloc[j]) == c["label"]]
                bold[i] = bool(others) and all(bool(cells["significant"].iloc[j]) and cells["delta"].iloc[j] * sign < 0
                                               for j in others)
    return bold.tolist()



def _arrow(direction: str | None) -> str:
    return {"max": " ↑", "min": " ↓"}.get(direction, "")


def _delta_cell(c: dict, r: dict, d: int) -> Cell:
    if c["is_baseline"]:
        return Cell("baseline")
    if not np.isfinite(c["delta"]):
        return Cell("" if r["baseline"] is None else "—")
    dt = fmt(c["delta"], d, sign=True)
    title = f"Δ vs {r['baseline']}"
    if np.isfinite(c["dlo"]):
        title += f": CI [{fmt(c['dlo'], d, sign=True)}, {fmt(c['dhi'], d, sign=True)}]"
    if np.isfinite(c["p"]):
        title += f"; p={fmt_p(c['p'])}, adjusted {fmt_p(c['p_adj'])}; d={fmt(c['d'], 2)}"
    if c["stars"] == "n.s.":
        dt += " n.s." + (f" (MDE {fmt(c['mde'], d)})" if np.isfinite(c["mde"]) else "")
        if np.isfinite(c["mde"]):
            title += f"; MDE at α={c['mde_alpha']:.3g} (m={int(c['family_m'])})"
    elif c["stars"]:
        dt += c["stars"]
    return Cell(dt, title=title)


def _mean_cell(c: dict, r: dict, d: int) -> Cell:
    if c["n"] == 0:
        text = "—"
    else:
        text = fmt(c["mean"], d)
        if c["n"] >= 2:
            text += f" [{fmt(c['lo'], d)}, {fmt(c['hi'], d)}]"
        if c["n"] != r["n"]:
            text += f" (n={c['n']})"
    return Cell(text, bold=bool(c["bold"]), title=f"n={c['n']}")


def _base_delta_cell(b: dict | None, d: int) -> Cell:
    """Row B's Δ: B − A, the same checkpoint evaluated twice (with the per-problem CI where there is one)."""
    if not b or b.get("eval_seed") != "B" or not np.isfinite(b.get("delta", np.nan)):
        return Cell("")
    text = "B−A " + fmt(b["delta"], d, sign=True)
    if np.isfinite(b.get("dlo", np.nan)):
        text += f" [{fmt(b['dlo'], d, sign=True)}, {fmt(b['dhi'], d, sign=True)}]"
    return Cell(text, title="evaluation-only noise: the base model scored again under an independent eval seed")


def ablation_grid(t: Ablation) -> Grid:
    header = [factor_label(f) for f in t.row_factors] or ["variant"]
    header.append("n")
    lk = t.last_k
    for m in t.metrics:
        header += [metric_label(m) + _arrow(t.directions.get(m)), "Δ"]
        if lk is not None:
            header += [f"{metric_label(m)}, mean of last {t.k}", "Δ"]
    dec = {m: decimals_for(t.cells.loc[t.cells["metric"] == m, "mean"]) for m in t.metrics}
    idx = {(c["label"], c["metric"]): c for c in t.cells.to_dict("records")}
    lk_idx = {(c["label"], c["metric"]): c for c in lk.cells.to_dict("records")} if lk is not None else {}
    out = []
    base = {(b["label"], b["metric"]): b for b in t.base.to_dict("records")}
    for label in dict.fromkeys(b["label"] for b in base.values()):
        row = [Cell(label)] + [Cell("") for _ in t.row_factors[1:]]
        row.append(Cell(str(max(b["n"] for (lab, _), b in base.items() if lab == label))))
        for m in t.metrics:
            b = base.get((label, m))
            title = "the base model, before any update" + \
                ("; one measurement (no second evaluation of this metric), shown in both rows" if b and b["same"] else "")
            row += [Cell(fmt(b["mean"], dec[m]) if b else "—", title=title), _base_delta_cell(b, dec[m])]
            if lk is not None:
                row += [Cell(""), Cell("")]
        out.append(row)
    for r in t.rows.to_dict("records"):
        row = [Cell(str(v)) for v in r["row_key"]] or [Cell(r["label"])]
        ntext = str(r["n"])
        if r["excluded"]:
            ntext += " (+" + ", ".join(f"{c} {s}" for s, c in sorted(r["excluded"].items())) + ")"
        row.append(Cell(ntext))
        for m in t.metrics:
            c = idx[(r["label"], m)]
            row += [_mean_cell(c, r, dec[m]), _delta_cell(c, r, dec[m])]
            if lk is not None:
                c = lk_idx[(r["label"], m)]
                row += [_mean_cell(c, r, dec[m]), _delta_cell(c, r, dec[m])]
        out.append(row)
    return Grid(header=header, rows=out, n_index=max(len(t.row_factors), 1))


def fmt_p(p: float) -> str:
    """p-values: 2 significant digits, "<0.001" below that."""
    if p is None or not np.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def power_grid(t: Ablation, level: float, power: float) -> Grid:
    """Per metric: seed-to-seed SD pooled over the rows (bias-corrected), the MDE at the typical seeds per row at
    α and at the marks' level α/m, and seeds needed for the target Δ at α/m."""
    rows = []
    adj = t.correction in ("holm", "bh")
    for r in t.power.to_dict("records"):
        d = decimals_for(t.cells.loc[t.cells["metric"] == r["metric"], "mean"])
        need = r["seeds_needed"]
        rows.append([Cell(metric_label(r["metric"])), Cell(fmt(r["sd"], d) + f" (df {r['sd_df']})"),
                     Cell(str(r["seeds"])), Cell(fmt(r["mde"], d)),
                     Cell(fmt(r["mde_family"], d) + (f" (m={r['family_m']})" if adj else "")),
                     Cell("—" if r["target_delta"] is None else fmt(r["target_delta"], d)),
                     Cell("—" if r["target_delta"] is None else (">1000" if need is None else str(need)))])
    pct = int(power * 100)
    fam = "α/m (the marks' most conservative step, m = comparisons in the family)" if adj else "α"
    return Grid(header=["metric", "seed SD (pooled)", "seeds per arm", f"MDE ({pct}% power, α={t.alpha:g})",
                        f"MDE at {'α/m' if adj else 'α'}", "target Δ", "seeds needed"], rows=rows, n_index=1,
                caption=f"power of Welch's two-sided test, equal arms at the typical seeds per row; seed SD pooled "
                        f"over all rows, divided by c4(df) (unbiased for σ); seeds needed at {fam}. Planning "
                        f"numbers: each comparison's own MDE (table) uses its own two rows' spread")


def ablation_csv(t: Ablation) -> pd.DataFrame:
    """Tidy numbers of the table (one row per row × metric; with last_k also per row × metric of the last-k
    columns, `value` = "mean of last k") for table.csv."""
    rows = t.rows[["label", "n", "baseline"]].rename(columns={"n": "row_n"})
    parts = []
    if not t.base.empty:
        parts.append(t.base.assign(row_n=t.base["n"], baseline=None, step=0, value="at step 0"))
    parts.append(t.cells.merge(rows, on="label").assign(value="at the report's step"))
    if t.last_k is not None:
        parts.append(t.last_k.cells.merge(rows, on="label").assign(value=f"mean of last {t.k}"))
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------- factorial

@dataclass
class Factorial:
    metric: str
    row_factors: list[str]
    col_factors: list[str]
    table: pd.DataFrame  # index = row labels (+ "mean"), columns = column labels (+ "mean")
    counts: pd.DataFrame  # finished runs per cell
    full: bool
    missing: list[str]


def _combo(values: tuple) -> str:
    return ", ".join(str(v) for v in values)


def factorial(runs: pd.DataFrame, values: pd.DataFrame, metric: str, row_factors: list[str],
              col_factors: list[str], all_factors: list[str]) -> Factorial:
    """Two-way table of `metric` (see module docstring for how cells and margins are computed)."""
    r = runs[runs["in_means"]].copy()
    r["_v"] = values[metric].reindex(r["run_id"]).to_numpy(dtype=float) if metric in values else np.nan
    r = r[np.isfinite(r["_v"])]
    variant_means = r.groupby(all_factors, sort=False)["_v"].mean().reset_index()
    counts_src = r.groupby(row_factors + col_factors, sort=False).size()
    rk = row_order(runs, row_factors)
    ck = row_order(runs, col_factors)
    cells = variant_means.groupby(row_factors + col_factors, sort=False)["_v"].mean()
    rl, cl = [_combo(k) for k in rk], [_combo(k) for k in ck]
    tab = pd.DataFrame(np.nan, index=rl, columns=cl)
    cnt = pd.DataFrame(0, index=rl, columns=cl)
    for key, v in cells.items():
        key = key if isinstance(key, tuple) else (key,)
        a, b = _combo(key[: len(row_factors)]), _combo(key[len(row_factors):])
        tab.loc[a, b] = v
    for key, v in counts_src.items():
        key = key if isinstance(key, tuple) else (key,)
        cnt.loc[_combo(key[: len(row_factors)]), _combo(key[len(row_factors):])] = int(v)
    missing = [f"{a} × {b}" for a in rl for b in cl if not np.isfinite(tab.loc[a, b])]
    full = not missing
    tab["mean"] = tab.mean(axis=1) if full else np.nan
    tab.loc["mean"] = tab.mean(axis=0) if full else np.nan
    if full:
        tab.loc["mean", "mean"] = float(tab.iloc[:-1, :-1].to_numpy().mean())
    return Factorial(metric=metric, row_factors=row_factors, col_factors=col_factors, table=tab, counts=cnt,
                     full=full, missing=missing)


def factorial_grid(f: Factorial) -> Grid:
    corner = " × ".join(factor_label(x) for x in f.row_factors) + " \\ " + \
        " × ".join(factor_label(x) for x in f.col_factors)
    header = [corner, *[str(c) for c in f.table.columns]]
    d = decimals_for(f.table.to_numpy().ravel())
    rows = []
    for i, idx in enumerate(f.table.index):
        row = [Cell(str(idx), bold=idx == "mean")]
        for j, col in enumerate(f.table.columns):
            n = f.counts.iloc[i, j] if (idx != "mean" and col != "mean") else None
            title = f"n={n}" if n is not None else "margin"
            row.append(Cell(fmt(f.table.loc[idx, col], d), bold=(idx == "mean" or col == "mean"), title=title))
        rows.append(row)
    caption = f"{metric_label(f.metric)}: cell = mean of variant means; margins = mean of the cells"
    notes = [] if f.full else [f"not a full grid (missing {', '.join(f.missing)}): no margins"]
    return Grid(header=header, rows=rows, n_index=1, caption=caption, notes=notes)


# ------------------------------------------------------------------------------------------- renderers

_MD = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": " ", "\r": " "}


def md_escape(s: str) -> str:
    """Text safe in a Markdown table cell or line: HTML's `<`, `>`, `&` as entities (a renderer that passes
    HTML through would otherwise run a hostile run name's `<script>`), `|` escaped, newlines flattened."""
    return "".join(_MD.get(ch, ch) for ch in str(s))


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) prefixed with `'`
    (OWASP's CSV-injection rule); numbers are left alone."""
    def cell(v):
        return "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v

    out = df.copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].map(cell).astype(object)
    return out


def to_markdown(g: Grid) -> str:
    esc = md_escape

    def cell(c: Cell) -> str:
        return f"**{esc(c.text)}**" if c.bold and c.text else esc(c.text)

    lines = ["| " + " | ".join(esc(h) for h in g.header) + " |",
             "|" + "|".join("---" if g.is_left(i) else "---:" for i in range(len(g.header))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in g.rows]
    out = "\n".join(lines)
    if g.caption:
        out = f"*{esc(g.caption)}*\n\n" + out
    for n in g.notes:
        out += f"\n\n> {esc(n)}"
    return out


def to_html(g: Grid, css_class: str = "ablation") -> str:
    def cell(c: Cell, tag: str, left: bool) -> str:
        t = html.escape(c.text)
        if c.bold and c.text:
            t = f"<strong>{t}</strong>"
        title = f' title="{html.escape(c.title)}"' if c.title else ""
        classes = [x for x, on in (("ns", "n.s." in c.text), ("l", left)) if on]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        return f"<{tag}{title}{cls}>{t}</{tag}>"

    parts = [f'<p class="caption">{html.escape(g.caption)}</p>'] if g.caption else []
    parts.append(f'<table class="{css_class}">')
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in g.header) + "</tr></thead>")
    parts.append("<tbody>")
    for r in g.rows:
        parts.append("<tr>" + "".join(cell(c, "th" if i < g.n_index else "td", g.is_left(i))
                                      for i, c in enumerate(r)) + "</tr>")
    parts.append("</tbody></table>")
    for n in g.notes:
        parts.append(f'<p class="note">{html.escape(n)}</p>')
    return "\n".join(parts)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "↑": r"$\uparrow$",
        "↓": r"$\downarrow$", "×": r"$\times$", "—": "--", "\n": " ", "\r": " ", "<": r"\textless{}",
        ">": r"\textgreater{}"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(g: Grid, label: str = "") -> str:
    """A booktabs `table` (needs \\usepackage{booktabs,graphicx}); bold best via \\textbf."""

    def cell(c: Cell) -> str:
        t = tex_escape(c.text)
        return f"\\textbf{{{t}}}" if c.bold and c.text else t

    spec = "".join("l" if g.is_left(i) else "r" for i in range(len(g.header)))
    lines = ["\\begin{table}[t]", "\\centering", "\\small", "\\resizebox{\\linewidth}{!}{%",
             f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & ".join(tex_escape(h) for h in g.header) + " \\\\", "\\midrule"]
    for i, r in enumerate(g.rows):
        if r and r[0].text == "mean" and i == len(g.rows) - 1:
            lines.append("\\midrule")
        lines.append(" & ".join(cell(c) for c in r) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}"]
    cap = g.caption + ("; " if g.caption and g.notes else "") + "; ".join(g.notes)
    if cap:
        lines.append(f"\\caption{{{tex_escape(cap)}}}")
    if label:
        lines.append(f"\\label{{{label}}}")
    lines.append("\\end{table}")
    return "\n".join(lines)


__all__ = ["Ablation", "Factorial", "Grid", "ablation", "csv_safe", "factorial", "md_escape", "to_markdown", "to_html",
           "to_latex"]

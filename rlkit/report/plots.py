"""Training curves: per metric, one line per variant = mean over its finished runs at each step, with the
bootstrap band of `stats.band` (bands and legend only up to `max_legend` variants); runs that are still running or failed are drawn as thin dotted lines of
their variant's colour and are never part of the mean. Saved as PNG and SVG (matplotlib, Agg backend)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from rlkit.report import stats  # noqa: E402
from rlkit.report.tables import metric_label  # noqa: E402


@dataclass
class Figure:
    metric: str
    png: Path
    svg: Path


def slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")


def _colors(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    if n <= 20:
        return [cmap(i % cmap.N) for i in range(n)]
    return [cmap(x) for x in np.linspace(0.05, 0.95, n)]


def _wide(h: pd.DataFrame) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Long rows of one metric → (run_id → row, steps, [runs, steps] values with NaN gaps)."""
    rc, runs = pd.factorize(h["run_id"])
    sc, steps = pd.factorize(h["step"], sort=True)
    W = np.full((len(runs), len(steps)), np.nan)
    W[rc, sc] = h["value"].to_numpy(dtype=float)
    return {str(r): i for i, r in enumerate(runs)}, np.asarray(steps), W


def curves(history: pd.DataFrame, runs: pd.DataFrame, metrics: list[str], variants: list[str], out_dir: Path,
           *, resamples: int = 1000, level: float = 0.95, seed: int = 0, max_legend: int = 24,
           dpi: int = 100, color_by: dict[str, str] | None = None) -> list[Figure]:
    """One figure per metric in `metrics`; `variants` gives the line order. `runs` needs run_id, variant,
    in_means, status. Above `max_legend` variants a figure has mean lines only (no bands: they would be
    unreadable), coloured by `color_by[variant]` (e.g. the first factor's value) with that as the legend;
    the table carries the numbers. Returns the written files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    many = len(variants) > max_legend
    colors = dict(zip(variants, _colors(len(variants)), strict=True))
    groups_legend: dict[str, tuple] = {}
    if many and color_by:
        names = list(dict.fromkeys(color_by[v] for v in variants))
        if len(names) <= max_legend:
            groups_legend = dict(zip(names, _colors(len(names)), strict=True))
            colors = {v: groups_legend[color_by[v]] for v in variants}
    groups = {v: (g.loc[g["in_means"], "run_id"].tolist(), g.loc[~g["in_means"], "run_id"].tolist())
              for v, g in runs.groupby("variant", sort=False)}
    figures = []
    for metric in metrics:
        h = history[history["key"] == metric]
        if h.empty:
            continue
        row_of, steps, W = _wide(h)
        fig, ax = plt.subplots(figsize=(9, 4.6), dpi=dpi)
        mean_segs, mean_cols, dot_segs, dot_cols = [], [], [], []
        for v in variants:
            done, other = groups.get(v, ([], []))
            rows = [row_of[r] for r in done if r in row_of]
            if rows:
                X = W[rows]
                cols = ~np.isnan(X).all(axis=0)
                if many or len(rows) < 2:
                    mean = np.nanmean(X[:, cols], axis=0)
                    lo = hi = None
                else:
                    mean, lo, hi = stats.band(X[:, cols], resamples=resamples, level=level, seed=seed)
                if many:
                    mean_segs.append(np.column_stack([steps[cols], mean]))
                    mean_cols.append(colors[v])
                else:
                    ax.plot(steps[cols], mean, color=colors[v], lw=1.6, label=f"{v} (n={len(rows)})")
                    if lo is not None:
                        ax.fill_between(steps[cols], lo, hi, color=colors[v], alpha=0.18, lw=0)
            for r in other:
                if r in row_of:
                    y = W[row_of[r]]
                    ok = ~np.isnan(y)
                    dot_segs.append(np.column_stack([steps[ok], y[ok]]))
                    dot_cols.append(colors[v])
        if mean_segs:
            ax.add_collection(LineCollection(mean_segs, colors=mean_cols, linewidths=1.0,
                                             alpha=0.6 if groups_legend else 1.0))
            for name, col in groups_legend.items():
                ax.plot([], [], color=col, lw=1.6, label=name)
        if dot_segs:
            ax.add_collection(LineCollection(dot_segs, colors=dot_cols, linewidths=0.9, linestyles=":", alpha=0.8))
        ax.autoscale_view()
        ax.set_title(f"{metric_label(metric)}  ({metric})", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if many:
            note = (f"{len(variants)} variants: one line each = mean over finished seeds, no bands above "
                    f"{max_legend} variants" + (", coloured by the legend's factor" if groups_legend else "")
                    + " (numbers: see the table); dotted = running/failed run")
        else:
            note = "line = mean over finished seeds, band = 95% bootstrap CI; dotted = running/failed run"
        if not many or groups_legend:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.text(0.01, 0.01, note, fontsize=7, color="0.4")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        base = out_dir / f"curve_{slug(metric)}"
        fig.savefig(base.with_suffix(".png"))
        fig.savefig(base.with_suffix(".svg"))
        plt.close(fig)
        figures.append(Figure(metric, base.with_suffix(".png"), base.with_suffix(".svg")))
    return figures


def profiles(scores: dict[str, np.ndarray], out_dir: Path, *, resamples: int = 500, level: float = 0.95,
             seed: int = 0, dpi: int = 100) -> list[Figure]:
    """Performance profiles (rliable's run-score distributions) of several suites: per row, the fraction
    of its (run, suite) scores above τ, averaged over suites, for τ in [0, 1], with a stratified bootstrap
    band (runs resampled within each suite). `scores`: row label → [runs, suites] accuracy."""
    if not scores:
        return []
    taus = np.linspace(0.0, 1.0, 101)
    fig, ax = plt.subplots(figsize=(9, 4.6), dpi=dpi)
    colors = dict(zip(scores, _colors(len(scores)), strict=True))
    rng = np.random.default_rng(seed)
    for label, S in scores.items():
        S = np.atleast_2d(S)
        ax.plot(taus, stats.performance_profile(S, taus), color=colors[label], lw=1.6, label=f"{label} (n={len(S)})")
        if len(S) >= 2 and len(scores) <= 24:
            idx = stats.stratified_indices(rng, S.shape[0], S.shape[1], resamples)
            cols = np.arange(S.shape[1])[None, :]
            boot = np.array([stats.performance_profile(S[idx[b], cols], taus) for b in range(resamples)])
            lo, hi = np.percentile(boot, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)
            ax.fill_between(taus, lo, hi, color=colors[label], alpha=0.18, lw=0)
    ax.set_xlabel("τ (accuracy)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title("performance profile over eval suites", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.text(0.01, 0.01, "per row: fraction of (run, suite) accuracies above τ, averaged over suites; band = "
             "stratified bootstrap", fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    base = Path(out_dir) / "profile_suites"
    fig.savefig(base.with_suffix(".png"))
    fig.savefig(base.with_suffix(".svg"))
    plt.close(fig)
    return [Figure("performance profile", base.with_suffix(".png"), base.with_suffix(".svg"))]

"""Training curves: per metric, one line per variant = mean over its finished runs at each step, with the
bootstrap band of `stats.band`; runs that are still running or failed are drawn as thin dotted lines of
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


def curves(history: pd.DataFrame, runs: pd.DataFrame, metrics: list[str], variants: list[str], out_dir: Path,
           *, resamples: int = 1000, level: float = 0.95, seed: int = 0, max_legend: int = 24,
           dpi: int = 100) -> list[Figure]:
    """One figure per metric in `metrics`; `variants` gives the line order. `runs` needs run_id, variant,
    in_means. Returns the written files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = dict(zip(variants, _colors(len(variants)), strict=True))
    by_variant = {v: g for v, g in runs.groupby("variant", sort=False)}
    figures = []
    for metric in metrics:
        h = history[history["key"] == metric]
        if h.empty:
            continue
        wide = h.pivot(index="run_id", columns="step", values="value").sort_index(axis=1)
        steps = wide.columns.to_numpy()
        fig, ax = plt.subplots(figsize=(9, 4.6), dpi=dpi)
        for v in variants:
            g = by_variant.get(v)
            if g is None:
                continue
            done = [r for r in g.loc[g["in_means"], "run_id"] if r in wide.index]
            if done:
                X = wide.loc[done].to_numpy(dtype=float)
                cols = ~np.isnan(X).all(axis=0)
                mean, lo, hi = stats.band(X[:, cols], resamples=resamples, level=level, seed=seed)
                n = len(done)
                ax.plot(steps[cols], mean, color=colors[v], lw=1.6, label=f"{v} (n={n})")
                if n >= 2:
                    ax.fill_between(steps[cols], lo, hi, color=colors[v], alpha=0.18, lw=0)
            for r in g.loc[~g["in_means"], ["run_id", "status"]].itertuples(index=False):
                if r.run_id in wide.index:
                    y = wide.loc[r.run_id].to_numpy(dtype=float)
                    ok = ~np.isnan(y)
                    ax.plot(steps[ok], y[ok], color=colors[v], lw=0.9, ls=":", alpha=0.8)
        ax.set_title(f"{metric_label(metric)}  ({metric})", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(variants) <= max_legend:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        note = "line = mean over finished seeds, band = 95% bootstrap CI; dotted = running/failed run"
        fig.text(0.01, 0.01, note, fontsize=7, color="0.4")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        base = out_dir / f"curve_{slug(metric)}"
        fig.savefig(base.with_suffix(".png"))
        fig.savefig(base.with_suffix(".svg"))
        plt.close(fig)
        figures.append(Figure(metric, base.with_suffix(".png"), base.with_suffix(".svg")))
    return figures

"""Efficiency of an arm: area under its curve and the cost of reaching a threshold.

Per run and thresholded metric (report.thresholds, e.g. {val/acc: 0.8}):
- AUC = trapezoid area under the logged curve divided by the step span (= the curve's time-average,
  in the metric's units; comparable across runs with the same steps);
- steps to threshold = the first logged step whose value reaches it (≥ for a max metric, ≤ for min);
- wall seconds to it = the sum of `timing_s/step` over logged steps up to that step;
- generated tokens to it = Σ response_length/mean × rollouts per step (params trainer.prompts_per_step ×
  trainer.group_size) up to that step.
A row shows the mean over its runs that reached the threshold and how many did ("k/n"); a run that never
reached it is not averaged (its cost is unknown, not infinite).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

STEP_TIME = "timing_s/step"
LENGTH = "response_length/mean"


def auc(steps: np.ndarray, values: np.ndarray) -> float:
    ok = np.isfinite(values)
    s, v = steps[ok].astype(float), values[ok]
    if len(s) < 2 or s[-1] == s[0]:
        return float(v[0]) if len(v) else np.nan
    return float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(s)) / (s[-1] - s[0]))


def first_reach(steps: np.ndarray, values: np.ndarray, threshold: float, direction: str | None) -> int | None:
    hit = values <= threshold if direction == "min" else values >= threshold
    i = np.flatnonzero(hit & np.isfinite(values))
    return int(steps[i[0]]) if len(i) else None


def _cum_to(h: pd.DataFrame, step: int, scale: float = 1.0) -> float:
    if h.empty:
        return np.nan
    return float(h.loc[h["step"] <= step, "value"].sum() * scale)


def table(history: pd.DataFrame, run_lists: dict[str, list[str]], thresholds: dict[str, float],
          directions: dict[str, str | None], rollouts: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per (row label, metric): threshold, auc, reached ("k/n"), steps, wall_s, tokens (means over
    the runs that reached it). `rollouts`: run_id → rollouts per step (for tokens)."""
    rollouts = rollouts or {}
    by = {k: g for k, g in history.groupby(["run_id", "key"], observed=True, sort=False)}
    empty = pd.DataFrame(columns=["step", "value"])
    recs = []
    for metric, thr in thresholds.items():
        for lab, runs in run_lists.items():
            aucs, steps, walls, toks = [], [], [], []
            for r in runs:
                h = by.get((r, metric))
                if h is None:
                    continue
                s, v = h["step"].to_numpy(), h["value"].to_numpy(dtype=float)
                aucs.append(auc(s, v))
                at = first_reach(s, v, thr, directions.get(metric))
                if at is None:
                    continue
                steps.append(at)
                walls.append(_cum_to(by.get((r, STEP_TIME), empty), at))
                ro = rollouts.get(r)
                toks.append(_cum_to(by.get((r, LENGTH), empty), at, ro) if ro else np.nan)

            def mean(x):
                x = np.asarray(x, dtype=float)
                return float(np.nanmean(x)) if np.isfinite(x).any() else np.nan
            recs.append({"label": lab, "metric": metric, "threshold": thr, "auc": mean(aucs),
                         "reached": f"{len(steps)}/{len(aucs)}", "steps": mean(steps), "wall_s": mean(walls),
                         "tokens": mean(toks)})
    return pd.DataFrame(recs, columns=["label", "metric", "threshold", "auc", "reached", "steps", "wall_s",
                                       "tokens"])

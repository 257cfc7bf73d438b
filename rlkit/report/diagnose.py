"""Per-run failure flags, each with the step where it began (the failure modes of shared/RESEARCH.md).

Common rules (thresholds in `Thresholds`, overridable from a sweep file's `report: {diagnose: {...}}`):
- a metric's *start* is the mean of its first `start_window` logged values;
- a condition must hold on `patience` consecutive logged points of the metric it is read on; the onset
  is the step of the first of them (KL blow-up fires on a single point; reward-stuck needs
  `reward_stuck_steps` points);
- a second metric read alongside (distinct_frac, accuracy) is aligned to the first one's steps by taking
  its last value logged at or before that step (NaN before its first value, which never satisfies);
- a flag whose metric a run did not log is "n/a" for that run, never "clear".

| flag | metric(s) | fires when |
|---|---|---|
| entropy_collapse | actor/entropy, rollout/distinct_frac | entropy < entropy_frac × start AND distinct_frac ≤ distinct_frac_max (entropy alone if distinct_frac is not logged) |
| length_collapse | response_length/mean | length < length_frac × its running peak (max so far) |
| format_hacking | rewards/format/mean, val/acc (else rewards/accuracy/mean) | format ≥ its start + format_rise AND accuracy ≤ its start + acc_flat |
| all_correct_saturation | groups/all_correct_frac | all-correct fraction ≥ all_correct_max |
| truncation | response_length/clip_ratio | clip ratio > truncation_max |
| kl_blowup | actor/kl_loss (else actor/ppo_kl when kl_loss is absent or all 0) | KL > kl_max, or KL > kl_floor and > kl_spike × median of all earlier KL values (needs start_window earlier values) |
| reward_stuck | critic/score/mean | reward ≤ floor + reward_tol for reward_stuck_steps consecutive points; floor = reward_min, or the run's own minimum when reward_min is null |
| stale_weights | rollout/mismatch_kl, rollout/mismatch_ratio_mean (rollout/staleness) | the rollout engine samples from other weights than the trainer's (huggingface/trl#5312): mismatch KL > mismatch_kl_max, or (on-policy runs: no rollout/staleness > 0) > mismatch_kl_floor and > mismatch_growth × start (a stale engine's gap grows with every update; rounding and bf16 rollouts stay level), or the ratio mean further than mismatch_ratio_dev from 1; `trainer.max_mismatch_kl` is an absolute hard stop inside the run |
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

ENTROPY = "actor/entropy"
DISTINCT = "rollout/distinct_frac"
LENGTH = "response_length/mean"
CLIP = "response_length/clip_ratio"
FORMAT = "rewards/format/mean"
VAL_ACC = "val/acc"
TRAIN_ACC = "rewards/accuracy/mean"
ALL_CORRECT = "groups/all_correct_frac"
KL_LOSS = "actor/kl_loss"
PPO_KL = "actor/ppo_kl"
SCORE = "critic/score/mean"
MISMATCH_KL = "rollout/mismatch_kl"
MISMATCH_RATIO = "rollout/mismatch_ratio_mean"
STALENESS = "rollout/staleness"
METRICS = (ENTROPY, DISTINCT, LENGTH, CLIP, FORMAT, VAL_ACC, TRAIN_ACC, ALL_CORRECT, KL_LOSS, PPO_KL, SCORE,
           MISMATCH_KL, MISMATCH_RATIO, STALENESS)

FLAGS = ("entropy_collapse", "length_collapse", "format_hacking", "all_correct_saturation", "truncation",
         "kl_blowup", "reward_stuck", "stale_weights")


MISMATCH_KL_MAX = 1e-2     # TRL's stale engine (trl#5312): mean log-prob gap 0.81; bf16 rollouts ~1e-3
MISMATCH_KL_FLOOR = 1e-6   # fp32 rounding here ~1e-10; staleness 1-2 on the tiny default 1e-5-1e-4 (level)
MISMATCH_GROWTH = 10.0
MISMATCH_RATIO_DEV = 0.05


@dataclass(frozen=True)
class Thresholds:
    """Diagnosis thresholds; defaults chosen from the field reports in shared/RESEARCH.md."""

    start_window: int = field(default=3, metadata={"doc": "a metric's 'start' = mean of its first N logged values"})
    patience: int = field(default=3, metadata={"doc": "consecutive logged points a condition must hold; onset = the first of them"})
    entropy_frac: float = field(default=0.3, metadata={"doc": "entropy collapse: entropy below this fraction of its start ..."})
    distinct_frac_max: float = field(default=0.3, metadata={"doc": "... and at most this fraction of a group's rollouts are distinct"})
    length_frac: float = field(default=0.3, metadata={"doc": "length collapse: mean length below this fraction of its peak so far"})
    format_rise: float = field(default=0.3, metadata={"doc": "format hacking: format reward up by at least this (absolute) ... (0.2 fired on 12/26 no-effect runs)"})
    acc_flat: float = field(default=0.02, metadata={"doc": "... while accuracy is at most this above its start"})
    all_correct_max: float = field(default=0.7, metadata={"doc": "saturation: at least this fraction of groups all correct (no signal)"})
    truncation_max: float = field(default=0.2, metadata={"doc": "truncation: more than this fraction of responses hit the length cap (0.1 fired on 26/26 no-effect runs)"})
    kl_max: float = field(default=1.0, metadata={"doc": "KL blow-up: KL above this absolute value ..."})
    kl_spike: float = field(default=10.0, metadata={"doc": "... or above this multiple of the median of all earlier values"})
    kl_floor: float = field(default=0.05, metadata={"doc": "... (the relative rule ignores KL values at or below this)"})
    reward_tol: float = field(default=0.05, metadata={"doc": "reward stuck: within this (absolute) of the floor ..."})
    reward_stuck_steps: int = field(default=20, metadata={"doc": "... for this many consecutive logged points"})
    reward_min: float | None = field(default=None, metadata={"doc": "the reward's known minimum; null = the run's observed minimum"})
    mismatch_kl_max: float = field(default=MISMATCH_KL_MAX, metadata={
        "doc": "stale weights: rollout/mismatch_kl above this absolute value ..."})
    mismatch_kl_floor: float = field(default=MISMATCH_KL_FLOOR, metadata={
        "doc": "... or above this floor (fp32 rounding is far below) ..."})
    mismatch_growth: float = field(default=MISMATCH_GROWTH, metadata={
        "doc": "... and this multiple of its start (a stale engine's gap grows with each update) ..."})
    mismatch_ratio_dev: float = field(default=MISMATCH_RATIO_DEV, metadata={
        "doc": "... or the sampled tokens' mean pi_train/pi_rollout this far from 1"})

    @classmethod
    def from_dict(cls, d: dict | None) -> Thresholds:
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown diagnose threshold(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def documented(self) -> list[tuple[str, object, str]]:
        """(name, value, meaning) for every threshold, for the report and docs."""
        return [(f.name, getattr(self, f.name), f.metadata["doc"]) for f in fields(self)]


def first_sustained(cond: np.ndarray, patience: int) -> int | None:
    """Index of the first point of the first run of `patience` consecutive True values, else None."""
    cond = np.asarray(cond, dtype=bool)
    p = max(int(patience), 1)
    if len(cond) < p:
        return None
    if p == 1:
        hits = np.flatnonzero(cond)
    else:
        c = np.concatenate([[0], np.cumsum(cond)])
        hits = np.flatnonzero(c[p:] - c[:-p] == p)
    return int(hits[0]) if len(hits) else None


def _start(v: np.ndarray, th: Thresholds) -> float:
    head = v[: max(th.start_window, 1)]
    return float(np.nanmean(head)) if np.isfinite(head).any() else np.nan


def _align(steps: np.ndarray, other: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Value of `other` last logged at or before each of `steps` (NaN before its first value)."""
    o_steps, o_vals = other
    i = np.searchsorted(o_steps, steps, side="right") - 1
    out = np.where(i >= 0, o_vals[np.clip(i, 0, None)], np.nan)
    return out.astype(float)


Series = dict[str, tuple[np.ndarray, np.ndarray]]  # key -> (steps ascending, values)


def _onset(steps, cond, patience) -> float | None:
    i = first_sustained(cond, patience)
    return None if i is None else float(steps[i])


def check_run(s: Series, th: Thresholds) -> dict[str, tuple[str, float | None, str]]:
    """All flags for one run: flag -> (state "fired"|"clear"|"n/a", onset step or None, detail)."""
    out: dict[str, tuple[str, float | None, str]] = {}

    def put(flag, steps, cond, detail, patience=th.patience):
        onset = _onset(steps, cond, patience)
        out[flag] = ("fired", onset, detail) if onset is not None else ("clear", None, "")

    if ENTROPY in s:
        steps, v = s[ENTROPY]
        start = _start(v, th)
        with np.errstate(invalid="ignore"):
            cond = v < th.entropy_frac * start
            if DISTINCT in s:
                cond &= _align(steps, s[DISTINCT]) <= th.distinct_frac_max
                detail = f"entropy < {th.entropy_frac:g}×start ({start:.3g}), distinct ≤ {th.distinct_frac_max:g}"
            else:
                detail = f"entropy < {th.entropy_frac:g}×start ({start:.3g}); distinct_frac not logged"
        put("entropy_collapse", steps, cond, detail)
    else:
        out["entropy_collapse"] = ("n/a", None, f"{ENTROPY} not logged")

    if LENGTH in s:
        steps, v = s[LENGTH]
        peak = np.fmax.accumulate(v)
        with np.errstate(invalid="ignore"):
            cond = v < th.length_frac * peak
        put("length_collapse", steps, cond, f"length < {th.length_frac:g}×peak so far")
    else:
        out["length_collapse"] = ("n/a", None, f"{LENGTH} not logged")

    acc_key = VAL_ACC if VAL_ACC in s else TRAIN_ACC if TRAIN_ACC in s else None
    if FORMAT in s and acc_key:
        steps, f = s[FORMAT]
        acc = _align(steps, s[acc_key])
        f0, a0 = _start(f, th), _start(s[acc_key][1], th)
        with np.errstate(invalid="ignore"):
            cond = (f >= f0 + th.format_rise) & (acc <= a0 + th.acc_flat)
        put("format_hacking", steps, cond,
            f"format ≥ start ({f0:.3g}) + {th.format_rise:g} while {acc_key} ≤ start ({a0:.3g}) + {th.acc_flat:g}")
    else:
        missing = [k for k, ok in ((FORMAT, FORMAT in s), (f"{VAL_ACC} or {TRAIN_ACC}", acc_key)) if not ok]
        out["format_hacking"] = ("n/a", None, " and ".join(missing) + " not logged")

    if ALL_CORRECT in s:
        steps, v = s[ALL_CORRECT]
        with np.errstate(invalid="ignore"):
            put("all_correct_saturation", steps, v >= th.all_correct_max, f"all-correct ≥ {th.all_correct_max:g}")
    else:
        out["all_correct_saturation"] = ("n/a", None, f"{ALL_CORRECT} not logged")

    if CLIP in s:
        steps, v = s[CLIP]
        with np.errstate(invalid="ignore"):
            put("truncation", steps, v > th.truncation_max, f"clip ratio > {th.truncation_max:g}")
    else:
        out["truncation"] = ("n/a", None, f"{CLIP} not logged")

    kl_key = None
    if KL_LOSS in s and np.nan_to_num(s[KL_LOSS][1]).any():
        kl_key = KL_LOSS
    elif PPO_KL in s:
        kl_key = PPO_KL
    elif KL_LOSS in s:
        kl_key = KL_LOSS
    if kl_key:
        steps, v = s[kl_key]
        prev_median = pd.Series(v).expanding(min_periods=max(th.start_window, 1)).median().shift(1).to_numpy()
        with np.errstate(invalid="ignore"):
            cond = (v > th.kl_max) | ((v > th.kl_floor) & (v > th.kl_spike * prev_median))
        put("kl_blowup", steps, cond,
            f"{kl_key} > {th.kl_max:g} or > {th.kl_spike:g}×earlier median (and > {th.kl_floor:g})", patience=1)
    else:
        out["kl_blowup"] = ("n/a", None, f"{KL_LOSS} / {PPO_KL} not logged")

    if SCORE in s:
        steps, v = s[SCORE]
        floor = th.reward_min if th.reward_min is not None else (np.nanmin(v) if np.isfinite(v).any() else np.nan)
        with np.errstate(invalid="ignore"):
            cond = v <= floor + th.reward_tol
        put("reward_stuck", steps, cond, f"reward ≤ floor ({floor:.3g}) + {th.reward_tol:g}",
            patience=th.reward_stuck_steps)
    else:
        out["reward_stuck"] = ("n/a", None, f"{SCORE} not logged")

    if MISMATCH_KL in s:
        steps, v = s[MISMATCH_KL]
        ratio = _align(steps, s[MISMATCH_RATIO]) if MISMATCH_RATIO in s else np.full(len(steps), 1.0)
        start = _start(v, th)
        # trainer.staleness > 0 (rollout/staleness logged): the gap is the intended lag, which may grow as the
        # policy moves faster; only the absolute and ratio rules apply there
        on_policy = STALENESS not in s or not np.nan_to_num(s[STALENESS][1]).any()
        with np.errstate(invalid="ignore"):
            growth = (v > th.mismatch_kl_floor) & (v > th.mismatch_growth * start) if on_policy else np.zeros(len(v), bool)
            cond = (v > th.mismatch_kl_max) | growth | (np.abs(ratio - 1.0) > th.mismatch_ratio_dev)
        rule = f"> {th.mismatch_kl_floor:g} and > {th.mismatch_growth:g}×start ({start:.3g})" if on_policy else \
            "(staleness > 0: no growth rule)"
        put("stale_weights", steps, cond,
            f"mismatch_kl > {th.mismatch_kl_max:g}, or {rule}, or |ratio mean - 1| > {th.mismatch_ratio_dev:g}")
    else:
        out["stale_weights"] = ("n/a", None, f"{MISMATCH_KL} not logged")
    return out


def split_history(history: pd.DataFrame) -> dict[str, Series]:
    """run_id -> key -> (steps, values) from a long history sorted by run_id, key, step."""
    if history.empty:
        return {}
    rid = history["run_id"].to_numpy()
    key = history["key"].to_numpy()
    steps = history["step"].to_numpy()
    vals = history["value"].to_numpy(dtype=float)
    cut = np.flatnonzero((rid[1:] != rid[:-1]) | (key[1:] != key[:-1])) + 1
    bounds = np.concatenate([[0], cut, [len(rid)]])
    out: dict[str, Series] = {}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        out.setdefault(rid[a], {})[key[a]] = (steps[a:b], vals[a:b])
    return out


def diagnose(history: pd.DataFrame, run_ids: list[str], th: Thresholds | None = None) -> pd.DataFrame:
    """Tidy flags: one row per (run_id, flag) with state "fired"|"clear"|"n/a", onset step (NaN unless
    fired) and a detail string. `history` is the long table of `collect.load_history`."""
    th = th or Thresholds()
    series = split_history(history[history["key"].isin(METRICS)])
    rows = []
    for run_id in run_ids:
        for flag, (state, onset, detail) in check_run(series.get(run_id, {}), th).items():
            rows.append((run_id, flag, state, np.nan if onset is None else onset, detail))
    return pd.DataFrame(rows, columns=["run_id", "flag", "state", "onset", "detail"])


def summarize(flags: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per variant × flag: how many runs fired out of the runs checked, and the onset steps.
    Columns: variant, flag, fired, checked, onsets (sorted list), unfinished_fired (fired on runs that are
    not finished)."""
    m = flags.merge(runs[["run_id", "variant", "status"]], on="run_id")
    m = m.assign(is_fired=m["state"] == "fired", is_checked=m["state"] != "n/a")
    m["unfinished"] = m["is_fired"] & (m["status"] != "finished")
    agg = m.groupby(["variant", "flag"], sort=False, observed=True).agg(
        fired=("is_fired", "sum"), checked=("is_checked", "sum"), unfinished_fired=("unfinished", "sum"))
    onsets: dict[tuple, list[int]] = {}
    for v, f, o in m.loc[m["is_fired"], ["variant", "flag", "onset"]].itertuples(index=False):
        onsets.setdefault((v, f), []).append(int(o))
    agg["onsets"] = [sorted(onsets.get(k, [])) for k in agg.index]
    out = agg.reset_index()
    for c in ("fired", "checked", "unfinished_fired"):
        out[c] = out[c].astype(int)
    return out[["variant", "flag", "fired", "checked", "onsets", "unfinished_fired"]]


# ------------------------------------------------------------------------------ measured false-alarm rates
# Why: a flag that also fires on runs where nothing changed (the negative control, A/A runs) is weak evidence on
# its own ("3/3 vs 0/3" means little if the flag fires in 2 of 3 unchanged runs). bench/flag_calibration.py
# measures each flag's false-alarm rate on no-effect sweeps, at the thresholds in force and over a grid of the
# flag's main threshold, and writes them here; the report prints the rate beside each flag.

RATES_FILE = Path(__file__).resolve().parent / "flag_rates.json"

# per flag: every threshold its rule reads (a measured rate applies only where all of them match), and its main
# threshold with the direction that makes it fire less ("up": a higher value is stricter) and a grid to scan
FLAG_PARAMS = {
    "entropy_collapse": ("start_window", "patience", "entropy_frac", "distinct_frac_max"),
    "length_collapse": ("patience", "length_frac"),
    "format_hacking": ("start_window", "patience", "format_rise", "acc_flat"),
    "all_correct_saturation": ("patience", "all_correct_max"),
    "truncation": ("patience", "truncation_max"),
    "kl_blowup": ("start_window", "kl_max", "kl_spike", "kl_floor"),
    "reward_stuck": ("reward_tol", "reward_stuck_steps", "reward_min"),
    "stale_weights": ("start_window", "patience", "mismatch_kl_max", "mismatch_kl_floor", "mismatch_growth",
                      "mismatch_ratio_dev"),
}
MAIN_THRESHOLD = {
    "entropy_collapse": ("entropy_frac", "down", (0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05)),
    "length_collapse": ("length_frac", "down", (0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05)),
    "format_hacking": ("format_rise", "up", (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8)),
    "all_correct_saturation": ("all_correct_max", "up", (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)),
    "truncation": ("truncation_max", "up", (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)),
    "kl_blowup": ("kl_spike", "up", (3.0, 5.0, 10.0, 20.0, 50.0, 100.0)),
    "reward_stuck": ("reward_stuck_steps", "up", (5, 10, 20, 30, 50, 100)),
    "stale_weights": ("mismatch_growth", "up", (3.0, 10.0, 30.0, 100.0, 1000.0)),
}
FALSE_ALARM_TARGET = 0.05


def flag_params(flag: str, th: Thresholds) -> dict[str, object]:
    """The thresholds `flag`'s rule reads, at their values in `th` (what a measured rate is keyed on)."""
    return {k: getattr(th, k) for k in FLAG_PARAMS[flag]}


def load_rates(path: str | Path | None = None) -> dict:
    """The committed measurements ({} where there are none): {"flags": {flag: {...}}, ...}."""
    import json

    p = Path(path) if path else RATES_FILE
    if not p.is_file():
        return {}
    return json.loads(p.read_text())


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(
        (a[k] is None and b[k] is None) or (a[k] is not None and b[k] is not None and float(a[k]) == float(b[k]))
        for k in a)


def false_alarms(flag: str, th: Thresholds, rates: dict) -> dict | None:
    """The measured false-alarm record of `flag` at exactly the thresholds `th` gives it (the measurement at the
    thresholds in force then, or a grid point of its main threshold), else None. Keys: runs, fired, rate,
    sweeps, date, params. None also where no no-effect run logged the flag's metric."""
    rec = (rates.get("flags") or {}).get(flag)
    if not rec:
        return None
    want = flag_params(flag, th)
    for cand in [rec, *rec.get("grid", [])]:
        if cand.get("runs") and _same(cand.get("params", {}), want):  # (0 runs checked: no measurement)
            return {"runs": cand["runs"], "fired": cand["fired"], "rate": cand["rate"],
                    "sweeps": rec.get("sweeps", []), "date": rec.get("date", ""), "params": want}
    return None

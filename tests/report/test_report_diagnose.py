"""Each diagnosis flag fires, at the expected step, on a run built to show it — and only there — through a
real SQLite store; a healthy run raises nothing. Runs log every 10 steps (step = 10 × index), so an onset
is a step, not an index. Onsets are worked out from the thresholds' defaults by hand."""
from __future__ import annotations

import numpy as np
import pytest

from rlkit.report import collect, diagnose, fake
from rlkit.report.diagnose import Thresholds, check_run, first_sustained

T = 40
STEP = 10
t = np.arange(T)


def healthy() -> dict[str, np.ndarray]:
    return {
        "actor/entropy": 1.0 - 0.005 * t,  # 1.0 → 0.805
        "rollout/distinct_frac": np.full(T, 0.9),
        "response_length/mean": 300.0 + 5 * t,
        "response_length/clip_ratio": np.full(T, 0.02),
        "rewards/format/mean": np.full(T, 0.9),
        "groups/all_correct_frac": 0.1 + 0.005 * t,  # ≤ 0.295
        "groups/all_wrong_frac": np.full(T, 0.3),
        "actor/kl_loss": 0.001 + 0.0005 * t,  # ≤ 0.0205, below kl_floor
        "actor/ppo_kl": np.full(T, 0.001),
        "critic/score/mean": -1.0 + 0.05 * t,
        "rollout/mismatch_kl": np.full(T, 1e-9),  # on-policy fp32: rounding level
        "rollout/mismatch_ratio_mean": np.full(T, 1.0),
    }


def val_acc(values: np.ndarray) -> dict[int, float]:
    """Evaluated every 5 indices (= 50 steps)."""
    return {int(i * STEP): float(values[i]) for i in range(0, T, 5)}


def sick(flag: str) -> tuple[dict, dict[int, float]]:
    s, acc = healthy(), val_acc(0.2 + 0.01 * t)
    if flag == "entropy_collapse":
        s["actor/entropy"] = np.where(t < 15, 1.0, 0.1)  # < 0.3 × start (1.0) from index 15 ...
        s["rollout/distinct_frac"] = np.where(t < 17, 0.9, 0.2)  # ... and near-identical rollouts from 17
    elif flag == "length_collapse":
        s["response_length/mean"] = np.where(t < 20, 300.0 + 20 * t, 100.0)  # peak 680; 100 < 204 from 20
    elif flag == "format_hacking":
        s["rewards/format/mean"] = np.where(t < 10, 0.2, 0.9)  # start 0.2; ≥ 0.4 from 10
        acc = val_acc(np.full(T, 0.2))  # accuracy flat
    elif flag == "all_correct_saturation":
        s["groups/all_correct_frac"] = np.where(t < 25, 0.1, 0.8)
    elif flag == "truncation":
        s["response_length/clip_ratio"] = np.where(t < 12, 0.02, 0.3)
    elif flag == "kl_blowup":
        s["actor/kl_loss"] = np.where(t == 30, 0.5, 0.01)  # one spike: > 10 × median 0.01 and > 0.05
    elif flag == "reward_stuck":
        s["critic/score/mean"] = np.where(t < 5, -0.8, -1.0)  # at its minimum from 5 to the end
    elif flag == "stale_weights":  # the engine stops receiving weights at 7: the KL grows past 1e-6 at 8
        s["rollout/mismatch_kl"] = np.where(t < 8, 1e-9, 3e-6 * (t - 7))
    return s, acc


EXPECTED_ONSET = {"entropy_collapse": 170, "length_collapse": 200, "format_hacking": 100,
                  "all_correct_saturation": 250, "truncation": 120, "kl_blowup": 300, "reward_stuck": 50,
                  "stale_weights": 80}


def log(client, exp, parent, name, s, acc, status="finished"):
    series = {k: {int(i * STEP): float(v[i]) for i in range(T)} for k, v in s.items()}
    series["val/acc"] = acc
    return fake.child_run(client, exp, parent_id=parent, sweep="diag", sweep_id="d1",
                          tags={"algo": "grpo", "override.case": name}, seed=0, series=series, status=status)


@pytest.fixture(scope="module")
def flags(store):
    uri, client, d = store
    exp = fake.experiment(client, "diag", artifact_location=str(d / "art"))
    parent = fake.parent_run(client, exp, "diag", "d1")
    ids = {"healthy": log(client, exp, parent, "healthy", healthy(), val_acc(0.2 + 0.01 * t))}
    for flag in diagnose.FLAGS:
        ids[flag] = log(client, exp, parent, flag, *sick(flag))
    # entropy drops but rollouts stay diverse: not an entropy collapse
    s = healthy()
    s["actor/entropy"] = np.where(t < 15, 1.0, 0.1)
    ids["entropy_only"] = log(client, exp, parent, "entropy_only", s, val_acc(0.2 + 0.01 * t))
    # a run that logged nothing the flags read: n/a, never "clear"; and a running run is still diagnosed
    ids["bare"] = log(client, exp, parent, "bare", {"timing_s/step": np.ones(T)}, {0: 0.1})
    ids["running"] = log(client, exp, parent, "running", *sick("truncation"), status="running")
    sw = collect.find_sweep(client, "diag")
    hist = collect.load_history(uri, sw.runs["run_id"].tolist(), list(diagnose.METRICS))
    out = diagnose.diagnose(hist, sw.runs["run_id"].tolist())
    return {name: out[out["run_id"] == rid].set_index("flag") for name, rid in ids.items()}, sw, out


def fired(df) -> dict[str, float]:
    return {f: df.loc[f, "onset"] for f in df.index if df.loc[f, "state"] == "fired"}


def test_healthy_run_is_silent(flags):
    by, _, _ = flags
    assert fired(by["healthy"]) == {}
    assert (by["healthy"]["state"] == "clear").all()


@pytest.mark.parametrize("flag", diagnose.FLAGS)
def test_each_flag_fires_alone_at_its_onset(flags, flag):
    by, _, _ = flags
    assert fired(by[flag]) == {flag: EXPECTED_ONSET[flag]}


def test_entropy_drop_with_diverse_rollouts_is_not_collapse(flags):
    by, _, _ = flags
    assert fired(by["entropy_only"]) == {}


def test_missing_metrics_are_na_and_running_runs_are_diagnosed(flags):
    by, sw, out = flags
    bare = by["bare"]
    assert set(bare["state"]) == {"n/a"}
    assert bare.loc["truncation", "detail"] == "response_length/clip_ratio not logged"
    assert fired(by["running"]) == {"truncation": 120}
    runs = sw.runs
    summary = diagnose.summarize(out, runs).set_index(["variant", "flag"])
    row = summary.loc[("case=running", "truncation")]
    assert (row["fired"], row["checked"], row["onsets"], row["unfinished_fired"]) == (1, 1, [120], 1)


def test_unit_rules():
    assert first_sustained(np.array([1, 1, 0, 1, 1, 1, 0], bool), 3) == 3
    assert first_sustained(np.array([1, 1, 0], bool), 3) is None
    assert first_sustained(np.array([0, 1], bool), 1) == 1
    steps = np.arange(T)
    # entropy collapse without distinct_frac: entropy alone, said so
    s = {"actor/entropy": (steps, np.where(steps < 15, 1.0, 0.1))}
    state, onset, detail = check_run(s, Thresholds())["entropy_collapse"]
    assert (state, onset) == ("fired", 15) and "distinct_frac not logged" in detail
    # thresholds from the sweep file change the verdict
    s = {"response_length/clip_ratio": (steps, np.full(T, 0.15))}
    assert check_run(s, Thresholds(truncation_max=0.1))["truncation"][:2] == ("fired", 0)
    assert check_run(s, Thresholds())["truncation"][:2] == ("clear", None)  # the default 0.2 (calibrated)
    # intended staleness (0 at the first step, then growing 1e-4 per step to 4e-3 as the policy speeds up) and
    # bf16-like rollouts (level 3e-3) stay clear; the same growth without rollout/staleness fires
    stale_k = np.where(steps < 1, 0.0, 1e-4 * steps)
    s = {"rollout/mismatch_kl": (steps, stale_k), "rollout/mismatch_ratio_mean": (steps, np.full(T, 1.01)),
         "rollout/staleness": (steps, np.where(steps < 1, 0.0, 1.0))}
    assert check_run(s, Thresholds())["stale_weights"][:2] == ("clear", None)
    on_policy = {k: v for k, v in s.items() if k != "rollout/staleness"}
    assert check_run(on_policy, Thresholds())["stale_weights"][0] == "fired"
    assert check_run({"rollout/mismatch_kl": (steps, np.full(T, 3e-3))}, Thresholds())["stale_weights"][0] == "clear"
    # the ratio alone (TRL's importance ratio of 3e-7), or an absolute gap from the start (0.05 > 1e-2)
    s["rollout/mismatch_ratio_mean"] = (steps, np.where(steps < 5, 1.0, 3e-7))
    assert check_run(s, Thresholds())["stale_weights"][:2] == ("fired", 5)
    assert check_run({"rollout/mismatch_kl": (steps, np.full(T, 0.05))}, Thresholds())["stale_weights"][:2] == ("fired", 0)
    # KL: ppo_kl used when kl_loss is all zero (no KL term); absolute kl_max rule
    s = {"actor/kl_loss": (steps, np.zeros(T)), "actor/ppo_kl": (steps, np.where(steps >= 33, 2.0, 0.001))}
    state, onset, detail = check_run(s, Thresholds())["kl_blowup"]
    assert (state, onset) == ("fired", 33) and detail.startswith("actor/ppo_kl")
    # reward stuck with a known minimum: -1 floor, stuck only once it is reached for 20 points
    s = {"critic/score/mean": (steps, np.where(steps < 10, 0.5, -0.98))}
    assert check_run(s, Thresholds(reward_min=-1.0))["reward_stuck"][:2] == ("fired", 10)
    assert check_run(s, Thresholds(reward_min=-1.0, reward_stuck_steps=31))["reward_stuck"][:2] == ("clear", None)

"""Eval noise beside seed noise, end to end through a real SQLite store: the base model evaluated twice (eval
seeds A and B: `eval/<suite>` and `eval/<suite>_reeval` at step 0) and `report.last_k`. Every expected number
is worked out by hand from the values logged here."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rlkit.report import fake
from rlkit.report.build import REEVAL_LABEL, build_report
from rlkit.report.spec import REEVAL_SUFFIX, ReportSpec

# val/acc at steps 10, 20, 30 per seed (step 0: 0.1 for every run: the base model)
VAL = {"a": [(0.5, 0.6, 0.7), (0.6, 0.7, 0.8), (0.4, 0.5, 0.6)],
       "b": [(0.6, 0.8, 0.9), (0.7, 0.9, 1.0), (0.5, 0.7, 0.8)]}
# the base model's 4 problems × 2 samples under eval seed A and B (the same checkpoint)
SEED_A = [[1, 1], [1, 0], [0, 0], [1, 0]]  # per-problem acc 1, .5, 0, .5 → 0.5
SEED_B = [[1, 1], [1, 1], [0, 1], [1, 0]]  # 1, 1, .5, .5 → 0.75
IDS = ["p0", "p1", "p2", "p3"]


@pytest.fixture(scope="module")
def sweep(store):
    uri, client, d = store
    exp = fake.experiment(client, "noise", artifact_location=str(d / "art_noise"))
    parent = fake.parent_run(client, exp, "noise", "n1")
    for algo, seeds in VAL.items():
        for seed, (v1, v2, v3) in enumerate(seeds):
            rid = fake.child_run(client, exp, parent_id=parent, sweep="noise", sweep_id="n1", tags={"algo": algo},
                                 seed=seed, series={"val/acc": {0: 0.1, 10: v1, 20: v2, 30: v3},
                                                    "eval/s/avg_at_2": {0: 0.5, 30: v3},
                                                    f"eval/s{REEVAL_SUFFIX}/avg_at_2": {0: 0.75}})
            fake.eval_artifact(client, rid, "s", 0, IDS, SEED_A)
            fake.eval_artifact(client, rid, "s" + REEVAL_SUFFIX, 0, IDS, SEED_B)
            fake.eval_artifact(client, rid, "s", 30, IDS, [[1, 1], [1, 1], [1, seed % 2], [algo == "b", 0]])
    client.set_terminated(parent)
    return uri, d


@pytest.fixture(scope="module")
def report(sweep):
    uri, d = sweep
    spec = ReportSpec.from_dict({"baseline": {"algo": "a"}, "curves": [], "last_k": 2, "paired_resamples": 2000})
    return build_report(uri, "noise", spec, d / "reports", log_artifacts=False)


def test_reeval_suffix_is_the_trainers():
    from rlkit.steps.evaluate import REEVAL_SUFFIX as TRAINER

    assert REEVAL_SUFFIX == TRAINER


def test_reeval_is_not_a_suite_or_a_column(report):
    assert report.ablation.metrics == ["val/acc", "eval/s/avg_at_2"]
    assert list(report.suites) == ["s"]
    assert set(report.paired["suite"]) == {"s"}


def test_base_model_two_rows_and_b_minus_a(report):
    base = report.ablation.base.set_index(["label", "metric"])
    a, b = "base model (step 0), eval seed A", "base model (step 0), eval seed B (re-evaluated)"
    assert base.loc[(a, "eval/s/avg_at_2"), "mean"] == 0.5 and base.loc[(b, "eval/s/avg_at_2"), "mean"] == 0.75
    # val/acc: greedy, one measurement: the same value in both rows, flagged `same`
    assert base.loc[(a, "val/acc"), "mean"] == base.loc[(b, "val/acc"), "mean"] == pytest.approx(0.1)
    assert bool(base.loc[(b, "val/acc"), "same"]) and not bool(base.loc[(b, "eval/s/avg_at_2"), "same"])
    # the per-problem B − A: d = (0, .5, .5, 0) on every run → Δ 0.25, SE = √(1/12)/2 = 0.144338, t = 1.7321, df 3
    re = report.reeval[report.reeval["metric"] == "acc"].iloc[0]
    assert re["label"] == REEVAL_LABEL and re["n"] == 6 and re["problems"] == 4
    assert (re["mean"], re["mean_a"], re["delta"]) == (0.75, 0.5, 0.25)
    assert re["se"] == pytest.approx(math.sqrt(1 / 12) / 2) and re["p"] == pytest.approx(0.18169, abs=1e-4)
    d = np.array([0.0, 0.5, 0.5, 0.0])
    boot = d[np.random.default_rng(0).integers(0, 4, (2000, 4))].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert (re["lo"], re["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert (base.loc[(b, "eval/s/avg_at_2"), "delta"], base.loc[(b, "eval/s/avg_at_2"), "dlo"]) == (0.25, pytest.approx(lo))
    md = (report.out_dir / "report.md").read_text()
    assert f"| {a} | 6 | 0.100 |  |  |  | 0.500 |  |  |  |" in md  # (empty: the last-k columns)
    assert f"| {b} | 6 | 0.100 |  |  |  | 0.750 | B−A +0.250 [{lo:+.3f}, {hi:+.3f}] |  |  |" in md
    assert f"| s | acc | {REEVAL_LABEL} | 6 | 0.750 | +0.250 (eval only) | [{lo:+.3f}, {hi:+.3f}] | 0.18 |" in md
    assert "**base model, eval seeds A and B**" in md
    csv = pd.read_csv(report.out_dir / "paired.csv")
    assert REEVAL_LABEL in set(csv["label"])


def test_last_k_column_by_hand(report):
    lk = report.ablation.last_k
    assert report.ablation.k == 2 and lk is not None
    c = lk.cells.set_index(["label", "metric"])
    # per run: mean of its last 2 values after step 0 (steps 20, 30): a → .65, .75, .55; b → .85, .95, .75
    a, b = c.loc[("algo=a", "val/acc")], c.loc[("algo=b", "val/acc")]
    assert a["mean"] == pytest.approx(0.65) and b["mean"] == pytest.approx(0.85)
    # t interval: 0.65 ± t_{2,.975} · 0.1/√3 = 0.65 ± 4.302653 · 0.057735
    assert (a["lo"], a["hi"]) == (pytest.approx(0.65 - 0.248414, abs=1e-5), pytest.approx(0.65 + 0.248414, abs=1e-5))
    # Δ = 0.2, Welch SE = √(0.01/3 + 0.01/3) = 0.081650, df 4, p = 2·t.sf(2.4495, 4) = 0.0704; one comparison
    assert b["delta"] == pytest.approx(0.2) and b["se"] == pytest.approx(math.sqrt(0.02 / 3))
    assert b["p"] == pytest.approx(0.07040, abs=1e-4) and b["stars"] == "n.s."
    # MDE = 0.081650 / c4(4) · Welch factor(3, 3, α = 0.05) = 0.081650 / 0.939986 · 4.2918 = 0.373
    assert b["mde"] == pytest.approx(0.081650 / 0.939986 * 4.29175, abs=1e-3)
    # the checkpoint's own column is unchanged: the last values .7/.8/.6 vs .9/1.0/.8
    assert report.ablation.cells.set_index(["label", "metric"]).loc[("algo=b", "val/acc"), "delta"] == pytest.approx(0.2)
    # eval/s/avg_at_2 has one value after step 0 (< k): said in a note, its mean is over that one
    assert any("last_k = 2" in n and "eval/s/avg_at_2: 1" in n for n in report.notes)
    md = (report.out_dir / "report.md").read_text()
    assert "| val acc ↑ | Δ | val acc, mean of last 2 | Δ |" in md
    assert "| b | 3 | 0.900 [0.652, 1.148] | +0.200 n.s. (MDE 0.373) | 0.850 [0.602, 1.098] | +0.200 n.s. (MDE 0.373) |" in md
    csv = pd.read_csv(report.out_dir / "table.csv")
    assert set(csv["value"]) == {"at step 0", "at the report's step", "mean of last 2"}


def test_last_k_spec_and_cli():
    assert ReportSpec.from_dict({"last_k": "3"}).last_k == 3 and ReportSpec().last_k is None
    for bad in (0, -1, "x", 1.5, True):
        with pytest.raises(ValueError, match="last_k"):
            ReportSpec.from_dict({"last_k": bad})

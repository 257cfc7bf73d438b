"""Paired per-problem comparisons: hand-computed numbers for the bootstrap, the crossed t-test and pass@k,
then per-problem parquet artifacts in a real SQLite MLflow store read back by the report."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rlkit.report import fake, paired
from rlkit.report.__main__ import main
from rlkit.report.build import analyze, build_report
from rlkit.report.spec import ReportSpec

# ------------------------------------------------------------------------------ hand-computed


def test_hier_bootstrap_two_seeds_three_problems_by_hand():
    # seeds identical within each arm, per-problem differences d = [0, 0, 0.3]: a resample's Δ is the mean
    # of d over 3 problems drawn with replacement: 0 (p = 8/27), 0.1 (12/27), 0.2 (6/27), 0.3 (1/27 = 3.7%).
    # The 2.5th percentile is 0 and, as 0.3 alone holds more than 2.5%, the 97.5th is 0.3.
    A = np.array([[1.0, 0.5, 0.3], [1.0, 0.5, 0.3]])
    B = np.array([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]])
    boot = paired.hier_boot(A, B, resamples=10_000, seed=0)
    assert set(np.round(boot, 12)) <= {0.0, 0.1, 0.2, 0.3}
    assert np.mean(np.isclose(boot, 0.3)) == pytest.approx(1 / 27, abs=0.006)
    r = paired.compare(A, B, resamples=10_000, seed=0)
    assert (r.delta, r.lo, r.hi) == (pytest.approx(0.1), pytest.approx(0.0, abs=1e-12), pytest.approx(0.3))
    # crossed t: seed variance 0, interaction 0, τ² = var([0, 0, 0.3]) = 0.03 → se = √(0.03/3) = 0.1,
    # df = P − 1 = 2, t = 1 → p = 1 − 1/√3 (t(2) CDF in closed form)
    assert (r.se, r.df, r.tau2) == (pytest.approx(0.1), pytest.approx(2.0), pytest.approx(0.03))
    assert r.p == pytest.approx(1 - 1 / math.sqrt(3), abs=1e-12)


def test_hier_bootstrap_matches_an_independent_loop():
    # the documented draw order, re-written as a plain loop over resamples
    rng0 = np.random.default_rng(5)
    A, B = rng0.random((2, 3)), rng0.random((2, 3))
    R = 400
    rng = np.random.default_rng(11)
    ia, ib, ip = rng.integers(0, 2, (R, 2)), rng.integers(0, 2, (R, 2)), rng.integers(0, 3, (R, 3))
    want = [A[ia[b]][:, ip[b]].mean() - B[ib[b]][:, ip[b]].mean() for b in range(R)]
    assert paired.hier_boot(A, B, resamples=R, seed=11) == pytest.approx(want, abs=1e-12)
    r = paired.compare(A, B, resamples=R, seed=11)
    assert (r.lo, r.hi) == tuple(pytest.approx(v, abs=1e-12) for v in np.percentile(want, [2.5, 97.5]))


def test_crossed_t_seed_component_by_hand():
    # A = B + 0.2 with a seed shift of 0.2 in A's second run, nothing problem-specific:
    # run means A 0.5, 0.7 (var 0.02 / 2 = 0.01), B 0.4, 0.4 (0) → se 0.1 with Welch df 1; τ² = σ²_res = 0;
    # Δ = 0.2, t = 2, p = 1 − 2 atan(2)/π (t(1) is Cauchy)
    A = np.array([[0.6, 0.4, 0.5], [0.8, 0.6, 0.7]])
    B = np.array([[0.5, 0.3, 0.4], [0.5, 0.3, 0.4]])
    test, comp = paired.crossed_t(A, B)
    assert (comp.var_seed, comp.df_seed, comp.tau2, comp.sigma2_res) == (
        pytest.approx(0.01), pytest.approx(1.0), pytest.approx(0.0, abs=1e-15), pytest.approx(0.0, abs=1e-15))
    assert (test.delta, test.se, test.df) == (pytest.approx(0.2), pytest.approx(0.1), pytest.approx(1.0))
    assert test.p == pytest.approx(1 - 2 * math.atan(2) / math.pi, abs=1e-12)
    one, _ = paired.crossed_t(A[:1], B)
    assert math.isnan(one.p) and one.delta == pytest.approx(0.1)  # one seed: Δ, no test


def test_pass_at_k_by_hand():
    # n = 4, c = 1, k = 2: 1 − C(3,2)/C(4,2) = 1 − 3/6; c = 0 → 0; c = 3 → C(1,2) = 0 → 1; n < k → NaN
    got = paired.pass_at_k(np.array([4, 4, 4, 4, 1]), np.array([1, 0, 3, 4, 1]), 2)
    assert got[:4].tolist() == [pytest.approx(0.5), 0.0, 1.0, 1.0] and math.isnan(got[4])


def test_shared_problems_only():
    A = np.array([[1.0, np.nan, 0.5], [1.0, 0.0, 0.5]])
    B = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, np.nan]])
    a, b = paired.shared(A, B)
    assert a.tolist() == [[1.0], [1.0]] and b.tolist() == [[0.0], [0.0]]


# ------------------------------------------------------------------------------ through a real store

IDS = ["p1", "p2", "p3"]
# arm → seed → [problems, k=2] correct at the last eval step (200); every run also has a step-100 file
CORRECT = {
    "grpo": [[[1, 0], [0, 0], [1, 1]], [[1, 1], [0, 0], [1, 0]]],
    "ppo": [[[1, 1], [1, 0], [1, 1]], [[1, 1], [0, 1], [1, 1]]],
}


@pytest.fixture(scope="module")
def sweep(store):
    uri, client, d = store
    exp = fake.experiment(client, "pp", artifact_location=str(d / "artifacts"))
    parent = fake.parent_run(client, exp, "pp", "pp1")
    runs = {}
    for algo, seeds in CORRECT.items():
        for s, corr in enumerate(seeds):
            c = np.array(corr, dtype=bool)
            rid = fake.child_run(client, exp, parent_id=parent, sweep="pp", sweep_id="pp1",
                                 tags={"algo": algo}, seed=s,
                                 series={"eval/math/avg_2": {100: 0.1, 200: float(c.mean())},
                                         "val/acc": {0: 0.1, 100: 0.5, 200: 0.8 if algo == "ppo" else 0.6},
                                         "timing_s/step": {0: 1.0, 100: 2.0, 200: 3.0}})
            fake.eval_artifact(client, rid, "math", 200, IDS, c)
            fake.eval_artifact(client, rid, "math", 100, IDS, np.ones((3, 2), dtype=bool))  # better, earlier
            # a second suite, only 2 problems, one wrong sample more for ppo
            fake.eval_artifact(client, rid, "gsm8k", 200, IDS[:2], c[:2] if algo == "grpo" else ~c[:2])
            client.log_param(rid, "trainer.lr", "1e-6" if algo == "grpo" else "2e-6")
            client.log_param(rid, "trainer.prompts_per_step", "8")
            client.log_param(rid, "trainer.group_size", "4")
            runs[(algo, s)] = rid
    return {"uri": uri, "client": client, "dir": d, "runs": runs}


def _row(df, **kw):
    sel = np.ones(len(df), dtype=bool)
    for k, v in kw.items():
        sel &= (df[k] == v).to_numpy()
    assert sel.sum() == 1, kw
    return df[sel].iloc[0]


def test_artifact_layout_is_the_contract(sweep):
    arts = {a.path for a in sweep["client"].list_artifacts(sweep["runs"][("grpo", 0)], "eval/math")}
    assert arts == {"eval/math/step_000100.parquet", "eval/math/step_000200.parquet"}
    import pyarrow.parquet as pq

    local = paired.local_dir(sweep["client"].get_run(sweep["runs"][("grpo", 0)]).info.artifact_uri)
    t = pq.read_table(local / "eval/math/step_000200.parquet")
    assert t.column_names == list(paired.COLUMNS) and t.num_rows == 6
    assert str(t.schema.field("correct").type) == "bool" and str(t.schema.field("sample").type) == "int64"


def test_paired_numbers_by_hand(sweep):
    r = analyze(sweep["uri"], "pp", ReportSpec.from_dict({"baseline": {"algo": "grpo"}, "curves": []}))
    t = r.paired
    # per-problem accuracies: grpo seeds [.5, 0, 1], [1, 0, .5]; ppo [1, .5, 1], [1, .5, 1]
    # arm means 0.5 and 5/6; Δ = 1/3; problem differences d = [0.25, 0.5, 0.25]
    acc = _row(t, suite="math", metric="acc", label="algo=ppo")
    assert (acc["mean"], acc["delta"], acc["n"], acc["problems"]) == (pytest.approx(5 / 6), pytest.approx(1 / 3), 2, 3)
    # run means: ppo 5/6, 5/6 (var 0); grpo 0.5, 0.5 (var 0) → seed variance 0; grpo's interaction residuals
    # ±0.25 on problems 1 and 3 → σ²_res = 0.25 / ((1·2) + (1·2)) = 0.0625; var(d) = 1/48;
    # τ² = max(0, 1/48 − 0.0625·(1/2 + 1/2)) = 0 → se 0 → p = 0 (Δ ≠ 0 with no variance left)
    assert acc["tau2"] == 0.0 and acc["p"] == 0.0
    # pass@2 per problem: grpo [1, 0, 1], [1, 0, 1]; ppo [1, 1, 1], [1, 1, 1] → Δ = 1/3
    p2 = _row(t, suite="math", metric="pass@2", label="algo=ppo")
    assert p2["delta"] == pytest.approx(1 / 3)
    assert _row(t, suite="math", metric="acc", label="algo=grpo")["baseline"] == "algo=grpo"
    gsm = _row(t, suite="gsm8k", metric="acc", label="algo=ppo")
    # gsm8k (2 problems): grpo [.5, 0], [1, 0] (mean .375); ppo's flipped samples [0, .5], [0, .5] (mean .25)
    assert gsm["problems"] == 2 and gsm["delta"] == pytest.approx(-0.125)
    # the run-level metric eval/math/avg_2 is a default table column (the contract's avg@k, '@' stored as '_')
    assert "eval/math/avg_2" in r.ablation.metrics
    # two suites → IQM and P(improvement) per row
    s = r.suite_summary.set_index("label")
    # P(ppo run > grpo run): math 5/6 vs 1/2 in all 4 pairs → 1; gsm8k .25, .25 vs .25, .5 → (½ + 0 + ½ + 0)/4
    assert s.loc["algo=ppo", "poi"] == pytest.approx((1.0 + 0.25) / 2)
    assert s.loc["algo=grpo", "iqm"] == pytest.approx(0.5)  # scores .5, .5 (math), .25, .5 (gsm8k): IQM of 4
    # provenance: the param that differs between arms; efficiency off without thresholds
    assert r.provenance["config_diff"] == {"trainer.lr": {"algo=grpo": ["1e-6"], "algo=ppo": ["2e-6"]}}
    assert r.efficiency.empty


def test_step_selection_reads_the_matching_file(sweep):
    spec = {"baseline": {"algo": "grpo"}, "curves": [], "metrics": ["val/acc"]}
    r100 = analyze(sweep["uri"], "pp", ReportSpec.from_dict({**spec, "step": 150}))
    assert set(r100.suites["math"].steps.values()) == {100}
    assert _row(r100.paired, suite="math", metric="acc", label="algo=ppo")["delta"] == 0.0  # all correct at 100
    best = analyze(sweep["uri"], "pp", ReportSpec.from_dict({**spec, "step": "best"}))
    assert set(best.suites["math"].steps.values()) == {100}  # the highest-accuracy evaluation (optimistic)


def test_efficiency_thresholds(sweep):
    r = analyze(sweep["uri"], "pp", ReportSpec.from_dict({"baseline": {"algo": "grpo"}, "curves": [],
                                                           "thresholds": {"val/acc": 0.7}}))
    e = r.efficiency.set_index("label")
    assert e.loc["algo=ppo", "reached"] == "2/2" and e.loc["algo=grpo", "reached"] == "0/2"
    # ppo reaches 0.8 at step 200; wall = 1 + 2 + 3 s; tokens need response_length/mean (not logged)
    assert (e.loc["algo=ppo", "steps"], e.loc["algo=ppo", "wall_s"]) == (200, 6.0)
    # AUC of ppo: trapezoid ((0.1 + 0.5)/2 · 100 + (0.5 + 0.8)/2 · 100) / 200
    assert e.loc["algo=ppo", "auc"] == pytest.approx((30 + 65) / 200)


def test_rendered_sections_and_csv(sweep, tmp_path):
    r = build_report(sweep["uri"], "pp", ReportSpec.from_dict({"baseline": {"algo": "grpo"}, "curves": [],
                                                               "target_delta": 0.05}),
                     tmp_path, log_artifacts=False)
    md = (r.out_dir / "report.md").read_text()
    assert "## Per-problem comparisons (paired)" in md and "## Several suites" in md and "## Provenance" in md
    assert "| math | acc | algo=ppo | 2 | 0.833 | +0.333*** |" in md
    assert "trainer.lr: algo=grpo=1e-6, algo=ppo=2e-6" in md
    assert {"paired.csv", "suites.csv", "power.csv", "profile_suites.png"} <= {p.name for p in r.out_dir.iterdir()}
    assert "![performance profile](profile_suites.png)" in md
    tex = (r.out_dir / "table.tex").read_text()
    assert "paired" in tex and "\\toprule" in tex


def test_plan_command(sweep, capsys):
    rc = main(["plan", "pp", "--tracking-uri", sweep["uri"], "--target-delta", "0.05", "--metrics", "val/acc"])
    out = capsys.readouterr().out
    assert rc == 0 and "val/acc" in out and "seeds per arm" in out
    assert "divided by c4(df)" in out and "MDE α/m" in out  # the plan says what it pools and at which level

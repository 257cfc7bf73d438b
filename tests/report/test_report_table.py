"""End to end through a real SQLite MLflow store: synthetic runs with known values → exact table numbers.

Sweep "abl" (experiment "abl", newest parent sweep_id "s2"): algo ∈ {grpo, ppo} × length ∈ {16k, 24k},
two finished seeds each, plus runs that must stay out of the means (a superseded rerun, running, failed,
killed). Every expected number below is worked out by hand from the values logged here; with two seeds
the 95% percentile bootstrap gives [min, max] for a mean and [min x − max y, max x − min y] for a
difference (see test_report_stats.py for why).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rlkit.report import collect, fake
from rlkit.report.__main__ import main
from rlkit.report.build import build_report
from rlkit.report.spec import ReportSpec

CONST = {"reward": "strict", "model": "tiny", "data": "kk", "launcher": "local", "override.algo.clip_high": "0.28"}

# variant -> per seed: (val/acc final, val/gsm8k/acc final or None, length final, clip final, wall time)
FINISHED = {
    ("grpo", "16k"): [(0.30, 0.50, 400, 0.20, 3600), (0.34, 0.60, 420, 0.10, 3800)],
    ("grpo", "24k"): [(0.36, 0.70, 600, 0.04, 5000), (0.38, None, 640, 0.02, 5200)],
    ("ppo", "16k"): [(0.40, 0.55, 380, 0.12, 4000), (0.44, 0.65, 400, 0.14, 4000)],
    ("ppo", "24k"): [(0.35, 0.80, 700, 0.01, 6000), (0.41, 0.90, 760, 0.03, 6400)],
}


def series(acc, gsm, length, clip):
    s = {"val/acc": {0: 0.1, 5: acc + 0.05, 10: acc},
         "actor/grad_norm": {0: 1.0, 5: float("nan"), 10: 2.0},  # MLflow stores NaN as is_nan=1
         "response_length/mean": {0: 300, 5: 350, 10: length},
         "response_length/clip_ratio": {0: 0.5, 5: 0.3, 10: clip},
         "critic/score/mean": {0: -1.0, 5: 0.0, 10: 1.0}}
    if gsm is not None:
        s["val/gsm8k/acc"] = {0: 0.1, 5: gsm, 10: gsm}
    return s


@pytest.fixture(scope="module")
def sweep(store):
    uri, client, d = store
    exp = fake.experiment(client, "abl", artifact_location=str(d / "artifacts"))
    t0 = 1_700_000_000_000
    # an older sweep in the same experiment: must not be picked by name
    old_parent = client.create_run(exp, start_time=t0, tags={"rlkit.role": "parent", "sweep": "abl",
                                                             "sweep_id": "s1"}).info.run_id
    fake.child_run(client, exp, parent_id=old_parent, sweep="abl", sweep_id="s1",
                   tags={"algo": "grpo", "length": "16k", **CONST}, seed=0, series=series(0.99, None, 1, 0.5))
    parent = client.create_run(exp, start_time=t0 + 10_000, tags={"rlkit.role": "parent", "sweep": "abl",
                                                                  "sweep_id": "s2"}).info.run_id
    kw = dict(parent_id=parent, sweep="abl", sweep_id="s2")
    # superseded: an older finished run of grpo/16k seed 1 (start_time before its rerun)
    fake.child_run(client, exp, **kw, tags={"algo": "grpo", "length": "16k", **CONST}, seed=1,
                   series=series(0.90, 0.9, 900, 0.9), summary={"summary/wall_time_s": 1}, start_time=t0 + 20_000)
    for (algo, length), seeds in FINISHED.items():
        for seed, (acc, gsm, ln, clip, wall) in enumerate(seeds):
            rid = fake.child_run(client, exp, **kw, tags={"algo": algo, "length": length, **CONST}, seed=seed,
                                 series=series(acc, gsm, ln, clip), summary={"summary/wall_time_s": wall},
                                 start_time=t0 + 30_000 + seed)
            # a bookkeeping override that differs per job is not a factor
            fake.tag(client, rid, **{"override.paths.checkpoints": f"/ck/{algo}{length}{seed}"})
    ppo24 = {"algo": "ppo", "length": "24k", **CONST}
    fake.child_run(client, exp, **kw, tags=ppo24, seed=2, series=series(0.99, 0.99, 9, 0.9), status="running")
    fake.child_run(client, exp, **kw, tags=ppo24, seed=3, series=series(0.0, 0.0, 9, 0.9), status="failed")
    # no rlkit.status tag: MLflow's own status (KILLED) is used
    fake.child_run(client, exp, **kw, tags=ppo24, seed=4, series=series(0.0, 0.0, 9, 0.9), status="killed",
                   set_status_tag=False)
    # another experiment whose runs carry a `sweep` tag different from the experiment name
    exp2 = fake.experiment(client, "misc", artifact_location=str(d / "artifacts2"))
    p2 = fake.parent_run(client, exp2, "tagged_sweep", "t1")
    fake.child_run(client, exp2, parent_id=p2, sweep="tagged_sweep", sweep_id="t1",
                   tags={"algo": "grpo", **CONST}, seed=0, series={"val/acc": [0.5, 0.6]})
    return {"uri": uri, "client": client, "parent": parent, "old_parent": old_parent, "dir": d}


@pytest.fixture(scope="module")
def report(sweep):
    # the percentile bootstrap keeps this module's hand-computed [min, max] intervals; the default Student-t
    # intervals are checked in test_default_t_intervals_welch_holm
    spec = ReportSpec.from_dict({"baseline": {"algo": "grpo"}, "interval": "bootstrap"})
    return build_report(sweep["uri"], "abl", spec, sweep["dir"] / "reports")


def cell(report, label, metric):
    c = report.ablation.cells
    row = c[(c["label"] == label) & (c["metric"] == metric)]
    assert len(row) == 1
    return row.iloc[0]


def approx(x):
    return pytest.approx(x, abs=1e-9)


# ------------------------------------------------------------------------------------------- collect

def test_find_sweep_by_name_takes_newest_parent(sweep):
    sw = collect.find_sweep(sweep["client"], "abl")
    assert (sw.sweep_id, sw.parent_run_id) == ("s2", sweep["parent"])
    assert len(sw.runs) == 1 + 8 + 3
    assert sw.factors == ["algo", "length"]  # reward/model/override.algo.clip_high constant; seed never
    status = sw.runs.groupby("status").size().to_dict()
    assert status == {"finished": 9, "running": 1, "failed": 1, "killed": 1}
    assert "val/gsm8k/acc" in sw.metric_keys and "summary/wall_time_s" in sw.metric_keys


def test_find_sweep_by_id_and_by_sweep_tag(sweep):
    old = collect.find_sweep(sweep["client"], "s1")
    assert (old.name, old.parent_run_id, len(old.runs)) == ("abl", sweep["old_parent"], 1)
    assert collect.find_sweep(sweep["client"], "abl", sweep_id="s1").parent_run_id == sweep["old_parent"]
    tagged = collect.find_sweep(sweep["client"], "tagged_sweep")
    assert (tagged.name, tagged.sweep_id, len(tagged.runs), tagged.factors) == ("tagged_sweep", "t1", 1, [])


def test_unknown_sweep_error_lists_sweeps(sweep):
    with pytest.raises(collect.SweepNotFound) as e:
        collect.find_sweep(sweep["client"], "nope")
    msg = str(e.value)
    assert "'nope'" in msg and "abl (sweep_id=s2)" in msg and "abl (sweep_id=s1)" in msg and "misc" in msg


def test_bulk_sql_and_api_histories_agree(sweep):
    sw = collect.find_sweep(sweep["client"], "abl")
    ids = sw.runs["run_id"].tolist()
    keys = ["val/acc", "summary/wall_time_s", "val/gsm8k/acc", "actor/grad_norm"]
    a = collect.load_history(sweep["uri"], ids, keys, bulk=True)
    b = collect.load_history(sweep["uri"], ids, keys, bulk=False)
    pd.testing.assert_frame_equal(a, b)
    # val/acc and grad_norm 3 points per run; wall time of the 9 finished runs; gsm8k (one run lacks it)
    assert len(a) == 12 * 3 * 2 + 9 + 11 * 3
    g = a[a["key"] == "actor/grad_norm"]
    assert g[g["step"] == 5]["value"].isna().all() and (g[g["step"] == 10]["value"] == 2.0).all()
    assert list(a.columns) == ["run_id", "key", "step", "value"]


def test_values_at_last_best_and_step(sweep):
    sw = collect.find_sweep(sweep["client"], "abl")
    rid = sw.runs[(sw.runs["algo"] == "ppo") & (sw.runs["length"] == "16k") & (sw.runs["seed"] == "1")]["run_id"]
    rid = rid.iloc[0]
    keys = ["val/acc", "response_length/clip_ratio", "summary/wall_time_s"]
    h = collect.load_history(sweep["uri"], [rid], keys)
    dirs = {"val/acc": "max", "response_length/clip_ratio": "min"}
    last = collect.values_at(h, keys, "last", dirs).loc[rid]
    assert last.tolist() == [approx(0.44), approx(0.14), 4000]
    best = collect.values_at(h, keys, "best", dirs).loc[rid]
    assert best.tolist() == [approx(0.49), approx(0.14), 4000]  # max acc at step 5; min clip at step 10
    at7 = collect.values_at(h, keys, 7, dirs).loc[rid]
    assert at7.tolist() == [approx(0.49), approx(0.3), 4000]  # last at or before 7 = step 5; summary: last
    at0 = collect.values_at(h, keys, 0, dirs).loc[rid]
    assert at0.tolist() == [approx(0.1), approx(0.5), 4000]
    mean = collect.values_at(h, keys, "mean", dirs).loc[rid]  # (0.1+0.49+0.44)/3, (0.5+0.3+0.14)/3
    assert mean.tolist() == [approx(1.03 / 3), approx(0.94 / 3), 4000]


# ------------------------------------------------------------------------------------------- ablation

def test_default_columns_and_rows(report):
    assert report.ablation.metrics == ["val/acc", "val/gsm8k/acc", "response_length/mean",
                                       "response_length/clip_ratio", "summary/wall_time_s"]
    rows = report.ablation.rows
    assert rows["label"].tolist() == ["algo=grpo, length=16k", "algo=grpo, length=24k", "algo=ppo, length=16k",
                                      "algo=ppo, length=24k"]
    assert rows["n"].tolist() == [2, 2, 2, 2]
    assert rows["excluded"].tolist() == [{"superseded": 1}, {}, {}, {"running": 1, "failed": 1, "killed": 1}]
    assert rows["baseline"].tolist() == ["algo=grpo, length=16k", "algo=grpo, length=24k",
                                         "algo=grpo, length=16k", "algo=grpo, length=24k"]


def test_val_acc_means_cis_deltas(report):
    g16 = cell(report, "algo=grpo, length=16k", "val/acc")
    assert (g16["mean"], g16["lo"], g16["hi"], g16["n"]) == (approx(0.32), approx(0.30), approx(0.34), 2)
    assert g16["is_baseline"] and math.isnan(g16["delta"])
    p16 = cell(report, "algo=ppo, length=16k", "val/acc")
    assert (p16["mean"], p16["lo"], p16["hi"]) == (approx(0.42), approx(0.40), approx(0.44))
    assert (p16["delta"], p16["dlo"], p16["dhi"]) == (approx(0.10), approx(0.06), approx(0.14))
    # Welch with 2 + 2 equal-variance values: t = 0.10 / √(0.0004 + 0.0004) = 3.5355, df = 2, and the t(2)
    # CDF is 1/2 + t / (2√(2 + t²)), so p = 1 − t/√(2 + t²); Holm over the column's 2 comparisons doubles
    # the smaller p. The bootstrap interval [0.06, 0.14] excludes 0 but p_adj = 0.143: n.s., not bold.
    t = 0.10 / math.sqrt(0.0008)
    assert p16["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-9)
    assert p16["p_adj"] == pytest.approx(2 * p16["p"], abs=1e-12)
    assert p16["significant"] is False and not p16["bold"] and p16["stars"] == "n.s."
    assert p16["d"] == approx(0.10 / math.sqrt(0.0008))  # pooled SD √0.0008 = 0.0283
    # the running (0.99), failed and killed (0.0) runs are not in this mean
    p24 = cell(report, "algo=ppo, length=24k", "val/acc")
    assert (p24["mean"], p24["lo"], p24["hi"]) == (approx(0.38), approx(0.35), approx(0.41))
    assert (p24["delta"], p24["dlo"], p24["dhi"]) == (approx(0.01), approx(-0.03), approx(0.05))
    assert p24["significant"] is False and not p24["bold"] and p24["p"] > p16["p"]
    assert p24["p_adj"] == approx(p24["p"])  # Holm: the larger of 2 p-values is max(2 p_(1), p_(2))
    # the superseded 0.90 is not in grpo/16k either, the old sweep's 0.99 neither
    assert cell(report, "algo=grpo, length=24k", "val/acc")["mean"] == approx(0.37)
    bold = report.ablation.cells.query("metric == 'val/acc' and bold")["label"].tolist()
    assert bold == []  # the best row (ppo/16k) is not significantly better than its baseline


def test_cells_with_fewer_values_and_lower_is_better(report):
    g24 = cell(report, "algo=grpo, length=24k", "val/gsm8k/acc")  # one of its two runs logged it
    assert (g24["mean"], g24["n"]) == (approx(0.70), 1) and math.isnan(g24["lo"])
    p24 = cell(report, "algo=ppo, length=24k", "val/gsm8k/acc")
    assert (p24["mean"], p24["delta"], p24["significant"]) == (approx(0.85), approx(0.15), None)
    assert math.isnan(p24["dlo"]) and not p24["bold"]  # best, but untested (its baseline has one value)
    p16 = cell(report, "algo=ppo, length=16k", "val/gsm8k/acc")
    assert (p16["delta"], p16["dlo"], p16["dhi"], p16["significant"]) == (approx(0.05), approx(-0.05), approx(0.15), False)
    clip = report.ablation.cells.query("metric == 'response_length/clip_ratio'").set_index("label")
    assert clip["mean"].tolist() == [approx(0.15), approx(0.03), approx(0.13), approx(0.02)]
    assert clip["bold"].tolist() == [False, False, False, False]  # lowest (ppo/24k) is best but n.s.
    assert (clip.loc["algo=ppo, length=24k", "dlo"], clip.loc["algo=ppo, length=24k", "dhi"]) == (approx(-0.03), approx(0.01))
    wall = report.ablation.cells.query("metric == 'summary/wall_time_s'").set_index("label")
    assert wall["mean"].tolist() == [3700, 5100, 4000, 6200]
    assert wall["bold"].tolist() == [False, False, False, False]  # best is a baseline; ppo/16k's p = 0.20
    assert (wall.loc["algo=ppo, length=24k", "delta"], wall.loc["algo=ppo, length=24k", "dlo"],
            wall.loc["algo=ppo, length=24k", "dhi"]) == (1100, 800, 1400)
    length = report.ablation.cells.query("metric == 'response_length/mean'")
    assert length["mean"].tolist() == [410, 620, 390, 730] and not length["bold"].any()  # no direction


def test_factorial_margins(report):
    (f,) = report.factorials
    assert (f.metric, f.row_factors, f.col_factors, f.full) == ("val/acc", ["algo"], ["length"], True)
    t = f.table
    assert t.loc["grpo", "16k"] == approx(0.32) and t.loc["grpo", "24k"] == approx(0.37)
    assert t.loc["ppo", "16k"] == approx(0.42) and t.loc["ppo", "24k"] == approx(0.38)
    assert t.loc["grpo", "mean"] == approx(0.345) and t.loc["ppo", "mean"] == approx(0.40)
    assert t.loc["mean", "16k"] == approx(0.37) and t.loc["mean", "24k"] == approx(0.375)
    assert t.loc["mean", "mean"] == approx(0.3725)
    assert f.counts.loc["ppo", "24k"] == 2


def test_rendered_markdown_latex_html(report):
    md = (report.out_dir / "report.md").read_text()
    assert "| algo | length | n | val acc ↑ | Δ | val gsm8k acc ↑ | Δ | length | Δ | truncation ↓ | Δ | wall time (s) ↓ | Δ |" in md
    assert "| grpo | 16k | 2 (+1 superseded) | 0.320 [0.300, 0.340] | baseline |" in md
    # n.s. = Holm-adjusted Welch p ≥ 0.05, followed by this comparison's own MDE (stats.comparison_mde): its Welch
    # SE from its two rows only, / c4(2) = 0.886227 (2 + 2 seeds: ν = 2), × Welch's factor at 2 + 2 seeds and the
    # family's α/m: val acc has m = 2 comparisons (ppo vs grpo at 16k and at 24k) → α = 0.025, factor 19.038;
    # val gsm8k acc has m = 1 (grpo 24k has one value: no test) → α = 0.05, factor 10.427.
    #   val acc   ppo/16k {0.40, 0.44} vs grpo/16k {0.30, 0.34}: SE = √(0.0008/2 + 0.0008/2) = 0.028284
    #             → 0.028284 / 0.886227 · 19.038 = 0.608 (the old MDE pooled the 4 rows' SD: 0.313)
    #   gsm8k     {0.55, 0.65} vs {0.5, 0.6}: SE = √(0.005/2 + 0.005/2) = 0.070711 → · 10.427 / 0.886 = 0.832
    #   length    {380, 400} vs {400, 420}: SE = √(200/2 + 200/2) = 14.142 → 304
    #   truncation {0.12, 0.14} vs {0.20, 0.10}: SE = √(0.0002/2 + 0.005/2) = 0.050990 → 1.095
    #   wall time {4000, 4000} vs {3600, 3800}: SE = √(0 + 20000/2) = 100 → 2148
    #   ppo/24k val acc {0.35, 0.41} vs {0.36, 0.38}: SE = √(0.0018/2 + 0.0002/2) = 0.031623 → 0.679
    # Each MDE is above its CI half-width (the floor), e.g. val acc: bootstrap CI [+0.060, +0.140], half 0.04.
    assert ("| ppo | 16k | 2 | 0.420 [0.400, 0.440] | +0.100 n.s. (MDE 0.608) | 0.600 [0.550, 0.650] | "
            "+0.050 n.s. (MDE 0.832) | 390 [380, 400] | -20 n.s. (MDE 304) | 0.130 [0.120, 0.140] | "
            "-0.020 n.s. (MDE 1.095) | 4000 [4000, 4000] | +300 n.s. (MDE 2148) |") in md
    assert ("| ppo | 24k | 2 (+1 failed, 1 killed, 1 running) | 0.380 [0.350, 0.410] | +0.010 n.s. (MDE 0.679) | "
            "0.850 [0.800, 0.900] | +0.150 |") in md
    assert "| grpo | 24k | 2 | 0.370 [0.360, 0.380] | baseline | 0.700 (n=1) | baseline |" in md
    assert "| grpo | 0.320 | 0.370 | **0.345** |" in md and "| **mean** | **0.370** | **0.375** |" in md
    # the power table: SD pooled over the 4 rows √((0.0008 + 0.0002 + 0.0008 + 0.0018) / 4) = 0.030 (4 df),
    # / c4(4) = 0.939986 → 0.031915; MDE at 2 + 2 seeds = 0.031915 · √(1/2 + 1/2) · 10.427 = 0.333 at α = 0.05,
    # · 19.038 = 0.608 at α/m = 0.025 (m = 2)
    assert "| val acc | 0.030 (df 4) | 2 | 0.333 | 0.608 (m=2) | — | — |" in md
    assert "## Definitions" in md and "**adjusted p**: Holm" in md
    tex = (report.out_dir / "table.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "0.420 [0.400, 0.440]" in tex and "+0.010 n.s. (MDE 0.679)" in tex and "val acc $\\uparrow$" in tex
    assert "holm-adjusted p" in tex and "\\item \\textbf{MDE}" in tex
    html = (report.out_dir / "report.html").read_text()
    assert '<td title="Δ vs algo=grpo, length=16k: CI [+0.060, +0.140]; p=0.072, adjusted 0.14; d=3.54; MDE at α=0.025 (m=2)" class="ns">' in html
    assert 'src="data:image/png;base64,' in html and 'src="http' not in html and "<link" not in html
    csv = pd.read_csv(report.out_dir / "table.csv")
    base = csv[csv["label"] == "base model (step 0)"]  # the values every run logged at step 0 (not the summary)
    assert base["metric"].tolist() == ["val/acc", "val/gsm8k/acc", "response_length/mean", "response_length/clip_ratio"]
    assert base["mean"].tolist() == pytest.approx([0.1, 0.1, 300, 0.5])
    assert "| base model (step 0) |" in md
    assert len(csv) == 4 * 5 + 4 and {"mean", "lo", "hi", "delta", "dlo", "dhi", "p", "p_adj", "d", "mde", "significant",
                                   "bold"} <= set(csv.columns)


def test_files_and_artifacts_on_parent(report, sweep):
    names = {p.name for p in report.out_dir.iterdir()}
    assert {"report.md", "report.html", "table.tex", "table.csv", "curve_val_acc.png", "curve_val_acc.svg",
            "curve_critic_score_mean.png", "curve_response_length_mean.svg"} <= names
    assert report.artifact_run_id == sweep["parent"]
    logged = {a.path for a in sweep["client"].list_artifacts(sweep["parent"], "report")}
    assert {"report/report.html", "report/report.md", "report/table.tex", "report/curve_val_acc.png"} <= logged
    assert (report.out_dir / "curve_val_acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (report.out_dir / "curve_val_acc.svg").read_bytes()[:2000]


def test_many_variants_curves_have_lines_without_bands(report, sweep, tmp_path):
    from rlkit.report import plots

    sw = report.sweep
    runs = sw.runs.assign(in_means=tables_in_means(sw))
    hist = collect.load_history(sweep["uri"], runs["run_id"].tolist(), ["val/acc"])
    variants = sorted(runs["variant"].unique())
    color_by = dict(zip(runs["variant"], "algo=" + runs["algo"], strict=True))
    (fig,) = plots.curves(hist, runs, ["val/acc"], variants, tmp_path, max_legend=2, color_by=color_by,
                          resamples=50)
    assert fig.png.stat().st_size > 1000 and b"algo=ppo" in fig.svg.read_bytes()


def tables_in_means(sw):
    from rlkit.report import tables

    return tables.in_means(sw.runs)


def test_step_option_and_baseline_and_rows(sweep, tmp_path):
    spec = ReportSpec.from_dict({"step": 4, "metrics": ["val/acc", "summary/wall_time_s"], "curves": [],
                                 "baseline": {"algo": "ppo", "length": "24k"}})
    r = build_report(sweep["uri"], "abl", spec, tmp_path, log_artifacts=False)
    acc = r.ablation.cells.query("metric == 'val/acc'")
    assert acc["mean"].tolist() == [approx(0.1)] * 4  # everything read at step 0 (last at or before 4)
    wall = r.ablation.cells.query("metric == 'summary/wall_time_s'").set_index("label")
    assert wall.loc["algo=grpo, length=16k", "delta"] == 3700 - 6200  # summary read as last; full baseline
    assert r.ablation.rows["baseline"].unique().tolist() == ["algo=ppo, length=24k"]
    pooled = build_report(sweep["uri"], "abl", ReportSpec.from_dict({"rows": ["algo"], "curves": []}),
                          tmp_path, log_artifacts=False)
    c = pooled.ablation.cells.query("metric == 'val/acc'").set_index("label")
    assert c.loc["algo=grpo", "mean"] == approx((0.30 + 0.34 + 0.36 + 0.38) / 4) and c.loc["algo=grpo", "n"] == 4
    with pytest.raises(ValueError, match="matches no row"):
        build_report(sweep["uri"], "abl", ReportSpec.from_dict({"baseline": {"algo": "dapo"}, "curves": []}),
                     tmp_path, log_artifacts=False)


def test_cli(sweep, tmp_path, capsys):
    sweep_file = tmp_path / "abl.yaml"
    sweep_file.write_text("hydra:\n  sweeper:\n    params:\n      algo: grpo,ppo\n"
                          "report:\n  metrics: [val/acc]\n  curves: [val/acc]\n  baseline: {algo: grpo}\n"
                          "  diagnose: {truncation_max: 0.25}\n")
    rc = main(["abl", "--tracking-uri", sweep["uri"], "--out", str(tmp_path / "out"), "--sweep-file",
               str(sweep_file), "--step", "best", "--no-log-artifacts"])
    out = capsys.readouterr().out
    assert rc == 0 and f"wrote {tmp_path / 'out' / 'abl'}/" in out
    md = (tmp_path / "out" / "abl" / "report.md").read_text()
    # best = step 5 = final + 0.05; default Student-t interval: 0.47 ± 12.706 · 0.0283 / √2
    assert "| ppo | 16k | 2 | 0.470 [0.216, 0.724] | +0.100 n.s. (MDE 0.608) |" in md  # (SEs as at last)
    assert "| truncation_max | 0.25 |" in md
    rc = main(["nope", "--tracking-uri", sweep["uri"], "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "no sweep named 'nope'" in err and "abl (sweep_id=s2)" in err
    rc = main(["abl", "--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"])
    assert rc == 2 and "no MLflow store at" in capsys.readouterr().err and not (tmp_path / "missing.db").exists()


def test_bad_report_block_is_rejected():
    with pytest.raises(ValueError, match="unknown report key"):
        ReportSpec.from_dict({"metric": ["val/acc"]})
    with pytest.raises(ValueError, match="unknown diagnose threshold"):
        ReportSpec.from_dict({"diagnose": {"entropy_fraction": 0.2}})
    with pytest.raises(ValueError, match="step must be"):
        ReportSpec.from_dict({"step": "final"})
    s = ReportSpec.from_dict({"baseline": "algo=grpo, length=16k", "step": "120", "diagnose": {"patience": 5}})
    assert (s.baseline, s.step, s.diagnose.patience, s.diagnose.kl_max) == ({"algo": "grpo", "length": "16k"}, 120, 5, 1.0)
    assert np.isclose(s.level, 0.95)


def test_defaults_file_matches_code():
    from rlkit.report.spec import DEFAULTS_FILE, load_defaults

    assert DEFAULTS_FILE.is_file()
    assert ReportSpec.from_dict(load_defaults()) == ReportSpec()


def test_correction_and_family_from_the_report_block(sweep, tmp_path):
    from rlkit.report import stats

    base = {"baseline": {"algo": "grpo"}, "curves": [], "per_problem": False}
    col = build_report(sweep["uri"], "abl", ReportSpec.from_dict(base), tmp_path, log_artifacts=False).ablation.cells
    tab = build_report(sweep["uri"], "abl", ReportSpec.from_dict({**base, "correction": "bh", "family": "table"}),
                       tmp_path, log_artifacts=False).ablation.cells
    p = tab["p"].to_numpy()
    assert np.allclose(tab["p_adj"].to_numpy(), stats.bh(p), equal_nan=True)  # one family: the whole table
    acc = col[col["metric"] == "val/acc"]
    assert np.allclose(acc["p_adj"].to_numpy(), stats.holm(acc["p"].to_numpy()), equal_nan=True)  # per column
    with pytest.raises(ValueError, match="correction must be one of"):
        ReportSpec.from_dict({"correction": "bonferroni"})

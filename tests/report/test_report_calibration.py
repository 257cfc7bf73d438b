"""A fast, fixed-seed version of bench/calibration.py (the same code: synthetic sweeps in a real SQLite
MLflow store with per-problem parquet artifacts, analysed by `build.analyze`), fewer repetitions and
bounds wide enough for them. The full run's numbers are in rlkit/report/README.md."""
from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "calibration.py"


def load():
    spec = importlib.util.spec_from_file_location("rlkit_bench_calibration", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_calibration_small(tmp_path):
    cal = load()
    res = cal.calibrate(null=30, planted=15, arms=4, seeds=3, problems=100, k=4, seed=1,
                        root=str(tmp_path / "calib"), verbose=False)
    assert res["null_comparisons"] == 90 and res["planted_comparisons"] == 45
    # 90 null comparisons: a rate of 0.05 has binomial SD 0.023, so [0, 0.13] is ±3.5 SD
    assert res["fpr_paired"] <= 0.13 and res["fpr_run_welch"] <= 0.13
    assert res["fwer_paired_holm"] <= 0.2 and res["fwer_run_holm"] <= 0.2  # 30 families
    # what the report does not use, and why: a sign-flip over problems ignores the seed effect
    assert res["fpr_signflip_problems"] > 0.2
    # planted Δ = the reported MDE (80% power): 45 comparisons, SD 0.06
    assert 0.55 <= res["detect_paired"] <= 0.98
    assert 0.0 < res["mde_paired"] < 0.3


def test_negative_and_positive_controls(store):
    """Synthetic controls (the tiny world's control study needs per-problem results from training runs,
    issue 13): arms from one distribution come out n.s. in every table; a planted +0.15 accuracy is
    significant in every table."""
    import numpy as np

    from rlkit.report import fake
    from rlkit.report.build import analyze
    from rlkit.report.spec import ReportSpec

    uri, client, d = store
    world = fake.World(problems=200, k=4)
    rng = np.random.default_rng(7)
    spec = ReportSpec.from_dict({"baseline": {"algo": "a0"}, "curves": [], "paired_resamples": 500})
    fake.world_sweep(client, "negative", world, rng, arms=4, seeds=3, artifact_location=str(d / "neg"))
    shift = world.shift_for(0.15)
    fake.world_sweep(client, "positive", world, rng, arms=3, seeds=3, shifts=[0.0, shift, shift],
                     artifact_location=str(d / "pos"))
    neg = analyze(uri, "negative", spec)
    pos = analyze(uri, "positive", spec)
    for r, want in ((neg, False), (pos, True)):
        cells = r.ablation.cells[~r.ablation.cells["is_baseline"]]
        assert cells["significant"].tolist() == [want] * len(cells)
        pr = r.paired[r.paired["p"].notna()]
        assert len(pr) == 2 * (len(r.ablation.rows) - 1)  # acc and pass@4 per variant
        assert pr.loc[pr["metric"] == "acc", "significant"].tolist() == [want] * (len(r.ablation.rows) - 1)
    assert not neg.paired["significant"].fillna(False).any()

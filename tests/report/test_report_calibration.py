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

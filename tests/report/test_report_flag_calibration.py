"""bench/flag_calibration.py end to end through a real SQLite store: 20 no-effect runs in two sweeps, two of
which show a format-reward rise with flat accuracy (+0.27 and +0.45): rates over the grid of format_rise worked
out by hand, the proposed threshold, the committed-file format, and the report printing the rate beside the
flag at matching thresholds only."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rlkit.report import diagnose, fake
from rlkit.report.build import build_report
from rlkit.report.spec import ReportSpec

BENCH = Path(__file__).resolve().parents[2] / "bench" / "flag_calibration.py"
T = 30
t = np.arange(T)


def load():
    spec = importlib.util.spec_from_file_location("rlkit_bench_flag_calibration", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_series(rise: float) -> dict:
    return {"actor/entropy": 1.0 - 0.005 * t, "rollout/distinct_frac": np.full(T, 0.9),
            "response_length/mean": 300.0 + 5 * t, "response_length/clip_ratio": np.full(T, 0.02),
            "rewards/format/mean": np.where(t < 10, 0.5, 0.5 + rise),  # start 0.5 (mean of the first 3)
            "groups/all_correct_frac": np.full(T, 0.1), "actor/kl_loss": np.full(T, 0.001),
            "critic/score/mean": -1.0 + 0.05 * t, "val/acc": np.full(T, 0.2)}  # accuracy flat


@pytest.fixture(scope="module")
def aa(store):
    uri, client, d = store
    rises = {"aa1": [0.27] + [0.0] * 9, "aa2": [0.45] + [0.0] * 9}
    for name, rs in rises.items():
        exp = fake.experiment(client, name, artifact_location=str(d / name))
        parent = fake.parent_run(client, exp, name, name)
        for seed, rise in enumerate(rs):
            fake.child_run(client, exp, parent_id=parent, sweep=name, sweep_id=name, tags={"algo": "grpo"},
                           seed=seed, series={k: list(v) for k, v in run_series(rise).items()})
        client.set_terminated(parent)
    return uri, d


def test_rates_over_the_grid_and_proposal(aa, tmp_path, capsys):
    uri, _ = aa
    cal = load()
    out = tmp_path / "rates.json"
    assert cal.main(["aa1", "aa2", "--tracking-uri", uri, "--write", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["runs"] == 20 and doc["sweeps"] == {"aa1": 10, "aa2": 10}
    fh = doc["flags"]["format_hacking"]
    # format ≥ 0.5 + format_rise for ≥ 3 points: the +0.27 run fires up to 0.25, the +0.45 run up to 0.4
    assert (fh["runs"], fh["fired"], fh["rate"]) == (20, 1, 0.05)  # at conf/report/default.yaml's 0.3 (at 0.2: 2/20)
    grid = {g["format_rise"]: g["fired"] for g in fh["grid"]}
    assert grid == {0.1: 2, 0.15: 2, 0.2: 2, 0.25: 2, 0.3: 1, 0.4: 1, 0.5: 0, 0.6: 0, 0.8: 0}
    assert fh["proposed"] == {"format_rise": 0.3} and fh["proposed_rate"] == 0.05  # in force and ≤ 1/20: kept
    tr = doc["flags"]["truncation"]
    assert (tr["fired"], tr["runs"], tr["proposed"]) == (0, 20, {"truncation_max": 0.2})  # in force: kept
    assert doc["flags"]["stale_weights"]["runs"] == 0 and doc["flags"]["stale_weights"]["rate"] is None
    assert "format_hacking" in capsys.readouterr().out
    assert cal.main(["nope", "--tracking-uri", uri]) == 2 and "no sweep named 'nope'" in capsys.readouterr().err


def test_report_prints_the_rate_at_matching_thresholds(aa, tmp_path, monkeypatch):
    uri, d = aa
    cal = load()
    out = tmp_path / "rates.json"
    cal.main(["aa1", "aa2", "--tracking-uri", uri, "--write", str(out)])
    rates = diagnose.load_rates(out)
    th = diagnose.Thresholds()  # format_rise 0.3, the calibrated default
    assert diagnose.false_alarms("format_hacking", th, rates)["fired"] == 1
    assert diagnose.false_alarms("format_hacking", replace(th, format_rise=0.2), rates)["fired"] == 2  # a grid point
    assert diagnose.false_alarms("format_hacking", replace(th, acc_flat=0.05), rates) is None  # another rule
    monkeypatch.setattr(diagnose, "RATES_FILE", out)
    r = build_report(uri, "aa1", ReportSpec.from_dict({"curves": [], "per_problem": False}), d / "rep",
                     log_artifacts=False)
    md = (r.out_dir / "report.md").read_text()
    assert "| false alarms on no-effect runs | 0/20 | 0/20 | 1/20 | 0/20 | 0/20 | 0/20 | 0/20 | not measured |" in md
    assert "measured by bench/flag_calibration.py on aa1, aa2" in md
    r = build_report(uri, "aa1", ReportSpec.from_dict({"curves": [], "per_problem": False,
                                                       "diagnose": {"acc_flat": 0.05}}), d / "rep2",
                     log_artifacts=False)
    md = (r.out_dir / "report.md").read_text()
    assert "| 0/20 | 0/20 | not measured at these thresholds | 0/20 |" in md
    monkeypatch.setattr(diagnose, "RATES_FILE", tmp_path / "absent.json")
    r = build_report(uri, "aa1", ReportSpec.from_dict({"curves": [], "per_problem": False}), d / "rep3",
                     log_artifacts=False)
    assert "false alarms: not measured" in (r.out_dir / "report.md").read_text()

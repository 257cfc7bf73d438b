"""Hostile names (a run's group choice, the sweep name, a metric) are rendered inert in every output:
report.md carries no raw HTML (a renderer that passes HTML through would run it), table.tex no raw
TeX or line break, and the CSVs no cell a spreadsheet would evaluate as a formula."""
from __future__ import annotations

import csv

import pytest

from rlkit.report import fake
from rlkit.report.build import build_report
from rlkit.report.spec import ReportSpec
from rlkit.report.tables import csv_safe, md_escape, tex_escape

EVIL = '<script>alert(1)</script>'
ARMS = {"grpo": 0.5, EVIL: 0.6, "=HYPERLINK(\"http://x\")": 0.55, "a|b\n# heading": 0.52}


@pytest.fixture(scope="module")
def report(store):
    uri, client, d = store
    name = "evil<img src=x onerror=alert(2)>\\input{/etc/passwd}"
    exp = fake.experiment(client, name, artifact_location=str(d / "artifacts"))
    parent = fake.parent_run(client, exp, name, "s1")
    for algo, acc in ARMS.items():
        for seed in range(2):
            fake.child_run(client, exp, parent_id=parent, sweep=name, sweep_id="s1", tags={"algo": algo}, seed=seed,
                           series={"val/acc": [0.3, acc + 0.01 * seed]})
    spec = ReportSpec.from_dict({"baseline": {"algo": "grpo"}, "metrics": ["val/acc"]})
    return build_report(uri, name, spec, d / "reports")


def test_markdown_has_no_raw_html(report):
    md = (report.out_dir / "report.md").read_text()
    assert "<script" not in md and "<img" not in md
    assert md.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2  # the arm is there, as text
    assert "\n# heading" not in md  # a newline in a name cannot start a Markdown block
    html = (report.out_dir / "report.html").read_text()
    assert "<script" not in html


def test_tex_and_csv_are_inert(report):
    tex = (report.out_dir / "table.tex").read_text()
    assert "\\input{" not in tex and "<script" not in tex
    assert tex.splitlines()[0].startswith("% sweep ")  # the name stays inside its comment line
    assert "\\textbackslash{}input\\{/etc/passwd\\}" in tex.splitlines()[0]
    rows = list(csv.DictReader((report.out_dir / "table.csv").open()))
    labels = {r["label"] for r in rows}
    assert not any(lbl.startswith(("=", "+", "-", "@")) for lbl in labels), labels
    assert any(lbl.startswith("'=HYPERLINK") or "=HYPERLINK" in lbl for lbl in labels)


def test_escapers_by_hand():
    assert md_escape("a<b>&c|d\ne") == "a&lt;b&gt;&amp;c\\|d e"
    assert tex_escape("x\n\\input{y}<") == "x \\textbackslash{}input\\{y\\}\\textless{}"
    import pandas as pd

    df = csv_safe(pd.DataFrame({"s": ["=1+1", "-2", "ok", "@x"], "v": [-1.0, 2.0, 3.0, 4.0]}))
    assert df["s"].tolist() == ["'=1+1", "'-2", "ok", "'@x"] and df["v"].tolist() == [-1.0, 2.0, 3.0, 4.0]

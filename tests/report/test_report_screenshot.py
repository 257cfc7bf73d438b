"""report.html opened in headless Chromium (Debian's `chromium`): the screenshot shows the ablation table
(its header colour #dde6f3) above at least one figure (saturated curve pixels, some exactly tab:blue)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from rlkit.report import fake
from rlkit.report.build import build_report
from rlkit.report.spec import ReportSpec

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")

HEADER_RGB = (0xDD, 0xE6, 0xF3)  # thead th background in build.CSS
TAB_BLUE = (31, 119, 180)  # first line colour of matplotlib's tab10


def pixels(img: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """(row, col) of the pixels of exactly this colour."""
    return np.argwhere((np.abs(img[:, :, :3].astype(int) - np.array(rgb)) <= 1).all(axis=2))


def test_html_report_renders_table_and_figure(store, tmp_path):
    import matplotlib.image

    uri, client, d = store
    exp = fake.experiment(client, "shot", artifact_location=str(d / "art"))
    parent = fake.parent_run(client, exp, "shot", "x1")
    steps = np.arange(30)
    for algo, lift in (("grpo", 0.0), ("ppo", 0.1)):
        for seed in range(2):
            acc = 0.2 + lift + 0.01 * steps + 0.01 * seed
            fake.child_run(client, exp, parent_id=parent, sweep="shot", sweep_id="x1", tags={"algo": algo},
                           seed=seed, series={"val/acc": acc, "response_length/mean": 300 + 5 * steps})
    r = build_report(uri, "shot", ReportSpec.from_dict({"curves": ["val/acc"], "curve_resamples": 200}),
                     tmp_path / "reports", log_artifacts=False)
    html = r.out_dir / "report.html"
    shot = tmp_path / "shot.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chrome-profile'}", f"--screenshot={shot}", "--window-size=1400,2000",
           html.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    img = (matplotlib.image.imread(shot) * 255).round().astype(np.uint8)
    assert img.shape[:2] == (2000, 1400)
    nonwhite = (img[:, :, :3] < 250).any(axis=2)
    assert nonwhite[:600].mean() > 0.01  # the top of the page is not blank
    header = pixels(img, HEADER_RGB)
    assert len(header) > 500, "ablation table header not rendered"
    # the first header band (the ablation table's; other tables come further down) is near the top,
    # and the table body (text pixels) is right below it
    rows = np.unique(header[:, 0])
    gaps = np.flatnonzero(np.diff(rows) > 1)
    band_end = rows[gaps[0]] if len(gaps) else rows[-1]
    assert rows[0] < 600 and band_end - rows[0] < 60
    body = nonwhite[band_end + 2: band_end + 40, 20:800]
    assert body.mean() > 0.02, "ablation table body looks empty"
    # figure: saturated pixels (the tab10 curve lines; text, tables and the grid are grey or pale)
    rgb = img[:, :, :3].astype(int)
    colourful = np.argwhere(rgb.max(axis=2) - rgb.min(axis=2) > 80)
    assert len(colourful) > 500, "no figure rendered"
    assert np.median(colourful[:, 0]) > band_end, "the figure comes after the table"
    assert len(pixels(img, TAB_BLUE)) > 20  # the first variant's line colour, unblended

"""The demo pipeline end to end: packaged bundles, served over HTTP, overlays written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from quadratseg_handlers.local.demo import STAGES, run_demo, summary


@pytest.mark.slow
def test_demo_runs_every_stage_over_http_and_writes_overlays(tmp_path):
    lines: list[str] = []
    reports = run_demo(tmp_path / "out", size=512, seed=1, log=lines.append)
    assert [r.function for r in reports] == [STAGES[0], "warp_quadrat (local)", *STAGES[1:]]
    assert all(r.milliseconds > 0 for r in reports)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [
        "00-photo.jpg",
        "01-corners.png",
        "02-warped.png",
        "03-grid.png",
        "04-grid-removed.png",
        "05-corals.png",
        "bundles",
    ]
    assert sorted(p.name for p in (tmp_path / "out" / "bundles").iterdir()) == sorted(
        f"{name}.zip" for name in STAGES
    )
    warped = np.asarray(Image.open(tmp_path / "out" / "02-warped.png"))
    clean = np.asarray(Image.open(tmp_path / "out" / "04-grid-removed.png"))
    assert warped.shape == clean.shape == (512, 512, 3)
    changed = (warped != clean).any(axis=2).mean()
    assert 0.05 < changed < 0.6  # the string is painted out, the rest left alone
    table = summary(reports)
    assert "pth-lama" in table and "random weights" in table
    assert any(line.startswith("serving 4 functions") for line in lines)

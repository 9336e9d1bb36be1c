"""The demo pipeline end to end: packaged bundles, served over HTTP, every stage scored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from quadratseg_handlers.demo.pipeline import (
    CORNERS,
    POINT_MARGIN,
    STAGES,
    Pipeline,
    PipelineRun,
    run_demo,
    served_functions,
    summary,
)
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.tinymodels import tiny_model_files
from quadratseg_handlers.demo.training import MODELS, TEST_SEEDS, WARP_MARGIN

pytestmark = pytest.mark.slow


def test_the_demo_runs_every_stage_on_the_models_answers(tmp_path, committed_models):
    lines: list[str] = []
    run = run_demo(tmp_path / "out", size=(1024, 768), models=committed_models, log=lines.append)
    assert not run.failure
    assert [r.function for r in run.reports] == [STAGES[0], "warp_quadrat (local)", *STAGES[1:]]
    assert all(report.result for report in run.reports), summary(run.reports)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [
        "00-photo.jpg",
        "01-corners.png",
        "02-warped.png",
        "03-grid.png",
        "04-grid-removed.png",
        "05-corals.png",
        "06-corals-on-photo.png",
        "bundles",
    ]
    assert sorted(p.name for p in (tmp_path / "out" / "bundles").iterdir()) == sorted(
        f"{name}.zip" for name in STAGES
    )
    warped = np.asarray(Image.open(tmp_path / "out" / "02-warped.png"))
    clean = np.asarray(Image.open(tmp_path / "out" / "04-grid-removed.png"))
    assert warped.shape == clean.shape == (1024, 1024, 3)
    table = summary(run.reports)
    assert "points at their index" in table and "of the string repainted" in table
    assert any(line.startswith("serving 4 functions") for line in lines)


def test_a_stage_that_fails_stops_the_pipeline_without_falling_back(tmp_path):
    corners = MODELS["gridcorners"]
    untrained = tiny_model_files(corners.function, tmp_path)["weights"]
    (tmp_path / "work").mkdir()
    with served_functions(
        tmp_path / "work", tmp_path / "bundles", {corners.name: untrained}, stages=(CORNERS,)
    ) as (urls, _labels):
        run = Pipeline(urls).run(quadrat_image(512, TEST_SEEDS))
    assert run.failure
    assert not run.reports[-1].passed and run.reports[-1].result.startswith("FAILED")
    assert run.clean is None and not run.coral_shapes


def test_grid_removal_line_is_the_string_plus_the_point_margin_each_side():
    scene = quadrat_image(640, TEST_SEEDS + 2)
    run = PipelineRun(scene, warped=np.zeros((1024, 1024, 3), np.uint8))
    string = scene.string_width / scene.side * 1024 * (1 - 2 * WARP_MARGIN)
    assert Pipeline({}).string_width(run) == round(string + 2 * POINT_MARGIN)
    assert Pipeline({}, line_width=9).string_width(run) == 9

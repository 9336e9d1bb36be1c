"""The demo pipeline end to end: packaged bundles, served over HTTP, every stage scored."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from quadratseg_handlers.cli.main import main
from quadratseg_handlers.demo.pipeline import (
    CORNERS,
    LAMA,
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
from quadratseg_handlers.demo.training import MODELS, TEST_SEEDS
from quadratseg_handlers.demo.warped import WARP_MARGIN

pytestmark = pytest.mark.slow


PICTURES = (
    "00-photo.jpg",
    "01-corners.png",
    "02-warped.png",
    "03-grid.png",
    "04-grid-removed.png",
    "05-corals.png",
    "06-corals-on-photo.png",
)
"""The pictures the demo writes, one per stage, in name order."""


def test_the_demo_runs_every_stage_on_the_models_answers(tmp_path, committed_models):
    lines: list[str] = []
    run = run_demo(tmp_path / "out", size=(1024, 768), models=committed_models, log=lines.append)
    assert not run.failure
    assert [r.function for r in run.reports] == [
        CORNERS,
        "warp_quadrat (local)",
        STAGES[1],
        "corners_checked_by_grid (local)",
        f"{LAMA} (OpenCV)",
        STAGES[3],
    ]
    assert all(report.result for report in run.reports), summary(run.reports)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [*PICTURES, "answers", "bundles"]
    answers = tmp_path / "out" / "answers"
    assert sorted(p.name for p in answers.iterdir()) == [
        "01-corners.json",
        "03-grid.json",
        "05-corals.json",
        "06-corals-on-photo.json",
    ]
    assert json.loads((answers / "05-corals.json").read_text()) == run.coral_shapes
    assert sorted(p.name for p in (tmp_path / "out" / "bundles").iterdir()) == sorted(
        f"{name}.zip" for name in STAGES
    )
    warped = np.asarray(Image.open(tmp_path / "out" / "02-warped.png"))
    clean = np.asarray(Image.open(tmp_path / "out" / "04-grid-removed.png"))
    assert warped.shape == clean.shape == (1024, 1024, 3)
    table = summary(run.reports)
    assert "points at their index" in table and "string still visible: " in table
    assert any(line.startswith("serving 4 functions") for line in lines)
    for model in MODELS.values():  # the settings each model is served with, printed
        assert f"settings {model.function:<22} {' '.join(model.serve_env)}" in lines
    assert f"settings {LAMA:<22} INPAINT_BACKEND=opencv" in lines
    assert not any("served with the demo models' settings" in line for line in lines)


def test_the_demo_on_a_users_photo_answers_without_scores(tmp_path, committed_models, capsys):
    """A drawn photo written to a file, given as --photo: every stage answers and draws, and
    the output says plainly that nothing was scored. The models come from a lab's folder (a
    copy of the demo's), so the demo says which of its settings it serves them with."""
    photo = tmp_path / "my quadrat.jpg"
    Image.fromarray(quadrat_image((1024, 768), TEST_SEEDS + 5).image).save(photo, quality=90)
    out = tmp_path / "out"
    lab = shutil.copytree(committed_models, tmp_path / "lab-models")
    code = main(["demo", "--photo", str(photo), "--output", str(out), "--models", str(lab)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert "no truth for this photo: not scored" in printed
    table = printed.split("\n\n")[0]
    rows = table.splitlines()[2:]
    assert [row.split()[0] + " " + row.split()[1] for row in rows] == [
        "1 corners",
        "2 warp",
        "3 grid",
        "3b corners",
        "4 grid",
        "5 corals",
    ]
    assert "below the bar" not in printed
    assert not [row for row in rows if "%" in row and not row.startswith("2 warp")]
    assert "settings pth-yolo-gridcorners" in err
    assert f"the weights in {lab} are served with the demo models' settings below" in err
    written = sorted(p.name for p in out.iterdir())
    assert written[:7] == list(PICTURES)
    corners = json.loads((out / "answers" / "01-corners.json").read_text())
    assert [shape["type"] for shape in corners].count("skeleton") == 1


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
    run = PipelineRun(scene.image, scene, warped=np.zeros((1024, 1024, 3), np.uint8))
    string = scene.string_width / scene.side * 1024 * (1 - 2 * WARP_MARGIN)
    assert Pipeline({}).string_width(run) == round(string + 2 * POINT_MARGIN)
    assert Pipeline({}, line_width=9).string_width(run) == 9
    photo = PipelineRun(scene.image, warped=np.zeros((1024, 1024, 3), np.uint8))
    assert Pipeline({}).string_width(photo) is None  # the function's own GRID_LINE_WIDTH

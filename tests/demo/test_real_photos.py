"""The demo models on real photos: frames drawn over real reef (committed MIT patches from
held-out source photos), and real quadrat photos with a real frame, hand-annotated.

Each photo goes through the pipeline with the demo's serving settings, as `make demo` runs it.
The real quadrat photos (CC BY-NC-SA) are never committed: they are read from
../shared/data/quadrats next to the checkout, and their test skips where that is absent;
their corners (our own measurement) are in tests/data/real-quadrats/corners.json.

The bars below are what the committed models reach today (issue 28), so that a retrained model
that does worse fails; the issue's goals are in docs/demo.md.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from reef_for_tests import TEXTURES, framed_reef, reef_patches

from quadratseg_handlers.core.request import load_image
from quadratseg_handlers.cvat.shapes import skeleton_points
from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.datasets import random_photo_size_wh
from quadratseg_handlers.demo.pipeline import VISIBLE_BAR, Pipeline, PipelineRun, served_functions
from quadratseg_handlers.demo.reef import reef_quadrat
from quadratseg_handlers.demo.reef_photos import ReefTextures
from quadratseg_handlers.demo.training import verified_models
from quadratseg_handlers.ops.quadrat import quadrat_side

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ANNOTATIONS = ROOT / "tests" / "data" / "real-quadrats" / "corners.json"
REAL_QUADRATS = ROOT.parent / "shared" / "data" / "quadrats"

REAL_CORNER_TOLERANCE = 0.03
"""A corner of a real photo is right within this share of the side (hand annotation, +-3 px)."""

REAL_PHOTOS_RIGHT = 0
"""Real quadrat photos with all 4 corners within REAL_CORNER_TOLERANCE, of 2: what the committed
models reach (the frame found on both, worst corner 5.0 % and 4.6 % of the side; before the
reef training no quadrat was found at all). The issue's goal: 6 of 7."""

REAL_WORST_CORNER = 0.06
"""Every real photo's quadrat is found, its worst corner within this share of the side: the
committed corner model's level (5.0 % and 4.6 %; 4.6 % and 9.3 % before its run with more
painted and taped frames), so that a regression fails."""

REAL_PHOTOS_WITHOUT_GRID = 1
"""Real photos (no string) on which gridpose, run on the quadrat warped from the hand-annotated
corners, answers no grid: one of two, before and after the reef training (warped from the corners
the model finds, it answers no grid on either).
The issue's goal: no grid, or a low-confidence one, on every photo without a string."""

REEF_SEEDS = range(6)
"""Frames drawn over real reef, scored through the whole pipeline."""

REEF_GRID_FROM_TRUE_CORNERS = 0.95
"""Share of the grid points at their index within 1 % of the side on those photos, warped from
the true corners (apart from the corner model): 97.0 % measured (89.7 % to 100 % a photo)."""

REEF_CORNERS_RIGHT = 6
"""Of those, photos with all 4 corners within 2 % of the side: 6 of 6 with the committed models
(0.08 % to 0.49 % of the side; seed 5 at 2.9 % as the detector answers it, 0.3 % once the grid
checked it); before the reef training 2 (seeds 1 and 3, the others 12 % to 100 % off, or no
quadrat). The issue's goal: 90 %."""

CHECKED_BY_THE_GRID = (900_009_121, 900_009_141)
"""Frames drawn by the reef world over the committed patches whose corners the detector places
off (4.7 % and 5.4 % of the side) and the grid found inside them puts back (0.6 % and 0.3 %)."""


@pytest.fixture(scope="module")
def served(tmp_path_factory, committed_models):
    work = tmp_path_factory.mktemp("real")
    found = verified_models(committed_models)
    with served_functions(work, work / "bundles", found, log=lambda _: None) as (urls, _):
        yield urls


def test_the_committed_reef_patches_are_real_photos_with_their_licence():
    patches = reef_patches()
    assert len(patches) == 16 and all(patch.shape == (512, 512, 3) for patch in patches)
    assert all(patch.std() > 10 for patch in patches)  # real texture, not a flat fill
    notice = (ROOT / "tests" / "data" / "reef-textures" / "LICENSE").read_text()
    assert "MIT License" in notice and "Xinlei Shao" in notice
    readme = (ROOT / "tests" / "data" / "reef-textures" / "README.md").read_text()
    assert "XL-SHAO/CoralConditionDataset" in readme and "5e9295b69ec2" in readme


def test_frames_drawn_over_real_reef_through_the_pipeline(served):
    """Corners, grid points and grid removal scored as in the drawn world."""
    pipeline = Pipeline(served)
    runs: list[PipelineRun] = [pipeline.run(framed_reef(seed)) for seed in REEF_SEEDS]
    errors = [run.corner_error for run in runs]  # nan where no quadrat was found
    right = sum(bool(error <= accuracy.CORNER_TOLERANCE) for error in errors)
    assert right >= REEF_CORNERS_RIGHT, [round(e, 3) for e in errors]
    for run in runs:  # where the corners were right, the grid and its removal hold
        if run.corner_error <= accuracy.CORNER_TOLERANCE and run.grid is not None:
            assert run.grid_hits >= 0.9, (run.scene and run.scene.look, run.grid_hits)
            assert run.repaint is not None and run.repaint.outside_untouched
            assert run.repaint.string_visible <= VISIBLE_BAR


@pytest.mark.parametrize("seed", CHECKED_BY_THE_GRID)
def test_the_grid_puts_back_corners_the_detector_placed_off(served, seed):
    size = random_photo_size_wh(np.random.default_rng(seed), (1024, 1600))
    scene = reef_quadrat(size, seed, ReefTextures.from_folder(TEXTURES), string=True)
    run = Pipeline(served).run(scene)
    answered, checked = run.reports[0], run.reports[3]
    assert answered.stage == "1 corners" and not answered.passed, answered.result
    assert checked.stage == "3b corners" and checked.passed, checked.result
    assert checked.result.startswith("moved where the grid puts them")
    assert run.corner_error <= 0.01 and run.grid_hits >= 0.95
    [corners] = run.answers["01-corners"]
    assert np.allclose(skeleton_points(corners), run.corners, atol=0.01)


@pytest.mark.skipif(
    not REAL_QUADRATS.is_dir(),
    reason=f"the real quadrat photos (CC BY-NC-SA, never committed) are not at {REAL_QUADRATS}",
)
def test_corners_of_real_quadrat_photos_against_the_hand_annotation(served):
    annotations = json.loads(ANNOTATIONS.read_text())
    pipeline = Pipeline(served)
    worst: dict[str, float] = {}
    for name, corners in annotations.items():
        truth = np.asarray(corners, dtype=np.float64)
        run = pipeline.corners_of(load_image(REAL_QUADRATS / name))
        assert run.reports and run.reports[0].function.startswith("pth-yolo-gridcorners")
        if run.corners is None:
            assert run.failure.startswith("no quadrat found"), run.failure
            worst[name] = float("inf")
            continue
        errors = accuracy.point_errors(run.corners, truth, quadrat_side(truth))
        worst[name] = float(errors.max())
    right = sum(error <= REAL_CORNER_TOLERANCE for error in worst.values())
    assert right >= REAL_PHOTOS_RIGHT, worst
    assert max(worst.values()) <= REAL_WORST_CORNER, worst


def test_grid_over_real_reef_from_the_true_corners(served):
    """The grid model apart from the corner model: warped from the drawn corners."""
    pipeline = Pipeline(served)
    hits = []
    for seed in REEF_SEEDS:
        scene = framed_reef(seed)
        run = pipeline.run_from_corners(scene, scene.corners)
        assert not run.failure, run.failure
        hits.append(run.grid_hits)
    assert np.mean(hits) >= REEF_GRID_FROM_TRUE_CORNERS, [round(h, 3) for h in hits]


@pytest.mark.skipif(
    not REAL_QUADRATS.is_dir(),
    reason=f"the real quadrat photos (CC BY-NC-SA, never committed) are not at {REAL_QUADRATS}",
)
def test_grid_on_real_photos_without_a_string(served):
    """On the quadrat warped from the hand-annotated corners: a photo without a string should
    get no grid; the pipeline carries on either way (no grid: no removal, corals on the warp)."""
    annotations = json.loads(ANNOTATIONS.read_text())
    pipeline = Pipeline(served)
    without = 0
    for name, corners in annotations.items():
        run = pipeline.run_from_corners(load_image(REAL_QUADRATS / name), corners)
        assert not run.failure, run.failure
        assert [report.stage for report in run.reports] == [
            "2 warp",
            "3 grid points",
            "4 grid removal",
            "5 corals",
        ]
        if run.grid is None:
            without += 1
            assert run.reports[2].result == "not run: no grid"
            assert run.clean is run.warped
    assert without >= REAL_PHOTOS_WITHOUT_GRID


def test_the_measuring_script_reads_how_dark_the_bars_are():
    """bar_brightness, which sorts out the dark frames the corner model misses: the grey
    level along the frame's bars, whatever lies beside them."""
    script = measuring_script()
    scene = framed_reef(1)
    for level, dark in ((15, True), (240, False)):
        photo = scene.image.copy()
        corners = np.round(scene.corners).astype(np.int32)
        cv2.polylines(photo, [corners], isClosed=True, color=(level,) * 3, thickness=5)
        bars = script.bar_brightness(replace(scene, image=photo))
        assert bars == pytest.approx(level, abs=2)
        assert (bars < script.DARK_BARS) is dark
    rows = [
        {"bars": 30.0, "corner_error": 0.01},
        {"bars": 30.0, "corner_error": 0.3},
        {"bars": 79.0, "corner_error": None},
        {"bars": 200.0, "corner_error": 0.01},
        {"bars": 200.0, "corner_error": None},
        {"bars": float("nan"), "corner_error": None},  # no bar inside the photo
    ]
    assert script.dark_frames(rows) == {"photos": 3, "corners_within_2pc": 1, "no_quadrat": 1}


def measuring_script():
    """scripts/measure_demo_models.py, loaded as a module."""
    path = ROOT / "scripts" / "measure_demo_models.py"
    spec = importlib.util.spec_from_file_location("measure_demo_models", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_measuring_script_scores_a_photo_as_the_docs_table_needs(served):
    """scripts/measure_demo_models.py, which writes docs/demo.md's table, on one drawn frame
    over real reef: the corner, grid and string figures of a row, and the table rows from them."""
    script = measuring_script()
    pipeline = Pipeline(served)
    row = script.corners_and_grid(pipeline, framed_reef(1), remove_string=True)
    assert "failure" not in row, row
    assert 0 <= row["corner_error"] <= 1 and len(row["found_corners"]) == 4
    assert row["grid_answered"] and 0 <= row["grid_hits"] <= 1
    assert 0 <= row["string_visible"] <= VISIBLE_BAR, row["string_visible"]
    assert "string_visible" not in script.corners_and_grid(pipeline, framed_reef(1))
    reef = script.reef_world(
        served, ReefTextures.from_folder(TEXTURES), 1, first_seed=CHECKED_BY_THE_GRID[0]
    )
    assert reef["corners_within_2pc"] == "1/1 (100 %)" and reef["string_removed_on"] == 1
    assert reef["dark_frames"] == script.dark_frames(reef["with_string"])
    assert 0 <= reef["with_string"][0]["bars"] <= 255
    real = {"photos": 1, "corners_within_3pc": "1/1 (100 %)", "grid_answered": "0/1 (0 %)"}
    rows = script.table_rows({"reef": reef, "real": real})
    assert rows[2].endswith("of its contrast (mean of the 1 photos with a grid) | - |"), rows[2]
    assert rows[-1].startswith("| real quadrat photos")
    assert {row.count("|") for row in rows} == {6}, rows
    assert reef["stringless_grid_confidence_mean"] is None and "None" not in "".join(rows)
    answered = {**reef, "stringless_grid_confidence_mean": 7.5}
    assert "on 0/1 (0 %) (mean confidence 7.5 %) |" in script.table_rows({"reef": answered})[3]

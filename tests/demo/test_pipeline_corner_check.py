"""The demo pipeline's corners checked by the grid (stage 3b): what moves, what is scored."""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg_handlers.cvat.shapes import skeleton_points
from quadratseg_handlers.demo.pipeline import WARP_SIDE, Pipeline, PipelineRun, points_skeleton
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import TEST_SEEDS
from quadratseg_handlers.demo.warped import WARP_MARGIN
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import quadrat_side, quadrat_transform


@pytest.fixture(scope="module")
def scene():
    return quadrat_image((900, 700), TEST_SEEDS + 22)


def _run(scene, corners: np.ndarray, scored: bool = True) -> PipelineRun:
    """A run whose corners are ``corners``, warped from them, with the grid a perfect
    gridpose finds in that warp."""
    run = PipelineRun(scene.image, scene if scored else None, corners=corners)
    Pipeline._warped(run, WARP_SIDE)
    assert run.transform is not None
    run.grid = project(run.transform, scene.grid_points)
    run.answers["01-corners"] = [points_skeleton("quadrat_corner", corners)]
    run.answers["03-grid"] = [points_skeleton("grid", run.grid)]
    return run


def test_corners_off_the_grid_move_and_the_warp_and_grid_follow(scene):
    side = quadrat_side(scene.corners)
    run = _run(scene, scene.corners + [[0, 0], [0, 0], [0.06 * side, 0.02 * side], [0, 0]])
    run.corner_error = 0.063
    Pipeline({})._check_corners(run, 0.7)
    assert run.corners is not None and np.abs(run.corners - scene.corners).max() < 1e-3 * side
    assert run.corner_error < 0.001
    truth = quadrat_transform(scene.corners, WARP_SIDE, int(round(WARP_MARGIN * WARP_SIDE)))
    assert np.allclose(run.transform, truth, atol=1e-6 * np.abs(truth).max())
    assert run.grid is not None
    assert np.abs(run.grid - project(truth, scene.grid_points)).max() < 0.05
    [corners], [grid] = run.answers["01-corners"], run.answers["03-grid"]
    assert np.allclose(skeleton_points(corners), run.corners, atol=0.006)
    assert np.allclose(skeleton_points(grid), run.grid, atol=0.006)
    report = run.reports[-1]
    assert (report.stage, report.function, report.passed) == (
        "3b corners",
        "corners_checked_by_grid (local)",
        True,
    )
    moved = round(float(np.hypot(0.06 * side, 0.02 * side)))
    assert report.result == (
        f"moved where the grid puts them (up to {moved} px); worst now "
        f"{run.corner_error:.1%} of the side from the drawn one"
    )


def test_on_a_users_photo_the_move_is_said_without_a_score(scene):
    side = quadrat_side(scene.corners)
    run = _run(scene, scene.corners + [[0.05 * side, 0], [0, 0], [0, 0], [0, 0]], scored=False)
    Pipeline({})._check_corners(run, 0.7)
    assert run.reports[-1].result == f"moved where the grid puts them (up to {0.05 * side:.0f} px)"
    assert np.isnan(run.corner_error)


@pytest.mark.parametrize(
    ("shift", "confidence", "result"),
    [
        (0.005, 0.7, "the corners agree with the grid found inside them"),
        (0.05, 0.2, "not checked: the grid was answered with a low confidence"),
        (0.05, None, "not checked: the grid was answered with a low confidence"),
    ],
)
def test_agreeing_corners_or_a_weak_grid_leave_everything(scene, shift, confidence, result):
    side = quadrat_side(scene.corners)
    corners = scene.corners + [[shift * side, 0], [0, 0], [0, 0], [0, 0]]
    run = _run(scene, corners)
    transform, grid, warped, answers = run.transform, run.grid, run.warped, dict(run.answers)
    Pipeline({})._check_corners(run, confidence)
    assert run.corners is corners and run.transform is transform
    assert run.grid is grid and run.warped is warped and run.answers == answers
    assert run.reports[-1].result == result and run.reports[-1].passed


def test_a_grid_mostly_beyond_the_photos_edge_is_said_to_check_nothing(scene):
    """Half the grid or more beyond the photo's edge places no corners: nothing moves, and
    the report says why rather than that the corners agree."""
    side = quadrat_side(scene.corners)
    corners = scene.corners + [[0.05 * side, 0], [0, 0], [0, 0], [0, 0]]
    run = _run(scene, corners)
    top = int(scene.corners[:, 1].min() + 0.3 * side)  # the photo cut below the third row
    run.photo = scene.image[:top]
    Pipeline({})._check_corners(run, 0.7)
    assert run.corners is corners
    assert run.reports[-1].result == "not checked: too little of the grid lies in the photo"


def test_a_mirrored_grid_is_said_to_check_nothing(scene):
    """A grid whose lattice comes out mirrored places no corners: the report names that,
    not the photo's edge."""
    side = quadrat_side(scene.corners)
    corners = scene.corners + [[0.05 * side, 0], [0, 0], [0, 0], [0, 0]]
    run = _run(scene, corners)
    assert run.grid is not None
    run.grid = run.grid * [-1, 1] + [WARP_SIDE, 0]  # mirrored across the warp's middle
    Pipeline({})._check_corners(run, 0.7)
    assert run.corners is corners
    assert run.reports[-1].result == "not checked: the grid's lattice is no convex quadrilateral"

"""`quadratseg pipeline`'s corners checked by the grid found inside them: both answers move
together, or neither does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quadratseg_handlers import cvat
from quadratseg_handlers.cvat.shapes import skeleton_points
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import TEST_SEEDS
from quadratseg_handlers.local.client import HttpFunction
from quadratseg_handlers.local.pipeline import Chain, PhotoResult
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import quadrat_side, quadrat_transform, warp_quadrat
from quadratseg_handlers.ops.template import sublabels


def _chain(out: Path) -> Chain:
    unused = HttpFunction("http://127.0.0.1:9")  # check_corners calls no function
    return Chain(unused, unused, unused, unused, out=out, warp_side=512)


def _answers(chain: Chain, scene, corners: np.ndarray, confidence: float):
    """The corners' skeleton at ``corners``, the quadrat warped from them, and the grid
    skeleton a perfect gridpose answers in that warp."""
    margin = int(round(chain.warp_margin * chain.warp_side))
    transform = quadrat_transform(corners, chain.warp_side, margin)
    warped = warp_quadrat(scene.image, corners, chain.warp_side, margin=margin)
    frame = cvat.skeleton(
        "quadrat_corner", cvat.skeleton_elements(sublabels(4), corners, [0.6] * 4)
    )
    points = project(transform, scene.grid_points)
    elements = cvat.skeleton_elements(sublabels(117), points, [0.7] * 117)
    grid = cvat.skeleton("grid", elements, confidence)
    return frame, grid, warped, transform


@pytest.fixture(scope="module")
def scene():
    return quadrat_image((900, 700), TEST_SEEDS + 21)


def test_corners_off_the_grid_move_with_the_warp_and_the_grid(tmp_path, scene):
    chain = _chain(tmp_path)
    side = quadrat_side(scene.corners)
    off = scene.corners + [[0, 0], [0.04 * side, 0.03 * side], [0, 0], [0, 0]]
    frame, grid, warped, transform = _answers(chain, scene, off, 0.7)
    result = PhotoResult(Path("quadrat.jpg"), answers={"corners": [frame], "grid": [grid]})
    new_warp, points = chain.check_corners(scene.image, (warped, transform), (frame, grid), result)

    assert result.corners_moved
    [moved_frame] = result.answers["corners"]
    assert np.abs(skeleton_points(moved_frame) - scene.corners).max() < 0.002 * side
    assert [e["confidence"] for e in moved_frame["elements"]] == ["60"] * 4
    margin = int(round(chain.warp_margin * chain.warp_side))
    true_transform = quadrat_transform(scene.corners, chain.warp_side, margin)
    assert np.abs(points - project(true_transform, scene.grid_points)).max() < 0.5
    [moved_grid] = result.answers["grid"]
    assert np.allclose(skeleton_points(moved_grid), points, atol=0.01)
    assert moved_grid["confidence"] == "70"
    expected = warp_quadrat(scene.image, skeleton_points(moved_frame), 512, margin=margin)
    assert np.array_equal(new_warp, expected)
    saved = result.images["grid"]
    assert saved == tmp_path / "2-grid" / "images" / "quadrat.png"
    assert np.array_equal(np.asarray(Image.open(saved)), new_warp)


@pytest.mark.parametrize("confidence", [0.2, 0.7])
def test_a_weak_grid_or_agreeing_corners_change_nothing(tmp_path, scene, confidence):
    chain = _chain(tmp_path)
    side = quadrat_side(scene.corners)
    shift = 0.05 if confidence < 0.3 else 0.005  # off but the grid is weak; or within 1 %
    corners = scene.corners + [[shift * side, 0], [0, 0], [0, 0], [0, 0]]
    frame, grid, warped, transform = _answers(chain, scene, corners, confidence)
    answers = {"corners": [frame], "grid": [grid]}
    result = PhotoResult(Path("quadrat.jpg"), answers={k: list(v) for k, v in answers.items()})
    same, points = chain.check_corners(scene.image, (warped, transform), (frame, grid), result)
    assert same is warped and np.array_equal(points, skeleton_points(grid))
    assert result.answers == answers and "grid" not in result.images
    assert not result.corners_moved

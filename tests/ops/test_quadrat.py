"""Merging gridcorners' two passes (REFINE_CORNERS): which corner each pass gives; the
corners checked against the grid found inside them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import (
    GRID_AGREEMENT,
    GRID_CONFIDENCE,
    PASS_AGREEMENT,
    corners_against_placement,
    corners_checked_by_grid,
    grid_corners,
    grid_in_photo,
    grid_placement,
    merge_corner_passes,
    quadrat_side,
    quadrat_transform,
)
from quadratseg_handlers.ops.template import GRID_POINTS, grid_template

SQUARE = np.array([[100, 100], [300, 100], [300, 300], [100, 300]], dtype=np.float64)
"""A quadrat of side 200 px: 3 % of the side is 6 px."""


def test_the_side_is_the_mean_of_the_four():
    assert quadrat_side(SQUARE) == 200
    assert quadrat_side(SQUARE * [2, 1]) == 300


def test_corners_both_passes_see_alike_are_averaged_with_their_mean_score():
    second = SQUARE + [[4, 0], [0, -4], [-2, 2], [0, 0]]
    points, scores = merge_corner_passes(SQUARE, np.full(4, 0.6), second, np.full(4, 0.4))
    assert np.allclose(points, (SQUARE + second) / 2)
    assert np.allclose(scores, 0.5)


def test_corners_apart_keep_the_better_scored_pass():
    far = PASS_AGREEMENT * 200 + 1
    second = SQUARE + [[far, 0], [far, 0], [0, 0], [0, 0]]
    points, scores = merge_corner_passes(
        SQUARE, np.array([0.5, 0.3, 0.5, 0.5]), second, np.array([0.4, 0.6, 0.5, 0.5])
    )
    assert np.allclose(points[0], SQUARE[0]) and scores[0] == 0.5
    assert np.allclose(points[1], second[1]) and scores[1] == 0.6
    assert np.allclose(points[2:], SQUARE[2:]) and np.allclose(scores[2:], 0.5)


def test_a_corner_one_pass_missed_comes_from_the_other_and_one_both_missed_stays_missed():
    second = SQUARE + [[1, 1], [30, 0], [0, 0], [1, 1]]
    points, scores = merge_corner_passes(
        SQUARE, np.array([0.0, 0.0, 0.7, 0.0]), second, np.array([0.5, 0.5, 0.0, 0.0])
    )
    assert np.allclose(points[:3], [second[0], second[1], SQUARE[2]])
    assert scores.tolist() == [0.5, 0.5, 0.7, 0.0]


def _grid_of(corners: np.ndarray) -> np.ndarray:
    """The 117 grid points of a quadrat with these corners (a homography of the lattice)."""
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    homography = cv2.getPerspectiveTransform(unit, corners.astype(np.float32))
    return project(homography, grid_template())


TILTED = np.array([[120.0, 90.0], [905.0, 130.0], [880.0, 860.0], [95.0, 835.0]])
"""A quadrat seen at a slant: side about 760 px."""


def test_the_grid_puts_the_corners_where_its_lattice_ends():
    assert np.abs(grid_corners(_grid_of(TILTED)) - TILTED).max() < 1e-3
    noisy = _grid_of(TILTED) + np.random.default_rng(0).normal(0, 2.0, (GRID_POINTS, 2))
    assert np.abs(grid_corners(noisy) - TILTED).max() < 0.005 * quadrat_side(TILTED)


def test_corners_off_the_grid_move_where_it_puts_them_and_agreeing_ones_stay():
    side = quadrat_side(TILTED)
    grid = _grid_of(TILTED)
    off = TILTED + [[0, 0], [0.05 * side, -0.03 * side], [0, 0], [0, 0]]
    assert np.allclose(corners_checked_by_grid(off, grid, 0.7), TILTED, atol=1e-3)
    near = TILTED + [[0.8 * GRID_AGREEMENT * side, 0], [0, 0], [0, 0], [0, 0]]
    assert np.array_equal(corners_checked_by_grid(near, grid, 0.7), near)
    beyond = TILTED + [[1.3 * GRID_AGREEMENT * side, 0], [0, 0], [0, 0], [0, 0]]
    assert np.allclose(corners_checked_by_grid(beyond, grid, 0.7), TILTED, atol=1e-3)


def test_the_check_after_the_placement_keeps_agreeing_corners_and_takes_the_grids_else():
    side = quadrat_side(TILTED)
    near = TILTED + [[0.8 * GRID_AGREEMENT * side, 0], [0, 0], [0, 0], [0, 0]]
    beyond = TILTED + [[1.3 * GRID_AGREEMENT * side, 0], [0, 0], [0, 0], [0, 0]]
    assert np.array_equal(corners_against_placement(near, TILTED), near)
    assert np.array_equal(corners_against_placement(beyond, TILTED), TILTED)
    assert np.array_equal(corners_against_placement(beyond, None), beyond)
    assert np.array_equal(corners_against_placement(beyond, TILTED, agreement=0.02), beyond)


def test_a_grid_answered_with_low_or_no_confidence_or_no_lattice_checks_nothing():
    side = quadrat_side(TILTED)
    off = TILTED + [[0.1 * side, 0], [0, 0], [0, 0], [0, 0]]
    grid = _grid_of(TILTED)
    assert np.array_equal(corners_checked_by_grid(off, grid, GRID_CONFIDENCE - 0.01), off)
    assert np.array_equal(corners_checked_by_grid(off, grid, None), off)
    assert np.array_equal(corners_checked_by_grid(off, grid, float("nan")), off)
    assert np.array_equal(corners_checked_by_grid(off, grid[:100], 0.9), off)
    assert np.array_equal(corners_checked_by_grid(off, np.zeros((GRID_POINTS, 2)), 0.9), off)
    mirrored = grid * [-1, 1]  # the lattice flipped: its corners turn the wrong way
    assert np.array_equal(corners_checked_by_grid(off, mirrored, 0.9), off)
    with pytest.raises(ValueError, match="117 finite grid points"):
        grid_corners(np.full((GRID_POINTS, 2), np.nan))


def test_grid_points_beyond_the_photos_edge_do_not_count():
    """A frame cut by the photo's bottom edge: gridpose placed the rows beyond it from the
    others, here a little wrong; only the points inside the photo place the corners."""
    side = quadrat_side(TILTED)
    grid = _grid_of(TILTED)
    size = (1000, int(TILTED[2:, 1].min() - 0.15 * side))  # the last row and a half cut off
    beyond = grid[:, 1] > size[1] - 1
    assert 9 <= beyond.sum() < GRID_POINTS / 2
    wrong = grid + np.where(beyond[:, None], [0.0, 0.03 * side], 0.0)
    off = TILTED + [[0, 0], [0, 0], [0, 0], [0.05 * side, 0]]
    assert np.allclose(corners_checked_by_grid(off, wrong, 0.7, size), TILTED, atol=0.01)
    unchecked = corners_checked_by_grid(off, wrong, 0.7)
    assert np.abs(unchecked - TILTED).max() > 0.01 * side  # all 117 pull the corners off
    assert np.array_equal(corners_checked_by_grid(off, wrong, 0.7, (1000, 300)), off)


def test_where_the_grid_places_the_corners_or_why_it_cannot_say():
    grid = _grid_of(TILTED)
    placed, why_not = grid_placement(grid, 0.7, (1000, 1000))
    assert placed is not None and np.abs(placed - TILTED).max() < 1e-3 and why_not == ""
    weak = (None, "the grid was answered with a low confidence")
    assert grid_placement(grid, GRID_CONFIDENCE - 0.01) == weak
    assert grid_placement(grid, None) == weak
    cut = (None, "too little of the grid lies in the photo")
    assert grid_placement(grid, 0.7, (1000, 300)) == cut  # under half inside
    mirrored = (None, "the grid's lattice is no convex quadrilateral")
    assert grid_placement(grid * [-1, 1], 0.7) == mirrored  # TL, TR, BR, BL the wrong way
    placed, why_not = grid_placement(grid[:100], 0.7)
    assert placed is None and why_not.startswith("no lattice fits the grid (expected 117")


def test_a_grid_found_in_the_warp_is_read_in_the_photos_pixels():
    to_warp = quadrat_transform(TILTED, 1024, 51)
    in_warp = project(to_warp, _grid_of(TILTED))
    assert np.abs(grid_in_photo(in_warp, to_warp) - _grid_of(TILTED)).max() < 1e-6

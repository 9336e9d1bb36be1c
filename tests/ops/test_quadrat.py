"""Merging gridcorners' two passes (REFINE_CORNERS): which corner each pass gives."""

from __future__ import annotations

import numpy as np

from quadratseg_handlers.ops.quadrat import PASS_AGREEMENT, merge_corner_passes, quadrat_side

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

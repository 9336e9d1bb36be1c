"""The frame's bars as lines (FIT_FRAME_BARS): where they cross, and which corners move there.

Photos from the synthetic generator, whose drawn corners are where the bars' centre lines
cross; a corner taken on a colony's edge is simulated by moving a drawn corner inwards.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.ops.frame_bars import bar_crossings, corners_from_bars, corners_on_bars
from quadratseg_handlers.ops.quadrat import quadrat_side

SEEDS = range(77, 81)
"""Photos whose quadrats, in perspective, have sides of 350 to 630 px in a 1200 x 900 frame."""


def photo(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    scene = quadrat_image((1200, 900), seed)
    corners = np.asarray(scene.corners, dtype=np.float64)
    return scene.image, corners, quadrat_side(corners)


def inwards(corners: np.ndarray, which: int, distance: float) -> np.ndarray:
    """``corners`` with corner ``which`` moved ``distance`` pixels towards the centre."""
    moved = corners.copy()
    towards = corners.mean(axis=0) - corners[which]
    moved[which] += distance * towards / np.linalg.norm(towards)
    return moved


@pytest.mark.parametrize("seed", SEEDS)
def test_corners_on_the_bars_snap_to_where_the_bars_cross(seed):
    image, corners, side = photo(seed)
    found = bar_crossings(image, corners)
    assert found is not None
    crossings, supported = found
    assert supported.all()
    # Measured at most 0.31 % of the side on these photos.
    assert np.linalg.norm(crossings - corners, axis=1).max() <= 0.006 * side
    assert np.array_equal(corners_from_bars(image, corners), crossings)


@pytest.mark.parametrize("seed", SEEDS)
def test_corners_on_their_bars_are_confirmed_and_one_off_them_is_not(seed):
    """What RETRY_THRESHOLD asks before it answers a low-scored quadrat."""
    image, corners, side = photo(seed)
    assert corners_on_bars(image, corners).all()
    which = seed % 4
    expected = np.ones(4, dtype=bool)
    expected[which] = False
    assert np.array_equal(corners_on_bars(image, inwards(corners, which, 0.04 * side)), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_corner_taken_inside_the_frame_moves_back_to_its_bars_crossing(seed):
    image, corners, side = photo(seed)
    which = seed % 4
    wrong = inwards(corners, which, 0.08 * side)
    found = corners_from_bars(image, wrong)
    assert np.linalg.norm(found - corners, axis=1).max() <= 0.01 * side


@pytest.mark.parametrize("seed", SEEDS)
def test_a_corner_under_a_colony_is_where_its_bars_cross(seed):
    """A colony over the corner, and the corner given on its inner edge, as the detector
    answers it: the bars leading to it are hidden near it, seen further on."""
    image, corners, side = photo(seed)
    which = (seed + 1) % 4
    radius = round(0.06 * side)
    hidden = image.copy()
    centre = (round(corners[which, 0]), round(corners[which, 1]))
    cv2.ellipse(hidden, centre, (radius, round(0.8 * radius)), 30, 0, 360, (150, 90, 60), -1)
    found = corners_from_bars(hidden, inwards(corners, which, 1.1 * radius))
    assert np.linalg.norm(found[which] - corners[which]) <= 0.01 * side


@pytest.mark.parametrize("seed", SEEDS)
def test_two_neighbours_off_their_bars_stay_unless_the_detector_was_unsure(seed):
    """Two neighbouring corners both off is what a bar mistaken for the string beside it
    looks like, not a colony over one corner: neither moves, while the two corners on their
    bars snap to them. Two opposite corners off both move back, since each one's neighbours
    agree with their bars. Two neighbours the detector scored low (``weak``) move back too:
    the two others confirm the bars."""
    image, corners, side = photo(seed)
    which, after = seed % 4, (seed + 1) % 4
    wrong = inwards(inwards(corners, which, 0.08 * side), after, 0.08 * side)
    found = corners_from_bars(image, wrong)
    assert np.array_equal(found[[which, after]], wrong[[which, after]])
    weak = np.zeros(4, dtype=bool)
    weak[[which, after]] = True
    found = corners_from_bars(image, wrong, weak=weak)
    assert np.linalg.norm(found - corners, axis=1).max() <= 0.01 * side
    opposite = inwards(inwards(corners, which, 0.08 * side), (which + 2) % 4, 0.08 * side)
    found = corners_from_bars(image, opposite)
    for index in (which, (which + 2) % 4):
        assert np.linalg.norm(found[index] - corners[index]) <= 0.01 * side


@pytest.mark.parametrize("seed", SEEDS)
def test_two_neighbours_a_little_off_their_bars_move_back_together(seed):
    """Two neighbouring corners off by less than PAIR_MOVE (half the string's spacing), the
    two others on their bars: the detector's error, not a string taken for a bar (which
    would move both by a tenth of the side, the previous test), so both move back."""
    image, corners, side = photo(seed)
    which, after = seed % 4, (seed + 1) % 4
    wrong = inwards(inwards(corners, which, 0.035 * side), after, 0.035 * side)
    found = corners_from_bars(image, wrong)
    assert np.linalg.norm(found - corners, axis=1).max() <= 0.01 * side


@pytest.mark.parametrize("seed", SEEDS)
def test_a_corner_beside_a_weak_one_moves_once_the_weak_one_is_back(seed):
    """A corner the detector was unsure of, well off its bars, and its neighbour a little
    off: the neighbour's own neighbours agree only once the weak corner has moved back, so
    it moves in the second look at the same crossings (DECISIONS)."""
    image, corners, side = photo(seed)
    which, after = seed % 4, (seed + 1) % 4
    wrong = inwards(inwards(corners, which, 0.08 * side), after, 0.03 * side)
    weak = np.zeros(4, dtype=bool)
    weak[which] = True
    found = corners_from_bars(image, wrong, weak=weak)
    assert np.linalg.norm(found - corners, axis=1).max() <= 0.01 * side


@pytest.mark.parametrize(("depth", "tolerance"), [(0.03, 0.01), (0.015, 0.005)])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_corner_cut_off_by_the_photos_edge_moves_out_to_its_bars_crossing(seed, depth, tolerance):
    """The photo's top cut ``depth`` of the side below the topmost corner, which the
    detector then finds at the edge, straight below its true place: its bars, seen over most
    of their length, cross beyond the edge, and the corner moves out there, also from 1.5 %,
    within AGREE of its crossing, as an agreeing corner inside the photo snaps to its own."""
    image, corners, side = photo(seed)
    which = int(np.argmin(corners[:, 1]))
    top = int(corners[which, 1] + depth * side)
    cut = corners - [0.0, top]
    at_edge = cut.copy()
    at_edge[which, 1] = 1.0
    assert np.linalg.norm(at_edge[which] - cut[which]) > 0.9 * depth * side
    found = corners_from_bars(np.ascontiguousarray(image[top:]), at_edge)
    assert found[which, 1] < 0
    assert np.linalg.norm(found - cut, axis=1).max() <= tolerance * side
    # a crossing outside the photo never confirms its corner
    assert not corners_on_bars(np.ascontiguousarray(image[top:]), found)[which]


@pytest.mark.parametrize("seed", SEEDS)
def test_an_unsure_corner_at_the_photos_edge_stays(seed):
    """The photo cut just inside a corner (a frame cut by the photo's edge): its outer bar is
    not in the photo, and a string may be taken for it, so the corner given at the photo's
    edge never moves in, even though the detector was unsure of it (on seed 80 the string's
    crossing lies 8 % of the side inside, and an unsure corner off the edge would move
    there); where the bars are still seen crossing just beyond the edge, it snaps out."""
    image, corners, side = photo(seed)
    which = 1 if seed % 2 else 2  # TR or BR: cut the photo's right side
    cut = int(corners[which, 0] - 0.005 * side)
    edge = corners.copy()
    edge[which, 0] = cut - 1
    weak = np.zeros(4, dtype=bool)
    weak[which] = True
    found = corners_from_bars(np.ascontiguousarray(image[:, :cut]), edge, weak=weak)
    assert found[which, 0] >= edge[which, 0]
    error = np.linalg.norm(found[which] - corners[which])
    assert error <= np.linalg.norm(edge[which] - corners[which]) + 1e-9


@pytest.mark.parametrize(
    "image",
    [
        np.full((600, 800, 3), 120, dtype=np.uint8),
        np.random.default_rng(3).integers(0, 256, (600, 800, 3), dtype=np.uint8),
    ],
    ids=["flat", "noise"],
)
def test_without_a_frame_no_corner_moves(image):
    corners = np.array([[200.0, 100.0], [600.0, 120.0], [580.0, 500.0], [210.0, 480.0]])
    assert np.array_equal(corners_from_bars(image, corners), corners)
    assert not corners_on_bars(image, corners).any()


@pytest.mark.parametrize(
    "corners",
    [
        [[0, 0], [100, 0], [100, 100]],
        [[0, 0], [100, 0], [0, 100], [100, 100]],
        [[0, 0], [0, 100], [100, 100], [100, 0]],
        [[0, 0], [100, 0], [100, np.nan], [0, 100]],
    ],
    ids=["three", "crossed", "anticlockwise", "nan"],
)
def test_corners_that_are_no_quadrat_come_back_unchanged(corners):
    image = np.zeros((120, 120, 3), dtype=np.uint8)
    given = np.asarray(corners, dtype=np.float64)
    assert np.array_equal(corners_from_bars(image, given), given, equal_nan=True)
    assert bar_crossings(image, given) is None
    assert not corners_on_bars(image, given).any()

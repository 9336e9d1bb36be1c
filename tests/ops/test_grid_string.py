"""A side of the frame cut off by the photo's edge, placed where the grid string puts it.

Drawn photos cropped so that one bar lies out of the photo (4.5 % of the side beyond the
edge at the nearer corner: the first string line is still in), the cut side's two corners
given at the edge as a detector finds them; and reef-world frames drawn over the committed
reef patches, with and without the string.
"""

from __future__ import annotations

import numpy as np
import pytest
from cut_frames_for_tests import SIDES, cut_photo, drawn
from reef_for_tests import TEXTURES

from quadratseg_handlers.demo.reef import reef_quadrat
from quadratseg_handlers.demo.reef_photos import ReefTextures
from quadratseg_handlers.ops.grid_string import corners_on_string, cut_sides
from quadratseg_handlers.ops.quadrat import outside_by, quadrat_side

SEEDS = range(77, 81)
"""Nearly upright drawn quadrats, sides 410 to 710 px in a 1200 x 900 photo."""


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_side_cut_off_by_the_photos_edge_is_placed_by_the_string(seed, side):
    """Given 5 to 13 % of the side off, the cut side's corners land within 2 % of the
    truth, beyond the photo's edge (measured at most 1.6 %, 0.6 % on the median)."""
    image, corners = drawn(seed)
    photo, truth, given = cut_photo(image, corners, side)
    length = quadrat_side(truth)
    assert np.linalg.norm(given - truth, axis=1).max() > 0.04 * length
    found, placed = cut_sides(photo, given)
    pair = [SIDES.index(side), (SIDES.index(side) + 1) % 4]
    expected = np.zeros(4, dtype=bool)
    expected[pair] = True
    assert np.array_equal(placed, expected)
    assert np.linalg.norm(found - truth, axis=1).max() <= 0.02 * length
    height, width = photo.shape[:2]
    assert (outside_by(found, width, height)[pair] > 0).any()


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("seed", SEEDS)
def test_the_strings_first_line_taken_for_a_cut_bar_is_moved_out(seed, side):
    """The cut side's corners given a string's spacing inside (its first line, which the
    bars' fit takes for the bar when the bar is out of the photo): placed back within 2 %
    (measured at most 1.0 %)."""
    image, corners = drawn(seed)
    photo, truth, _ = cut_photo(image, corners, side)
    first, second = SIDES.index(side), (SIDES.index(side) + 1) % 4
    given = truth.copy()
    given[first] += 0.1 * (truth[(first + 3) % 4] - truth[first])
    given[second] += 0.1 * (truth[(second + 1) % 4] - truth[second])
    found, placed = cut_sides(photo, given)
    assert placed[[first, second]].all()
    assert np.linalg.norm(found - truth, axis=1).max() <= 0.02 * quadrat_side(truth)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_frame_whole_in_the_photo_near_its_edge_stays(seed, side):
    """The photo cut 3 % of the side outside the frame: the side lies near the edge, the
    string's comb puts it where it is, so nothing moves."""
    image, corners = drawn(seed)
    length = quadrat_side(corners)
    first, second = SIDES.index(side), (SIDES.index(side) + 1) % 4
    axis = 1 if side in ("top", "bottom") else 0
    if side in ("top", "left"):
        cut = int(corners[[first, second], axis].min() - 0.03 * length)
        photo = image[cut:] if axis else image[:, cut:]
        given = corners - (np.array([0.0, cut]) if axis else np.array([cut, 0.0]))
    else:
        cut = int(corners[[first, second], axis].max() + 0.03 * length)
        photo = image[:cut] if axis else image[:, :cut]
        given = corners.copy()
    found, placed = cut_sides(np.ascontiguousarray(photo), given)
    assert not placed.any()
    assert np.array_equal(found, given)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_string_confirms_true_cut_corners_and_not_corners_at_the_edge(seed):
    image, corners = drawn(seed)
    photo, truth, given = cut_photo(image, corners, "top")
    assert np.array_equal(corners_on_string(photo, truth), [True, True, False, False])
    assert not corners_on_string(photo, given).any()


@pytest.mark.parametrize("seed", SEEDS)
def test_nothing_moves_unless_the_opposite_corners_are_on_their_bars(seed):
    """The string's comb counts from the opposite bar: with a corner of that side 10 % off
    (no longer where its bars cross) the cut side stays where it was given."""
    image, corners = drawn(seed)
    photo, _, given = cut_photo(image, corners, "top")
    given[2] += 0.1 * (given.mean(axis=0) - given[2])
    found, placed = cut_sides(photo, given)
    assert not placed.any()
    assert np.array_equal(found, given)


@pytest.mark.parametrize("seed", (1, 8))
def test_a_frame_without_a_string_is_left_as_it_is(seed):
    """The same metal frame over real reef, cut at the top: with its string the top corners
    are placed (within 1 % here), without it nothing moves, though the bars below are found."""
    textures = ReefTextures.from_folder(TEXTURES)
    results = {}
    for string in (True, False):
        scene = reef_quadrat((1200, 900), seed, textures, string=string, frame="metal")
        corners = np.asarray(scene.corners, dtype=np.float64)
        photo, truth, given = cut_photo(scene.image, corners, "top")
        found, placed = cut_sides(photo, given)
        results[string] = (
            placed,
            np.linalg.norm(found - truth, axis=1).max() / quadrat_side(truth),
        )
    assert np.array_equal(results[True][0], [True, True, False, False])
    assert results[True][1] <= 0.01
    assert not results[False][0].any()


def test_corners_that_are_no_quadrat_come_back_unchanged():
    image, corners = drawn(77)
    crossed = corners[[1, 0, 2, 3]]
    found, placed = cut_sides(image, crossed)
    assert np.array_equal(found, crossed)
    assert not placed.any()
    assert not corners_on_string(image, crossed).any()

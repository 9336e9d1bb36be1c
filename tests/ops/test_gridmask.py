"""The grid layout and the string mask: exact segments, exact pixels, width, edges, clipping."""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg_handlers.ops.gridmask import (
    clip_points,
    dilate,
    draw_grid_mask,
    draw_segments,
    grid_segments,
)
from quadratseg_handlers.ops.template import (
    GRID_POINTS,
    GRID_SIZE,
    grid_lattice,
    grid_positions,
    grid_sublabels,
    grid_template,
)

SPACING, OFFSET, SIDE = 20, 10, 220
"""A square lattice: point (row, col) at (10 + 20 col, 10 + 20 row) on a 220 x 220 image."""


def lattice_points(spacing: float = SPACING, offset: float = OFFSET) -> np.ndarray:
    """The 117 points of an upright square lattice, in skeleton order, as (x, y)."""
    return np.array(
        [(offset + spacing * c, offset + spacing * r) for r, c in grid_positions()],
        dtype=np.float64,
    )


def capsules(
    shape: tuple[int, int], segments: list[tuple[tuple[float, float], ...]], width: float
) -> np.ndarray:
    """Brute force: every pixel centre against every segment (the rule in gridmask's docs)."""
    height, width_px = shape
    ys, xs = np.mgrid[0:height, 0:width_px].astype(np.float64) + 0.5
    mask = np.zeros(shape, dtype=bool)
    for (x0, y0), (x1, y1) in segments:
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / max(dx * dx + dy * dy, 1e-300), 0, 1)
        mask |= (xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2 <= (width / 2) ** 2
    return mask


def test_the_117_points_are_the_lattice_without_corners_row_major():
    positions = grid_positions()
    assert GRID_SIZE == 11 and GRID_POINTS == 117 == len(positions)
    assert positions[:9] == [(0, c) for c in range(1, 10)]
    assert positions[9:20] == [(1, c) for c in range(11)]
    assert positions[-9:] == [(10, c) for c in range(1, 10)]
    assert positions == sorted(positions)
    lattice = grid_lattice()
    assert [lattice[0, 0], lattice[0, 10], lattice[10, 0], lattice[10, 10]] == [-1] * 4
    assert [lattice[r, c] for r, c in positions] == list(range(117))
    assert grid_sublabels() == [str(i) for i in range(1, 118)]
    template = grid_template()
    assert template.shape == (117, 2)
    np.testing.assert_array_equal(template[0], [0.1, 0.0])  # (row 0, col 1)
    np.testing.assert_array_equal(template[9], [0.0, 0.1])  # (row 1, col 0)
    np.testing.assert_array_equal(template[-1], [0.9, 1.0])  # (row 10, col 9)


def as_positions(pairs: np.ndarray) -> set[frozenset[tuple[int, int]]]:
    positions = grid_positions()
    return {frozenset((positions[i], positions[j])) for i, j in pairs}


STRINGS = {frozenset(((r, c), (r, c + 1))) for r in range(1, 10) for c in range(10)} | {
    frozenset(((r, c), (r + 1, c))) for c in range(1, 10) for r in range(10)
}
FRAME = {frozenset(((side, c), (side, c + 1))) for side in (0, 10) for c in range(1, 9)} | {
    frozenset(((r, side), (r + 1, side))) for side in (0, 10) for r in range(1, 9)
}


def test_segments_are_the_18_strings_frame_to_frame():
    segments = grid_segments()
    assert segments.shape == (180, 2)
    assert as_positions(segments) == STRINGS
    # the pieces that reach the frame: from row/col 1 to the frame point in row/col 0 and 10
    assert frozenset(((0, 5), (1, 5))) in STRINGS and frozenset(((9, 5), (10, 5))) in STRINGS
    assert frozenset(((5, 0), (5, 1))) in STRINGS and frozenset(((5, 9), (5, 10))) in STRINGS


def test_frame_segments_only_when_asked():
    segments = grid_segments(frame=True)
    assert segments.shape == (212, 2)
    assert as_positions(segments) == STRINGS | FRAME


def string_lines(points: np.ndarray) -> list[tuple[tuple[float, float], ...]]:
    """The 18 strings of an upright lattice as single long segments, frame point to frame point."""
    lattice = grid_lattice()
    lines = []
    for k in range(1, 10):
        lines.append((tuple(points[lattice[k, 0]]), tuple(points[lattice[k, 10]])))
        lines.append((tuple(points[lattice[0, k]]), tuple(points[lattice[10, k]])))
    return lines


@pytest.mark.parametrize("width", [2, 4, 8])
def test_mask_is_exactly_the_string_pixels(width):
    points = lattice_points()
    mask = draw_grid_mask(points, (SIDE, SIDE), width)
    assert mask.dtype == bool and mask.shape == (SIDE, SIDE)
    np.testing.assert_array_equal(mask, capsules((SIDE, SIDE), string_lines(points), width))


@pytest.mark.parametrize("width", [2, 4, 8, 12])
def test_width_is_honoured(width):
    mask = draw_grid_mask(lattice_points(), (SIDE, SIDE), width)
    # a column between two vertical strings crosses the 9 horizontal strings (y = 30 .. 190)
    column = mask[:, 20]
    rows = np.flatnonzero(column)
    assert len(rows) == 9 * width
    for r in range(1, 10):
        y = OFFSET + SPACING * r
        assert column[y - width // 2 : y + width // 2].all()
        assert not column[y - width // 2 - 1] and not column[y + width // 2]


def test_edge_segments_reach_the_frame_and_corners_stay_clear():
    mask = draw_grid_mask(lattice_points(), (SIDE, SIDE), 4)
    # vertical string in column 5 (x = 110) from the top frame point (y = 10) down to row 1
    assert mask[10:30, 108:112].all()
    # horizontal string in row 5 (y = 110) from the left frame point (x = 10) to column 1
    assert mask[108:112, 10:30].all()
    # nothing along the frame between its points, nothing near the corners
    assert not mask[9:11, 32:48].any()
    assert not mask[0:20, 0:20].any() and not mask[200:, 200:].any()


def test_frame_lines_are_drawn_between_the_frame_points_only():
    mask = draw_grid_mask(lattice_points(), (SIDE, SIDE), 4, frame=True)
    assert mask[8:12, 30:190].all()  # top side from (0, 1) to (0, 9)
    assert not mask[8:12, 0:27].any()  # stops short of the corner: there is no point there


def test_mask_matches_brute_force_on_distorted_lattices():
    rng = np.random.default_rng(7)
    for _ in range(3):
        points = lattice_points(17, 15) + rng.normal(0, 3, (GRID_POINTS, 2))
        angle = rng.uniform(-0.4, 0.4)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (points - 100) @ rotation.T + 100 + rng.uniform(-20, 20, 2)
        width = float(rng.integers(1, 10))
        shape = (190, 210)
        segments = [
            tuple(map(tuple, clip_points(points, (210, 190))[pair])) for pair in grid_segments()
        ]
        expected = capsules(shape, segments, width)
        np.testing.assert_array_equal(draw_grid_mask(points, (210, 190), width), expected)


def test_points_outside_the_image_are_clipped_onto_its_border():
    points = lattice_points()
    outside = points.copy()
    outside[0] = (-50.0, -1e6)  # point "1": above the image
    outside[116] = (5e5, 400.0)  # point "117": right of and below the image
    on_border = points.copy()
    on_border[0] = (0.0, 0.0)
    on_border[116] = (SIDE, SIDE)
    np.testing.assert_array_equal(
        draw_grid_mask(outside, (SIDE, SIDE), 4), draw_grid_mask(on_border, (SIDE, SIDE), 4)
    )


def test_segments_wholly_outside_draw_nothing():
    assert not draw_segments(np.array([[[-30.0, -5.0], [-10.0, -5.0]]]), (50, 40), 4).any()


def test_bad_points_are_refused():
    with pytest.raises(ValueError, match=r"\(117, 2\)"):
        draw_grid_mask(np.zeros((116, 2)), (10, 10), 4)
    points = lattice_points()
    points[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        draw_grid_mask(points, (SIDE, SIDE), 4)


def test_dilation_grows_by_the_radius():
    mask = np.zeros((21, 21), dtype=bool)
    mask[10, 10] = True
    assert dilate(mask, 0) is mask
    grown = dilate(mask, 3)
    assert grown.dtype == bool and grown[mask].all()
    assert np.flatnonzero(grown[10]).tolist() == list(range(7, 14))
    assert np.flatnonzero(grown[:, 10]).tolist() == list(range(7, 14))
    assert not grown[7, 7]  # a disc, not a square

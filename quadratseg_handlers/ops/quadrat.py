"""The quadrat's geometry between gridcorners and gridpose: the upright crop from 4 corners.

The bridge (and the demo) call gridcorners on the photo, warp the quadrat upright with
:func:`warp_quadrat`, then call gridpose on the warped image. gridcorners' second pass
(REFINE_CORNERS) predicts on that same upright crop and merges the two passes' corners with
:func:`merge_corner_passes`. The grid string is tied to the frame's bars, a tenth of the side
apart, so the grid found then says where the corners are (:func:`corners_checked_by_grid`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.cvat.shapes import skeleton_points
from quadratseg_handlers.ops.template import (
    CORNER_POINTS,
    GRID_POINTS,
    corner_template,
    grid_template,
)

PASS_AGREEMENT = 0.03
"""Two passes' corners closer than this fraction of the quadrat's side are the same corner."""

GRID_AGREEMENT = 0.01
"""Corners within this fraction of the side of where the grid puts them are kept: the frame's
bars place a corner about as well as the grid (0.3 % and 0.4 % of the side, median)."""

GRID_CONFIDENCE = 0.3
"""A grid answered with a lower confidence (the mean of its points' scores) checks no corners:
gridpose answers about 0.06 on the rare photo with no string where it answers a grid at all,
0.5 to 0.8 on a grid it found."""


def quadrat_transform(corners: Any, size_wh: int | tuple[int, int], margin: int = 0) -> np.ndarray:
    """The 3 x 3 homography taking the quadrat's corners (TL, TR, BR, BL) to an upright
    ``size_wh`` (an int for a square, or (width, height)) image, ``margin`` pixels inside it.

    Raises ValueError unless the corners are 4 finite points forming a convex quadrilateral
    in that (clockwise on screen) order.
    """
    quad = np.asarray(corners, dtype=np.float64)
    if quad.shape != (CORNER_POINTS, 2) or not np.all(np.isfinite(quad)):
        raise ValueError(f"expected 4 finite corners (TL, TR, BR, BL), got shape {quad.shape}")
    edges = np.roll(quad, -1, axis=0) - quad
    following = np.roll(edges, -1, axis=0)
    turns = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
    if not np.all(turns > 0):
        raise ValueError(
            "corners must be TL, TR, BR, BL of a convex quadrilateral (clockwise on screen)"
        )
    width, height = (size_wh, size_wh) if isinstance(size_wh, int) else size_wh
    if width <= 2 * margin or height <= 2 * margin:
        raise ValueError(f"size {width}x{height} leaves nothing inside a {margin}-pixel margin")
    low, right, bottom = float(margin), float(width - 1 - margin), float(height - 1 - margin)
    target = np.array([[low, low], [right, low], [right, bottom], [low, bottom]])
    return np.asarray(
        cv2.getPerspectiveTransform(quad.astype(np.float32), target.astype(np.float32)),
        dtype=np.float64,
    )


def warp_quadrat(
    image: np.ndarray,
    corners: Any,
    size_wh: int | tuple[int, int],
    *,
    margin: int = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """The quadrat cropped upright from ``image``: corners TL, TR, BR, BL go to the corners of
    a ``size_wh`` image (an int for a square, or (width, height); ``margin`` pixels inside),
    the step between gridcorners and gridpose.

    ``corners`` may be a (4, 2) array or the gridcorners skeleton shape itself.
    """
    if isinstance(corners, Mapping):
        corners = skeleton_points(corners)
    matrix = quadrat_transform(corners, size_wh, margin)
    width, height = (size_wh, size_wh) if isinstance(size_wh, int) else size_wh
    return cv2.warpPerspective(
        np.asarray(image),
        matrix,
        (int(width), int(height)),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
    )


def is_convex(corners: np.ndarray) -> bool:
    """Whether ``corners`` are TL, TR, BR, BL of a convex quadrilateral (clockwise on screen)."""
    try:
        quadrat_transform(corners, 8)
    except ValueError:
        return False
    return True


def quadrat_side(corners: Any) -> float:
    """The mean length of the quadrat's four sides, in pixels."""
    quad = np.asarray(corners, dtype=np.float64)
    return float(np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1).mean())


def merge_corner_passes(
    first: np.ndarray,
    first_scores: np.ndarray,
    second: np.ndarray,
    second_scores: np.ndarray,
    agreement: float = PASS_AGREEMENT,
) -> tuple[np.ndarray, np.ndarray]:
    """Each corner of two passes (TL, TR, BR, BL, in the same pixels) merged into one.

    A score of 0 marks a corner its pass did not detect (placed from the other three). Two
    detections within ``agreement`` of the side (the first pass's quadrilateral) are the same
    corner seen twice: their mean, with the mean score. Otherwise the better scored one is
    kept, so a corner one pass missed or took on a colony's edge comes from the other.
    Returns (4, 2) points and (4,) scores; a corner neither pass detected keeps score 0.
    """
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    first_scores = np.asarray(first_scores, dtype=np.float64)
    second_scores = np.asarray(second_scores, dtype=np.float64)
    apart = np.linalg.norm(second - first, axis=1) / max(quadrat_side(first), 1e-9)
    both = (first_scores > 0) & (second_scores > 0) & (apart <= agreement)
    better = second_scores > first_scores
    points = np.where(both[:, None], (first + second) / 2, np.where(better[:, None], second, first))
    scores = np.where(
        both, (first_scores + second_scores) / 2, np.maximum(first_scores, second_scores)
    )
    return points, scores


def grid_corners(points: Any, seen: Any = None) -> np.ndarray:
    """Where the grid's lattice puts the frame's corners (TL, TR, BR, BL), in the pixels of
    its 117 ``points`` (skeleton order): the least-squares homography from the default grid
    template, whose outer points lie on the bars a tenth of the side from each corner,
    fitted on the ``seen`` points only ((117,) bools; None: all).

    Raises ValueError unless ``points`` are 117 finite points, at least 4 of them seen, that
    a homography maps the lattice to.
    """
    grid = np.asarray(points, dtype=np.float64)
    if grid.shape != (GRID_POINTS, 2) or not np.all(np.isfinite(grid)):
        raise ValueError(f"expected {GRID_POINTS} finite grid points, got shape {grid.shape}")
    used = np.ones(GRID_POINTS, dtype=bool) if seen is None else np.asarray(seen, dtype=bool)
    if used.sum() < 4:
        raise ValueError(f"{int(used.sum())} grid points seen: a homography needs 4")
    homography, _ = cv2.findHomography(grid_template()[used], grid[used], 0)
    if homography is None or not np.all(np.isfinite(homography)):
        raise ValueError("the grid points fit no homography of the lattice")
    lattice = corner_template(margin=0.0)[None]
    return np.asarray(cv2.perspectiveTransform(lattice, homography)[0], dtype=np.float64)


def grid_placement(
    grid_points: Any, confidence: float | None, size_wh: tuple[int, int] | None = None
) -> tuple[np.ndarray | None, str]:
    """Where the grid found inside the quadrat (117 points, answered with ``confidence``)
    puts the frame's corners (:func:`grid_corners`) and ``""``; or None and why it cannot
    say: confidence unknown or under :data:`GRID_CONFIDENCE`, fewer than half its points
    inside the photo (``size_wh``: beyond its edge gridpose saw nothing and placed them from
    the others, so only the points inside count), no lattice fitted, or a lattice that is no
    convex quadrilateral."""
    if confidence is None or not confidence >= GRID_CONFIDENCE:
        return None, "the grid was answered with a low confidence"
    grid = np.asarray(grid_points, dtype=np.float64)
    seen = None
    if size_wh is not None and grid.shape == (GRID_POINTS, 2):
        seen = outside_by(grid, *size_wh) == 0
        if seen.sum() < GRID_POINTS / 2:
            return None, "too little of the grid lies in the photo"
    try:
        placed = grid_corners(grid, seen)
    except ValueError as error:
        return None, f"no lattice fits the grid ({error})"
    if not is_convex(placed):
        return None, "the grid's lattice is no convex quadrilateral"
    return placed, ""


def corners_checked_by_grid(
    corners: Any,
    grid_points: Any,
    confidence: float | None,
    size_wh: tuple[int, int] | None = None,
    agreement: float = GRID_AGREEMENT,
) -> np.ndarray:
    """The frame's corners (TL, TR, BR, BL) checked against the grid found inside them (117
    points, same pixels, answered with ``confidence``): kept when each lies within
    ``agreement`` of the side of where the grid puts it, or when the grid cannot say
    (:func:`grid_placement`); else all four where the grid puts them.

    A corner the detector placed off (a colony over it, a leg or a tape sleeve taken for it)
    still leaves the warp close enough for gridpose to find the whole grid, and 117 points
    place the lattice, and so the corners, to well under 1 % of the side. Measured in
    docs/grid.md.
    """
    placed, _ = grid_placement(grid_points, confidence, size_wh)
    return corners_against_placement(corners, placed, agreement)


def corners_against_placement(
    corners: Any, placed: np.ndarray | None, agreement: float = GRID_AGREEMENT
) -> np.ndarray:
    """The step of :func:`corners_checked_by_grid` after :func:`grid_placement`: ``corners``
    kept when ``placed`` is None or each lies within ``agreement`` of the side of its placed
    twin, else ``placed``. For a caller that also reports why the grid could not say."""
    given = np.asarray(corners, dtype=np.float64)
    if placed is None:
        return given
    apart = np.linalg.norm(placed - given, axis=1) / max(quadrat_side(given), 1e-9)
    return given if float(apart.max()) <= agreement else placed


def grid_in_photo(grid_in_warp: Any, to_warp: np.ndarray) -> np.ndarray:
    """Grid points found in the quadrat's warp, in the photo's pixels (``to_warp``: the
    photo -> warp homography of :func:`quadrat_transform`), as the corner check reads them."""
    points = np.asarray(grid_in_warp, dtype=np.float64).reshape(-1, 1, 2)
    return np.asarray(cv2.perspectiveTransform(points, np.linalg.inv(to_warp)).reshape(-1, 2))


def outside_by(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """How far each (x, y) point lies outside a ``width`` x ``height`` image (0 inside; NaN
    points count 0)."""
    x, y = np.nan_to_num(points[:, 0]), np.nan_to_num(points[:, 1])
    zero = np.zeros(len(points))
    return np.maximum.reduce([-x, x - width, -y, y - height, zero])

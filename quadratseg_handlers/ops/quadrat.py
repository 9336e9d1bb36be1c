"""The quadrat's geometry between gridcorners and gridpose: the upright crop from 4 corners.

The bridge (and the demo) call gridcorners on the photo, warp the quadrat upright with
:func:`warp_quadrat`, then call gridpose on the warped image. gridcorners' second pass
(REFINE_CORNERS) predicts on that same upright crop and merges the two passes' corners with
:func:`merge_corner_passes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.cvat.shapes import skeleton_points
from quadratseg_handlers.ops.template import CORNER_POINTS

PASS_AGREEMENT = 0.03
"""Two passes' corners closer than this fraction of the quadrat's side are the same corner."""


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

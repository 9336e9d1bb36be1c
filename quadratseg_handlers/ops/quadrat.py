"""The quadrat's geometry between gridcorners and gridpose: the upright crop from 4 corners.

The bridge (and the demo) call gridcorners on the photo, warp the quadrat upright with
:func:`warp_quadrat`, then call gridpose on the warped image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.cvat.shapes import skeleton_points
from quadratseg_handlers.ops.template import CORNER_POINTS


def quadrat_transform(corners: Any, size: int | tuple[int, int], margin: int = 0) -> np.ndarray:
    """The 3 x 3 homography taking the quadrat's corners (TL, TR, BR, BL) to an upright
    ``size`` (an int for a square, or (width, height)) image, ``margin`` pixels inside it.

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
    width, height = (size, size) if isinstance(size, int) else size
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
    size: int | tuple[int, int],
    *,
    margin: int = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """The quadrat cropped upright from ``image``: corners TL, TR, BR, BL go to the corners of
    a ``size`` image (``margin`` pixels inside), the step between gridcorners and gridpose.

    ``corners`` may be a (4, 2) array or the gridcorners skeleton shape itself.
    """
    if isinstance(corners, Mapping):
        corners = skeleton_points(corners)
    matrix = quadrat_transform(corners, size, margin)
    width, height = (size, size) if isinstance(size, int) else size
    return cv2.warpPerspective(
        np.asarray(image),
        matrix,
        (int(width), int(height)),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
    )

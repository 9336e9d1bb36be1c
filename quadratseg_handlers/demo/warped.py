"""The drawn quadrat warped upright, as gridpose and coralseg see it, with its truth there.

The training sets, the accuracy tests and the benchmarks all warp the same way: from the four
corners into a square of ``WARP_SIZE`` with a ``WARP_MARGIN`` border.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from quadratseg_handlers.demo.synthetic import SyntheticQuadrat
from quadratseg_handlers.ops.gridmask import dilate, draw_grid_mask
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import quadrat_transform

WARP_SIZE = 640
"""Side of the warped quadrat the demo hands gridpose and coralseg (pixels)."""

WARP_MARGIN = 0.05
"""Margin around the warped quadrat, as a fraction of WARP_SIZE: the frame stays whole."""


@dataclass
class WarpedQuadrat:
    """A quadrat warped upright as gridpose and coralseg see it, with its truth there."""

    image: np.ndarray
    grid_points: np.ndarray
    transform: np.ndarray
    """3 x 3 map from the photo's pixels to the warped image's."""
    string_width: float
    """The string's width in warped pixels (about)."""


def warped_view(
    scene: SyntheticQuadrat,
    size: int = WARP_SIZE,
    *,
    corners: np.ndarray | None = None,
    margin: float = WARP_MARGIN,
) -> WarpedQuadrat:
    """The scene's quadrat warped upright from ``corners`` (default: the true ones)."""
    chosen = scene.corners if corners is None else corners
    transform = quadrat_transform(chosen, size, int(round(margin * size)))
    image = cv2.warpPerspective(scene.image, transform, (size, size), flags=cv2.INTER_LINEAR)
    width = scene.string_width * size / scene.side
    return WarpedQuadrat(image, project(transform, scene.grid_points), transform, width)


def remove_string(view: WarpedQuadrat) -> np.ndarray:
    """The warped quadrat with its grid string painted out by OpenCV (grid removal's stand-in)."""
    width = max(3.0, 2.0 * view.string_width + 2.0)
    size = (view.image.shape[1], view.image.shape[0])
    mask = dilate(draw_grid_mask(view.grid_points, size, width), 1).astype(np.uint8)
    return np.asarray(cv2.inpaint(view.image, mask, 3, cv2.INPAINT_TELEA))


def warped_masks(
    scene: SyntheticQuadrat, transform: np.ndarray, size: tuple[int, int]
) -> list[tuple[str, np.ndarray]]:
    """Each colony's mask carried by ``transform`` into a ``size`` (width, height) image."""
    out = []
    for coral in scene.corals:
        mask = cv2.warpPerspective(
            coral.mask.astype(np.uint8), transform, size, flags=cv2.INTER_NEAREST
        )
        out.append((coral.label, mask.astype(bool)))
    return out

"""Instance masks to outlines: connected parts, outer rings, simplification, bounding boxes.

A CVAT polygon is one ring without holes, so a mask is split into its connected parts and each
part is outlined by its outer ring (holes are filled in the polygon; a CVAT mask shape keeps
them, see :func:`quadratseg_handlers.cvat.instance_shapes`). Work happens on the tight crop
around the mask, so cost follows the instance size, not the image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MaskPart:
    """One connected part of a mask: its bitmap crop, where the crop sits, and its outline."""

    bitmap: np.ndarray
    """Boolean crop of this part alone, holes kept; row 0 / column 0 sit at (y0, x0)."""
    x0: int
    y0: int
    polygon: np.ndarray
    """Outer ring as an (N, 2) float array of (x, y) in image pixels, N >= 3."""
    area: int
    """Number of pixels of the part (holes excluded)."""

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Inclusive pixel box (xtl, ytl, xbr, ybr) of the bitmap crop."""
        height, width = self.bitmap.shape
        return self.x0, self.y0, self.x0 + width - 1, self.y0 + height - 1


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive (xtl, ytl, xbr, ybr) of the non-zero pixels, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def outer_ring(bitmap: np.ndarray, tolerance: float = 1.0) -> np.ndarray:
    """The outer contour of the largest blob in a bitmap, simplified to ``tolerance`` pixels.

    Returns an (N, 2) float array of pixel-centre coordinates relative to the bitmap; empty
    (0, 2) when the bitmap has no pixels.
    """
    contours, _ = cv2.findContours(
        np.ascontiguousarray(bitmap, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return np.zeros((0, 2), dtype=np.float64)
    contour = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    if tolerance > 0 and len(contour) > 3:
        simplified = cv2.approxPolyDP(contour, tolerance, True)
        if len(simplified) >= 3:
            contour = simplified
    return contour.reshape(-1, 2).astype(np.float64)


def mask_parts(
    mask: np.ndarray,
    *,
    origin: tuple[int, int] = (0, 0),
    tolerance: float = 1.0,
    min_area: int = 1,
) -> list[MaskPart]:
    """Split a mask into connected parts (8-connectivity), largest first.

    ``mask`` may be a crop whose top-left pixel sits at ``origin`` = (x, y) in the image. Parts
    smaller than ``min_area`` pixels, or whose outline has fewer than 3 points, are dropped.
    """
    box = bounding_box(mask)
    if box is None:
        return []
    xtl, ytl, xbr, ybr = box
    crop = np.ascontiguousarray(mask[ytl : ybr + 1, xtl : xbr + 1], dtype=np.uint8)
    crop = (crop > 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    parts: list[MaskPart] = []
    for index in range(1, count):
        area = int(stats[index, cv2.CC_STAT_AREA])
        if area < max(min_area, 1):
            continue
        left = int(stats[index, cv2.CC_STAT_LEFT])
        top = int(stats[index, cv2.CC_STAT_TOP])
        width = int(stats[index, cv2.CC_STAT_WIDTH])
        height = int(stats[index, cv2.CC_STAT_HEIGHT])
        bitmap = labels[top : top + height, left : left + width] == index
        ring = outer_ring(bitmap, tolerance)
        if len(ring) < 3:
            continue
        x0 = origin[0] + xtl + left
        y0 = origin[1] + ytl + top
        parts.append(MaskPart(bitmap, x0, y0, ring + (x0, y0), area))
    parts.sort(key=lambda part: -part.area)
    return parts


def polygon_to_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise an (N, 2) polygon in image pixels into a boolean mask of the given size."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    if len(polygon) >= 3:
        cv2.fillPoly(canvas, [np.round(np.asarray(polygon)).astype(np.int32)], 1)
    return canvas.astype(bool)

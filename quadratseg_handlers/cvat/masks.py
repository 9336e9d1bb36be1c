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
    return _simplified(max(contours, key=lambda c: (cv2.contourArea(c), len(c))), tolerance)


def _simplified(contour: np.ndarray, tolerance: float) -> np.ndarray:
    """An OpenCV contour simplified to ``tolerance`` pixels, as an (N, 2) float array."""
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
    window = mask[ytl : ybr + 1, xtl : xbr + 1]
    crop = window.astype(np.uint8) if window.dtype == bool else (window > 0).view(np.uint8)
    # Each connected part has exactly one outer border (a top-level contour of the two-level
    # hierarchy; an island inside a hole is top-level again). One border, the usual case, means
    # the crop is the part: no labelling needed.
    contours, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    outers = [contours[int(i)] for i in np.flatnonzero(hierarchy[0, :, 3] < 0)]
    if len(outers) == 1:
        regions = [(outers[0], crop.view(bool), 0, 0, int(np.count_nonzero(crop)))]
    else:
        _, labels = cv2.connectedComponents(crop, connectivity=8)
        areas = np.bincount(labels.ravel())
        regions = []
        for border in sorted(outers, key=lambda c: int(labels[c[0, 0, 1], c[0, 0, 0]])):
            index = labels[border[0, 0, 1], border[0, 0, 0]]
            left, top, width, height = cv2.boundingRect(border)
            bitmap = labels[top : top + height, left : left + width] == index
            regions.append((border, bitmap, left, top, int(areas[index])))
    parts: list[MaskPart] = []
    for border, bitmap, left, top, area in regions:
        if area < max(min_area, 1):
            continue
        ring = _simplified(border - (left, top), tolerance)
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

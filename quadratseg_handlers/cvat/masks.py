"""Instance masks to outlines: connected parts, outer rings, simplification, bounding boxes.

A CVAT polygon is one ring without holes, so a mask is split into its connected parts and each
part is outlined by its outer ring (holes are filled in the polygon; a CVAT mask shape keeps
them, see :func:`quadratseg_handlers.cvat.instance_shapes`). Work happens on the tight crop
around the mask, so cost follows the instance size, not the image size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

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


class MaskValues(Sequence[int]):
    """A CVAT mask shape's ``mask``: the crop's 0/1 values row-major, then [xtl, ytl, xbr, ybr].

    Held as the boolean crop rather than one Python int per pixel (300 colony masks are
    millions of values): it reads, slices and compares as that list, and
    :func:`quadratseg_handlers.cvat.answer_json` writes its JSON text from the array in C,
    the same bytes ``json.dumps`` writes for the list.
    """

    __slots__ = ("box", "crop")

    def __init__(self, crop: np.ndarray, box: tuple[int, int, int, int]) -> None:
        self.crop = np.array(crop, dtype=bool)
        """The boolean crop (a copy): CVAT's mask box, holes kept."""
        self.box = tuple(int(value) for value in box)
        """(xtl, ytl, xbr, ybr), right and bottom inclusive."""
        xtl, ytl, xbr, ybr = self.box
        if self.crop.shape != (ybr - ytl + 1, xbr - xtl + 1):
            raise ValueError(f"a {self.crop.shape} crop does not fill the mask box {self.box}")

    def array(self) -> np.ndarray:
        """The values as one int64 array (crop then box)."""
        return np.concatenate((self.crop.reshape(-1), np.asarray(self.box, dtype=np.int64)))

    def tolist(self) -> list[int]:
        """The plain list of ints CVAT receives."""
        return self.array().tolist()

    def json(self) -> str:
        """The list's JSON text as ``json.dumps`` writes it, built in one array pass."""
        tail = (", ".join(map(str, self.box)) + "]").encode("ascii")
        size = self.crop.size
        text = np.empty(1 + 3 * size + len(tail), dtype=np.uint8)
        text[0] = ord("[")
        values = text[1 : 1 + 3 * size].reshape(size, 3)
        np.add(self.crop.reshape(-1).view(np.uint8), ord("0"), out=values[:, 0])
        values[:, 1] = ord(",")
        values[:, 2] = ord(" ")
        text[1 + 3 * size :] = np.frombuffer(tail, dtype=np.uint8)
        return str(text.data, "ascii")

    def __len__(self) -> int:
        return self.crop.size + 4

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> list[int]: ...
    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return self.array()[index].tolist()
        size = len(self)
        if not -size <= index < size:
            raise IndexError("mask value index out of range")
        index %= size
        return int(self.crop.flat[index]) if index < self.crop.size else self.box[index - size + 4]

    def __iter__(self) -> Iterator[int]:
        return iter(self.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MaskValues):
            return self.box == other.box and np.array_equal(self.crop, other.crop)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        height, width = self.crop.shape
        return f"MaskValues({width}x{height} crop, box={list(self.box)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return MaskValues, (self.crop, self.box)


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
    A boolean mask of one part is not copied: that part's bitmap is a view into ``mask``.
    """
    crop = mask.view(np.uint8) if mask.dtype == bool else (mask > 0).view(np.uint8)
    # Each connected part has exactly one outer border (a top-level contour of the two-level
    # hierarchy; an island inside a hole is top-level again). One border, the usual case, means
    # the part is everything inside its bounding rectangle: no labelling needed. The borders
    # give the parts' rectangles, so no pass over the pixels looks for the mask's extent.
    contours, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    outers = [contours[int(i)] for i in np.flatnonzero(hierarchy[0, :, 3] < 0)]
    if len(outers) == 1:
        left, top, width, height = cv2.boundingRect(outers[0])
        bitmap = crop[top : top + height, left : left + width]
        regions = [(outers[0], bitmap.view(bool), left, top, cv2.countNonZero(bitmap))]
    else:
        _, labels = cv2.connectedComponents(crop, connectivity=8)
        areas = np.bincount(labels.ravel())
        regions = []
        for border in sorted(outers, key=lambda c: int(labels[c[0, 0, 1], c[0, 0, 0]])):
            index = labels[border[0, 0, 1], border[0, 0, 0]]
            left, top, width, height = cv2.boundingRect(border)
            part = labels[top : top + height, left : left + width] == index
            regions.append((border, part, left, top, int(areas[index])))
    parts: list[MaskPart] = []
    for border, bitmap, left, top, area in regions:
        if area < max(min_area, 1):
            continue
        ring = _simplified(border - (left, top), tolerance)
        if len(ring) < 3:
            continue
        x0 = origin[0] + left
        y0 = origin[1] + top
        parts.append(MaskPart(bitmap, x0, y0, ring + (x0, y0), area))
    parts.sort(key=lambda part: -part.area)
    return parts


def polygon_to_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise an (N, 2) polygon in image pixels into a boolean mask of the given size."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    if len(polygon) >= 3:
        cv2.fillPoly(canvas, [np.round(np.asarray(polygon)).astype(np.int32)], 1)
    return canvas.astype(bool)

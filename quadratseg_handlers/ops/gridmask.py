"""The grid-string mask: which pixels grid removal paints out, drawn from the 117 grid points.

Segments (see :mod:`quadratseg_handlers.ops.template` for the lattice): every pair of
neighbouring points in a lattice row or column is a segment. Those in rows 1..9 and columns
1..9 are the 18 strings, each running frame to frame: row ``r`` from (r, 0) to (r, 10) and
column ``c`` from (0, c) to (10, c), 10 segments each, 180 in all; the first and last segment
of each string are the ones that reach the frame. Pairs in row 0 or 10 or column 0 or 10 lie
along the frame itself (8 per side, 32 in all; a side has no point at the corners, so it
stops one cell short of them); they are not string and are drawn only when asked
(``frame=True``).

Pixel rule: pixel (i, j) covers [i, i+1) x [j, j+1) in image coordinates (CVAT's and
YOLO's), so its centre is (i + 0.5, j + 0.5). It is masked when that centre lies within
``line_width / 2`` of a segment (a capsule: round ends). A horizontal segment at an integer y
therefore masks exactly ``line_width`` rows for an even width.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from quadratseg_handlers.ops.template import GRID_POINTS, GRID_SIZE, grid_lattice


def grid_segments(frame: bool = False) -> np.ndarray:
    """(S, 2) 0-based point indices of the segments drawn: 180 string segments (+32 frame)."""
    lattice = grid_lattice()
    last = GRID_SIZE - 1
    pairs = []
    for a in range(GRID_SIZE):
        on_frame = a in (0, last)
        if on_frame and not frame:
            continue
        for b in range(last):
            for first, second in (((a, b), (a, b + 1)), ((b, a), (b + 1, a))):
                i, j = lattice[first], lattice[second]
                if i >= 0 and j >= 0:
                    pairs.append((int(i), int(j)))
    return np.asarray(pairs, dtype=np.int64)


def clip_points(points: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Points (N, 2) moved onto the image rectangle [0, width] x [0, height]."""
    width, height = size_wh
    clipped = np.asarray(points, dtype=np.float64).copy()
    np.clip(clipped[:, 0], 0.0, float(width), out=clipped[:, 0])
    np.clip(clipped[:, 1], 0.0, float(height), out=clipped[:, 1])
    return clipped


def draw_segments(segments: np.ndarray, size_wh: tuple[int, int], line_width: float) -> np.ndarray:
    """A bool (height, width) mask of the pixels whose centre is within line_width/2 of a segment.

    ``segments`` is (S, 2, 2): S pairs of (x, y) end points. Each segment is evaluated only in
    its own bounding window, so the cost follows the mask area, not the image area.
    """
    width, height = size_wh
    mask = np.zeros((height, width), dtype=bool)
    radius = line_width / 2.0
    for (x0, y0), (x1, y1) in np.asarray(segments, dtype=np.float64).reshape(-1, 2, 2):
        left = max(math.ceil(min(x0, x1) - radius - 0.5), 0)
        right = min(math.floor(max(x0, x1) + radius - 0.5), width - 1)
        top = max(math.ceil(min(y0, y1) - radius - 0.5), 0)
        bottom = min(math.floor(max(y0, y1) + radius - 0.5), height - 1)
        if left > right or top > bottom:
            continue
        xs = np.arange(left, right + 1, dtype=np.float64)[None, :] + (0.5 - x0)
        ys = np.arange(top, bottom + 1, dtype=np.float64)[:, None] + (0.5 - y0)
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        if length2 > 0:
            t = np.clip((xs * dx + ys * dy) / length2, 0.0, 1.0)
            xs, ys = xs - t * dx, ys - t * dy
        mask[top : bottom + 1, left : right + 1] |= xs * xs + ys * ys <= radius * radius
    return mask


def draw_grid_mask(
    points: np.ndarray, size_wh: tuple[int, int], line_width: float, *, frame: bool = False
) -> np.ndarray:
    """The bool mask of the grid strings from the 117 points in skeleton order.

    Points outside the image are first clipped onto its border (``size_wh``: (width, height)).
    """
    grid = np.asarray(points, dtype=np.float64)
    if grid.shape != (GRID_POINTS, 2):
        raise ValueError(f"expected ({GRID_POINTS}, 2) grid points, got shape {grid.shape}")
    if not np.isfinite(grid).all():
        raise ValueError("grid points must be finite")
    return draw_segments(clip_points(grid, size_wh)[grid_segments(frame)], size_wh, line_width)


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a bool mask by ``pixels`` in every direction (a disc of that radius); 0: unchanged."""
    if pixels <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)

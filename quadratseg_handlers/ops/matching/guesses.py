"""First guesses of where a template sits on its detections, before any correspondence.

A large template (the 117-point grid): rotation, shear and per-axis scale from the
directions and lengths of nearest-neighbour vectors, and the translation that the most
(detection, template point) pairs vote for (a Hough transform). A small one (the 4 corners):
every similarity through two detections and two template points, scored.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from quadratseg_handlers.ops.matching.geometry import (
    along,
    direction_spectrum,
    line_direction,
    linear_map,
    neighbour_vectors,
    typical_length,
    wrap,
)
from quadratseg_handlers.ops.matching.layout import Layout

PAIR_DETECTIONS = 12
"""Point-pair hypotheses use at most this many detections (the best scored)."""

PAIR_GATE = 0.3
"""A point-pair hypothesis counts template points within this many spacings of a detection."""

HOUGH_BIN = 0.25
"""Bin size of the translation votes (fraction of the point spacing)."""


def _rotation(layout: Layout, angles: np.ndarray, limit: float) -> float:
    """The rotation (degrees, within +-limit) that best turns the template's neighbour
    directions into the detections' (circular correlation of direction histograms)."""
    correlation = np.real(np.fft.ifft(direction_spectrum(angles) * layout.spectrum))
    shifts = np.arange(-int(limit), int(limit) + 1)
    values = correlation[shifts % 360]
    best = int(np.argmax(values))
    offset = 0.0
    if 0 < best < len(values) - 1:
        left, mid, right = values[best - 1 : best + 2]
        curve = left - 2.0 * mid + right
        offset = 0.5 * (left - right) / curve if curve < 0 else 0.0
    return float(shifts[best] + offset)


def _axis_columns(
    layout: Layout, angles: np.ndarray, logs: np.ndarray, angle: float
) -> np.ndarray | None:
    """Where the template's x and y axes go: a 2 x 2 linear map with its own direction and
    length per axis, so that a sheared or stretched view starts close.

    Per axis, the detections' neighbour vectors within AXIS_TOLERANCE of where ``angle``
    turns the template's give the direction (their mean line) and the length (the ratio of
    typical lengths). None when the template or the detections have too few along an axis.
    """
    if not layout.axes:
        return None
    columns = []
    for axis, (line, length) in enumerate(layout.axes):
        aligned = along(angles, line + angle)
        if aligned.sum() < 4:
            return None
        turn = angle + float(wrap(line_direction(angles[aligned]) - line - angle))
        direction = np.radians(turn + 90.0 * axis)
        ratio = typical_length(logs[aligned]) / length
        columns.append(ratio * np.array([np.cos(direction), np.sin(direction)]))
    return np.column_stack(columns)


def _vote_bins(detected: np.ndarray, placed: np.ndarray, low: float, bin_size: float) -> np.ndarray:
    """(M, N) bin along one axis of each translation moving a placed point onto a detection:
    ``((detected - placed - low) / bin_size)`` truncated, computed in place (M x N is large)."""
    offsets = np.subtract.outer(detected, placed)
    offsets -= low
    offsets /= bin_size
    return offsets.astype(np.int64)


def lattice_guess(layout: Layout, detections: np.ndarray, max_rotation: float) -> np.ndarray | None:
    """An affine placement of a large template on the detections, without correspondences.

    Rotation, shear and scale come from neighbour vectors; the translation is the one most
    (detection, template point) pairs vote for. Votes of template points near the centre are
    the least affected by perspective, so the placement is right there, up to a whole-cell
    shift that :func:`best_shift` settles.
    """
    angles, logs = neighbour_vectors(detections)
    if len(angles) < 4 or len(layout.angles) < 4:
        return None
    angle = _rotation(layout, angles, max_rotation)
    linear = _axis_columns(layout, angles, logs, angle)
    if linear is None:
        turn = np.radians(angle)
        ratio = typical_length(logs) / typical_length(layout.logs)
        linear = ratio * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    if not np.all(np.isfinite(linear)) or np.linalg.det(linear) <= 0:
        return None
    centre = layout.isotropic.mean(axis=0)
    placed = (layout.isotropic - centre) @ linear.T
    bin_size = HOUGH_BIN * layout.spacing * np.sqrt(np.linalg.det(linear))
    low = detections.min(axis=0) - placed.max(axis=0)
    high = detections.max(axis=0) - placed.min(axis=0)
    extent = ((high - low) / bin_size).astype(np.int64) + 1
    cells = _vote_bins(detections[:, 0], placed[:, 0], low[0], bin_size) * extent[1]
    cells += _vote_bins(detections[:, 1], placed[:, 1], low[1], bin_size)
    counts = np.bincount(cells.ravel(), minlength=int(extent.prod()))
    grid = counts.reshape(extent).astype(np.float64)
    smoothed = uniform_filter(grid, size=3, mode="constant")
    px, py = (int(v) for v in np.unravel_index(int(np.argmax(smoothed)), grid.shape))
    x0, y0 = max(px - 1, 0), max(py - 1, 0)
    window = grid[x0 : px + 2, y0 : py + 2]
    weight = window.sum()
    cell = np.array(
        [
            (window.sum(axis=1) * np.arange(x0, x0 + window.shape[0])).sum() / weight,
            (window.sum(axis=0) * np.arange(y0, y0 + window.shape[1])).sum() / weight,
        ]
    )
    return linear_map(linear, centre, low + (cell + 0.5) * bin_size) @ layout.to_isotropic


def pair_guesses(
    layout: Layout, detections: np.ndarray, max_rotation: float, count: int = 3
) -> list[np.ndarray]:
    """Placements of a small template: every similarity that maps two template points onto
    two of the best PAIR_DETECTIONS detections within +-max_rotation, ranked by how many
    template points then land within PAIR_GATE spacings of a detection."""
    dets = detections[:PAIR_DETECTIONS]
    n, m = len(layout.isotropic), len(dets)
    if m < 2:
        return []
    t = layout.isotropic[:, 0] + 1j * layout.isotropic[:, 1]
    d = dets[:, 0] + 1j * dets[:, 1]
    ti, tj = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    di, dj = (a.ravel() for a in np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))
    ti, tj = ti[ti != tj], tj[ti != tj]
    di, dj = di[di != dj], dj[di != dj]
    z = ((d[dj] - d[di])[:, None] / (t[tj] - t[ti])[None, :]).ravel()
    shift = (d[di][:, None] - z.reshape(len(di), len(ti)) * t[ti][None, :]).ravel()
    valid = (np.abs(np.degrees(np.angle(z))) <= max_rotation) & (np.abs(z) > 1e-9)
    if not valid.any():
        return []
    z, shift = z[valid], shift[valid]
    placed = z[:, None] * t[None, :] + shift[:, None]
    spacing = np.abs(z) * layout.spacing
    distance = np.abs(placed[:, :, None] - d[None, None, :]).min(axis=2) / spacing[:, None]
    inliers = (distance <= PAIR_GATE).sum(axis=1)
    cost = np.minimum(distance, PAIR_GATE).sum(axis=1)
    guesses = []
    for index in np.lexsort((cost, -inliers))[:count]:
        a, b = z[index].real, z[index].imag
        similarity = np.array(
            [[a, -b, shift[index].real], [b, a, shift[index].imag], [0.0, 0.0, 1.0]]
        )
        guesses.append(similarity @ layout.to_isotropic)
    return guesses

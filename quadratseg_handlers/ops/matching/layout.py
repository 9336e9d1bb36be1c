"""A template placed on an image: what every matching of it needs, computed once and cached."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from quadratseg_handlers.ops.matching.geometry import (
    along,
    direction_spectrum,
    line_direction,
    neighbour_vectors,
    pitch,
    typical_length,
)

SHIFT_REACH = 2.5
"""Largest template shift (in point spacings) tried against a whole-cell misplacement."""


@dataclass(frozen=True)
class Layout:
    """What matching needs to know about a template placed on an image, computed once.

    Fits map ``points`` (the template in image pixels, the placement the template itself
    suggests) to detections. The shape statistics (spacing, neighbour vectors) come from
    ``isotropic``, the template scaled alike along both axes, so that on a non-square image
    a square lattice stays square, as the quadrat does.
    """

    points: np.ndarray
    """(N, 2) the template in image pixels: its normalised coordinates times the
    image's (width, height)."""
    scale: np.ndarray
    """(width, height): pixels per normalised unit."""
    isotropic: np.ndarray
    """(N, 2) the template times sqrt(width * height) along both axes."""
    to_isotropic: np.ndarray
    """3 x 3 map from ``points`` to ``isotropic``."""
    spacing: float
    """Typical distance between neighbouring points of ``isotropic``."""
    angles: np.ndarray
    """Directions (degrees) of the nearest-neighbour vectors of ``isotropic``."""
    logs: np.ndarray
    """Their log lengths."""
    spectrum: np.ndarray
    """Conjugate FFT of their direction histogram."""
    axes: tuple[tuple[float, float], ...]
    """Per axis, (line direction, typical length) of the neighbour vectors along it; empty
    when either axis has too few."""
    reach: np.ndarray
    """(N,) distance of each point from the template's central point, in spacings."""
    shifts: np.ndarray
    """(K, 2) offsets (in ``points``) moving the central point onto another template point
    within SHIFT_REACH spacings."""
    shifted: np.ndarray
    """(U, 2) the distinct positions of ``points`` moved by every shift."""
    shifted_index: np.ndarray
    """(K, N) which of ``shifted`` each template point lands on under each shift."""


@lru_cache(maxsize=16)
def _cached_layout(data: bytes, count: int, width: float, height: float) -> Layout:
    """The layout of the ``count`` normalised points in ``data`` on a width x height image."""
    scale = np.array([width, height])
    normalised = np.frombuffer(data, dtype=np.float64).reshape(count, 2)
    points = normalised * scale
    isotropic = normalised * np.sqrt(width * height)
    spacing = pitch(isotropic)
    angles, logs = neighbour_vectors(isotropic)
    axes = []
    for direction in (0.0, 90.0):
        aligned = along(angles, direction)
        if aligned.sum() >= 4:
            axes.append((line_direction(angles[aligned]), typical_length(logs[aligned])))
    central = int(np.argmin(np.linalg.norm(isotropic - isotropic.mean(axis=0), axis=1)))
    reach = np.linalg.norm(isotropic - isotropic[central], axis=1) / spacing
    shifts = (points - points[central])[reach <= SHIFT_REACH]
    moved = (points[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
    _, first, inverse = np.unique(
        np.round(moved / scale * 1e6), axis=0, return_index=True, return_inverse=True
    )
    return Layout(
        points=points,
        scale=scale,
        isotropic=isotropic,
        to_isotropic=np.diag([*(np.sqrt(width * height) / scale), 1.0]),
        spacing=spacing,
        angles=angles,
        logs=logs,
        spectrum=np.conj(direction_spectrum(angles)) if len(angles) else np.zeros(360),
        axes=tuple(axes) if len(axes) == 2 else (),
        reach=reach,
        shifts=shifts,
        shifted=moved[first],
        shifted_index=inverse.reshape(len(shifts), count),
    )


def template_layout(template: np.ndarray, size_wh: np.ndarray) -> Layout:
    """The (cached) layout of a normalised template on an image of ``size_wh`` (width, height)."""
    data = np.ascontiguousarray(template, dtype=np.float64)
    return _cached_layout(data.tobytes(), len(data), float(size_wh[0]), float(size_wh[1]))

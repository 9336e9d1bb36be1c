"""Point-set geometry the matching works with: spacing, neighbour directions, 3 x 3 maps.

Pure NumPy/SciPy; a k-d tree finds neighbours, never a full distance matrix of detections.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

NEIGHBOURS = 4
"""Nearest neighbours whose vectors describe a point set's directions and spacing."""

AXIS_TOLERANCE = 20.0
"""Neighbour vectors within this many degrees of an axis count as along it."""


def project(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 homography to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    mapped = pts @ homography[:, :2].T + homography[:, 2]
    return mapped[:, :2] / mapped[:, 2:3]


def median(values: np.ndarray) -> float:
    """The median of a non-empty 1-D array, as ``np.median`` gives it for finite values, without
    its overhead (it runs several times per match)."""
    half = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float((low + high) / 2.0)


def pitch(points: np.ndarray) -> float:
    """Median nearest-neighbour distance: the typical spacing of a point set."""
    if len(points) < 2:
        return 1.0
    gaps = cdist(points, points)
    np.fill_diagonal(gaps, np.inf)
    return median(gaps.min(axis=1))


def _nearest_others(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, k) distances and indices of each point's k nearest other points, nearest first.

    A k-d tree query, not the full distance matrix: for the few hundred detections of a grid
    this is what makes the initial placement cheap.
    """
    distances, indices = cKDTree(points).query(points, k=k + 1)
    others = indices != np.arange(len(points))[:, None]
    # a point with k + 1 copies at distance 0 may not be listed itself: drop the last one
    others[others.all(axis=1), -1] = False
    return distances[others].reshape(-1, k), indices[others].reshape(-1, k)


def neighbour_vectors(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions (degrees) and log lengths of the vectors from each point to its nearest
    neighbours, long outliers dropped."""
    if len(points) < 2:
        return np.zeros(0), np.zeros(0)
    k = min(NEIGHBOURS, len(points) - 1)
    lengths, nearest = _nearest_others(points, k)
    keep = (lengths > 0) & (lengths <= 1.6 * median(lengths[:, 0]))
    vectors = points[nearest[keep]] - points[np.nonzero(keep)[0]]
    return np.degrees(np.arctan2(vectors[:, 1], vectors[:, 0])), np.log(lengths[keep])


def wrap(angles: np.ndarray | float, period: float = 180.0) -> np.ndarray:
    """Angles (degrees) brought into [-period / 2, period / 2)."""
    return (np.asarray(angles) + period / 2.0) % period - period / 2.0


def line_direction(angles: np.ndarray) -> float:
    """Mean direction (degrees) of undirected lines, i.e. of angles taken modulo 180."""
    doubled = np.radians(2.0 * angles)
    return float(np.degrees(np.arctan2(np.sin(doubled).sum(), np.cos(doubled).sum())) / 2.0)


def typical_length(logs: np.ndarray) -> float:
    """The most common vector length (a histogram mode of their logs ``logs``), robust to stray
    short and long ones."""
    low = logs.min()
    hist = np.bincount(((logs - low) / 0.05).astype(np.int64))
    peak = int(np.argmax(np.convolve(hist, np.ones(3), mode="same")))
    near = np.abs(logs - (low + (peak + 0.5) * 0.05)) <= 0.3
    return float(np.exp(median(logs[near])))


def direction_spectrum(angles: np.ndarray) -> np.ndarray:
    """FFT of a circular 1-degree histogram of directions, smoothed over a few degrees."""
    hist = np.bincount(angles.astype(np.int64) % 360, minlength=360).astype(float)
    kernel = np.exp(-0.5 * (np.arange(-9, 10) / 3.0) ** 2)
    smoothed = np.convolve(np.concatenate([hist[-9:], hist, hist[:9]]), kernel, mode="valid")
    return np.fft.fft(smoothed)


def along(angles: np.ndarray, direction: float) -> np.ndarray:
    """Which undirected angles lie within AXIS_TOLERANCE of ``direction``."""
    return np.asarray(np.abs(wrap(angles - direction)) <= AXIS_TOLERANCE)


def spread(points: np.ndarray) -> float:
    """Ratio of the smaller to the larger singular value: 0 for collinear points."""
    if len(points) < 3:
        return 0.0
    values = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    return float(values[-1] / values[0]) if values[0] > 0 else 0.0


def linear_map(linear: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3 x 3 map x -> linear (x - source) + target."""
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = target - linear @ source
    return matrix


def translation(offset: np.ndarray) -> np.ndarray:
    """The 3 x 3 map x -> x + offset."""
    matrix = np.eye(3)
    matrix[:2, 2] = offset
    return matrix

"""Put detected points in template order: robust alignment, Hungarian matching, homography.

A grid or corner detector returns an unordered cloud of points: some template points are
missed, some detections are spurious or duplicated, and the quadrat is rotated, scaled,
shifted and seen in perspective. :func:`match_points` answers, for every template point, which
detection it is, or where it must be when none is:

1. **Initial placement** of the template on the detections, without correspondences.
   Large templates (the 117-point grid): rotation, shear and per-axis scale from the
   directions and lengths of nearest-neighbour vectors, and the translation that the most
   (detection, template point) pairs vote for (a Hough transform). The fit then grows from
   the template's centre outwards (RANSAC fits with a tight threshold, affine first, then a
   homography), so perspective is followed before the outer points are matched; a periodic
   template fits as well one cell off in the middle, so the shift under which the most
   template points find a detection is chosen last. Small templates (the 4 corners): every
   similarity through two detections and two template points is scored. The template's own
   placement (its normalised coordinates scaled to the image) is always a candidate too.
2. **Matching**: ``scipy.optimize.linear_sum_assignment`` on the distances between the placed
   template and the detections, in normalised image units (dx / width, dy / height); pairs
   further apart than the gate, never more than ``max_cost``, are rejected.
3. **Refinement**: a RANSAC homography from the matches, matched again, until the pairs are
   stable; then a final gate from the fit's residuals rejects spurious detections that sit
   near template points with no true detection.
4. **Filling**: template points without a detection are placed by the homography and
   reported as filled; detections left over (spurious ones, duplicates) are dropped.

Too few matches, or matches on a line, give an empty :class:`Match` whose ``reason`` says
why, never a guessed skeleton. Pure NumPy/SciPy/OpenCV: usable from a notebook on any
detector's output. OpenCV's RANSAC is seeded, so the same input gives the same answer.

Cost: a trained detector answers a few hundred points, so neighbours, duplicates and the
(template point, detection) pairs within a gate come from k-d trees, never from a full
distance matrix, with the distances ``cdist`` would give; what is left is mostly OpenCV's
homography fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import uniform_filter
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

SMALL_TEMPLATE = 8
"""Templates up to this many points are placed by scoring point-pair hypotheses."""

PAIR_DETECTIONS = 12
"""Point-pair hypotheses use at most this many detections (the best scored)."""

PAIR_GATE = 0.3
"""A point-pair hypothesis counts template points within this many spacings of a detection."""

DUPLICATE_RADIUS = 0.1
"""Detections closer than this fraction of the template's point spacing are duplicates."""

MAX_DETECTIONS_PER_POINT = 4
"""At most this many detections per template point are considered (the best scored)."""

NEIGHBOURS = 4
"""Nearest neighbours whose vectors describe a point set's directions and spacing."""

AXIS_TOLERANCE = 20.0
"""Neighbour vectors within this many degrees of an axis count as along it."""

GROWTH_RADII = (1.5, 3.0, np.inf)
"""Radii (in point spacings around the template's centre) of the growing first fits."""

GROWTH_MIN_PAIRS = 6
"""Fewest pairs a growing fit needs: an exact fit through one wrong pair would mislead."""

GROWTH_HOMOGRAPHY_PAIRS = 12
"""Pairs from which a growing fit (radius 3 or more) is a homography, not an affine map."""

GROWTH_INLIER = 0.2
"""RANSAC inlier threshold of the growing fits (fraction of the point spacing)."""

HOUGH_BIN = 0.25
"""Bin size of the translation votes (fraction of the point spacing)."""

SHIFT_REACH = 2.5
"""Largest template shift (in point spacings) tried against a whole-cell misplacement."""

COARSE_GATE = 0.45
"""Gate of the first matching (fraction of the point spacing), before any fit."""

REFINE_GATE = 0.35
"""Gate while the homography is refined (fraction of the point spacing)."""

FINAL_GATE_FLOOR = 0.1
"""Smallest final gate (fraction of the point spacing), however exact the fit."""

RESIDUAL_SIGMAS = 5.0
"""Final gate: this many robust standard deviations of the fit's residuals."""

FINAL_ROUNDS = 3
"""Most rounds of matching and fitting with the final gate."""

DENSE_PAIRS = 5000
"""Matchings with at most this many (template point, detection) combinations compute them all;
larger ones look up the detections near each point in a k-d tree."""

CANDIDATE_REACH = 2.0
"""A k-d tree look-up collects the detections within this many gates of each template point;
the next matchings reuse them while the template moves by less than the difference."""

MIN_SPREAD = 0.05
"""Matched points (template or detections) whose smaller/larger singular value ratio is below
this are taken as a line: they cannot place the rest of the template."""


@dataclass(frozen=True)
class Match:
    """Detections in template order, or an empty result with the ``reason`` there is none."""

    points: np.ndarray
    """(N, 2) image pixels in template order: the detection, or the homography's fill."""
    scores: np.ndarray
    """(N,) the matched detection's score; 0 for filled points."""
    detection: np.ndarray
    """(N,) index of the matched detection in the input, -1 for filled points."""
    residuals: np.ndarray
    """(N,) distance from the detection to its fitted template point (normalised units);
    NaN for filled points."""
    homography: np.ndarray | None
    """3 x 3 map from template (normalised) coordinates to image pixels."""
    dropped: np.ndarray
    """Indices of the input detections left out: spurious, duplicate or not finite."""
    reason: str = ""
    """Why there is no result; empty when there is one."""

    @property
    def ok(self) -> bool:
        """Whether every template point has a position."""
        return not self.reason

    @property
    def matched(self) -> np.ndarray:
        """(N,) True where a detection was matched."""
        return self.detection >= 0

    @property
    def filled(self) -> np.ndarray:
        """(N,) True where the point was placed by the homography, with no detection."""
        return self.detection < 0

    @property
    def matched_count(self) -> int:
        """How many template points got a detection."""
        return int(np.count_nonzero(self.detection >= 0))


def failed_match(reason: str, detections: int) -> Match:
    """An empty result: no points, every detection dropped, and why."""
    return Match(
        points=np.zeros((0, 2)),
        scores=np.zeros(0),
        detection=np.zeros(0, dtype=np.int64),
        residuals=np.zeros(0),
        homography=None,
        dropped=np.arange(detections),
        reason=reason,
    )


def project(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 homography to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    mapped = pts @ homography[:, :2].T + homography[:, 2]
    return mapped[:, :2] / mapped[:, 2:3]


def fill_from_template(points: np.ndarray, given: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) with the rows not ``given`` placed by the least-squares homography
    from the template's given points to them (ValueError when no usable map fits: fewer than
    4 points, or all on one line)."""
    source = np.asarray(template, dtype=np.float64)[given]
    target = np.asarray(points, dtype=np.float64)[given]
    matrix = None
    if len(source) >= 4:
        matrix, _ = cv2.findHomography(source, target, 0)
    if not _valid(matrix, source):
        raise ValueError(
            f"the {len(source)} given points fit no homography (on one line, or folded)"
        )
    assert matrix is not None
    filled = np.array(points, dtype=np.float64)
    filled[~given] = project(matrix, np.asarray(template, dtype=np.float64)[~given])
    return filled


# --- point-set geometry -------------------------------------------------------------------


def _median(values: np.ndarray) -> float:
    """The median of a non-empty 1-D array, as ``np.median`` gives it for finite values, without
    its overhead (it runs several times per match)."""
    half = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float((low + high) / 2.0)


def _pitch(points: np.ndarray) -> float:
    """Median nearest-neighbour distance: the typical spacing of a point set."""
    if len(points) < 2:
        return 1.0
    gaps = cdist(points, points)
    np.fill_diagonal(gaps, np.inf)
    return _median(gaps.min(axis=1))


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


def _neighbour_vectors(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions (degrees) and log lengths of the vectors from each point to its nearest
    neighbours, long outliers dropped."""
    if len(points) < 2:
        return np.zeros(0), np.zeros(0)
    k = min(NEIGHBOURS, len(points) - 1)
    lengths, nearest = _nearest_others(points, k)
    keep = (lengths > 0) & (lengths <= 1.6 * _median(lengths[:, 0]))
    vectors = points[nearest[keep]] - points[np.nonzero(keep)[0]]
    return np.degrees(np.arctan2(vectors[:, 1], vectors[:, 0])), np.log(lengths[keep])


def _wrap(angles: np.ndarray | float, period: float = 180.0) -> np.ndarray:
    """Angles (degrees) brought into [-period / 2, period / 2)."""
    return (np.asarray(angles) + period / 2.0) % period - period / 2.0


def _line_direction(angles: np.ndarray) -> float:
    """Mean direction (degrees) of undirected lines, i.e. of angles taken modulo 180."""
    doubled = np.radians(2.0 * angles)
    return float(np.degrees(np.arctan2(np.sin(doubled).sum(), np.cos(doubled).sum())) / 2.0)


def _typical_length(logs: np.ndarray) -> float:
    """The most common vector length (a histogram mode of their logs ``logs``), robust to stray
    short and long ones."""
    low = logs.min()
    hist = np.bincount(((logs - low) / 0.05).astype(np.int64))
    peak = int(np.argmax(np.convolve(hist, np.ones(3), mode="same")))
    near = np.abs(logs - (low + (peak + 0.5) * 0.05)) <= 0.3
    return float(np.exp(_median(logs[near])))


def _direction_spectrum(angles: np.ndarray) -> np.ndarray:
    """FFT of a circular 1-degree histogram of directions, smoothed over a few degrees."""
    hist = np.bincount(angles.astype(np.int64) % 360, minlength=360).astype(float)
    kernel = np.exp(-0.5 * (np.arange(-9, 10) / 3.0) ** 2)
    smoothed = np.convolve(np.concatenate([hist[-9:], hist, hist[:9]]), kernel, mode="valid")
    return np.fft.fft(smoothed)


def _along(angles: np.ndarray, direction: float) -> np.ndarray:
    """Which undirected angles lie within AXIS_TOLERANCE of ``direction``."""
    return np.asarray(np.abs(_wrap(angles - direction)) <= AXIS_TOLERANCE)


def _spread(points: np.ndarray) -> float:
    """Ratio of the smaller to the larger singular value: 0 for collinear points."""
    if len(points) < 3:
        return 0.0
    values = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    return float(values[-1] / values[0]) if values[0] > 0 else 0.0


def _linear_map(linear: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3 x 3 map x -> linear (x - source) + target."""
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = target - linear @ source
    return matrix


def _translation(offset: np.ndarray) -> np.ndarray:
    """The 3 x 3 map x -> x + offset."""
    matrix = np.eye(3)
    matrix[:2, 2] = offset
    return matrix


@dataclass(frozen=True)
class _Layout:
    """What matching needs to know about a template placed on an image, computed once.

    Fits map ``points`` (the template in image pixels, the placement the template itself
    suggests) to detections. The shape statistics (spacing, neighbour vectors) come from
    ``isotropic``, the template scaled alike along both axes, so that on a non-square image
    a square lattice stays square, as the quadrat does.
    """

    points: np.ndarray
    """(N, 2) the template in image pixels: its normalised coordinates times the size."""
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
def _cached_layout(data: bytes, count: int, width: float, height: float) -> _Layout:
    scale = np.array([width, height])
    normalised = np.frombuffer(data, dtype=np.float64).reshape(count, 2)
    points = normalised * scale
    isotropic = normalised * np.sqrt(width * height)
    spacing = _pitch(isotropic)
    angles, logs = _neighbour_vectors(isotropic)
    axes = []
    for direction in (0.0, 90.0):
        along = _along(angles, direction)
        if along.sum() >= 4:
            axes.append((_line_direction(angles[along]), _typical_length(logs[along])))
    central = int(np.argmin(np.linalg.norm(isotropic - isotropic.mean(axis=0), axis=1)))
    reach = np.linalg.norm(isotropic - isotropic[central], axis=1) / spacing
    shifts = (points - points[central])[reach <= SHIFT_REACH]
    moved = (points[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
    _, first, inverse = np.unique(
        np.round(moved / scale * 1e6), axis=0, return_index=True, return_inverse=True
    )
    return _Layout(
        points=points,
        scale=scale,
        isotropic=isotropic,
        to_isotropic=np.diag([*(np.sqrt(width * height) / scale), 1.0]),
        spacing=spacing,
        angles=angles,
        logs=logs,
        spectrum=np.conj(_direction_spectrum(angles)) if len(angles) else np.zeros(360),
        axes=tuple(axes) if len(axes) == 2 else (),
        reach=reach,
        shifts=shifts,
        shifted=moved[first],
        shifted_index=inverse.reshape(len(shifts), count),
    )


def _layout(template: np.ndarray, size: np.ndarray) -> _Layout:
    """The (cached) layout of a normalised template on an image of ``size`` (width, height)."""
    data = np.ascontiguousarray(template, dtype=np.float64)
    return _cached_layout(data.tobytes(), len(data), float(size[0]), float(size[1]))


# --- matching and fitting -----------------------------------------------------------------


class _Detections:
    """The detections a placed template is matched to, in pixels and normalised units.

    Distances are in normalised units (dx / width, dy / height), as ``cdist`` computes them.
    Against many detections a k-d tree finds the few near each template point, so no
    template x detection matrix is built, and its answer serves the next matchings as long as
    the template has not moved too far; small problems (the corners) take the matrix.
    """

    def __init__(self, pixels: np.ndarray, scale: np.ndarray) -> None:
        self.pixels = pixels
        """(M, 2) image pixels."""
        self.scale = scale
        """(width, height): pixels per normalised unit."""
        self.normalised = pixels / scale
        """(M, 2) normalised units."""
        self.lookup: tuple[np.ndarray, float, np.ndarray, np.ndarray] | None = None
        """The last tree look-up: the template's normalised points, how far it reached, and
        the (template point, detection) pairs it found."""

    @cached_property
    def tree(self) -> cKDTree:
        """k-d tree of the normalised detections."""
        return cKDTree(self.normalised)

    def pairs(self, placed: np.ndarray, gate: float) -> _Pairs:
        """Every (template point, detection) pair within ``gate`` of the template placed at
        ``placed`` (pixels, every template point in order)."""
        points = placed / self.scale
        if len(points) * len(self.normalised) <= DENSE_PAIRS:
            cost = cdist(points, self.normalised)
            rows, cols = np.nonzero(cost <= gate)
            return _Pairs(rows, cols, cost[rows, cols])
        rows, cols = self._candidates(points, gate)
        offset = points[rows] - self.normalised[cols]
        costs = np.sqrt(offset[:, 0] * offset[:, 0] + offset[:, 1] * offset[:, 1])
        near = costs <= gate
        return _Pairs(rows[near], cols[near], costs[near])

    def _candidates(self, points: np.ndarray, gate: float) -> tuple[np.ndarray, np.ndarray]:
        """Pairs among which are all those within ``gate``: the last look-up's while no point
        has moved by more than its reach less the gate (a detection within the gate now was
        within the gate plus the move then), else those of a new look-up reaching
        CANDIDATE_REACH gates."""
        if self.lookup is not None:
            where, reach, rows, cols = self.lookup
            moved = float(np.sqrt(((points - where) ** 2).sum(axis=1)).max())
            if moved + gate < reach * (1.0 - 1e-9):
                return rows, cols
        reach = CANDIDATE_REACH * gate
        found = cKDTree(points).sparse_distance_matrix(self.tree, reach, output_type="ndarray")
        self.lookup = (points, reach, found["i"], found["j"])
        return found["i"], found["j"]

    def nearest(self, placed: np.ndarray) -> np.ndarray:
        """(K,) distance from each of ``placed`` (pixels) to its nearest detection."""
        distances, _ = self.tree.query(placed / self.scale)
        return np.asarray(distances)


@dataclass(frozen=True)
class _Pairs:
    """(template point, detection) pairs and their distances (normalised units)."""

    template_index: np.ndarray
    detection_index: np.ndarray
    costs: np.ndarray

    def take(self, which: np.ndarray) -> _Pairs:
        """The pairs ``which`` selects (a mask or indices)."""
        return _Pairs(self.template_index[which], self.detection_index[which], self.costs[which])

    def among(self, subset: np.ndarray) -> _Pairs:
        """The pairs of the template points ``subset`` (sorted indices), numbered in it."""
        index = np.searchsorted(subset, self.template_index).clip(max=len(subset) - 1)
        kept = subset[index] == self.template_index
        return _Pairs(index[kept], self.detection_index[kept], self.costs[kept])

    def key(self) -> tuple[bytes, bytes]:
        """What tells two matchings apart: their pairs."""
        return self.template_index.tobytes(), self.detection_index.tobytes()


def _relabel(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for small non-negative integers, cheaper."""
    ids = np.flatnonzero(np.bincount(values))
    return ids, np.searchsorted(ids, values)


def _assign(candidates: _Pairs, gate: float) -> _Pairs:
    """One-to-one pairs among ``candidates`` (all within ``gate``), minimising total cost.

    The most pairs win first, then the least total cost (pairs outside the gate cost a
    constant penalty). A template point and a detection that are each other's only candidate
    form a pair at once; ``linear_sum_assignment`` settles the rest, where candidates compete.
    The answer is sorted by template point.
    """
    rows, cols = candidates.template_index, candidates.detection_index
    alone = (np.bincount(rows)[rows] == 1) & (np.bincount(cols)[cols] == 1)
    chosen = [np.flatnonzero(alone)]
    contested = np.flatnonzero(~alone)
    if contested.size:
        row_ids, sub_rows = _relabel(rows[contested])
        col_ids, sub_cols = _relabel(cols[contested])
        sub = np.full((len(row_ids), len(col_ids)), gate * 1e3 + 1.0)
        sub[sub_rows, sub_cols] = candidates.costs[contested]
        where = np.zeros(sub.shape, dtype=np.int64)
        where[sub_rows, sub_cols] = contested
        r, c = linear_sum_assignment(sub)
        keep = sub[r, c] <= gate
        chosen.append(where[r[keep], c[keep]])
    picked = np.concatenate(chosen)
    return candidates.take(picked[np.argsort(rows[picked])])


def _valid(matrix: np.ndarray | None, points: np.ndarray) -> bool:
    """Finite, orientation-preserving, and not folding the points over the horizon."""
    if matrix is None or not np.isfinite(matrix).all():
        return False
    w = points @ matrix[2, :2] + matrix[2, 2]
    if not ((w > 1e-9).all() or (w < -1e-9).all()):
        return False
    return bool(np.linalg.det(matrix if w[0] > 0 else -matrix) > 1e-12)


def _fit(
    source: np.ndarray, target: np.ndarray, homography: bool, threshold: float
) -> tuple[np.ndarray | None, np.ndarray]:
    """A map from matched template points to detections, and which pairs are its inliers.

    A homography (RANSAC with ``threshold`` pixels) when asked for and there are 4 pairs or
    more, else an affine map (3 pairs or more) or a similarity (2 pairs).
    """
    count = len(source)
    everything = np.ones(count, dtype=bool)
    if homography and count == 4:
        matrix, _ = cv2.findHomography(source, target, 0)
        return matrix, everything
    if homography and count > 4:
        matrix, mask = cv2.findHomography(
            source, target, cv2.RANSAC, threshold, maxIters=2000, confidence=0.999
        )
        if matrix is not None:
            return matrix, mask.ravel().astype(bool)
    if count >= 3:
        affine, mask = cv2.estimateAffine2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=500
        )
        if affine is None:
            return None, everything
        return np.vstack([affine, [0.0, 0.0, 1.0]]), mask.ravel().astype(bool)
    if count == 2:
        partial, _ = cv2.estimateAffinePartial2D(source, target)
        if partial is not None:
            return np.vstack([partial, [0.0, 0.0, 1.0]]), everything
    return None, everything


@dataclass
class _Fit:
    """One refined placement: the map and its pairs with their costs."""

    matrix: np.ndarray
    template_index: np.ndarray
    detection_index: np.ndarray
    costs: np.ndarray

    def rank(self, scores: np.ndarray) -> tuple[int, float, float]:
        """Sort key, larger is better: more pairs, then surer detections, then lower cost.

        Surer detections decide between fits that are as good geometrically, e.g. the four
        corners, which an exact homography fits whichever four detections they are.
        """
        return (
            len(self.costs),
            round(float(scores[self.detection_index].sum()), 9),
            -float(self.costs.sum()),
        )


# --- initial placement ----------------------------------------------------------------------


def _rotation(layout: _Layout, angles: np.ndarray, limit: float) -> float:
    """The rotation (degrees, within +-limit) that best turns the template's neighbour
    directions into the detections' (circular correlation of direction histograms)."""
    correlation = np.real(np.fft.ifft(_direction_spectrum(angles) * layout.spectrum))
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
    layout: _Layout, angles: np.ndarray, logs: np.ndarray, angle: float
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
        along = _along(angles, line + angle)
        if along.sum() < 4:
            return None
        turn = angle + float(_wrap(_line_direction(angles[along]) - line - angle))
        direction = np.radians(turn + 90.0 * axis)
        ratio = _typical_length(logs[along]) / length
        columns.append(ratio * np.array([np.cos(direction), np.sin(direction)]))
    return np.column_stack(columns)


def _vote_bins(detected: np.ndarray, placed: np.ndarray, low: float, size: float) -> np.ndarray:
    """(M, N) bin along one axis of each translation moving a placed point onto a detection:
    ``((detected - placed - low) / size)`` truncated, computed in place (M x N is large)."""
    offsets = np.subtract.outer(detected, placed)
    offsets -= low
    offsets /= size
    return offsets.astype(np.int64)


def _lattice_guess(
    layout: _Layout, detections: np.ndarray, max_rotation: float
) -> np.ndarray | None:
    """An affine placement of a large template on the detections, without correspondences.

    Rotation, shear and scale come from neighbour vectors; the translation is the one most
    (detection, template point) pairs vote for. Votes of template points near the centre are
    the least affected by perspective, so the placement is right there, up to a whole-cell
    shift that :func:`_best_shift` settles.
    """
    angles, logs = _neighbour_vectors(detections)
    if len(angles) < 4 or len(layout.angles) < 4:
        return None
    angle = _rotation(layout, angles, max_rotation)
    linear = _axis_columns(layout, angles, logs, angle)
    if linear is None:
        turn = np.radians(angle)
        ratio = _typical_length(logs) / _typical_length(layout.logs)
        linear = ratio * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    if not np.all(np.isfinite(linear)) or np.linalg.det(linear) <= 0:
        return None
    centre = layout.isotropic.mean(axis=0)
    placed = (layout.isotropic - centre) @ linear.T
    size = HOUGH_BIN * layout.spacing * np.sqrt(np.linalg.det(linear))
    low = detections.min(axis=0) - placed.max(axis=0)
    high = detections.max(axis=0) - placed.min(axis=0)
    extent = ((high - low) / size).astype(np.int64) + 1
    cells = _vote_bins(detections[:, 0], placed[:, 0], low[0], size) * extent[1]
    cells += _vote_bins(detections[:, 1], placed[:, 1], low[1], size)
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
    return _linear_map(linear, centre, low + (cell + 0.5) * size) @ layout.to_isotropic


def _pair_guesses(
    layout: _Layout, detections: np.ndarray, max_rotation: float, count: int = 3
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


def _grow(
    layout: _Layout, detections: _Detections, start: np.ndarray, max_cost: float
) -> np.ndarray:
    """Refine a placement from the template's centre outwards (GROWTH_RADII spacings).

    Perspective bends the outer points away from any affine placement, so they are matched
    only once a fit from the inner ones has followed the bend. Each fit is a RANSAC one with
    a tight threshold, and is kept only when it explains at least as many pairs as the
    placement it replaces, so a pair matched to a neighbour's detection does not pull it.
    """
    matrix = start
    spacing = _pitch(project(matrix, layout.points) / layout.scale)
    gate = min(max_cost, COARSE_GATE * spacing)
    threshold = GROWTH_INLIER * spacing * float(layout.scale.min())
    for radius in GROWTH_RADII:
        subset = np.flatnonzero(layout.reach <= radius)
        nearby = detections.pairs(project(matrix, layout.points), gate).among(subset)
        pairs = _assign(nearby, gate)
        if len(pairs.costs) < GROWTH_MIN_PAIRS:
            continue
        source = layout.points[subset[pairs.template_index]]
        target = detections.pixels[pairs.detection_index]
        homography = radius >= 3.0 and len(pairs.costs) >= GROWTH_HOMOGRAPHY_PAIRS
        fitted, inliers = _fit(source, target, homography, threshold)
        if not _valid(fitted, layout.points):
            continue
        assert fitted is not None
        explained = np.linalg.norm(project(matrix, source) - target, axis=1) <= threshold
        if inliers.sum() >= explained.sum():
            matrix = fitted
    return matrix


def _best_shift(
    layout: _Layout, detections: _Detections, matrix: np.ndarray, max_cost: float
) -> np.ndarray:
    """The placement moved by the template shift (one template point onto another, within
    SHIFT_REACH spacings) under which the most template points find a detection.

    A periodic template (the lattice) fits its detections as well one cell off in the middle;
    only its borders tell, judged here with a fit that is already accurate everywhere.
    """
    nearest = detections.nearest(project(matrix, layout.shifted))
    gate = min(max_cost, REFINE_GATE * _pitch(project(matrix, layout.points) / layout.scale))
    distance = nearest[layout.shifted_index]
    inliers = (distance <= gate).sum(axis=1)
    cost = np.minimum(distance, gate).sum(axis=1)
    best = int(np.lexsort((np.linalg.norm(layout.shifts, axis=1), cost, -inliers))[0])
    return matrix @ _translation(layout.shifts[best])


# --- refinement -----------------------------------------------------------------------------


def _refine(
    layout: _Layout,
    detections: _Detections,
    start: np.ndarray,
    max_cost: float,
    max_iterations: int,
    affine_first: bool,
) -> _Fit:
    """Match and fit until the pairs are stable, then match again with the final gate.

    The first matching (COARSE_GATE) feeds an affine fit (``affine_first``) or a homography;
    homographies are then fitted and matched again (REFINE_GATE) until the pairs stop
    changing, at most ``max_iterations`` rounds. The final rounds match within the gate the
    fit's residuals justify (RESIDUAL_SIGMAS, at least FINAL_GATE_FLOOR), which rejects
    spurious detections sitting near template points that have no true detection.
    """
    template, scale = layout.points, layout.scale
    spacing = _pitch(project(start, template) / scale)
    matrix, sigma = start, 0.0
    gate = min(max_cost, COARSE_GATE * spacing)
    previous: tuple[bytes, bytes] | None = None
    for iteration in range(max_iterations):
        pairs = _assign(detections.pairs(project(matrix, template), gate), gate)
        if pairs.key() == previous:
            break
        previous = pairs.key()
        source = template[pairs.template_index]
        target = detections.pixels[pairs.detection_index]
        homography = not (affine_first and iteration == 0)
        fitted, inliers = _fit(source, target, homography, gate * float(scale.min()))
        if not _valid(fitted, template):
            break
        assert fitted is not None
        matrix = fitted
        residual = np.linalg.norm(
            (project(matrix, source[inliers]) - target[inliers]) / scale, axis=1
        )
        sigma = _median(residual) / 1.1774 if residual.size else 0.0
        gate = min(max_cost, REFINE_GATE * spacing)
    gate = min(gate, max(RESIDUAL_SIGMAS * sigma, FINAL_GATE_FLOOR * spacing))
    previous = None
    for _ in range(FINAL_ROUNDS):
        pairs = _assign(detections.pairs(project(matrix, template), gate), gate)
        if pairs.key() == previous:
            break
        previous = pairs.key()
        source = template[pairs.template_index]
        target = detections.pixels[pairs.detection_index]
        fitted, _ = _fit(source, target, True, gate * float(scale.min()))
        if not _valid(fitted, template):
            break
        assert fitted is not None
        matrix = fitted
    else:
        pairs = _assign(detections.pairs(project(matrix, template), gate), gate)
    return _Fit(matrix, pairs.template_index, pairs.detection_index, pairs.costs)


def _drop_duplicates(points: np.ndarray, order: np.ndarray, radius: float) -> np.ndarray:
    """``order`` (indices, best first) without detections within ``radius`` of a better one."""
    close = cKDTree(points[order]).query_pairs(radius, output_type="ndarray")
    if len(close) == 0:
        return order
    keep = np.ones(len(order), dtype=bool)
    # pairs (better, worse) by the better rank: a better one's fate is settled before it counts
    for better, worse in close[np.lexsort((close[:, 1], close[:, 0]))]:
        if keep[better]:
            keep[worse] = False
    return order[keep]


def match_points(
    detections: ArrayLike,
    template: ArrayLike,
    image_size: Sequence[float],
    *,
    scores: ArrayLike | None = None,
    max_cost: float = 0.12,
    min_matches: int = 4,
    max_rotation: float = 45.0,
    max_iterations: int = 6,
) -> Match:
    """Order ``detections`` ((M, 2) image pixels) by ``template`` ((N, 2) normalised).

    ``image_size`` is (width, height): the template's normalised coordinates are scaled by it
    and distances are measured in normalised units (dx / width, dy / height), so ``max_cost``
    (HUNGARIAN_THRESH) is a fraction of the image. ``scores`` ((M,), default all 1) rank the
    detections: duplicates keep the best, and it is reported per point. ``max_rotation``
    bounds the rotation the initial placement considers; a square lattice looks alike every
    90 degrees, so beyond 45 its order is ambiguous. Fewer than ``min_matches`` matched
    points (or matched points on a line) give an empty result with a ``reason``.
    """
    dets = np.asarray(detections, dtype=np.float64).reshape(-1, 2)
    total = len(dets)
    tmpl = np.asarray(template, dtype=np.float64).reshape(-1, 2)
    size = np.asarray(image_size, dtype=np.float64).reshape(2)
    values = np.ones(total) if scores is None else np.asarray(scores, dtype=np.float64).ravel()
    if len(values) != total:
        raise ValueError(f"{total} detections but {len(values)} scores")
    if len(tmpl) < 3 or not np.all(np.isfinite(tmpl)):
        raise ValueError("a template needs at least 3 finite points")
    if len(np.unique(tmpl, axis=0)) < len(tmpl):
        raise ValueError("template points must be distinct")
    if not np.all(size > 0):
        raise ValueError(f"image_size must be positive, got {tuple(size)}")
    if min_matches < 2:
        raise ValueError("min_matches must be at least 2")
    usable = np.flatnonzero(np.all(np.isfinite(dets), axis=1) & np.isfinite(values))
    if usable.size == 0:
        return failed_match("no detections", total)
    layout = _layout(tmpl, size)
    order = usable[np.argsort(-values[usable], kind="stable")]
    order = order[: MAX_DETECTIONS_PER_POINT * len(tmpl)]
    kept = _drop_duplicates(dets, order, DUPLICATE_RADIUS * layout.spacing)
    needed = min(min_matches, len(tmpl))
    if len(kept) < needed:
        return failed_match(
            f"{len(kept)} distinct detection(s), at least {needed} needed for a fit", total
        )
    points, ranked = dets[kept], values[kept]
    targets = _Detections(points, layout.scale)
    best: _Fit | None = None
    if len(tmpl) <= SMALL_TEMPLATE:
        for start in [np.eye(3), *_pair_guesses(layout, points, max_rotation)]:
            fit = _refine(layout, targets, start, max_cost, max_iterations, True)
            if best is None or fit.rank(ranked) > best.rank(ranked):
                best = fit
    else:
        guess = _lattice_guess(layout, points, max_rotation)
        for start in ([] if guess is None else [guess]) + [np.eye(3)]:
            placed = _grow(layout, targets, start, max_cost)
            placed = _best_shift(layout, targets, placed, max_cost)
            fit = _refine(layout, targets, placed, max_cost, max_iterations, False)
            if best is None or fit.rank(ranked) > best.rank(ranked):
                best = fit
            if len(fit.costs) >= 0.5 * min(len(points), len(tmpl)):
                break
    assert best is not None
    matched = len(best.costs)
    if matched < needed:
        return failed_match(
            f"only {matched} of {len(tmpl)} template points matched, at least {needed} needed",
            total,
        )
    spread = min(_spread(tmpl[best.template_index]), _spread(points[best.detection_index]))
    if spread < MIN_SPREAD:
        return failed_match(
            f"the {matched} matched points lie on a line: they cannot place the whole template",
            total,
        )
    detection = np.full(len(tmpl), -1, dtype=np.int64)
    detection[best.template_index] = kept[best.detection_index]
    result_points = project(best.matrix, layout.points)
    result_points[best.template_index] = points[best.detection_index]
    result_scores = np.zeros(len(tmpl))
    result_scores[best.template_index] = ranked[best.detection_index]
    residuals = np.full(len(tmpl), np.nan)
    residuals[best.template_index] = best.costs
    homography = best.matrix @ np.diag([size[0], size[1], 1.0])
    used = np.zeros(total, dtype=bool)
    used[kept[best.detection_index]] = True
    return Match(
        points=result_points,
        scores=result_scores,
        detection=detection,
        residuals=residuals,
        homography=homography / homography[2, 2],
        dropped=np.flatnonzero(~used),
        reason="",
    )

"""Pairs of template points and detections: who is near whom, and the one-to-one assignment.

A pair is made only within a gate (a distance in normalised units, dx / width, dy / height);
``scipy.optimize.linear_sum_assignment`` settles the pairs that compete.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

COARSE_GATE = 0.45
"""Gate of the first matching (fraction of the point spacing), before any fit."""

REFIT_GATE = 0.35
"""Gate while the homography is refitted (fraction of the point spacing)."""

DENSE_PAIRS = 5000
"""Matchings with at most this many (template point, detection) combinations compute them all;
larger ones look up the detections near each point in a k-d tree."""

CANDIDATE_REACH = 2.0
"""A k-d tree look-up collects the detections within this many gates of each template point;
the next matchings reuse them while the template moves by less than the difference."""


class Detections:
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

    def pairs(self, placed: np.ndarray, gate: float) -> Pairs:
        """Every (template point, detection) pair within ``gate`` of the template placed at
        ``placed`` (pixels, every template point in order)."""
        points = placed / self.scale
        if len(points) * len(self.normalised) <= DENSE_PAIRS:
            cost = cdist(points, self.normalised)
            rows, cols = np.nonzero(cost <= gate)
            return Pairs(rows, cols, cost[rows, cols])
        rows, cols = self._candidates(points, gate)
        offset = points[rows] - self.normalised[cols]
        costs = np.sqrt(offset[:, 0] * offset[:, 0] + offset[:, 1] * offset[:, 1])
        near = costs <= gate
        return Pairs(rows[near], cols[near], costs[near])

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
class Pairs:
    """(template point, detection) pairs and their distances (normalised units)."""

    template_index: np.ndarray
    detection_index: np.ndarray
    costs: np.ndarray

    def take(self, which: np.ndarray) -> Pairs:
        """The pairs ``which`` selects (a mask or indices)."""
        return Pairs(self.template_index[which], self.detection_index[which], self.costs[which])

    def among(self, subset: np.ndarray) -> Pairs:
        """The pairs of the template points ``subset`` (sorted indices), numbered in it."""
        index = np.searchsorted(subset, self.template_index).clip(max=len(subset) - 1)
        kept = subset[index] == self.template_index
        return Pairs(index[kept], self.detection_index[kept], self.costs[kept])

    def key(self) -> tuple[bytes, bytes]:
        """What tells two matchings apart: their pairs."""
        return self.template_index.tobytes(), self.detection_index.tobytes()


def _relabel(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for small non-negative integers, cheaper."""
    ids = np.flatnonzero(np.bincount(values))
    return ids, np.searchsorted(ids, values)


def assign(candidates: Pairs, gate: float) -> Pairs:
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

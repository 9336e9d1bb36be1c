"""Initial placement: where the template sits on its detections, before the refit.

Small templates (the 4 corners) start from every well-scored point-pair similarity
(:func:`~quadratseg_handlers.ops.matching.guesses.pair_guesses`) and from the template's own
placement (its normalised coordinates scaled to the image). Large ones (the 117-point grid)
start from the lattice guess (:func:`~quadratseg_handlers.ops.matching.guesses.lattice_guess`)
or the template's own placement, grown from the template's centre outwards (RANSAC fits with
a tight threshold, affine first, then a homography) so that perspective is followed before
the outer points are matched, then moved by the whole-cell shift under which the most
template points find a detection: a periodic template fits as well one cell off.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from quadratseg_handlers.ops.matching.fitting import fit_map, valid_map
from quadratseg_handlers.ops.matching.geometry import pitch, project, translation
from quadratseg_handlers.ops.matching.guesses import lattice_guess, pair_guesses
from quadratseg_handlers.ops.matching.inputs import Inputs
from quadratseg_handlers.ops.matching.layout import Layout
from quadratseg_handlers.ops.matching.pairing import COARSE_GATE, REFIT_GATE, Detections, assign

SMALL_TEMPLATE = 8
"""Templates up to this many points are placed by scoring point-pair hypotheses."""

GROWTH_RADII = (1.5, 3.0, np.inf)
"""Radii (in point spacings around the template's centre) of the growing first fits."""

GROWTH_MIN_PAIRS = 6
"""Fewest pairs a growing fit needs: an exact fit through one wrong pair would mislead."""

GROWTH_HOMOGRAPHY_PAIRS = 12
"""Pairs from which a growing fit (radius 3 or more) is a homography, not an affine map."""

GROWTH_INLIER = 0.2
"""RANSAC inlier threshold of the growing fits (fraction of the point spacing)."""

NEAR_TIE = 5
"""In a warp (``warped``), shifts this many inliers short of the best, or fewer, tie with it:
under half a row of the 11-point lattice. A row cut off by the photo's edge leaves two shifts
a row apart with about as many inliers; a whole row seen tells them apart by about 11."""


@dataclass(frozen=True)
class Placements:
    """Where the refit starts from, and how many of its starts it tries."""

    starts: Iterable[np.ndarray]
    """3 x 3 maps from the template's pixels to the image's, most likely first; those of a
    large template are computed only as they are taken (one pass)."""
    affine_first: bool
    """Whether the first fit from each start is affine, not a homography: for the rough
    starts of a small template."""
    enough: float
    """Pairs a start's refit must reach for the later starts to be skipped (inf: every
    start is refitted)."""


def place(
    inputs: Inputs, max_rotation: float, max_cost: float, *, warped: bool = False
) -> Placements:
    """The starts of the refit for ``inputs``' template and detections (see the module);
    ``warped``: the image is the quadrat warped upright (:func:`best_shift`)."""
    layout, points = inputs.layout, inputs.points
    if len(inputs.template) <= SMALL_TEMPLATE:
        starts = [np.eye(3), *pair_guesses(layout, points, max_rotation)]
        return Placements(starts, affine_first=True, enough=np.inf)
    guess = lattice_guess(layout, points, max_rotation)
    rough = ([] if guess is None else [guess]) + [np.eye(3)]
    return Placements(
        _grown(layout, inputs.detections, rough, max_cost, warped),
        affine_first=False,
        enough=0.5 * min(len(points), len(inputs.template)),
    )


def _grown(
    layout: Layout,
    detections: Detections,
    rough: list[np.ndarray],
    max_cost: float,
    warped: bool,
) -> Iterator[np.ndarray]:
    """Each rough start grown outwards and moved to its best shift, when it is asked for: a
    good refit of the lattice guess spares the template's own placement this work."""
    for start in rough:
        grown = grow(layout, detections, start, max_cost)
        yield best_shift(layout, detections, grown, max_cost, warped=warped)


def grow(layout: Layout, detections: Detections, start: np.ndarray, max_cost: float) -> np.ndarray:
    """Fit a placement again from the template's centre outwards (GROWTH_RADII spacings).

    Perspective bends the outer points away from any affine placement, so they are matched
    only once a fit from the inner ones has followed the bend. Each fit is a RANSAC one with
    a tight threshold, and is kept only when it explains at least as many pairs as the
    placement it replaces, so a pair matched to a neighbour's detection does not pull it.
    """
    matrix = start
    spacing = pitch(project(matrix, layout.points) / layout.scale)
    gate = min(max_cost, COARSE_GATE * spacing)
    threshold = GROWTH_INLIER * spacing * float(layout.scale.min())
    for radius in GROWTH_RADII:
        subset = np.flatnonzero(layout.reach <= radius)
        nearby = detections.pairs(project(matrix, layout.points), gate).among(subset)
        pairs = assign(nearby, gate)
        if len(pairs.costs) < GROWTH_MIN_PAIRS:
            continue
        source = layout.points[subset[pairs.template_index]]
        target = detections.pixels[pairs.detection_index]
        homography = radius >= 3.0 and len(pairs.costs) >= GROWTH_HOMOGRAPHY_PAIRS
        fitted, inliers = fit_map(source, target, homography, threshold)
        if not valid_map(fitted, layout.points):
            continue
        assert fitted is not None
        explained = np.linalg.norm(project(matrix, source) - target, axis=1) <= threshold
        if inliers.sum() >= explained.sum():
            matrix = fitted
    return matrix


def best_shift(
    layout: Layout,
    detections: Detections,
    matrix: np.ndarray,
    max_cost: float,
    *,
    warped: bool = False,
) -> np.ndarray:
    """The placement moved by the template shift (one template point onto another, within
    SHIFT_REACH spacings) under which the most template points find a detection.

    A periodic template (the lattice) fits its detections as well one cell off in the middle;
    only its borders tell, judged here with a fit that is already accurate everywhere. In a
    warp of the quadrat (``warped``) a border row may be missing, cut off by the photo's edge
    (black in the warp): shifts a row apart then find about as many detections, and among
    those within NEAR_TIE of the best the one nearest the template's own placement wins.
    """
    nearest = detections.nearest(project(matrix, layout.shifted))
    gate = min(max_cost, REFIT_GATE * pitch(project(matrix, layout.points) / layout.scale))
    distance = nearest[layout.shifted_index]
    inliers = (distance <= gate).sum(axis=1)
    cost = np.minimum(distance, gate).sum(axis=1)
    best = int(np.lexsort((np.linalg.norm(layout.shifts, axis=1), cost, -inliers))[0])
    tied = np.flatnonzero(inliers >= inliers.max() - NEAR_TIE)
    if warped and len(tied) > 1:
        away = [_away(layout, matrix @ translation(shift)) for shift in layout.shifts[tied]]
        best = int(tied[int(np.argmin(away))])
    return matrix @ translation(layout.shifts[best])


def _away(layout: Layout, matrix: np.ndarray) -> float:
    """Mean distance (pixels) of the template placed by ``matrix`` from its own placement."""
    return float(np.linalg.norm(project(matrix, layout.points) - layout.points, axis=1).mean())

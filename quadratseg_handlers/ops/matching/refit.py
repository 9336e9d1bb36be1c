"""Refit: match, fit a homography to the pairs, match again, until the pairs are stable.

From each start of the placement the template is matched within a gate and a map fitted to
the pairs (RANSAC, seeded), over and over (:func:`match_and_fit`); then a final gate from the
fit's residuals rejects spurious detections that sit near template points with no true
detection, and the same rounds run within it. The best of the starts' fits wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quadratseg_handlers.ops.matching.fitting import Fit, fit_map, valid_map
from quadratseg_handlers.ops.matching.geometry import median, pitch, project
from quadratseg_handlers.ops.matching.inputs import Inputs
from quadratseg_handlers.ops.matching.layout import Layout
from quadratseg_handlers.ops.matching.pairing import (
    COARSE_GATE,
    REFIT_GATE,
    Detections,
    Pairs,
    assign,
)
from quadratseg_handlers.ops.matching.placement import Placements

FINAL_GATE_FLOOR = 0.1
"""Smallest final gate (fraction of the point spacing), however exact the fit."""

RESIDUAL_SIGMAS = 5.0
"""Final gate: this many robust standard deviations of the fit's residuals."""

FINAL_ROUNDS = 3
"""Most rounds of matching and fitting with the final gate."""


@dataclass(frozen=True)
class Rounds:
    """Where rounds of matching and fitting stopped."""

    matrix: np.ndarray
    """The last valid fit; the start when there was none."""
    pairs: Pairs | None
    """The matching of ``matrix``; None when the rounds ran out with a fit not matched yet."""
    gate: float
    """The gate of the last round."""
    residuals: np.ndarray
    """Distances (normalised units) from the last valid fit's inlier detections to their
    template points as it places them; empty when there was no fit."""


def match_and_fit(
    layout: Layout,
    detections: Detections,
    matrix: np.ndarray,
    gates: tuple[float, float],
    rounds: int,
    affine_first: bool = False,
) -> Rounds:
    """Match within the gate and fit a map to the pairs, at most ``rounds`` times; stop
    early when the pairs stop changing or a fit is not valid (:func:`valid_map`).

    The first round matches within ``gates[0]``, the later ones within ``gates[1]``. Each fit
    is a homography (RANSAC, the gate as its threshold), the first one affine when
    ``affine_first``.
    """
    template, scale = layout.points, layout.scale
    gate, later_gate = gates
    previous: tuple[bytes, bytes] | None = None
    residuals = np.zeros(0)
    for index in range(rounds):
        pairs = assign(detections.pairs(project(matrix, template), gate), gate)
        if pairs.key() == previous:
            return Rounds(matrix, pairs, gate, residuals)
        previous = pairs.key()
        source = template[pairs.template_index]
        target = detections.pixels[pairs.detection_index]
        homography = not (affine_first and index == 0)
        fitted, inliers = fit_map(source, target, homography, gate * float(scale.min()))
        if not valid_map(fitted, template):
            return Rounds(matrix, pairs, gate, residuals)
        assert fitted is not None
        matrix = fitted
        residuals = np.linalg.norm(
            (project(matrix, source[inliers]) - target[inliers]) / scale, axis=1
        )
        gate = later_gate
    return Rounds(matrix, None, gate, residuals)


def refit(inputs: Inputs, placements: Placements, max_cost: float, max_iterations: int) -> Fit:
    """The best (:meth:`Fit.rank`) of the refits from ``placements``' starts; once one
    reaches ``placements.enough`` pairs, the starts after it are not tried."""
    best: Fit | None = None
    for start in placements.starts:
        fit = _refit_from(
            inputs.layout,
            inputs.detections,
            start,
            max_cost,
            max_iterations,
            placements.affine_first,
        )
        if best is None or fit.rank(inputs.scores) > best.rank(inputs.scores):
            best = fit
        if len(fit.costs) >= placements.enough:
            break
    assert best is not None
    return best


def _refit_from(
    layout: Layout,
    detections: Detections,
    start: np.ndarray,
    max_cost: float,
    max_iterations: int,
    affine_first: bool,
) -> Fit:
    """Match and fit until the pairs are stable, then match again with the final gate.

    The first matching (COARSE_GATE) feeds an affine fit (``affine_first``) or a homography;
    homographies are then fitted and matched again (REFIT_GATE) until the pairs stop
    changing, at most ``max_iterations`` rounds. The final rounds (FINAL_ROUNDS) match within
    the gate the fit's residuals justify (RESIDUAL_SIGMAS, at least FINAL_GATE_FLOOR), which
    rejects spurious detections sitting near template points that have no true detection.
    """
    spacing = pitch(project(start, layout.points) / layout.scale)
    gates = (min(max_cost, COARSE_GATE * spacing), min(max_cost, REFIT_GATE * spacing))
    settled = match_and_fit(layout, detections, start, gates, max_iterations, affine_first)
    residuals = settled.residuals
    sigma = median(residuals) / 1.1774 if residuals.size else 0.0
    gate = min(settled.gate, max(RESIDUAL_SIGMAS * sigma, FINAL_GATE_FLOOR * spacing))
    final = match_and_fit(layout, detections, settled.matrix, (gate, gate), FINAL_ROUNDS)
    pairs = final.pairs
    if pairs is None:
        pairs = assign(detections.pairs(project(final.matrix, layout.points), gate), gate)
    return Fit(final.matrix, pairs.template_index, pairs.detection_index, pairs.costs)

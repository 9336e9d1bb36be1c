"""The public entry: :func:`match_points` reads validate -> place -> refit -> assemble."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from quadratseg_handlers.ops.matching.fitting import Fit
from quadratseg_handlers.ops.matching.geometry import project, spread
from quadratseg_handlers.ops.matching.inputs import Inputs, validate
from quadratseg_handlers.ops.matching.placement import place
from quadratseg_handlers.ops.matching.refit import refit
from quadratseg_handlers.ops.matching.result import Match, failed_match

MIN_SPREAD = 0.05
"""Matched points (template or detections) whose smaller/larger singular value ratio is below
this are taken as a line: they cannot place the rest of the template."""


def match_points(
    detections: ArrayLike,
    template: ArrayLike,
    image_size_wh: Sequence[float],
    *,
    scores: ArrayLike | None = None,
    max_cost: float = 0.12,
    min_matches: int = 4,
    max_rotation: float = 45.0,
    max_iterations: int = 6,
    warped: bool = False,
) -> Match:
    """Order ``detections`` ((M, 2) image pixels) by ``template`` ((N, 2) normalised).

    ``image_size_wh`` is (width, height): the template's normalised coordinates are scaled by
    it and distances are measured in normalised units (dx / width, dy / height), so
    ``max_cost`` (HUNGARIAN_THRESH) is a fraction of the image. ``scores`` ((M,), default all
    1) rank the detections: duplicates keep the best, and it is reported per point.
    ``max_rotation`` bounds the rotation the initial placement considers; a square lattice
    looks alike every 90 degrees, so beyond 45 its order is ambiguous. ``max_iterations``
    bounds the refit's rounds before its final gate. ``warped``: the image is the quadrat
    warped upright, the template's own placement where its points are expected, so a lattice
    whose border row is missing (cut off by the photo's edge) is placed by that, not by a few
    stray detections. Fewer than ``min_matches`` matched points (or matched points on a line)
    give an empty result with a ``reason``.
    """
    inputs = validate(detections, template, image_size_wh, scores, min_matches)
    if inputs.shortage:
        return failed_match(inputs.shortage, inputs.total)
    placements = place(inputs, max_rotation, max_cost, warped=warped)
    best = refit(inputs, placements, max_cost, max_iterations)
    return assemble(inputs, best)


def assemble(inputs: Inputs, best: Fit) -> Match:
    """The answer from the best fit: each template point's detection, or the fit's fill for
    those without one; an empty one when too few points matched or they lie on a line."""
    matched = len(best.costs)
    count = len(inputs.template)
    if matched < inputs.needed:
        return failed_match(
            f"only {matched} of {count} template points matched, at least {inputs.needed} needed",
            inputs.total,
        )
    points, kept = inputs.points, inputs.kept
    spread_ratio = min(
        spread(inputs.template[best.template_index]), spread(points[best.detection_index])
    )
    if spread_ratio < MIN_SPREAD:
        return failed_match(
            f"the {matched} matched points lie on a line: they cannot place the whole template",
            inputs.total,
        )
    detection = np.full(count, -1, dtype=np.int64)
    detection[best.template_index] = kept[best.detection_index]
    result_points = project(best.matrix, inputs.layout.points)
    result_points[best.template_index] = points[best.detection_index]
    result_scores = np.zeros(count)
    result_scores[best.template_index] = inputs.scores[best.detection_index]
    residuals = np.full(count, np.nan)
    residuals[best.template_index] = best.costs
    width, height = inputs.size_wh
    homography = best.matrix @ np.diag([width, height, 1.0])
    used = np.zeros(inputs.total, dtype=bool)
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

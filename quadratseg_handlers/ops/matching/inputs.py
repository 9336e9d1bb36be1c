"""The arguments of :func:`~quadratseg_handlers.ops.matching.match_points`, checked, and the
detections a fit may use: finite, best scored first, duplicates dropped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from quadratseg_handlers.ops.matching.layout import Layout, template_layout
from quadratseg_handlers.ops.matching.pairing import Detections

DUPLICATE_RADIUS = 0.1
"""Detections closer than this fraction of the template's point spacing are duplicates."""

MAX_DETECTIONS_PER_POINT = 4
"""At most this many detections per template point are considered (the best scored)."""


@dataclass(frozen=True)
class Inputs:
    """What a matching works on: the template laid on the image, and the detections kept."""

    template: np.ndarray
    """(N, 2) the template, normalised."""
    size_wh: np.ndarray
    """(width, height) of the image."""
    layout: Layout
    """The template placed on the image."""
    total: int
    """How many detections were given."""
    usable: int
    """How many of them are finite, score included."""
    kept: np.ndarray
    """Indices (in the input) of the detections a fit may use, best scored first."""
    points: np.ndarray
    """(K, 2) their image pixels."""
    scores: np.ndarray
    """(K,) their scores."""
    detections: Detections
    """The same points, as a matching looks them up."""
    needed: int
    """Fewest matched template points an answer needs."""

    @property
    def shortage(self) -> str:
        """Why no fit can be tried (too few detections); empty when one can."""
        if self.usable == 0:
            return "no detections"
        if len(self.kept) < self.needed:
            return (
                f"{len(self.kept)} distinct detection(s), at least {self.needed} needed for a fit"
            )
        return ""


def validate(
    detections: ArrayLike,
    template: ArrayLike,
    image_size_wh: Sequence[float],
    scores: ArrayLike | None,
    min_matches: int,
) -> Inputs:
    """The arguments as :class:`Inputs`; ValueError when they cannot describe a matching
    (scores not one per detection, a template of fewer than 3 distinct finite points, a size
    not positive, ``min_matches`` under 2)."""
    dets = np.asarray(detections, dtype=np.float64).reshape(-1, 2)
    total = len(dets)
    tmpl = np.asarray(template, dtype=np.float64).reshape(-1, 2)
    size_wh = np.asarray(image_size_wh, dtype=np.float64).reshape(2)
    values = np.ones(total) if scores is None else np.asarray(scores, dtype=np.float64).ravel()
    if len(values) != total:
        raise ValueError(f"{total} detections but {len(values)} scores")
    if len(tmpl) < 3 or not np.all(np.isfinite(tmpl)):
        raise ValueError("a template needs at least 3 finite points")
    if len(np.unique(tmpl, axis=0)) < len(tmpl):
        raise ValueError("template points must be distinct")
    if not np.all(size_wh > 0):
        raise ValueError(f"image_size_wh must be positive, got {tuple(size_wh)}")
    if min_matches < 2:
        raise ValueError("min_matches must be at least 2")
    usable = np.flatnonzero(np.all(np.isfinite(dets), axis=1) & np.isfinite(values))
    layout = template_layout(tmpl, size_wh)
    order = usable[np.argsort(-values[usable], kind="stable")]
    order = order[: MAX_DETECTIONS_PER_POINT * len(tmpl)]
    kept = _drop_duplicates(dets, order, DUPLICATE_RADIUS * layout.spacing) if order.size else order
    points = dets[kept]
    return Inputs(
        template=tmpl,
        size_wh=size_wh,
        layout=layout,
        total=total,
        usable=int(usable.size),
        kept=kept,
        points=points,
        scores=values[kept],
        detections=Detections(points, layout.scale),
        needed=min(min_matches, len(tmpl)),
    )


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

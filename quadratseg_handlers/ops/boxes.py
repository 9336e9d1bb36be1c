"""Points read from detection boxes: a box's centre, with boxes cut by the image's edge
restored first.

A points detector (frame corners, grid points) is trained on boxes of one size centred on each
point. Near the image's edge the labelled box is cut, so the detector answers a cut box whose
centre lies inward of the point by up to half a box: up to 5 % of the quadrat's side for a
corner box, where the corners' bar is 2 %. Making the cut box square again, from its uncut
side, puts the centre back near the point.
"""

from __future__ import annotations

import numpy as np

EDGE_TOLERANCE = 0.005
"""A box side within this fraction of the image's long side of the edge counts as cut: a box
learnt cut ends at the edge give or take a network-input pixel or two."""


def box_centres(xyxy: np.ndarray, width: float, height: float) -> np.ndarray:
    """(M, 2) centres of (M, 4) ``xyxy`` boxes in a ``width`` x ``height`` image, each box cut
    by the edge along one axis first made square again.

    The labelled boxes are squares around the points, so a box cut along one axis keeps its
    full size along the other: the cut side is moved out to it. A box cut along both axes (a
    point in the image's corner) or spanning the image has no uncut size to go by and keeps
    its centre; so does a cut box already longer than its other side.
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4).copy()
    if len(boxes) == 0:
        return np.zeros((0, 2))
    tolerance = EDGE_TOLERANCE * max(width, height)
    low_cut = boxes[:, :2] <= tolerance
    high_cut = boxes[:, 2:] >= np.array([width, height]) - tolerance
    cut = low_cut | high_cut
    sizes = boxes[:, 2:] - boxes[:, :2]
    full = sizes[:, ::-1]
    grow = cut & ~cut[:, ::-1] & (full > sizes)
    boxes[:, :2] = np.where(grow & low_cut, boxes[:, 2:] - full, boxes[:, :2])
    boxes[:, 2:] = np.where(grow & high_cut & ~low_cut, boxes[:, :2] + full, boxes[:, 2:])
    return (boxes[:, :2] + boxes[:, 2:]) / 2

"""How close a function's CVAT answer is to the drawn truth: the bars of the demo and the tests.

- corners: the largest distance of a corner from its true position, as a fraction of the
  quadrat's side;
- grid points: the share of the 117 points at their true index within 1 % of the side;
- corals: colonies matched one to one (Hungarian, on mask IoU) by a shape of the right genus at
  IoU >= 0.5; recall over colonies of at least a minimum area, precision over returned shapes;
- grid removal: how visible the drawn string stays (its contrast against the reef around it,
  after removal as a share of before), the share of string pixels changed, and whether every
  pixel outside the repainted mask is bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from quadratseg_handlers.cvat.masks import polygon_to_mask
from quadratseg_handlers.cvat.shapes import skeleton_points

GRID_TOLERANCE = 0.01
"""A grid point is right within this fraction of the quadrat's side, at its true index."""

CORNER_TOLERANCE = 0.02
"""A corner is right within this fraction of the quadrat's side."""

MATCH_IOU = 0.5
"""A shape matches a colony at this mask IoU or more (and the right genus)."""


def point_errors(found: np.ndarray, truth: np.ndarray, side: float) -> np.ndarray:
    """Each point's distance from its true position (same index), as a fraction of ``side``."""
    return np.asarray(np.linalg.norm(np.asarray(found) - np.asarray(truth), axis=1) / side)


def skeleton_of(shapes: Sequence[dict[str, Any]], points: int) -> np.ndarray | None:
    """The (points, 2) element positions of the one skeleton with ``points`` elements, if any."""
    for shape in shapes:
        if shape.get("type") == "skeleton" and len(shape.get("elements", [])) == points:
            return skeleton_points(shape)
    return None


def shape_instances(
    shapes: Sequence[dict[str, Any]], height: int, width: int
) -> list[tuple[str, np.ndarray]]:
    """The instances of a polygon answer: parts sharing a ``group_id`` are one instance."""
    instances: dict[object, tuple[str, np.ndarray]] = {}
    for number, shape in enumerate(shapes):
        if shape.get("type") != "polygon":
            continue
        key = shape.get("group_id") or f"shape-{number}"
        polygon = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
        mask = polygon_to_mask(polygon, height, width)
        if key in instances:
            label, union = instances[key]
            instances[key] = (label, union | mask)
        else:
            instances[key] = (str(shape["label"]), mask)
    return list(instances.values())


@dataclass(frozen=True)
class CoralScore:
    """How a coral answer matches the drawn colonies."""

    colonies: int
    """Colonies of at least the minimum area."""
    shapes: int
    """Instances answered."""
    found: int
    """Colonies matched by an instance of their genus at IoU >= MATCH_IOU."""
    true_shapes: int
    """Answered instances that match a colony (any colony, of any size, right genus)."""

    @property
    def recall(self) -> float:
        """Share of colonies found (1 when there are none)."""
        return self.found / self.colonies if self.colonies else 1.0

    @property
    def precision(self) -> float:
        """Share of answered instances that match a colony (1 when there are none)."""
        return self.true_shapes / self.shapes if self.shapes else 1.0


def _iou_matrix(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """Mask IoU of every pair (len(a) x len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    left = np.stack([m.reshape(-1) for m in a]).astype(np.float32)
    right = np.stack([m.reshape(-1) for m in b]).astype(np.float32)
    inter = left @ right.T
    union = left.sum(axis=1)[:, None] + right.sum(axis=1)[None, :] - inter
    return np.asarray(inter / np.maximum(union, 1.0))


def score_corals(
    found: Sequence[tuple[str, np.ndarray]],
    truth: Sequence[tuple[str, np.ndarray]],
    min_area: int,
) -> CoralScore:
    """Match answered instances to colonies one to one (right genus, IoU >= MATCH_IOU)."""
    iou = _iou_matrix([mask for _, mask in found], [mask for _, mask in truth])
    same = np.array([[fl == tl for tl, _ in truth] for fl, _ in found], dtype=bool)
    gain = np.where(same.reshape(iou.shape) & (iou >= MATCH_IOU), iou, 0.0)
    rows, cols = linear_sum_assignment(-gain) if gain.size else (np.array([]), np.array([]))
    pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if gain[r, c] > 0]
    large = [int(mask.sum()) >= min_area for _, mask in truth]
    return CoralScore(
        colonies=sum(large),
        shapes=len(found),
        found=sum(1 for _, c in pairs if large[c]),
        true_shapes=len(pairs),
    )


SURROUNDINGS_REACH = 12
"""Pixels around the string whose colour is the string's surroundings (past a 2 px seam)."""

SEAM = 2
"""Pixels next to the string left out of its surroundings (the drawing's soft edge)."""


@dataclass(frozen=True)
class RepaintScore:
    """What grid removal changed, and what it left visible."""

    string_visible: float
    """The string's contrast against its surroundings after removal, as a share of its contrast
    before (0: gone into the reef around it, 1: as visible as before); see :func:`visibility`."""
    string_repainted: float
    """Share of the drawn string's pixels that changed (or lie in the repainted mask): a pixel
    repainted in the string's own colour counts, so this says what was touched, not removed."""
    outside_untouched: bool
    """Every pixel outside the repainted mask is bit-identical to the input."""
    changed: float
    """Share of all pixels that changed."""


@dataclass(frozen=True)
class Visibility:
    """The string's contrast before and after removal (mean RGB distance, 0-255 levels)."""

    before: float
    after: float
    texture: float
    """The surroundings' own contrast: what a string perfectly painted out still shows."""

    @property
    def share(self) -> float:
        """Contrast above the texture after removal, as a share of it before (0 when the string
        did not stand out to begin with)."""
        above = self.before - self.texture
        if above <= 0:
            return 0.0
        return float(np.clip((self.after - self.texture) / above, 0.0, None))


def visibility(before: np.ndarray, after: np.ndarray, string: np.ndarray) -> Visibility:
    """How much the drawn string stands out from the reef around it, before and after removal.

    The surroundings are the input's pixels within SURROUNDINGS_REACH of the string (past a
    SEAM): their local mean is the colour each string pixel had without the string. The
    contrast is the mean RGB distance of the string's pixels from it, once in the input and
    once in the output; the surroundings' own distance from their local mean is the texture
    level, the contrast a perfectly painted-out string still shows. A string repainted in its
    own colour keeps its contrast, however many of its pixels changed.
    """
    mask = np.asarray(string, dtype=bool)
    if not mask.any():
        return Visibility(0.0, 0.0, 0.0)

    def grown(radius: int) -> np.ndarray:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)

    ring = grown(SURROUNDINGS_REACH) & ~grown(SEAM)
    source = np.asarray(before, dtype=np.float32)
    window = (2 * SURROUNDINGS_REACH + 1,) * 2
    weight = cv2.blur(ring.astype(np.float32), window)
    summed = cv2.blur(source * ring[..., None], window)
    local = summed / np.maximum(weight, 1e-6)[..., None]
    seen = mask & (weight > 0)

    def contrast(image: np.ndarray, where: np.ndarray) -> float:
        distance = np.linalg.norm(np.asarray(image, dtype=np.float32) - local, axis=2)
        return float(distance[where].mean()) if where.any() else 0.0

    return Visibility(contrast(before, seen), contrast(after, seen), contrast(before, ring))


def score_repaint(
    before: np.ndarray, after: np.ndarray, string: np.ndarray, repainted: np.ndarray
) -> RepaintScore:
    """Compare grid removal's output with its input, the drawn string and its own mask."""
    changed = (np.asarray(before) != np.asarray(after)).any(axis=2)
    covered = (changed | repainted)[string]
    return RepaintScore(
        string_visible=visibility(before, after, string).share,
        string_repainted=float(covered.mean()) if covered.size else 1.0,
        outside_untouched=not bool(changed[~repainted].any()),
        changed=float(changed.mean()),
    )

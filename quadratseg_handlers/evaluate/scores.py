"""How a function's answers compare with the drawn truth: the figures the field uses.

Instances (polygons, masks), per label: answers matched one to one to drawn instances of the
same label (Hungarian on mask IoU, a pair counts at IoU >= 0.5); precision, recall and F1 at a
threshold on the answer's confidence, and over a sweep of it; COCO mask mAP@[.5:.95] and AP50
by pycocotools' own COCOeval; the confusion between labels (the same matching, label left
out).

Skeletons, per label: nodes matched by sublabel name; a node's error is its distance from the
drawn one as a share of the quadrat's side, where the side is that of a square with the area
of the drawn skeleton's outline (its nodes' convex hull; for 4 corners, the quadrat itself).
A node the answer lacks or marks outside has an infinite error. PCK at a tolerance is the share
of drawn nodes within it; a skeleton is *right* when every node is within 2 % (RIGHT_TOLERANCE),
an image is right for a label when each drawn skeleton has a right answer and nothing more was
answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from quadratseg_handlers.cvat.masks import polygon_to_mask
from quadratseg_handlers.cvat.spec import CONFIDENCE
from quadratseg_handlers.evaluate.exports import ExportImage, Rle, TruthSkeleton, encode

MATCH_IOU = 0.5
"""An answered instance matches a drawn one at this mask IoU or more."""

SWEEP = tuple(round(0.05 * step, 2) for step in range(1, 20))
"""Confidence thresholds of the instance sweep: 0.05 .. 0.95."""

PCK_TOLERANCES = (0.01, 0.02, 0.05)
"""Tolerances (share of the quadrat's side) PCK is reported at."""

RIGHT_TOLERANCE = 0.02
"""A skeleton is right when every node is within this share of the side."""

Instance = tuple[str, Rle, float]
"""An answered instance: label, mask as COCO RLE, confidence in [0, 1]."""


@dataclass
class AnsweredSkeleton:
    """A skeleton the function answered: its label, visible nodes and confidence."""

    label: str
    points: dict[str, tuple[float, float]]
    score: float


def shape_score(shape: Mapping[str, Any]) -> float:
    """A shape's confidence in [0, 1]: its ``confidence`` ("0".."100"), else the confidence
    attribute, else 1 (an answer without one is sure)."""
    value = shape.get("confidence")
    if value is None:
        for attribute in shape.get("attributes") or []:
            if isinstance(attribute, Mapping) and attribute.get("name") == CONFIDENCE:
                value = attribute.get("value")
    try:
        return float(value) / 100.0 if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


def _answer_mask(shape: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """The mask of a polygon or CVAT mask shape (0/1 values of its box, then the box)."""
    mask = np.zeros((height, width), dtype=bool)
    if shape.get("type") == "mask" and shape.get("mask") is not None:
        values = np.asarray(list(shape["mask"]), dtype=np.int64)
        left, top, right, bottom = (int(v) for v in values[-4:])
        crop = values[:-4].reshape(bottom - top + 1, right - left + 1).astype(bool)
        target = mask[top : bottom + 1, left : right + 1]
        target[...] = crop[: target.shape[0], : target.shape[1]]
        return mask
    polygon = np.asarray(shape.get("points", []), dtype=np.float64).reshape(-1, 2)
    return polygon_to_mask(polygon, height, width)


def answer_instances(
    shapes: Sequence[Mapping[str, Any]], height: int, width: int
) -> list[Instance]:
    """The instances of an answer: polygons and masks, parts sharing a ``group_id`` one."""
    found: dict[object, tuple[str, np.ndarray, float]] = {}
    for number, shape in enumerate(shapes):
        if shape.get("type") not in ("polygon", "mask"):
            continue
        key = (shape.get("group_id") or f"shape-{number}", shape.get("label"))
        mask = _answer_mask(shape, height, width)
        if key in found:
            label, union, score = found[key]
            found[key] = (label, union | mask, score)
        else:
            found[key] = (str(shape.get("label")), mask, shape_score(shape))
    return [(label, encode(mask), score) for label, mask, score in found.values() if mask.any()]


def answer_skeletons(shapes: Sequence[Mapping[str, Any]]) -> list[AnsweredSkeleton]:
    """The skeletons of an answer, each node by sublabel (nodes marked outside left out)."""
    skeletons = []
    for shape in shapes:
        if shape.get("type") != "skeleton":
            continue
        points = {}
        for element in shape.get("elements") or []:
            coords = element.get("points") or []
            if element.get("outside") or len(coords) < 2:
                continue
            points[str(element.get("label"))] = (float(coords[0]), float(coords[1]))
        skeletons.append(AnsweredSkeleton(str(shape.get("label")), points, shape_score(shape)))
    return skeletons


# --- instances ---------------------------------------------------------------------------------


def iou_matrix(answers: Sequence[Rle], truth: Sequence[Rle]) -> np.ndarray:
    """Mask IoU of every (answer, truth) pair, by pycocotools."""
    from pycocotools import mask as coco_mask

    if not answers or not truth:
        return np.zeros((len(answers), len(truth)))
    return np.asarray(coco_mask.iou(list(answers), list(truth), [0] * len(truth)), dtype=np.float64)


def matched_pairs(iou: np.ndarray) -> list[tuple[int, int]]:
    """(answer, truth) pairs of the one-to-one matching with the most IoU, IoU >= MATCH_IOU."""
    if iou.size == 0:
        return []
    gain = np.where(iou >= MATCH_IOU, iou, 0.0)
    rows, cols = linear_sum_assignment(-gain)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if gain[r, c] > 0]


@dataclass
class Counts:
    """True positives, false positives and false negatives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def figures(self) -> dict[str, float]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass
class ImageInstances:
    """One image's drawn and answered instances of one label, their IoUs computed once."""

    truth: list[Rle]
    answers: list[Rle]
    scores: np.ndarray
    iou: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.iou = iou_matrix(self.answers, self.truth)

    def counts(self, threshold: float) -> Counts:
        """The matching's counts with the answers scoring >= ``threshold``."""
        keep = np.flatnonzero(self.scores >= threshold - 1e-9)
        tp = len(matched_pairs(self.iou[keep])) if len(keep) else 0
        return Counts(tp, len(keep) - tp, len(self.truth) - tp)


def label_instances(image: ExportImage, answers: Sequence[Instance], label: str) -> ImageInstances:
    """The drawn and answered instances of ``label`` on one image."""
    mine = [(rle, score) for name, rle, score in answers if name == label]
    return ImageInstances(
        [rle for name, rle in image.instances if name == label],
        [rle for rle, _ in mine],
        np.asarray([score for _, score in mine], dtype=np.float64),
    )


def confusion(
    image: ExportImage, answers: Sequence[Instance], threshold: float
) -> list[tuple[str, str]]:
    """(drawn label, answered label) of each pair matched with the labels left out;
    ``"(missed)"`` for a drawn instance nothing matched, ``"(none)"`` for a spurious answer."""
    kept = [answer for answer in answers if answer[2] >= threshold - 1e-9]
    iou = iou_matrix([rle for _, rle, _ in kept], [rle for _, rle in image.instances])
    pairs = matched_pairs(iou)
    cells = [(image.instances[t][0], kept[a][0]) for a, t in pairs]
    matched_truth = {t for _, t in pairs}
    matched_answers = {a for a, _ in pairs}
    cells += [
        (label, "(missed)")
        for t, (label, _) in enumerate(image.instances)
        if t not in matched_truth
    ]
    cells += [("(none)", kept[a][0]) for a in range(len(kept)) if a not in matched_answers]
    return cells


def coco_average_precision(
    images: Sequence[ExportImage], answers: Sequence[Sequence[Instance]], labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """COCO mask AP by pycocotools' COCOeval: ``{"all" | label: {"map", "ap50"}}``."""
    import contextlib
    import io

    from pycocotools import mask as coco_mask
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    category = {label: number for number, label in enumerate(labels, start=1)}
    truth: list[dict[str, Any]] = []
    found: list[dict[str, Any]] = []
    for image_id, (image, answered) in enumerate(zip(images, answers, strict=True), start=1):
        for label, rle in image.instances:
            if label in category:
                truth.append(
                    {
                        "id": len(truth) + 1,
                        "image_id": image_id,
                        "category_id": category[label],
                        "segmentation": rle,
                        "area": float(coco_mask.area(rle)),
                        "bbox": [float(v) for v in coco_mask.toBbox(rle)],
                        "iscrowd": 0,
                    }
                )
        found += [
            {
                "image_id": image_id,
                "category_id": category[label],
                "segmentation": rle,
                "score": score,
            }
            for label, rle, score in answered
            if label in category
        ]
    empty = {"map": 0.0, "ap50": 0.0}
    if not truth or not found:
        return {"all": dict(empty), **{label: dict(empty) for label in labels}}
    with contextlib.redirect_stdout(io.StringIO()):
        ground = COCO()
        ground.dataset = {
            "images": [
                {"id": n, "width": image.width, "height": image.height}
                for n, image in enumerate(images, start=1)
            ],
            "categories": [{"id": number, "name": label} for label, number in category.items()],
            "annotations": truth,
        }
        ground.createIndex()
        run = COCOeval(ground, ground.loadRes(found), "segm")
        run.evaluate()
        run.accumulate()
        run.summarize()
    precision = run.eval["precision"]  # [IoU thresholds, recall points, category, area, max dets]

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else 0.0

    result = {"all": {"map": max(float(run.stats[0]), 0.0), "ap50": max(float(run.stats[1]), 0.0)}}
    for label, number in category.items():
        k = number - 1
        result[label] = {
            "map": mean(precision[:, :, k, 0, -1]),
            "ap50": mean(precision[0, :, k, 0, -1]),
        }
    return result


# --- skeletons ---------------------------------------------------------------------------------


def skeleton_side(points: np.ndarray) -> float:
    """The quadrat's side as a drawn skeleton gives it: the side of a square with the area of
    its nodes' convex hull (the largest extent when the nodes span no area)."""
    coords = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if len(coords) >= 3:
        area = float(cv2.contourArea(cv2.convexHull(coords)))
        if area > 1.0:
            return float(np.sqrt(area))
    extent = coords.max(axis=0) - coords.min(axis=0) if len(coords) else np.zeros(2)
    return max(float(extent.max()), 1.0)


def node_errors(truth: TruthSkeleton, answer: AnsweredSkeleton | None) -> dict[str, float]:
    """Each drawn node's error as a share of the side (inf: not answered)."""
    side = skeleton_side(np.asarray(list(truth.points.values())))
    errors = {}
    for name, (x, y) in truth.points.items():
        found = answer.points.get(name) if answer is not None else None
        errors[name] = (
            float(np.hypot(found[0] - x, found[1] - y)) / side
            if found is not None
            else float("inf")
        )
    return errors


@dataclass
class SkeletonMatch:
    """One image's skeletons of one label, matched: each drawn skeleton's node errors, and how
    many answered skeletons matched nothing."""

    errors: list[dict[str, float]]
    extra: int
    answered: int

    @property
    def right(self) -> bool:
        """Every drawn skeleton answered with each node within RIGHT_TOLERANCE, none extra."""
        return self.extra == 0 and all(
            all(e <= RIGHT_TOLERANCE for e in errors.values()) for errors in self.errors
        )


def match_skeletons(
    truth: Sequence[TruthSkeleton], answers: Sequence[AnsweredSkeleton], cut: float = 0.0
) -> SkeletonMatch:
    """Drawn skeletons matched one to one to answers of confidence >= ``cut`` (least mean
    node error, a missing node costing 1)."""
    kept = [answer for answer in answers if answer.score >= cut - 1e-9]
    cost = np.ones((len(truth), len(kept)))
    for t, drawn in enumerate(truth):
        for a, answer in enumerate(kept):
            values = np.minimum(np.asarray(list(node_errors(drawn, answer).values())), 1.0)
            cost[t, a] = float(values.mean()) if values.size else 1.0
    pairs = dict(zip(*linear_sum_assignment(cost), strict=True)) if cost.size else {}
    errors = [
        node_errors(drawn, kept[pairs[t]] if t in pairs else None) for t, drawn in enumerate(truth)
    ]
    return SkeletonMatch(errors, max(len(kept) - len(truth), 0), len(kept))


def pck(matches: Sequence[SkeletonMatch], tolerance: float) -> float:
    """Share of drawn nodes within ``tolerance`` of the side (1 when none were drawn)."""
    values = [e for match in matches for errors in match.errors for e in errors.values()]
    return float(np.mean(np.asarray(values) <= tolerance)) if values else 1.0


def skeleton_figures(matches: Sequence[SkeletonMatch]) -> dict[str, Any]:
    """The figures of one skeleton label over every image (``matches``: one per image)."""
    drawn = [errors for match in matches for errors in match.errors]
    finite = [e for errors in drawn for e in errors.values() if np.isfinite(e)]
    answered_drawn = [errors for errors in drawn if any(np.isfinite(e) for e in errors.values())]
    right = sum(all(e <= RIGHT_TOLERANCE for e in errors.values()) for errors in drawn)
    answered = sum(match.answered for match in matches)
    with_truth = [match for match in matches if match.errors]
    by_node: dict[str, list[float]] = {}
    for errors in drawn:
        for name, error in errors.items():
            by_node.setdefault(name, []).append(error)
    return {
        "kind": "skeleton",
        "skeletons": len(drawn),
        "answered": answered,
        "precision": right / answered if answered else 1.0,
        "recall": right / len(drawn) if drawn else 1.0,
        "pck": {f"{tolerance:g}": pck(matches, tolerance) for tolerance in PCK_TOLERANCES},
        "images_within_2pct": (
            float(np.mean([match.right for match in with_truth])) if with_truth else 1.0
        ),
        "images_right": float(np.mean([match.right for match in matches])) if matches else 1.0,
        "missing_skeletons": len(drawn) - len(answered_drawn),
        "extra_skeletons": sum(match.extra for match in matches),
        "mean_error": float(np.mean(finite)) if finite else None,
        "median_error": float(np.median(finite)) if finite else None,
        "node_errors": {
            name: float(np.mean(np.minimum(values, 1.0))) for name, values in by_node.items()
        },
    }


def node_error_values(matches: Sequence[SkeletonMatch]) -> np.ndarray:
    """Every drawn node's error (inf: not answered), for the PCK curve."""
    return np.asarray(
        [e for match in matches for errors in match.errors for e in errors.values()],
        dtype=np.float64,
    )

"""CVAT shapes: the builders every handler answers with, and the confidence attribute's value.

Everything a handler returns to CVAT is built here, in original-image pixels, as plain
dicts ready for :func:`~quadratseg_handlers.cvat.answer_json` (a mask's values are
:class:`~quadratseg_handlers.cvat.masks.MaskValues`, the crop itself; everything else is
plain JSON). CVAT keeps a ``number`` attribute only if its value is a string of digits,
so scores in [0, 1] become ``"0"``..``"100"`` through :func:`confidence_value`, the one place
that conversion happens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from quadratseg_handlers.cvat.masks import (
    MaskPart,
    MaskValues,
    bounding_box,
    mask_parts,
    outer_ring,
)
from quadratseg_handlers.cvat.spec import CONFIDENCE

Shape = dict[str, Any]


def confidence_value(score: float) -> str:
    """A score in [0, 1] as CVAT's integer string "0".."100" (truncated, clamped; NaN -> "0")."""
    value = float(score)
    if not math.isfinite(value):
        return "0" if math.isnan(value) or value < 0 else "100"
    return str(min(100, max(0, int(value * 100))))


def shape_score(shape: Mapping[str, Any]) -> float | None:
    """A shape's confidence in [0, 1], read from CVAT's "0".."100" (None when absent or not
    such a string)."""
    value = shape.get(CONFIDENCE)
    if isinstance(value, str) and value.isdecimal() and int(value) <= 100:
        return int(value) / 100
    return None


def attributes(score: float | None, extra: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """The attribute list of a shape: confidence first (when scored), then ``extra`` in order."""
    result = [] if score is None else [{"name": CONFIDENCE, "value": confidence_value(score)}]
    for name, value in (extra or {}).items():
        result.append({"name": name, "value": str(value)})
    return result


def _coords(points: Any) -> list[float]:
    """Flatten (N, 2) or flat points to a list of floats rounded to 1/100 pixel."""
    flat = np.asarray(points, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(flat)):
        raise ValueError("shape points must be finite")
    if np.array_equal(flat, np.round(flat)):  # whole pixels (traced outlines): nothing to round
        return flat.tolist()
    return rounded(flat)


def rounded(values: np.ndarray, digits: int = 2) -> list[float]:
    """``[round(v, digits) for v in values]`` for a float64 array, computed in numpy.

    Python rounds the exact decimal value; numpy rounds ``v * 10**digits``, which agrees
    except within the product's rounding error of a tie. The few values that close to a tie
    (or too large for the bound) take Python's ``round``, so every result is the same float.
    """
    scale = 10.0**digits
    scaled = values * scale
    result: list[float] = (np.round(scaled) / scale).tolist()
    near_tie = (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6) | ~(np.abs(values) < 1e6)
    for index in np.flatnonzero(near_tie).tolist():
        result[index] = round(float(values[index]), digits)
    return result


def _shape(
    label: str,
    kind: str,
    points: Any,
    score: float | None,
    group_id: int | None,
    extra: Mapping[str, str] | None,
) -> Shape:
    return _shape_of(label, kind, _coords(points), score, group_id, extra)


def _shape_of(
    label: str,
    kind: str,
    coords: list[float],
    score: float | None,
    group_id: int | None,
    extra: Mapping[str, str] | None,
) -> Shape:
    """A shape from coordinates already checked and rounded (:func:`_coords`)."""
    shape: Shape = {"label": label, "type": kind, "points": coords}
    if score is not None:
        shape["confidence"] = confidence_value(score)
    shape["attributes"] = attributes(score, extra)
    if group_id:
        shape["group_id"] = int(group_id)
    return shape


def rectangle(
    label: str,
    box: Sequence[float],
    score: float | None = None,
    *,
    group_id: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Shape:
    """A rectangle from (xtl, ytl, xbr, ybr)."""
    return _shape(label, "rectangle", box, score, group_id, extra)


def polygon(
    label: str,
    points: Any,
    score: float | None = None,
    *,
    group_id: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Shape:
    """A closed polygon from (N, 2) or flat points, N >= 3."""
    return _shape(label, "polygon", points, score, group_id, extra)


def polyline(
    label: str,
    points: Any,
    score: float | None = None,
    *,
    group_id: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Shape:
    """An open polyline from (N, 2) or flat points, N >= 2."""
    return _shape(label, "polyline", points, score, group_id, extra)


def points(
    label: str,
    points: Any,
    score: float | None = None,
    *,
    group_id: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Shape:
    """A points shape from (N, 2) or flat points, N >= 1."""
    return _shape(label, "points", points, score, group_id, extra)


def mask(
    label: str,
    bitmap: np.ndarray,
    score: float | None = None,
    *,
    origin: tuple[int, int] = (0, 0),
    outline: Any = None,
    group_id: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Shape:
    """A CVAT mask: the 0/1 crop of ``bitmap`` flattened row-major plus its inclusive box.

    ``bitmap`` may itself be a crop whose top-left pixel sits at ``origin`` = (x, y). The
    outline polygon (``points``) is what CVAT uses when asked to convert masks to polygons;
    it is traced from the largest part when not given. ``mask`` holds the values as
    :class:`MaskValues` (the crop itself); :func:`~quadratseg_handlers.cvat.answer_json`
    writes the answer.
    """
    box = bounding_box(bitmap)
    if box is None:
        raise ValueError("cannot build a CVAT mask from an empty bitmap")
    left, top, right, bottom = box
    crop = np.asarray(bitmap)[top : bottom + 1, left : right + 1]
    xtl, ytl = origin[0] + left, origin[1] + top
    xbr, ybr = origin[0] + right, origin[1] + bottom
    ring = outer_ring(crop) + (xtl, ytl) if outline is None else outline
    shape = _shape(label, "mask", ring, score, group_id, extra)
    shape["mask"] = MaskValues(crop > 0 if crop.dtype != bool else crop, (xtl, ytl, xbr, ybr))
    return shape


def tag(label: str, score: float | None = None, *, extra: Mapping[str, str] | None = None) -> Shape:
    """An image-level label."""
    shape: Shape = {"label": label, "type": "tag"}
    if score is not None:
        shape["confidence"] = confidence_value(score)
    shape["attributes"] = attributes(score, extra)
    return shape


def skeleton_element(
    label: str, point: Sequence[float], score: float | None = None, *, outside: bool = False
) -> Shape:
    """One skeleton node: a single point, its sublabel name, ``outside`` flag and confidence."""
    return skeleton_elements([label], [point], None if score is None else [score], [outside])[0]


def skeleton_elements(
    labels: Sequence[str],
    points: Any,
    scores: Sequence[float] | None = None,
    outside: Sequence[bool] | None = None,
) -> list[Shape]:
    """Skeleton nodes for (N, 2) ``points``: :func:`skeleton_element` for each, with the
    coordinates checked and rounded in one pass (node by node, a 117-point grid spent more
    on its nodes than on matching them)."""
    coords = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(labels) != len(coords):
        raise ValueError(f"{len(labels)} labels for {len(coords)} points")
    flat = _coords(coords)
    elements = []
    for index, label in enumerate(labels):
        score = None if scores is None else scores[index]
        element = _shape_of(label, "points", flat[2 * index : 2 * index + 2], score, None, None)
        element["outside"] = 1 if outside is not None and outside[index] else 0
        elements.append(element)
    return elements


def skeleton(
    label: str,
    elements: Sequence[Shape],
    score: float | None = None,
    *,
    extra: Mapping[str, str] | None = None,
) -> Shape:
    """A skeleton shape from elements built by :func:`skeleton_element`."""
    shape: Shape = {"label": label, "type": "skeleton", "elements": list(elements)}
    if score is not None:
        shape["confidence"] = confidence_value(score)
    shape["attributes"] = attributes(score, extra)
    return shape


def part_shape(
    label: str,
    part: MaskPart,
    score: float | None,
    *,
    as_mask: bool,
    group_id: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Shape:
    """One connected mask part as a polygon, or as a CVAT mask that also carries the polygon."""
    if as_mask:
        return mask(
            label,
            part.bitmap,
            score,
            origin=(part.x0, part.y0),
            outline=part.polygon,
            group_id=group_id,
            extra=extra,
        )
    return polygon(label, part.polygon, score, group_id=group_id, extra=extra)


def instance_shapes(
    label: str,
    instance: np.ndarray,
    score: float | None,
    *,
    as_mask: bool = False,
    origin: tuple[int, int] = (0, 0),
    tolerance: float = 1.0,
    min_area: int = 1,
    group_id: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> list[Shape]:
    """The CVAT shapes of one instance mask: one shape per connected part, largest first.

    A polygon is one ring without holes, so each part becomes its own polygon (holes filled);
    as a CVAT mask each part keeps its holes. Parts of a multi-part instance share
    ``group_id`` so a reviewer can select them together in CVAT; a single part gets no group.
    """
    parts = mask_parts(instance, origin=origin, tolerance=tolerance, min_area=min_area)
    group = group_id if len(parts) > 1 else None
    return [
        part_shape(label, part, score, as_mask=as_mask, group_id=group, extra=extra)
        for part in parts
    ]


def skeleton_elements_by_label(elements: Sequence[Any]) -> dict[str, Mapping[str, Any]]:
    """A skeleton's elements by sublabel, in their order; ValueError for an element that is
    not a mapping with a string ``label``, or a sublabel given twice."""
    by_label: dict[str, Mapping[str, Any]] = {}
    for position, element in enumerate(elements):
        if not isinstance(element, Mapping) or not isinstance(element.get("label"), str):
            raise ValueError(f"element {position} must be a skeleton element with a 'label'")
        label = element["label"]
        if label in by_label:
            raise ValueError(f"sublabel {label!r} appears twice")
        by_label[label] = element
    return by_label


def skeleton_element_points(
    skeleton: Mapping[str, Any] | Sequence[Any], sublabels: Sequence[str] | None = None
) -> list[Any]:
    """The ``points`` of a skeleton's elements (the shape, or its ``elements`` list), in
    sublabel order: ``sublabels`` when given (each exactly once), else numeric "1".."N".

    The values are returned as the elements hold them; ValueError says what is wrong.
    """
    elements = skeleton.get("elements") if isinstance(skeleton, Mapping) else skeleton
    if not isinstance(elements, list):
        raise ValueError("a skeleton needs an 'elements' list")
    by_label = {
        label: element.get("points")
        for label, element in skeleton_elements_by_label(elements).items()
    }
    if sublabels is None:
        if not all(label.isdigit() for label in by_label):
            raise ValueError('skeleton sublabels must be numbers "1".."N"')
        return [by_label[label] for label in sorted(by_label, key=int)]
    missing = [label for label in sublabels if label not in by_label]
    unknown = sorted(set(by_label) - set(sublabels))
    if missing or unknown:
        raise ValueError(
            f'the elements must be the sublabels "{sublabels[0]}".."{sublabels[-1]}" once each'
            + (f"; missing {_few(missing)}" if missing else "")
            + (f"; unknown {_few(unknown)}" if unknown else "")
        )
    return [by_label[label] for label in sublabels]


def _few(labels: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(label) for label in labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def skeleton_points(skeleton: Mapping[str, Any] | Sequence[Any]) -> np.ndarray:
    """(N, 2) points of a CVAT skeleton shape (or its elements), by numeric sublabel."""
    return np.asarray(skeleton_element_points(skeleton), dtype=np.float64).reshape(-1, 2)


def skeleton_moved(skeleton: Mapping[str, Any], points: Any) -> Shape:
    """A copy of a skeleton with numeric sublabels "1".."N" whose elements lie at ``points``
    ((N, 2), by sublabel), everything else (scores, ``outside`` flags) as it was."""
    elements = skeleton_elements_by_label(skeleton.get("elements") or [])
    placed = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(placed) != len(elements) or not all(label.isdigit() for label in elements):
        raise ValueError(f"{len(placed)} points for a skeleton of {len(elements)} elements")
    moved = [
        {**element, "points": _coords(placed[int(label) - 1])}
        for label, element in elements.items()
    ]
    return {**skeleton, "elements": moved}


def with_skeleton_moved(shapes: Sequence[Shape], points: Any) -> list[Shape]:
    """``shapes`` with the first skeleton of as many elements as ``points`` moved there
    (:func:`skeleton_moved`), the others as they were."""
    count = len(np.asarray(points).reshape(-1, 2))
    moved: list[Shape] = []
    done = False
    for shape in shapes:
        fits = shape.get("type") == "skeleton" and len(shape.get("elements") or []) == count
        moved.append(skeleton_moved(shape, points) if fits and not done else shape)
        done = done or fits
    return moved

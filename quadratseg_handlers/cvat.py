"""The CVAT shape contract: shape builders, the confidence attribute, label specs, validation.

Everything a handler returns to CVAT is built here, in original-image pixels, as plain
JSON-ready dicts. CVAT keeps a ``number`` attribute only if its value is a string of digits,
so scores in [0, 1] become ``"0"``..``"100"`` through :func:`confidence_value`, the one place
that conversion happens.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .masks import MaskPart, bounding_box, mask_parts, outer_ring

Shape = dict[str, Any]
LabelSpec = dict[str, Any]

SHAPE_TYPES = ("rectangle", "polygon", "polyline", "points", "mask", "skeleton", "tag")
LABEL_TYPES = (*SHAPE_TYPES, "any", "ellipse", "cuboid")

CONFIDENCE = "confidence"
CONFIDENCE_SPEC: dict[str, Any] = {
    "name": CONFIDENCE,
    "input_type": "number",
    "mutable": True,
    "values": ["0", "100", "1"],
    "default_value": "100",
}
"""The confidence attribute exactly as the QUADRATSEG label spec declares it."""


def confidence_value(score: float) -> str:
    """A score in [0, 1] as CVAT's integer string "0".."100" (truncated, clamped; NaN -> "0")."""
    value = float(score)
    if not math.isfinite(value):
        return "0" if math.isnan(value) or value < 0 else "100"
    return str(min(100, max(0, int(value * 100))))


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
    return [round(float(value), 2) for value in flat]


def _shape(
    label: str,
    kind: str,
    points: Any,
    score: float | None,
    group_id: int | None,
    extra: Mapping[str, str] | None,
) -> Shape:
    shape: Shape = {"label": label, "type": kind, "points": _coords(points)}
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
    it is traced from the largest part when not given.
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
    shape["mask"] = (crop > 0).astype(np.uint8).reshape(-1).tolist() + [xtl, ytl, xbr, ybr]
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
    element = _shape(label, "points", point, score, None, None)
    element["outside"] = 1 if outside else 0
    return element


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


# --- label specs (metadata.annotations.spec) -------------------------------------------------


def label_spec(
    name: str, kind: str = "polygon", attributes: Iterable[Mapping[str, Any]] = (CONFIDENCE_SPEC,)
) -> LabelSpec:
    """A spec label with the confidence attribute, as the QUADRATSEG spec has it."""
    if kind not in LABEL_TYPES:
        raise ValueError(f"unknown CVAT label type {kind!r}")
    return {"name": name, "type": kind, "attributes": [dict(a) for a in attributes]}


def skeleton_svg(
    positions: np.ndarray, edges: Iterable[tuple[int, int]], names: Sequence[str]
) -> str:
    """The svg CVAT draws a skeleton with: nodes at ``positions`` in [0, 1]^2, 1-based edges."""
    coords = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    low = coords.min(axis=0)
    span = max(float((coords.max(axis=0) - low).max()), 1e-9)
    scaled = 5.0 + 90.0 * (coords - low) / span
    parts = []
    for node_from, node_to in edges:
        (x1, y1), (x2, y2) = scaled[node_from - 1], scaled[node_to - 1]
        parts.append(
            f'<line x1="{x1:.2f}" y1="{y1:.2f}" x2="{x2:.2f}" y2="{y2:.2f}" '
            f'stroke="black" data-type="edge" data-node-from="{node_from}" '
            f'stroke-width="0.5" data-node-to="{node_to}"></line>'
        )
    for node, ((x, y), name) in enumerate(zip(scaled, names, strict=True), start=1):
        parts.append(
            f'<circle r="0.75" cx="{x:.2f}" cy="{y:.2f}" stroke-width="0.1" '
            f'data-type="element node" data-element-id="{node}" data-node-id="{node}" '
            f'data-label-name="{name}"></circle>'
        )
    return "".join(parts)


_SVG_ELEMENT = re.compile(r"<(circle|line)\b([^>]*)>")
_SVG_ATTRIBUTE = re.compile(r'([\w-]+)="([^"]*)"')


def skeleton_svg_graph(svg: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """What a skeleton svg draws: node id -> sublabel name ("" when unnamed), and the edges
    as pairs of node ids (the reverse of :func:`skeleton_svg`)."""
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for kind, text in _SVG_ELEMENT.findall(svg):
        attrs = dict(_SVG_ATTRIBUTE.findall(text))
        if kind == "circle" and "data-node-id" in attrs:
            nodes[attrs["data-node-id"]] = attrs.get("data-label-name", "")
        elif kind == "line" and "data-node-from" in attrs and "data-node-to" in attrs:
            edges.append((attrs["data-node-from"], attrs["data-node-to"]))
    return nodes, edges


def skeleton_label_edges(label: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The edges of a skeleton spec label as pairs of sublabel names, read from its svg."""
    nodes, edges = skeleton_svg_graph(str(label.get("svg") or ""))
    return [(nodes.get(a) or a, nodes.get(b) or b) for a, b in edges]


def skeleton_spec(
    name: str,
    sublabels: Sequence[str],
    positions: np.ndarray,
    edges: Iterable[tuple[int, int]],
    attributes: Iterable[Mapping[str, Any]] = (CONFIDENCE_SPEC,),
) -> LabelSpec:
    """A skeleton spec label: sublabels (each with the confidence attribute) and its svg."""
    if len(set(sublabels)) != len(sublabels):
        raise ValueError("skeleton sublabel names must be unique")
    attrs = [dict(a) for a in attributes]
    return {
        "name": name,
        "type": "skeleton",
        "attributes": [],
        "sublabels": [
            {"id": index, "name": sub, "type": "points", "attributes": [dict(a) for a in attrs]}
            for index, sub in enumerate(sublabels)
        ],
        "svg": skeleton_svg(positions, list(edges), sublabels),
    }


def spec_json(labels: Sequence[LabelSpec]) -> str:
    """The spec as the JSON string ``metadata.annotations.spec`` holds."""
    return json.dumps(list(labels), indent=2)


# --- validation -------------------------------------------------------------------------------

_MIN_COORDS = {"rectangle": 4, "polygon": 6, "polyline": 4, "points": 2}


def _attribute_problems(
    where: str, attrs: Any, declared: Sequence[Mapping[str, Any]]
) -> list[str]:
    if attrs is None:
        return []
    if not isinstance(attrs, list):
        return [f"{where}: 'attributes' must be a list"]
    problems = []
    by_name = {a.get("name"): a for a in declared}
    for attr in attrs:
        if not isinstance(attr, dict) or "name" not in attr or "value" not in attr:
            problems.append(f"{where}: attribute {attr!r} needs 'name' and 'value'")
            continue
        spec = by_name.get(attr["name"])
        if spec is None:
            problems.append(f"{where}: attribute {attr['name']!r} is not declared in the spec")
            continue
        value = attr["value"]
        if not isinstance(value, str):
            problems.append(
                f"{where}: attribute {attr['name']!r} value {value!r} is not a string"
            )
            continue
        if spec.get("input_type") == "number":
            if not value.isnumeric():
                problems.append(
                    f"{where}: number attribute {attr['name']!r} value {value!r} is not an "
                    "integer string (CVAT drops it)"
                )
                continue
            bounds = spec.get("values") or []
            if len(bounds) >= 2 and not int(bounds[0]) <= int(value) <= int(bounds[1]):
                problems.append(
                    f"{where}: attribute {attr['name']!r} value {value} outside "
                    f"[{bounds[0]}, {bounds[1]}]"
                )
        elif spec.get("input_type") in {"select", "radio"} and value not in spec.get("values", []):
            problems.append(f"{where}: attribute {attr['name']!r} value {value!r} not allowed")
    return problems


def _geometry_problems(
    where: str, shape: Mapping[str, Any], image_size: tuple[int, int] | None
) -> list[str]:
    kind = shape["type"]
    problems: list[str] = []
    if kind == "tag":
        return problems
    pts = shape.get("points")
    if kind == "mask" and pts is None:
        pts = []
    if not isinstance(pts, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pts
    ):
        return [f"{where}: 'points' must be a flat list of finite numbers"]
    if len(pts) % 2:
        problems.append(f"{where}: odd number of point coordinates ({len(pts)})")
    needed = _MIN_COORDS.get(kind, 0)
    if kind == "rectangle" and len(pts) != 4:
        problems.append(f"{where}: a rectangle needs exactly 4 coordinates, got {len(pts)}")
    elif len(pts) < needed:
        problems.append(
            f"{where}: a {kind} needs at least {needed // 2} points, got {len(pts) // 2}"
        )
    if kind == "mask":
        problems += _mask_problems(where, shape.get("mask"), image_size)
    return problems


def _mask_problems(where: str, data: Any, image_size: tuple[int, int] | None) -> list[str]:
    if not isinstance(data, list) or len(data) < 5:
        return [f"{where}: 'mask' must be a list of 0/1 values followed by [xtl, ytl, xbr, ybr]"]
    xtl, ytl, xbr, ybr = data[-4:]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (xtl, ytl, xbr, ybr)):
        return [f"{where}: mask box {data[-4:]} must be integers"]
    problems = []
    width, height = xbr - xtl + 1, ybr - ytl + 1
    if width <= 0 or height <= 0:
        return [f"{where}: mask box {data[-4:]} is empty"]
    if len(data) - 4 != width * height:
        problems.append(
            f"{where}: mask has {len(data) - 4} values, expected {width}x{height} = "
            f"{width * height} for box {data[-4:]}"
        )
    if any(v not in (0, 1) for v in data[:-4]):
        problems.append(f"{where}: mask values must be 0 or 1")
    if xtl < 0 or ytl < 0 or (
        image_size is not None and (xbr >= image_size[0] or ybr >= image_size[1])
    ):
        problems.append(f"{where}: mask box {data[-4:]} lies outside the image {image_size}")
    return problems


def validate_response(
    shapes: Any, spec: Sequence[Mapping[str, Any]], image_size: tuple[int, int] | None = None
) -> list[str]:
    """What CVAT would reject or silently drop in a detector's answer; empty when all is well.

    ``spec`` is the label list of ``metadata.annotations.spec``; ``image_size`` is (width,
    height) and enables the mask box check against the image.
    """
    if not isinstance(shapes, list):
        return [f"the answer must be a JSON list of shapes, got {type(shapes).__name__}"]
    labels = {label["name"]: label for label in spec}
    problems: list[str] = []
    for index, shape in enumerate(shapes):
        where = f"shape {index}"
        if not isinstance(shape, dict):
            problems.append(f"{where}: not an object")
            continue
        name, kind = shape.get("label"), shape.get("type")
        where = f"shape {index} ({name!r})"
        label = labels.get(name)
        if label is None:
            problems.append(f"{where}: label {name!r} is not in the spec")
            continue
        if kind not in SHAPE_TYPES:
            problems.append(f"{where}: unknown shape type {kind!r}")
            continue
        expected = label.get("type", "any")
        if expected not in ("any", kind) and not (expected == "mask" and kind == "polygon"):
            problems.append(f"{where}: type {kind!r} does not match the label's type {expected!r}")
            continue
        if "confidence" in shape and not isinstance(shape["confidence"], str):
            problems.append(f"{where}: 'confidence' must be a string, got {shape['confidence']!r}")
        problems += _attribute_problems(where, shape.get("attributes"), label.get("attributes", []))
        if kind == "skeleton":
            problems += _skeleton_problems(where, shape, label, image_size)
        else:
            problems += _geometry_problems(where, shape, image_size)
    return problems


def _skeleton_problems(
    where: str,
    shape: Mapping[str, Any],
    label: Mapping[str, Any],
    image_size: tuple[int, int] | None,
) -> list[str]:
    elements = shape.get("elements")
    if not isinstance(elements, list) or not elements:
        return [f"{where}: a skeleton needs a non-empty 'elements' list"]
    sublabels = {sub["name"]: sub for sub in label.get("sublabels", [])}
    problems: list[str] = []
    seen: set[str] = set()
    for index, element in enumerate(elements):
        inner = f"{where} element {index}"
        if not isinstance(element, dict):
            problems.append(f"{inner}: not an object")
            continue
        sub = sublabels.get(element.get("label"))
        if sub is None:
            problems.append(
                f"{inner}: {element.get('label')!r} is not a sublabel of {label['name']!r}"
            )
            continue
        if element["label"] in seen:
            problems.append(f"{inner}: sublabel {element['label']!r} appears twice")
        seen.add(element["label"])
        if element.get("type") != "points":
            problems.append(f"{inner}: skeleton elements must be 'points'")
        if element.get("outside", 0) not in (0, 1, True, False):
            problems.append(f"{inner}: 'outside' must be 0 or 1")
        pts = element.get("points")
        if not isinstance(pts, list) or len(pts) != 2:
            problems.append(f"{inner}: an element needs exactly one point [x, y]")
        else:
            problems += _geometry_problems(inner, element, image_size)
        problems += _attribute_problems(inner, element.get("attributes"), sub.get("attributes", []))
    if elements and all(e.get("outside") for e in elements if isinstance(e, dict)):
        problems.append(f"{where}: every element is outside, CVAT drops the skeleton")
    return problems


# --- spec validation ----------------------------------------------------------------------------

ATTRIBUTE_INPUT_TYPES = ("number", "checkbox", "radio", "select", "text")


def _within(value: Any, low: str, high: str) -> bool:
    text = str(value)
    return text.lstrip("-").isdigit() and int(low) <= int(text) <= int(high)


def _spec_attribute_problems(where: str, attrs: Any) -> list[str]:
    if attrs is None:
        return []
    if not isinstance(attrs, list):
        return [f"{where}: 'attributes' must be a list"]
    problems: list[str] = []
    names: set[str] = set()
    for attr in attrs:
        if not isinstance(attr, dict) or not isinstance(attr.get("name"), str):
            problems.append(f"{where}: attribute {attr!r} needs a 'name'")
            continue
        name = attr["name"]
        if name in names:
            problems.append(f"{where}: attribute {name!r} declared twice (CVAT refuses it)")
        names.add(name)
        kind = attr.get("input_type")
        if kind not in ATTRIBUTE_INPUT_TYPES:
            problems.append(f"{where}: attribute {name!r} has unknown input_type {kind!r}")
        elif kind == "number":
            values = attr.get("values")
            if not (
                isinstance(values, list)
                and len(values) == 3
                and all(isinstance(v, str) and v.lstrip("-").isdigit() for v in values)
            ):
                problems.append(
                    f"{where}: number attribute {name!r} needs values [min, max, step] as "
                    f"integer strings, got {values!r}"
                )
            elif not _within(attr.get("default_value", values[0]), values[0], values[1]):
                problems.append(
                    f"{where}: number attribute {name!r} default {attr.get('default_value')!r} "
                    f"outside [{values[0]}, {values[1]}]"
                )
    return problems


def _spec_skeleton_problems(where: str, label: Mapping[str, Any]) -> list[str]:
    sublabels = label.get("sublabels")
    if not isinstance(sublabels, list) or not sublabels:
        return [f"{where}: a skeleton needs a non-empty 'sublabels' list"]
    problems: list[str] = []
    names: list[str] = []
    for index, sub in enumerate(sublabels):
        if not isinstance(sub, dict) or not isinstance(sub.get("name"), str) or not sub["name"]:
            problems.append(f"{where}: sublabel {index} needs a 'name'")
            continue
        names.append(sub["name"])
        if sub.get("type", "points") != "points":
            problems.append(f"{where}: sublabel {sub['name']!r} must be of type 'points'")
        inner = f"{where} sublabel {sub['name']!r}"
        problems += _spec_attribute_problems(inner, sub.get("attributes"))
    if len(set(names)) != len(names):
        problems.append(f"{where}: sublabel names are not unique")
    svg = label.get("svg")
    if not isinstance(svg, str) or not svg:
        return [*problems, f"{where}: a skeleton needs an 'svg' drawing its nodes"]
    nodes, edges = skeleton_svg_graph(svg)
    drawn = set(nodes.values())
    missing = [name for name in names if name not in drawn]
    if missing:
        problems.append(f"{where}: svg draws no node for sublabel(s) {', '.join(missing[:5])}")
    for start, end in edges:
        if start not in nodes or end not in nodes:
            problems.append(f"{where}: svg edge {start}-{end} joins a node the svg does not draw")
            break
    return problems


def spec_problems(spec: Any) -> list[str]:
    """What CVAT would refuse or misread in a function's label spec; empty when all is well.

    CVAT refuses duplicate label names and duplicate attribute names; a skeleton needs
    sublabels and an svg that draws a node per sublabel.
    """
    if not isinstance(spec, list):
        return [f"the spec must be a JSON list of labels, got {type(spec).__name__}"]
    problems: list[str] = []
    seen: set[str] = set()
    for index, label in enumerate(spec):
        name = label.get("name") if isinstance(label, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"label {index}: needs a non-empty 'name'")
            continue
        where = f"label {name!r}"
        if name in seen:
            problems.append(f"{where}: declared twice (CVAT refuses non-unique labels)")
        seen.add(name)
        kind = label.get("type", "any")
        if kind not in LABEL_TYPES:
            problems.append(f"{where}: unknown type {kind!r}")
        problems += _spec_attribute_problems(where, label.get("attributes"))
        if kind == "skeleton":
            problems += _spec_skeleton_problems(where, label)
    return problems

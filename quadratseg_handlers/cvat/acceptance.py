"""What CVAT would refuse or silently drop: in a function's answer, and in its label spec.

The rules mirror CVAT's lambda manager (``cvat/apps/lambda_manager/views.py``): labels
matched by name, attributes by name on the same level, number attributes as integer strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from quadratseg_handlers.cvat.masks import MaskValues
from quadratseg_handlers.cvat.spec import LABEL_TYPES, SHAPE_TYPES, skeleton_svg_graph

_MIN_COORDS = {"rectangle": 4, "polygon": 6, "polyline": 4, "points": 2}


def _attribute_problems(where: str, attrs: Any, declared: Sequence[Mapping[str, Any]]) -> list[str]:
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
            problems.append(f"{where}: attribute {attr['name']!r} value {value!r} is not a string")
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
    where: str, shape: Mapping[str, Any], image_size_wh: tuple[int, int] | None
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
        problems += _mask_problems(where, shape.get("mask"), image_size_wh)
    return problems


def _mask_problems(where: str, data: Any, image_size_wh: tuple[int, int] | None) -> list[str]:
    if isinstance(data, MaskValues):
        data = data.tolist()
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
    if (
        xtl < 0
        or ytl < 0
        or (image_size_wh is not None and (xbr >= image_size_wh[0] or ybr >= image_size_wh[1]))
    ):
        problems.append(f"{where}: mask box {data[-4:]} lies outside the image {image_size_wh}")
    return problems


def validate_response(
    shapes: Any, spec: Sequence[Mapping[str, Any]], image_size_wh: tuple[int, int] | None = None
) -> list[str]:
    """What CVAT would reject or silently drop in a detector's answer; empty when all is well.

    ``spec`` is the label list of ``metadata.annotations.spec``; ``image_size_wh`` is (width,
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
            problems += _skeleton_problems(where, shape, label, image_size_wh)
        else:
            problems += _geometry_problems(where, shape, image_size_wh)
    return problems


def _skeleton_problems(
    where: str,
    shape: Mapping[str, Any],
    label: Mapping[str, Any],
    image_size_wh: tuple[int, int] | None,
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
            problems += _geometry_problems(inner, element, image_size_wh)
        problems += _attribute_problems(inner, element.get("attributes"), sub.get("attributes", []))
    if elements and all(e.get("outside") for e in elements if isinstance(e, dict)):
        problems.append(f"{where}: every element is outside, CVAT drops the skeleton")
    return problems


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


# --- what a CVAT project keeps of an answer ----------------------------------------------------


def _compatible(function_type: str, project_type: str) -> bool:
    """CVAT's ``labels_compatible``: same type, ``any`` for a non-skeleton, mask ~ polygon."""
    return (
        function_type == project_type
        or (project_type == "any" and function_type != "skeleton")
        or {function_type, project_type} == {"mask", "polygon"}
    )


def _label_mapping(
    function_labels: Sequence[Mapping[str, Any]], project_labels: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """CVAT's default mapping: labels by name and compatible type, attributes by name on
    the same level, a skeleton's sublabels likewise (``make_default_mapping``)."""
    mapping: dict[str, dict[str, Any]] = {}
    for model in function_labels:
        for project in project_labels:
            kind = model.get("type", "unknown")
            if project["name"] != model["name"] or not _compatible(
                kind, project.get("type", "any")
            ):
                continue
            declared = {attr["name"] for attr in project.get("attributes", [])}
            entry: dict[str, Any] = {
                "attributes": {
                    attr["name"]: next(
                        a for a in project["attributes"] if a["name"] == attr["name"]
                    )
                    for attr in model.get("attributes", [])
                    if attr["name"] in declared
                }
            }
            if kind == "skeleton" and project.get("type") == "skeleton":
                entry["sublabels"] = _label_mapping(
                    model.get("sublabels", []), project.get("sublabels", [])
                )
            mapping[model["name"]] = entry
    return mapping


def _kept_value(value: Any, project_attr: Mapping[str, Any]) -> bool:
    """CVAT's ``check_attr_value`` against the project's attribute."""
    kind = project_attr.get("input_type")
    text = str(value)
    if kind == "number":
        return text.isnumeric()
    if kind == "checkbox":
        return text in ("true", "false")
    if kind in ("select", "radio"):
        return text in project_attr.get("values", [])
    return kind == "text"


def _kept_attributes(attrs: Any, mapped: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": attr["name"], "value": attr["value"]}
        for attr in attrs or []
        if attr.get("name") in mapped and _kept_value(attr.get("value"), mapped[attr["name"]])
    ]


def cvat_keeps(
    shapes: Sequence[Mapping[str, Any]],
    function_labels: Sequence[Mapping[str, Any]],
    project_labels: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """A detector's answer as CVAT's lambda manager keeps it in a project with
    ``project_labels``: shapes of unmapped labels dropped, attributes kept only where both
    the function's spec and the project declare them on that level and the value passes
    CVAT's check, skeleton elements of unmapped sublabels dropped.

    The replay of ``LambdaFunction.invoke`` (``cvat/apps/lambda_manager/views.py``) with
    the default mapping; a shape's missing attribute then takes the project's default.
    """
    mapping = _label_mapping(function_labels, project_labels)
    kept = []
    for shape in shapes:
        entry = mapping.get(str(shape.get("label")))
        if entry is None:
            continue
        result = dict(shape)
        result["attributes"] = _kept_attributes(shape.get("attributes"), entry["attributes"])
        if "elements" in shape:
            sublabels = entry.get("sublabels", {})
            result["elements"] = [
                {
                    **element,
                    "attributes": _kept_attributes(
                        element.get("attributes"), sublabels[element["label"]]["attributes"]
                    ),
                }
                for element in shape["elements"]
                if element.get("label") in sublabels
            ]
        kept.append(result)
    return kept

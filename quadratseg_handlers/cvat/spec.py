"""Label specs (``metadata.annotations.spec``): labels, skeletons and the svg CVAT draws them with.

The confidence attribute is declared here exactly as QUADRATSEG's projects declare it, so
every function's spec agrees with the ``"0".."100"`` values :mod:`.shapes` writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

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
    sublabel_attributes: Iterable[Mapping[str, Any]] = (),
) -> LabelSpec:
    """A skeleton spec label: its own attributes, sublabels (each with
    ``sublabel_attributes``) and its svg.

    CVAT maps attributes by name on the same level, so the skeleton's confidence is declared
    on the skeleton (as QUADRATSEG's projects do) and an element's on its sublabel.
    """
    if len(set(sublabels)) != len(sublabels):
        raise ValueError("skeleton sublabel names must be unique")
    inner = [dict(a) for a in sublabel_attributes]
    return {
        "name": name,
        "type": "skeleton",
        "attributes": [dict(a) for a in attributes],
        "sublabels": [
            {"id": index, "name": sub, "type": "points", "attributes": [dict(a) for a in inner]}
            for index, sub in enumerate(sublabels)
        ],
        "svg": skeleton_svg(positions, list(edges), sublabels),
    }


def spec_json(labels: Sequence[LabelSpec]) -> str:
    """The spec as the JSON string ``metadata.annotations.spec`` holds."""
    return json.dumps(list(labels), indent=2)


def project_labels(spec: Sequence[Mapping[str, Any]]) -> list[LabelSpec]:
    """The label configuration of a CVAT project that keeps everything a function with this
    ``spec`` answers, as CVAT's raw label editor takes it.

    Names, types, attributes (with ``mutable``, ``values`` and ``default_value``), skeleton
    sublabels and svg are kept; sublabel ``id``s are left out (the editor would read them as
    ids of existing labels).
    """
    labels = []
    for label in spec:
        entry: LabelSpec = {
            "name": label["name"],
            "type": label.get("type", "any"),
            "attributes": [_attribute(attr) for attr in label.get("attributes", [])],
        }
        if entry["type"] == "skeleton":
            entry["sublabels"] = project_labels(label.get("sublabels", []))
            entry["svg"] = label.get("svg", "")
        labels.append(entry)
    return labels


def _attribute(attr: Mapping[str, Any]) -> dict[str, Any]:
    values = [str(value) for value in attr.get("values", [])]
    return {
        "name": attr["name"],
        "input_type": attr.get("input_type", "text"),
        "mutable": bool(attr.get("mutable", True)),
        "values": values,
        "default_value": str(attr.get("default_value", values[0] if values else "")),
    }

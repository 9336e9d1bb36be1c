"""CVAT for images 1.1: functions' answers as the XML file CVAT imports into a task.

The layout is CVAT's own dumper's (``cvat/apps/dataset_manager/formats/cvat.py``): an
``<annotations>`` root with ``<version>1.1</version>``, a ``<meta>`` naming the task and its
labels, then one ``<image id name width height>`` per frame holding its shapes: ``<box>``
(``xtl ytl xbr ybr``), ``<polygon>``, ``<polyline>`` and ``<points>`` (``points="x,y;x,y"``,
two decimals), ``<mask>`` (``rle left top width height``, the run lengths of the crop
starting with background), ``<skeleton>`` holding one ``<points>`` per element, and
``<tag>``; each with ``label``, ``source="auto"``, ``occluded``, ``z_order`` and its
``<attribute name>`` children. Imported in CVAT with Actions > Upload annotations > "CVAT 1.1"
into a task made of the same image files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

from quadratseg_handlers.cvat.spec import LabelSpec

VERSION = "1.1"


@dataclass
class ImageAnnotations:
    """One frame of a task: its file name, size in pixels, and the shapes answered for it."""

    name: str
    width: int
    height: int
    shapes: Sequence[Mapping[str, Any]] = field(default_factory=list)


def _points(values: Sequence[float]) -> str:
    pairs = zip(values[0::2], values[1::2], strict=True)
    return ";".join(f"{float(x):.2f},{float(y):.2f}" for x, y in pairs)


def mask_rle(values: Sequence[Any]) -> tuple[list[int], tuple[int, int, int, int]]:
    """CVAT's run lengths (background first) and (left, top, width, height) of a mask answer's
    ``mask`` list: the crop's 0/1 values row-major, then its inclusive box."""
    *bits, left, top, right, bottom = (int(v) for v in values)
    runs: list[int] = []
    current, count = 0, 0
    for bit in bits:
        if (bit > 0) == bool(current):
            count += 1
        else:
            runs.append(count)
            current, count = 1 - current, 1
    runs.append(count)
    return runs, (left, top, right - left + 1, bottom - top + 1)


class _Writer:
    """CVAT's indented SAX writing: two spaces a level, a newline before each element."""

    def __init__(self, stream: Any) -> None:
        self.xml = XMLGenerator(stream, "utf-8")
        self.level = 0

    def open(self, name: str, attributes: Mapping[str, str]) -> None:
        self.xml.ignorableWhitespace(("\n" if self.level else "") + "  " * self.level)
        self.xml.startElement(name, AttributesImpl(dict(attributes)))
        self.level += 1

    def close(self, name: str) -> None:
        self.level -= 1
        self.xml.ignorableWhitespace("\n" + "  " * self.level)
        self.xml.endElement(name)

    def leaf(self, name: str, text: str, attributes: Mapping[str, str] | None = None) -> None:
        self.xml.ignorableWhitespace("\n" + "  " * self.level)
        self.xml.startElement(name, AttributesImpl(dict(attributes or {})))
        self.xml.characters(text)
        self.xml.endElement(name)


def _shape_fields(shape: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
    """The element name and attributes of a drawable shape; None for a kind it cannot hold."""
    kind = shape.get("type")
    fields = {"label": str(shape.get("label")), "source": "auto", "occluded": "0"}
    values = list(shape.get("points") or [])
    if kind == "rectangle" and len(values) == 4:
        fields.update(
            zip(("xtl", "ytl", "xbr", "ybr"), (f"{float(v):.2f}" for v in values), strict=True)
        )
        name = "box"
    elif kind in ("polygon", "polyline", "points") and values and len(values) % 2 == 0:
        fields["points"] = _points(values)
        name = str(kind)
    elif kind == "mask" and len(shape.get("mask") or []) > 4:
        runs, (left, top, width, height) = mask_rle(shape["mask"])
        fields.update(
            rle=", ".join(map(str, runs)),
            left=str(left),
            top=str(top),
            width=str(width),
            height=str(height),
        )
        name = "mask"
    else:
        return None
    fields["z_order"] = "0"
    if shape.get("group_id"):
        fields["group_id"] = str(shape["group_id"])
    return name, fields


def _attributes(writer: _Writer, shape: Mapping[str, Any]) -> None:
    for attribute in shape.get("attributes") or []:
        writer.leaf("attribute", str(attribute["value"]), {"name": str(attribute["name"])})


def _write_shape(writer: _Writer, shape: Mapping[str, Any]) -> None:
    if shape.get("type") == "tag":
        writer.open("tag", {"label": str(shape.get("label")), "source": "auto"})
        _attributes(writer, shape)
        writer.close("tag")
        return
    if shape.get("type") == "skeleton":
        writer.open(
            "skeleton", {"label": str(shape.get("label")), "source": "auto", "z_order": "0"}
        )
        for element in shape.get("elements") or []:
            fields = {
                "label": str(element.get("label")),
                "source": "auto",
                "outside": str(int(bool(element.get("outside")))),
                "occluded": "0",
                "points": _points(list(element.get("points") or [])),
            }
            writer.open("points", fields)
            _attributes(writer, element)
            writer.close("points")
        _attributes(writer, shape)
        writer.close("skeleton")
        return
    found = _shape_fields(shape)
    if found is None:
        return
    name, fields = found
    writer.open(name, fields)
    _attributes(writer, shape)
    writer.close(name)


def _write_label(writer: _Writer, label: LabelSpec) -> None:
    writer.open("label", {})
    writer.leaf("name", str(label.get("name")))
    writer.leaf("type", str(label.get("type", "any")))
    writer.open("attributes", {})
    for attribute in label.get("attributes") or []:
        writer.open("attribute", {})
        writer.leaf("name", str(attribute.get("name")))
        writer.leaf("input_type", str(attribute.get("input_type")))
        writer.leaf("values", "\n".join(str(v) for v in attribute.get("values") or []))
        writer.close("attribute")
    writer.close("attributes")
    writer.close("label")


def write_images_xml(
    stream: Any, task: str, images: Sequence[ImageAnnotations], labels: Sequence[LabelSpec] = ()
) -> None:
    """Write a CVAT for images 1.1 file of ``images`` (a task named ``task``) to a binary
    ``stream``; ``labels`` (the function's spec) go into its meta."""
    writer = _Writer(stream)
    writer.xml.startDocument()
    writer.open("annotations", {})
    writer.leaf("version", VERSION)
    writer.open("meta", {})
    writer.open("task", {})
    writer.leaf("name", task)
    writer.leaf("size", str(len(images)))
    writer.leaf("mode", "annotation")
    writer.open("labels", {})
    for label in labels:
        _write_label(writer, label)
    writer.close("labels")
    writer.close("task")
    writer.close("meta")
    for index, image in enumerate(images):
        attributes = {
            "id": str(index),
            "name": image.name,
            "width": str(image.width),
            "height": str(image.height),
        }
        writer.open("image", attributes)
        for shape in image.shapes:
            _write_shape(writer, shape)
        writer.close("image")
    writer.close("annotations")
    writer.xml.ignorableWhitespace("\n")
    writer.xml.endDocument()

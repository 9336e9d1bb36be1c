"""A function's answer (the CVAT JSON shapes of the Nuclio route) as cvat-sdk annotations.

Each shape becomes what CVAT's lambda manager would make of it, written with the SDK's own
factories: the label and attributes by the spec's ids (:mod:`.labels`), ``group_id`` as
``group``, a skeleton's elements as keypoints with their ``outside`` flag, and a mask's 0/1
crop as CVAT's run-length encoding (:func:`cvat_sdk.masks.encode_mask` of the crop, placed at
the mask's box, which is what the lambda manager stores for the Nuclio answer). With
``conv_mask_to_poly`` a mask becomes the polygon it carries in ``points``, as CVAT does.
Shape-level ``confidence`` is the Nuclio answer's copy of the confidence attribute; CVAT
keeps the attribute, and so does this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cvat_sdk.auto_annotation as cvataa
import numpy as np
from cvat_sdk import models
from cvat_sdk.masks import encode_mask

from quadratseg_handlers.cvat.masks import MaskValues
from quadratseg_handlers.cvat.shapes import Shape
from quadratseg_handlers.sdk.labels import LabelIds


def mask_points(values: Any) -> list[float]:
    """A Nuclio mask (``MaskValues`` or its list: the crop's 0/1 values, then the inclusive
    box) as the ``points`` of an SDK mask shape: run lengths from a 0 run, then the box."""
    if not isinstance(values, MaskValues):
        flat = np.asarray(values, dtype=np.int64)
        xtl, ytl, xbr, ybr = (int(v) for v in flat[-4:])
        crop = flat[:-4].reshape(ybr - ytl + 1, xbr - xtl + 1) > 0
        values = MaskValues(crop, (xtl, ytl, xbr, ybr))
    height, width = values.crop.shape
    runs = encode_mask(values.crop, [0, 0, width, height])[:-4]
    return [*runs, *values.box]


def attribute_values(
    attributes: Sequence[Mapping[str, Any]], ids: LabelIds, where: str
) -> list[models.AttributeValRequest]:
    """A shape's ``[{"name", "value"}]`` as the SDK's values, by the spec's attribute ids."""
    return [
        models.AttributeValRequest(
            spec_id=ids.attribute(attr["name"], where), value=str(attr["value"])
        )
        for attr in attributes
    ]


def _element(element: Mapping[str, Any], skeleton: LabelIds, where: str) -> Any:
    label = str(element["label"])
    ids = skeleton.sublabel(label, where)
    return cvataa.keypoint(
        ids.id,
        list(element["points"]),
        outside=bool(element.get("outside", False)),
        attributes=attribute_values(element.get("attributes", []), ids, f"{where} {label!r}"),
    )


def annotation(shape: Shape, labels: Mapping[str, LabelIds], *, conv_mask_to_poly: bool) -> Any:
    """One CVAT JSON shape as a ``LabeledShapeRequest`` (a tag as ``LabeledImageRequest``)."""
    name = str(shape["label"])
    if name not in labels:
        raise ValueError(f"a shape of label {name!r}, which the function's spec does not declare")
    ids = labels[name]
    where = f"label {name!r}"
    attributes = attribute_values(shape.get("attributes", []), ids, where)
    kind = shape["type"]
    if kind == "tag":
        return cvataa.tag(ids.id, attributes=attributes)
    fields: dict[str, Any] = {"attributes": attributes}
    if shape.get("group_id"):
        fields["group"] = int(shape["group_id"])
    if kind == "skeleton":
        elements = [_element(element, ids, where) for element in shape["elements"]]
        return cvataa.skeleton(ids.id, elements, **fields)
    if kind == "mask" and conv_mask_to_poly:
        return cvataa.polygon(ids.id, list(shape["points"]), **fields)
    if kind == "mask":
        return cvataa.mask(ids.id, mask_points(shape["mask"]), **fields)
    return cvataa.shape(ids.id, type=kind, points=list(shape["points"]), **fields)


def to_annotations(
    shapes: Sequence[Shape], labels: Mapping[str, LabelIds], *, conv_mask_to_poly: bool = False
) -> list[Any]:
    """A function's answer for one image as the SDK's annotation models, in its order."""
    return [annotation(shape, labels, conv_mask_to_poly=conv_mask_to_poly) for shape in shapes]

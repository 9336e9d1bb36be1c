"""What the SDK-route tests share: a CVAT task's labels built from ``quadratseg labels``, the
code ``cvat-cli task auto-annotate`` runs on a function's answer, and the shape-by-shape
comparison with the Nuclio answer.

No CVAT server runs here. ``cvat_sdk.auto_annotation.annotate_task`` downloads a task's frames
and labels, then for each frame calls ``detect`` and ``_AnnotationMapper.validate_and_remap``
(the checks and the label/attribute id mapping), then uploads. The tests build the task's
labels as a server would hold them (:func:`task_labels`: ids assigned, from the JSON
``quadratseg labels`` prints) and call the same mapper and context classes; the download and
the upload to a live CVAT are not exercised.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from cvat_sdk import models
from cvat_sdk.auto_annotation.driver import _AnnotationMapper, _DetectionFunctionContextImpl
from cvat_sdk.masks import decode_mask

from quadratseg_handlers.sdk.function import DetectorFunction

_IDS = itertools.count(1000)


def _attributes(label: Mapping[str, Any]) -> list[models.Attribute]:
    return [
        models.Attribute(
            name=attr["name"],
            id=next(_IDS),
            input_type=attr["input_type"],
            mutable=attr["mutable"],
            values=list(attr["values"]),
            default_value=attr["default_value"],
        )
        for attr in label.get("attributes", [])
    ]


def task_labels(printed: Sequence[Mapping[str, Any]]) -> list[models.Label]:
    """The labels of a CVAT task created with ``printed`` (the JSON of ``quadratseg labels``)
    as the server returns them: every label, sublabel and attribute with an id of its own."""
    labels = []
    for label in printed:
        fields: dict[str, Any] = {}
        if label["type"] == "skeleton":
            fields["svg"] = label["svg"]
            fields["sublabels"] = [
                models.Sublabel(
                    name=sub["name"], id=next(_IDS), type=sub["type"], attributes=_attributes(sub)
                )
                for sub in label["sublabels"]
            ]
        else:
            fields["sublabels"] = []
        labels.append(
            models.Label(
                name=label["name"],
                id=next(_IDS),
                type=label["type"],
                attributes=_attributes(label),
                **fields,
            )
        )
    return labels


def context(
    conf_threshold: float | None = None, conv_mask_to_poly: bool = False
) -> _DetectionFunctionContextImpl:
    """The context ``annotate_task`` hands ``detect`` for one frame."""
    return _DetectionFunctionContextImpl(
        frame_name="quadrat.png", conf_threshold=conf_threshold, conv_mask_to_poly=conv_mask_to_poly
    )


def mapped(
    function: DetectorFunction,
    labels: Sequence[models.Label],
    annotations: Sequence[Any],
    *,
    frame: int = 7,
    conv_mask_to_poly: bool = False,
) -> list[models.LabeledShapeRequest]:
    """What ``annotate_task`` uploads of one frame's annotations: the SDK driver's mapper,
    built as ``annotate_task`` builds it (unmatched labels refused), checks and remaps them."""
    mapper = _AnnotationMapper(
        logging.getLogger("test"),
        function.spec.labels,
        labels,
        allow_unmatched_labels=False,
        conv_mask_to_poly=conv_mask_to_poly,
    )
    tags, shapes = mapper.validate_and_remap(list(annotations), frame)
    assert tags == []
    return shapes


def _names(labels: Sequence[Any]) -> dict[int, Any]:
    return {label.id: label for label in labels}


def _attribute_values(values: Sequence[Any], attributes: Sequence[Any]) -> dict[str, str]:
    names = {attr.id: attr.name for attr in attributes}
    return {names[value.spec_id]: value.value for value in values}


def nuclio_mask(values: Sequence[int], size_wh: tuple[int, int]) -> np.ndarray:
    """A Nuclio answer's ``mask`` (0/1 crop, then the inclusive box) as a full-image bitmap."""
    xtl, ytl, xbr, ybr = (int(v) for v in values[-4:])
    bitmap = np.zeros((size_wh[1], size_wh[0]), dtype=bool)
    crop = np.asarray(values[:-4]).reshape(ybr - ytl + 1, xbr - xtl + 1) > 0
    bitmap[ytl : ybr + 1, xtl : xbr + 1] = crop
    return bitmap


def assert_same_shapes(
    annotations: Sequence[Any],
    labels: Sequence[Any],
    nuclio: Sequence[Mapping[str, Any]],
    size_wh: tuple[int, int],
    *,
    conv_mask_to_poly: bool = False,
) -> None:
    """Each SDK annotation (its ids read through ``labels``: the function's spec, or the task's
    labels after mapping) is the Nuclio answer's shape at the same position: label, type,
    points (a mask's run lengths decoded by cvat-sdk), group, attributes, elements."""
    assert len(annotations) == len(nuclio)
    by_id = _names(labels)
    for annotation, shape in zip(annotations, nuclio, strict=True):
        label = by_id[annotation.label_id]
        assert label.name == shape["label"]
        kind = shape["type"]
        if kind == "mask" and conv_mask_to_poly:
            assert annotation.type.value == "polygon"
            assert annotation.points == shape["points"]
        elif kind == "mask":
            assert annotation.type.value == "mask"
            decoded = decode_mask(
                annotation.points, image_width=size_wh[0], image_height=size_wh[1]
            )
            assert np.array_equal(decoded, nuclio_mask(shape["mask"], size_wh))
        else:
            assert annotation.type.value == kind
            assert getattr(annotation, "points", None) == shape.get("points")
        assert getattr(annotation, "group", None) == shape.get("group_id")
        expected = {attr["name"]: attr["value"] for attr in shape["attributes"]}
        assert _attribute_values(annotation.attributes, label.attributes) == expected
        elements = getattr(annotation, "elements", [])
        assert len(elements) == len(shape.get("elements", []))
        sublabels = _names(getattr(label, "sublabels", []))
        for element, nuclio_element in zip(elements, shape.get("elements", []), strict=True):
            sublabel = sublabels[element.label_id]
            assert sublabel.name == nuclio_element["label"]
            assert element.points == nuclio_element["points"]
            assert element.outside == bool(nuclio_element["outside"])
            expected = {attr["name"]: attr["value"] for attr in nuclio_element["attributes"]}
            assert _attribute_values(element.attributes, sublabel.attributes) == expected

"""A function's label spec as cvat-sdk's ``DetectionFunctionSpec``, with the ids it asks for.

The labels are the handler's own (``handler.labels()``: what ``quadratseg labels`` prints and
a bundle's ``function.yaml`` declares), so the SDK route and the Nuclio route declare the same
names, types, attributes, skeleton sublabels and svg. cvat-sdk wants ids the Nuclio spec does
not carry: every label, every sublabel of a skeleton and every attribute of a (sub)label gets
one, its position in its list. The answers refer to them (:mod:`.annotations`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cvat_sdk.auto_annotation as cvataa
from cvat_sdk import models

from quadratseg_handlers.cvat.spec import LabelSpec


@dataclass(frozen=True)
class LabelIds:
    """The ids of one label (or sublabel) of the spec: its own, its attributes' by name, and
    its sublabels' by name (a skeleton's)."""

    id: int
    attributes: Mapping[str, int] = field(default_factory=dict)
    sublabels: Mapping[str, LabelIds] = field(default_factory=dict)

    def attribute(self, name: str, where: str) -> int:
        """The id of attribute ``name``; ValueError when the spec does not declare it."""
        if name not in self.attributes:
            raise ValueError(f"{where}: attribute {name!r} is not in the function's spec")
        return self.attributes[name]

    def sublabel(self, name: str, where: str) -> LabelIds:
        """The ids of sublabel ``name``; ValueError when the spec does not declare it."""
        if name not in self.sublabels:
            raise ValueError(f"{where}: sublabel {name!r} is not in the function's spec")
        return self.sublabels[name]


def attribute_request(attribute: Mapping[str, Any], index: int) -> models.AttributeRequest:
    """One attribute spec as the SDK's model, ``index`` as its id."""
    values = [str(value) for value in attribute.get("values", [])]
    return models.AttributeRequest(
        name=attribute["name"],
        id=index,
        input_type=attribute.get("input_type", "text"),
        mutable=bool(attribute.get("mutable", True)),
        values=values,
        default_value=str(attribute.get("default_value", values[0] if values else "")),
    )


def _attributes(label: Mapping[str, Any]) -> tuple[list[models.AttributeRequest], dict[str, int]]:
    attributes = list(label.get("attributes", []))
    requests = [attribute_request(attribute, index) for index, attribute in enumerate(attributes)]
    return requests, {attribute["name"]: index for index, attribute in enumerate(attributes)}


def label_request(label: Mapping[str, Any], index: int) -> tuple[Any, LabelIds]:
    """One spec label as ``PatchedLabelRequest`` (its sublabels as ``SublabelRequest``), and
    the ids the answers use."""
    attributes, attribute_ids = _attributes(label)
    kind = label.get("type", "any")
    fields: dict[str, Any] = {"type": kind, "attributes": attributes}
    sublabel_ids: dict[str, LabelIds] = {}
    if kind == "skeleton":
        sublabels = []
        for position, sublabel in enumerate(label.get("sublabels", [])):
            sub_attributes, sub_ids = _attributes(sublabel)
            sublabels.append(
                cvataa.keypoint_spec(sublabel["name"], position, attributes=sub_attributes)
            )
            sublabel_ids[sublabel["name"]] = LabelIds(position, sub_ids)
        fields["sublabels"] = sublabels
        if label.get("svg"):
            fields["svg"] = label["svg"]
    request = cvataa.label_spec(label["name"], index, **fields)
    return request, LabelIds(index, attribute_ids, sublabel_ids)


def detection_spec(labels: Sequence[LabelSpec]) -> tuple[Any, dict[str, LabelIds]]:
    """The SDK's ``DetectionFunctionSpec`` of a label spec (its constructor checks the ids,
    types and attribute values: ``BadFunctionError`` when it refuses), and each label's ids
    by name."""
    requests, ids = [], {}
    for index, label in enumerate(labels):
        request, label_ids = label_request(label, index)
        requests.append(request)
        ids[label["name"]] = label_ids
    return cvataa.DetectionFunctionSpec(labels=requests), ids

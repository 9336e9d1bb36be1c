"""The CVAT contract: shape builders, label specs, mask geometry and response validation.

``from quadratseg_handlers import cvat`` then ``cvat.polygon(...)``, ``cvat.skeleton_spec(...)``:
the names of :mod:`.shapes`, :mod:`.spec`, :mod:`.acceptance` and :mod:`.answer` (plus
:class:`.masks.MaskValues`) in one namespace, in the
spirit of cvat-sdk's auto-annotation helpers.
"""

from quadratseg_handlers.cvat.acceptance import cvat_keeps, spec_problems, validate_response
from quadratseg_handlers.cvat.answer import answer_json
from quadratseg_handlers.cvat.masks import MaskValues
from quadratseg_handlers.cvat.shapes import (
    Shape,
    attributes,
    confidence_value,
    instance_shapes,
    mask,
    part_shape,
    points,
    polygon,
    polyline,
    rectangle,
    shape_score,
    skeleton,
    skeleton_element,
    skeleton_elements,
    tag,
    with_skeleton_moved,
)
from quadratseg_handlers.cvat.spec import (
    CONFIDENCE,
    CONFIDENCE_SPEC,
    LABEL_TYPES,
    SHAPE_TYPES,
    LabelSpec,
    label_spec,
    project_labels,
    skeleton_label_edges,
    skeleton_spec,
    skeleton_svg,
    skeleton_svg_graph,
    spec_json,
)

__all__ = [
    "CONFIDENCE",
    "CONFIDENCE_SPEC",
    "LABEL_TYPES",
    "SHAPE_TYPES",
    "LabelSpec",
    "MaskValues",
    "Shape",
    "answer_json",
    "attributes",
    "confidence_value",
    "instance_shapes",
    "label_spec",
    "project_labels",
    "mask",
    "part_shape",
    "points",
    "polygon",
    "polyline",
    "rectangle",
    "shape_score",
    "skeleton",
    "skeleton_element",
    "skeleton_elements",
    "skeleton_label_edges",
    "skeleton_spec",
    "skeleton_svg",
    "skeleton_svg_graph",
    "spec_json",
    "cvat_keeps",
    "spec_problems",
    "tag",
    "validate_response",
    "with_skeleton_moved",
]

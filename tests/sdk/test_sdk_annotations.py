"""Every CVAT shape the library builds, as cvat-sdk models the auto-annotate driver accepts.

Shapes made by the builders of :mod:`quadratseg_handlers.cvat.shapes` (no model), for a spec
holding one label of each type; the driver's mapper checks and maps them against a task
labelled from that spec, and each comes back equal to the shape it was made from.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from cvat_sdk.auto_annotation import BadFunctionError
from cvat_sdk.auto_annotation.driver import _AnnotationMapper
from sdk_for_tests import assert_same_shapes, task_labels

from quadratseg_handlers import cvat
from quadratseg_handlers.cvat.answer import answer_json
from quadratseg_handlers.cvat.spec import project_labels
from quadratseg_handlers.sdk.annotations import mask_points, to_annotations
from quadratseg_handlers.sdk.labels import detection_spec

SIZE = (60, 40)
EXTRA = {"name": "review", "input_type": "select", "mutable": False, "values": ["yes", "no"]}

SPEC = [
    cvat.label_spec("box", "rectangle"),
    cvat.label_spec("line", "polyline"),
    cvat.label_spec("dots", "points"),
    cvat.label_spec("coral", "mask", (cvat.CONFIDENCE_SPEC, EXTRA)),
    cvat.label_spec("outline", "polygon"),
    cvat.label_spec("scene", "tag"),
    cvat.skeleton_spec(
        "pair",
        ["1", "2"],
        np.array([[0.0, 0.0], [1.0, 1.0]]),
        [(1, 2)],
        sublabel_attributes=[cvat.CONFIDENCE_SPEC],
    ),
]


def bitmap() -> np.ndarray:
    mask = np.zeros((SIZE[1], SIZE[0]), dtype=bool)
    mask[5:20, 10:30] = True
    mask[9:12, 15:18] = False  # a hole the mask keeps
    return mask


def shapes() -> list[dict]:
    return [
        cvat.rectangle("box", (1.5, 2.0, 30.25, 20.0), 0.9),
        cvat.polyline("line", [[1, 1], [5, 9], [20, 3.33]], 0.5),
        cvat.points("dots", [[3, 4]], 0.42),
        cvat.mask("coral", bitmap(), 0.77, group_id=3, extra={"review": "yes"}),
        cvat.polygon("outline", [[0, 0], [10, 0], [10, 10]], None),
        cvat.tag("scene", 0.6),
        cvat.skeleton(
            "pair",
            cvat.skeleton_elements(["1", "2"], [[1, 2], [50, 30]], [0.8, 0.0], [False, True]),
            0.4,
        ),
    ]


def test_every_shape_type_maps_onto_the_task_as_it_was_built():
    spec, ids = detection_spec(SPEC)
    answer = json.loads(answer_json(shapes()))  # the Nuclio answer as CVAT reads it
    annotations = to_annotations(shapes(), ids)
    labels = task_labels(project_labels(SPEC))
    mapper = _AnnotationMapper(
        logging.getLogger("test"),
        spec.labels,
        labels,
        allow_unmatched_labels=False,
        conv_mask_to_poly=False,
    )
    tags, mapped = mapper.validate_and_remap(annotations, 3)
    assert [tag.label_id for tag in tags] == [labels[5].id]
    assert tags[0].attributes[0].value == "60"
    shaped = [shape for shape in answer if shape["type"] != "tag"]
    assert_same_shapes(mapped, labels, shaped, SIZE)
    assert mapped[3].group == 3


def test_a_mask_list_and_its_array_encode_alike():
    shape = cvat.mask("coral", bitmap(), 0.77)
    assert mask_points(shape["mask"].tolist()) == mask_points(shape["mask"])
    assert mask_points(shape["mask"])[-4:] == [10, 5, 29, 19]


def test_conv_mask_to_poly_answers_the_outline():
    spec, ids = detection_spec(SPEC)
    (polygon,) = to_annotations([shapes()[3]], ids, conv_mask_to_poly=True)
    assert polygon.type.value == "polygon"
    assert polygon.points == shapes()[3]["points"]


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (cvat.polygon("reef", [[0, 0], [1, 0], [1, 1]], 0.5), "label 'reef', which"),
        (
            cvat.polygon("outline", [[0, 0], [1, 0], [1, 1]], 0.5, extra={"genus": "x"}),
            "attribute 'genus' is not in",
        ),
        (
            cvat.skeleton("pair", [cvat.skeleton_element("3", (1, 1), 0.5)], 0.5),
            "sublabel '3' is not in",
        ),
    ],
)
def test_a_shape_outside_the_spec_is_refused(shape, message):
    _, ids = detection_spec(SPEC)
    with pytest.raises(ValueError, match=message):
        to_annotations([shape], ids)


def test_the_sdk_refuses_a_spec_it_cannot_hold():
    broken = {**cvat.CONFIDENCE_SPEC, "values": ["0", "100"]}
    with pytest.raises(BadFunctionError, match="invalid values"):
        detection_spec([cvat.label_spec("coral", "polygon", (broken,))])

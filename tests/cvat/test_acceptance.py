"""What CVAT would refuse or silently drop in an answer (cvat/acceptance.py)."""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg_handlers import cvat

SPEC = [
    cvat.label_spec("coral"),
    cvat.label_spec("mask_coral", "mask"),
    cvat.skeleton_spec(
        "corner",
        ["1", "2"],
        np.array([[0, 0], [1, 1]]),
        [(1, 2)],
        sublabel_attributes=[cvat.CONFIDENCE_SPEC],
    ),
]


def good_skeleton() -> dict:
    return cvat.skeleton(
        "corner",
        [
            cvat.skeleton_element("1", (1, 2), 0.5),
            cvat.skeleton_element("2", (3, 4), 0.0, outside=True),
        ],
    )


def test_valid_answer_has_no_problems():
    bitmap = np.zeros((8, 8), dtype=bool)
    bitmap[1:4, 1:4] = True
    shapes = [
        cvat.polygon("coral", [[0, 0], [5, 0], [5, 5]], 0.9),
        cvat.mask("mask_coral", bitmap, 0.5),
        cvat.polygon("mask_coral", [[0, 0], [5, 0], [5, 5]], 0.9),
        good_skeleton(),
    ]
    assert cvat.validate_response(shapes, SPEC, (8, 8)) == []


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ({"label": "kelp", "type": "polygon", "points": [0, 0, 1, 1, 2, 2]}, "not in the spec"),
        ({"label": "coral", "type": "rectangle", "points": [0, 0, 1, 1]}, "does not match"),
        ({"label": "coral", "type": "blob", "points": []}, "unknown shape type"),
        ({"label": "coral", "type": "polygon", "points": [0, 0, 1, 1, 2]}, "odd number"),
        ({"label": "coral", "type": "polygon", "points": [0, 0, 1, 1]}, "at least 3 points"),
        ({"label": "coral", "type": "polygon", "points": [[0, 0], [1, 1], [2, 2]]}, "flat list"),
        (
            {
                "label": "coral",
                "type": "polygon",
                "points": [0, 0, 1, 1, 2, 2],
                "attributes": [{"name": "confidence", "value": "0.87"}],
            },
            "not an integer string",
        ),
        (
            {
                "label": "coral",
                "type": "polygon",
                "points": [0, 0, 1, 1, 2, 2],
                "attributes": [{"name": "confidence", "value": 87}],
            },
            "is not a string",
        ),
        (
            {
                "label": "coral",
                "type": "polygon",
                "points": [0, 0, 1, 1, 2, 2],
                "attributes": [{"name": "confidence", "value": "150"}],
            },
            "outside [0, 100]",
        ),
        (
            {
                "label": "coral",
                "type": "polygon",
                "points": [0, 0, 1, 1, 2, 2],
                "attributes": [{"name": "genus", "value": "x"}],
            },
            "not declared",
        ),
        (
            {"label": "coral", "type": "polygon", "points": [0, 0, 1, 1, 2, 2], "confidence": 0.87},
            "'confidence' must be a string",
        ),
        (
            {"label": "mask_coral", "type": "mask", "points": [], "mask": [1, 1, 1, 0, 0, 1, 1]},
            "expected 2x2 = 4",
        ),
        (
            {"label": "mask_coral", "type": "mask", "points": [], "mask": [1, 6, 6, 6, 6]},
            "outside the image",
        ),
        ({"label": "mask_coral", "type": "mask", "points": [], "mask": [2, 0, 0, 0, 0]}, "0 or 1"),
        (
            {
                "label": "corner",
                "type": "skeleton",
                "elements": [{"label": "9", "type": "points", "points": [1, 1], "outside": 0}],
            },
            "not a sublabel",
        ),
        (
            {
                "label": "corner",
                "type": "skeleton",
                "elements": [{"label": "1", "type": "points", "points": [1, 1], "outside": 1}],
            },
            "every element is outside",
        ),
        (
            {
                "label": "corner",
                "type": "skeleton",
                "elements": [
                    {"label": "1", "type": "points", "points": [1, 1, 2, 2], "outside": 0}
                ],
            },
            "exactly one point",
        ),
        ({"label": "corner", "type": "skeleton", "elements": []}, "non-empty"),
    ],
)
def test_each_problem_is_reported(shape, problem):
    problems = cvat.validate_response([shape], SPEC, (6, 6))
    assert len(problems) >= 1
    assert any(problem in p for p in problems), problems


def test_answer_must_be_a_list():
    assert cvat.validate_response({"label": "coral"}, SPEC) == [
        "the answer must be a JSON list of shapes, got dict"
    ]

"""The CVAT shape contract: builders, confidence, masks, skeletons and spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quadratseg_handlers import cvat
from quadratseg_handlers.cvat import shapes as cvat_shapes


@pytest.mark.parametrize(
    ("score", "value"),
    [
        (0.0, "0"),
        (0.009, "0"),
        (0.5, "50"),
        (0.87, "87"),
        (0.999, "99"),
        (1.0, "100"),
        (1.7, "100"),
        (-0.2, "0"),
        (float("nan"), "0"),
        (float("inf"), "100"),
        (np.float32(0.3), "30"),
    ],
)
def test_confidence_value(score, value):
    assert cvat.confidence_value(score) == value
    assert value.isnumeric()


def test_rectangle_polygon_points_polyline_exact_json():
    assert cvat.rectangle("a", (1, 2, 3.333, 4), 0.5) == {
        "label": "a",
        "type": "rectangle",
        "points": [1.0, 2.0, 3.33, 4.0],
        "confidence": "50",
        "attributes": [{"name": "confidence", "value": "50"}],
    }
    assert cvat.polygon("a", [[0, 0], [4, 0], [4, 4]], 0.2, group_id=3) == {
        "label": "a",
        "type": "polygon",
        "points": [0.0, 0.0, 4.0, 0.0, 4.0, 4.0],
        "confidence": "20",
        "attributes": [{"name": "confidence", "value": "20"}],
        "group_id": 3,
    }
    assert cvat.points("p", [5, 6]) == {
        "label": "p",
        "type": "points",
        "points": [5.0, 6.0],
        "attributes": [],
    }
    assert cvat.polyline("l", [[0, 0], [1, 1]], 1.0, extra={"unsure": "true"})["attributes"] == [
        {"name": "confidence", "value": "100"},
        {"name": "unsure", "value": "true"},
    ]
    assert cvat.tag("t", 0.9) == {
        "label": "t",
        "type": "tag",
        "confidence": "90",
        "attributes": [{"name": "confidence", "value": "90"}],
    }
    with pytest.raises(ValueError, match="finite"):
        cvat.polygon("a", [[0, 0], [np.nan, 1], [2, 2]])


def decode_cvat_mask(shape: dict, height: int, width: int) -> np.ndarray:
    *bits, xtl, ytl, xbr, ybr = shape["mask"]
    canvas = np.zeros((height, width), dtype=bool)
    crop = np.array(bits, dtype=bool).reshape(ybr - ytl + 1, xbr - xtl + 1)
    canvas[ytl : ybr + 1, xtl : xbr + 1] = crop
    return canvas


def test_mask_is_inclusive_crop_plus_box_and_carries_its_outline():
    bitmap = np.zeros((10, 12), dtype=bool)
    bitmap[2:5, 3:7] = True  # rows 2..4, cols 3..6
    shape = cvat.mask("coral", bitmap, 0.66)
    assert shape["mask"] == [1] * 12 + [3, 2, 6, 4]
    assert shape["type"] == "mask" and shape["confidence"] == "66"
    assert sorted(zip(shape["points"][::2], shape["points"][1::2], strict=True)) == [
        (3.0, 2.0),
        (3.0, 4.0),
        (6.0, 2.0),
        (6.0, 4.0),
    ]
    assert (decode_cvat_mask(shape, 10, 12) == bitmap).all()


def test_mask_from_a_crop_with_origin_and_holes():
    crop = np.ones((5, 5), dtype=bool)
    crop[2, 2] = False
    shape = cvat.mask("coral", crop, 1.0, origin=(100, 40))
    assert shape["mask"][-4:] == [100, 40, 104, 44]
    full = decode_cvat_mask(shape, 50, 110)
    assert full[40:45, 100:105].sum() == 24 and not full[42, 102]
    with pytest.raises(ValueError, match="empty"):
        cvat.mask("coral", np.zeros((3, 3), dtype=bool))


def test_instance_shapes_one_per_part_grouped_largest_first():
    mask = np.zeros((40, 40), dtype=bool)
    mask[2:6, 2:6] = True  # 16 px
    mask[20:30, 20:30] = True  # 100 px
    mask[35, 35] = True  # 1 px: dropped by min_area
    shapes = cvat.instance_shapes("c", mask, 0.4, min_area=4, group_id=7)
    assert [s["type"] for s in shapes] == ["polygon", "polygon"]
    assert [s["group_id"] for s in shapes] == [7, 7]
    assert min(shapes[0]["points"]) == 20.0 and min(shapes[1]["points"]) == 2.0
    single = cvat.instance_shapes("c", mask[:10, :10], 0.4, group_id=7)
    assert len(single) == 1 and "group_id" not in single[0]
    as_masks = cvat.instance_shapes("c", mask, 0.4, as_mask=True, min_area=4)
    assert [s["mask"][-4:] for s in as_masks] == [[20, 20, 29, 29], [2, 2, 5, 5]]
    assert cvat.instance_shapes("c", np.zeros((5, 5), bool), 0.4) == []


def test_label_spec_has_the_quadratseg_confidence_attribute():
    assert cvat.label_spec("Acropora") == {
        "name": "Acropora",
        "type": "polygon",
        "attributes": [
            {
                "name": "confidence",
                "input_type": "number",
                "mutable": True,
                "values": ["0", "100", "1"],
                "default_value": "100",
            }
        ],
    }
    with pytest.raises(ValueError):
        cvat.label_spec("x", "blob")


def test_skeleton_spec_and_svg():
    positions = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    spec = cvat.skeleton_spec(
        "quadrat_corner", ["1", "2", "3", "4"], positions, [(1, 2), (2, 3), (3, 4), (4, 1)]
    )
    assert [s["name"] for s in spec["sublabels"]] == ["1", "2", "3", "4"]
    assert [s["id"] for s in spec["sublabels"]] == [0, 1, 2, 3]
    assert all(s["type"] == "points" for s in spec["sublabels"])
    svg = spec["svg"]
    assert svg.count("<circle") == 4 and svg.count("<line") == 4
    assert 'data-node-id="3" data-label-name="3"' in svg
    assert 'data-node-from="4"' in svg and 'data-node-to="1"' in svg
    assert 'cx="95.00" cy="95.00"' in svg
    json.loads(cvat.spec_json([spec]))
    with pytest.raises(ValueError, match="unique"):
        cvat.skeleton_spec("s", ["1", "1"], positions[:2], [])


def test_skeleton_edges_are_read_from_the_svg_by_sublabel_name():
    label = cvat.skeleton_spec(
        "corners", ["TL", "TR", "BR"], np.array([[0, 0], [1, 0], [1, 1]]), [(1, 2), (2, 3)]
    )
    assert cvat.skeleton_label_edges(label) == [("TL", "TR"), ("TR", "BR")]
    assert cvat.skeleton_label_edges({"name": "x", "type": "skeleton"}) == []


def test_skeleton_elements_are_the_nodes_one_by_one():
    # ties in the third decimal, whole and negative values, -0.0, beyond 1e6: one rounding
    # pass must give each node the floats Python's round gives it alone
    points = np.array(
        [[0.125, 1.005], [12.0, -3.0], [-0.0, 2.675], [2_000_000.005, 7.5], [1919.999, 0.004]]
    )
    labels = ["1", "2", "3", "4", "5"]
    scores = [0.9, 0.0, 0.55, 1.0, 0.3]
    outside = [False, True, False, True, False]
    nodes = cvat.skeleton_elements(labels, points, scores, outside)
    assert nodes == [
        cvat.skeleton_element(label, point, score, outside=flag)
        for label, point, score, flag in zip(labels, points, scores, outside, strict=True)
    ]
    assert [node["points"] for node in nodes] == [[round(v, 2) for v in p] for p in points.tolist()]
    assert json.dumps(nodes[1]) == (
        '{"label": "2", "type": "points", "points": [12.0, -3.0], "confidence": "0", '
        '"attributes": [{"name": "confidence", "value": "0"}], "outside": 1}'
    )
    bare = cvat.skeleton_elements(labels[:2], points[:2])
    assert [set(node) for node in bare] == [
        {"label", "type", "points", "attributes", "outside"}
    ] * 2
    assert [node["outside"] for node in bare] == [0, 0]
    with pytest.raises(ValueError, match="finite"):
        cvat.skeleton_elements(["1"], [[np.nan, 1.0]])
    with pytest.raises(ValueError, match="2 labels for 1 points"):
        cvat.skeleton_elements(["1", "2"], [[1.0, 1.0]])


def test_skeleton_element_points_in_sublabel_order():
    elements = [cvat.skeleton_element(str(i), (i, 2 * i)) for i in (3, 1, 2)]
    assert cvat_shapes.skeleton_element_points(elements) == [[1, 2], [2, 4], [3, 6]]
    assert cvat_shapes.skeleton_element_points(
        cvat.skeleton("grid", elements), ["2", "3", "1"]
    ) == [[2, 4], [3, 6], [1, 2]]


@pytest.mark.parametrize(
    ("elements", "sublabels", "message"),
    [
        ([{"label": "1", "points": [0, 0]}] * 2, None, "sublabel '1' appears twice"),
        ([{"points": [0, 0]}], None, "element 0 must be a skeleton element with a 'label'"),
        ([{"label": "a", "points": [0, 0]}], None, "must be numbers"),
        ([{"label": "1", "points": [0, 0]}], ["1", "2"], "missing '2'"),
        ([{"label": "9", "points": [0, 0]}], ["1"], "missing '1'; unknown '9'"),
        ({"type": "skeleton"}, None, "needs an 'elements' list"),
    ],
)
def test_skeleton_element_points_says_what_is_wrong(elements, sublabels, message):
    with pytest.raises(ValueError, match=message):
        cvat_shapes.skeleton_element_points(elements, sublabels)


@pytest.mark.parametrize(
    ("shape", "score"),
    [
        (cvat.skeleton("grid", [], 0.73), 0.73),
        ({"confidence": "100"}, 1.0),
        ({"confidence": "0"}, 0.0),
        ({}, None),
        ({"confidence": 0.5}, None),
        ({"confidence": "101"}, None),
        ({"confidence": "-5"}, None),
        ({"confidence": "½"}, None),
    ],
)
def test_shape_score_reads_cvat_confidence_back(shape, score):
    assert cvat.shape_score(shape) == score


def test_a_moved_skeleton_keeps_everything_but_its_points():
    elements = cvat.skeleton_elements(["2", "1", "3"], [[5, 5], [1, 1], [9, 9]], [0.9, 0.8, 0.0])
    elements[2]["outside"] = 1
    shape = cvat.skeleton("grid", elements, 0.56)
    moved = cvat_shapes.skeleton_moved(shape, np.array([[10.5, 11.0], [20.0, 21.25], [30, 31]]))
    assert [element["label"] for element in moved["elements"]] == ["2", "1", "3"]
    assert [element["points"] for element in moved["elements"]] == [
        [20.0, 21.25],
        [10.5, 11.0],
        [30.0, 31.0],
    ]
    assert [element["confidence"] for element in moved["elements"]] == ["90", "80", "0"]
    assert moved["elements"][2]["outside"] == 1 and moved["confidence"] == "56"
    assert cvat_shapes.skeleton_points(shape).tolist() == [[1, 1], [5, 5], [9, 9]]
    with pytest.raises(ValueError, match="2 points for a skeleton of 3 elements"):
        cvat_shapes.skeleton_moved(shape, np.zeros((2, 2)))


def test_only_the_first_skeleton_of_as_many_elements_moves():
    def corners(x: float):
        elements = cvat.skeleton_elements(["1", "2", "3", "4"], np.full((4, 2), x))
        return cvat.skeleton("quadrat_corner", elements, 0.5)

    box = cvat.rectangle("coral", [0, 0, 5, 5], 0.9)
    shapes = [box, corners(1.0), corners(2.0)]
    moved = cvat.with_skeleton_moved(shapes, np.full((4, 2), 7.0))
    assert moved[0] is box and moved[2] is shapes[2]
    assert cvat_shapes.skeleton_points(moved[1]).tolist() == [[7.0, 7.0]] * 4
    assert cvat.with_skeleton_moved(shapes, np.zeros((117, 2))) == shapes

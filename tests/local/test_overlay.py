"""Drawing CVAT shapes: colours, masks, skeleton edges from the spec svg, legend, atomic PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from quadratseg_handlers import cvat
from quadratseg_handlers.local import overlay

GREY = 90


def blank(width: int = 240, height: int = 200) -> np.ndarray:
    return np.full((height, width, 3), GREY, dtype=np.uint8)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(after.astype(int) - before.astype(int)).sum(axis=2) > 0


def test_label_colours_follow_the_spec_order():
    colours = overlay.label_colours(["a", "b", "a", "c"])
    assert list(colours) == ["a", "b", "c"]
    assert colours["a"] == overlay.PALETTE[0] and colours["c"] == overlay.PALETTE[2]
    many = overlay.label_colours([str(i) for i in range(25)])
    assert many["24"] == overlay.hashed_colour("24")


def test_confidence_text():
    assert overlay.confidence_text({"confidence": "87"}) == "87%"
    assert overlay.confidence_text({"attributes": [{"name": "confidence", "value": "5"}]}) == "5%"
    assert overlay.confidence_text({"confidence": 0.87}) == "0.87"
    assert overlay.confidence_text({}) == ""


def test_a_mask_is_filled_with_its_hole_and_the_rest_untouched():
    image = blank()
    bitmap = np.zeros((200, 240), dtype=np.uint8)
    bitmap[120:180, 150:230] = 1
    bitmap[140:160, 180:200] = 0  # a hole
    shape = cvat.mask("coral", bitmap, 0.9)
    drawn = overlay.draw_shapes(image, [shape], [cvat.label_spec("coral", "mask")])
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    diff = changed(image, drawn)
    assert diff[125:135, 155:175].all()  # filled
    assert not diff[145:155, 185:195].any()  # the hole shows the photograph
    assert not diff[100:110, 20:100].any()  # far from shapes and legend
    fill = drawn[130, 160].astype(int)
    red = np.array(overlay.PALETTE[0])
    expected = GREY + (red - GREY) * overlay.FILL_ALPHA / 255
    assert np.abs(fill - expected).max() <= 2  # the label's colour, translucent
    received = json.loads(cvat.answer_json([shape]))  # the same mask as a client reads it
    again = overlay.draw_shapes(image, received, [cvat.label_spec("coral", "mask")])
    np.testing.assert_array_equal(again, drawn)


def test_skeleton_points_and_the_spec_edges_are_drawn():
    spec = [cvat.skeleton_spec("grid", ["1", "2"], np.array([[0, 0], [1, 0]]), [(1, 2)])]
    shape = cvat.skeleton(
        "grid",
        [
            cvat.skeleton_element("1", (60, 150), 0.8),
            cvat.skeleton_element("2", (200, 150), 0.6),
            cvat.skeleton_element("3", (130, 60), 0.6, outside=True),
        ],
    )
    with_edges = overlay.draw_shapes(blank(), [shape], spec)
    without_spec = overlay.draw_shapes(blank(), [shape])
    assert tuple(with_edges[150, 130]) == overlay.PALETTE[0]  # the edge's midpoint
    assert tuple(without_spec[150, 130]) == (GREY, GREY, GREY)
    assert tuple(with_edges[150, 60]) == overlay.PALETTE[0]  # a node
    assert not changed(blank(), with_edges)[55:66, 125:136].any()  # the outside node


def test_every_kind_of_shape_is_drawn_and_malformed_ones_are_skipped():
    shapes = [
        cvat.rectangle("a", (10, 120, 60, 190), 0.5),
        cvat.polygon("b", [(100, 120), (150, 120), (125, 190)], 0.5),
        cvat.polyline("c", [(170, 120), (230, 190)], 0.5),
        cvat.points("d", [(200, 20)], 0.5),
        cvat.tag("e", 0.9),
        {"label": "f", "type": "polygon", "points": [1, 2, 3]},
        {"label": "g", "type": "mask", "mask": [1, 0, 0, 0, 5]},
        "not a shape",
    ]
    image = blank()
    diff = changed(image, overlay.draw_shapes(image, shapes))
    assert diff[150, 35] and diff[150, 125] and diff[155, 200] and diff[20, 200]


def test_save_png_is_atomic(tmp_path):
    target = tmp_path / "overlay.png"
    overlay.save_png(blank(), target)
    before = target.read_bytes()
    with pytest.raises((TypeError, ValueError, KeyError)):
        overlay.save_png(np.zeros((4, 4, 7), dtype=np.float64), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.png"]


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box of the largest connected part (stray anti-aliased pixels left out)."""
    parts, count = ndimage.label(mask)
    assert count > 0
    largest = np.argmax(np.bincount(parts.ravel())[1:]) + 1
    rows, cols = np.nonzero(parts == largest)
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def test_the_legend_never_covers_a_caption():
    """A skeleton with no fill in the top-left corner: its caption sits where the old legend
    went (the corner with the least fill); the legend goes elsewhere and the caption shows."""
    image = np.full((300, 400, 3), 255, dtype=np.uint8)
    elements = [
        {"type": "points", "label": str(i), "points": [x, y], "outside": False, "confidence": "90"}
        for i, (x, y) in enumerate([(12, 40), (70, 40), (12, 90), (70, 90)], start=1)
    ]
    skeleton = {"type": "skeleton", "label": "grid", "elements": elements, "confidence": "88"}
    drawn = overlay.draw_shapes(image, [skeleton], title="pth-yolo-gridcorners: 1 shape")
    grey = drawn.astype(int)
    caption = _box((grey == 85).all(axis=2))  # the caption's box: black at alpha 170 on white
    legend = _box((grey == 75).all(axis=2))  # the legend's: black at alpha 180
    assert caption[0] < 30 and caption[1] < 40  # the caption is in the top-left corner
    apart = (
        legend[0] > caption[2] or legend[2] < caption[0]
        or legend[1] > caption[3] or legend[3] < caption[1]
    )  # fmt: skip
    assert apart, (legend, caption)

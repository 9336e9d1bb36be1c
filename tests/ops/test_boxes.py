"""Points from detection boxes: cut boxes restored to their full size before the centre."""

import numpy as np
import pytest

from quadratseg_handlers.ops.boxes import box_centres

WIDTH, HEIGHT = 1000, 800


def square(x: float, y: float, side: float = 40.0) -> list[float]:
    """The box of ``side`` centred on (x, y), cut by the image's edge."""
    half = side / 2
    return [max(x - half, 0), max(y - half, 0), min(x + half, WIDTH), min(y + half, HEIGHT)]


def test_uncut_boxes_give_their_centres():
    boxes = np.array([square(100, 100), square(500, 400, 30), [10, 20, 50, 70]])
    assert box_centres(boxes, WIDTH, HEIGHT) == pytest.approx(
        np.array([[100, 100], [500, 400], [30, 45]])
    )


@pytest.mark.parametrize("point", [(5, 300), (995, 300), (300, 3), (300, 797), (12, 400)])
@pytest.mark.parametrize("side", [30.0, 60.0])
def test_a_box_cut_along_one_axis_is_made_square_again(point, side):
    boxes = np.array([square(*point, side), square(300, 300), square(600, 400, 80)])
    found = box_centres(boxes, WIDTH, HEIGHT)
    assert found[0] == pytest.approx(np.array(point), abs=1e-9)
    assert found[1:] == pytest.approx(np.array([[300, 300], [600, 400]]))


def test_a_box_in_the_image_corner_keeps_its_centre():
    assert box_centres(np.array([square(6, 8)]), WIDTH, HEIGHT) == pytest.approx(
        np.array([[13, 14]])
    )


def test_boxes_spanning_the_image_or_longer_than_wide_are_kept():
    wide = [0, 100, WIDTH, 140]
    long_cut = [0, 200, 80, 240]
    boxes = np.array([wide, long_cut])
    assert box_centres(boxes, WIDTH, HEIGHT) == pytest.approx(
        np.array([[WIDTH / 2, 120], [40, 220]])
    )


def test_a_side_within_the_tolerance_of_the_edge_counts_as_cut():
    near = [3.0, 100.0, 43.0, 160.0]
    assert box_centres(np.array([near]), WIDTH, HEIGHT) == pytest.approx(np.array([[13, 130]]))
    inside = [8.0, 100.0, 48.0, 160.0]
    assert box_centres(np.array([inside]), WIDTH, HEIGHT) == pytest.approx(np.array([[28, 130]]))


def test_no_boxes_no_points():
    assert box_centres(np.zeros((0, 4)), WIDTH, HEIGHT).shape == (0, 2)

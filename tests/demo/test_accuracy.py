"""The scoring of answers against drawn truth, on hand-made cases."""

from __future__ import annotations

import cv2
import numpy as np

from quadratseg_handlers import cvat
from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.ops.quadrat import quadrat_side


def square(x0: int, y0: int, side: int, size: int = 100) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def test_corals_match_one_to_one_by_genus_and_iou():
    truth = [
        ("Porites", square(0, 0, 20)),
        ("Acropora", square(50, 50, 20)),
        ("Fungia", square(80, 0, 3)),
    ]
    found = [
        ("Porites", square(2, 0, 20)),  # IoU 0.82: found
        ("Porites", square(1, 1, 20)),  # a duplicate: one to one, so not counted twice
        ("Porites", square(50, 50, 20)),  # right place, wrong genus
    ]
    score = accuracy.score_corals(found, truth, min_area=50)
    assert (score.colonies, score.shapes, score.found, score.true_shapes) == (2, 3, 1, 1)
    assert score.recall == 0.5 and score.precision == 1 / 3
    empty = accuracy.score_corals([], [], min_area=1)
    assert empty.recall == empty.precision == 1.0


def test_polygon_parts_of_one_group_are_one_instance():
    shapes = [
        cvat.polygon("Porites", [[0, 0], [10, 0], [10, 10], [0, 10]], 0.9, group_id=1),
        cvat.polygon("Porites", [[20, 20], [30, 20], [30, 30], [20, 30]], 0.9, group_id=1),
        cvat.polygon("Acropora", [[40, 40], [50, 40], [50, 50], [40, 50]], 0.8, group_id=2),
    ]
    instances = accuracy.shape_instances(shapes, 60, 60)
    assert [label for label, _ in instances] == ["Porites", "Acropora"]
    assert instances[0][1][5, 5] and instances[0][1][25, 25] and not instances[0][1][45, 45]


def test_repaint_score_sees_pixels_changed_outside_the_mask():
    before = np.zeros((10, 10, 3), dtype=np.uint8)
    string = np.zeros((10, 10), dtype=bool)
    string[5] = True
    painted = string.copy()
    after = before.copy()
    after[5] = 9
    score = accuracy.score_repaint(before, after, string, painted)
    assert score.string_repainted == 1.0 and score.outside_untouched
    after[0, 0] = 1
    assert not accuracy.score_repaint(before, after, string, painted).outside_untouched


def strung_reef(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured 160 x 160 'reef', the same with a 3 px pale string across it, and the string."""
    rng = np.random.default_rng(seed)
    reef = cv2.GaussianBlur(rng.uniform(40, 140, (160, 160, 3)).astype(np.float32), (0, 0), 2)
    reef = reef.astype(np.uint8)
    string = np.zeros((160, 160), dtype=np.uint8)
    cv2.line(string, (10, 20), (150, 140), 1, 3)
    cv2.line(string, (80, 0), (80, 159), 1, 3)
    strung = reef.copy()
    strung[string.astype(bool)] = (235, 230, 210)
    return reef, strung, string.astype(bool)


def test_a_string_repainted_in_its_own_colour_stays_visible():
    """Every string pixel changed, so 'repainted' says 100 %; the string is still all there."""
    _, strung, string = strung_reef()
    recoloured = strung.copy()
    recoloured[string] = (233, 228, 212)
    score = accuracy.score_repaint(strung, recoloured, string, string)
    assert score.string_repainted == 1.0 and score.outside_untouched
    assert score.string_visible >= 0.9


def test_a_string_painted_out_is_no_longer_visible():
    reef, strung, string = strung_reef()
    restored = strung.copy()
    restored[string] = reef[string]
    assert accuracy.score_repaint(strung, restored, string, string).string_visible <= 0.05
    wide = cv2.dilate(string.astype(np.uint8), np.ones((5, 5), np.uint8))
    inpainted = cv2.inpaint(strung, wide, 3, cv2.INPAINT_TELEA)
    assert accuracy.visibility(strung, inpainted, string).share <= 0.2
    thin = cv2.inpaint(strung, cv2.erode(string.astype(np.uint8), np.ones((3, 3))), 3, 0)
    assert accuracy.visibility(strung, thin, string).share >= 0.5  # the line missed the edges


def test_visibility_is_measured_against_the_surroundings_before():
    """The contrast of each string pixel is taken from the reef around it in the input, so a
    removal that paints its own surroundings in the string's colour cannot hide the string."""
    _, strung, string = strung_reef()
    painted_around = strung.copy()
    around = cv2.dilate(string.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    painted_around[around] = (235, 230, 210)
    seen = accuracy.visibility(strung, painted_around, string)
    assert seen.share >= 0.9 and seen.before > 4 * seen.texture
    assert accuracy.visibility(strung, strung, np.zeros_like(string)).share == 0.0


def test_point_errors_are_shares_of_the_side():
    corners = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], dtype=float)
    assert quadrat_side(corners) == 100
    found = corners + [[1, 0], [0, 0], [0, 2], [0, 0]]
    assert np.allclose(accuracy.point_errors(found, corners, 100), [0.01, 0, 0.02, 0])

"""The synthetic quadrat photograph and its ground truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from quadratseg_handlers.demo.synthetic import GENERA, quadrat_image
from quadratseg_handlers.ops.gridmask import draw_grid_mask
from quadratseg_handlers.ops.template import grid_template


@pytest.fixture(scope="module")
def quadrat():
    return quadrat_image((360, 320), seed=4)


def test_lattice_is_row_major_without_corners():
    points = grid_template()
    assert points.shape == (117, 2)
    expected = [(0.1, 0), (0.9, 0), (0, 0.1), (1, 0.1), (0, 0.2), (0.1, 1), (0.9, 1)]
    assert np.allclose(points[[0, 8, 9, 19, 20, 108, 116]], expected)


def test_image_size_and_determinism(quadrat):
    assert quadrat.image.shape == (320, 360, 3) and quadrat.image.dtype == np.uint8
    again = quadrat_image((360, 320), seed=4)
    assert np.array_equal(again.image, quadrat.image)
    assert not np.array_equal(quadrat_image((360, 320), seed=5).image, quadrat.image)


def test_corners_are_in_order_and_map_the_unit_square(quadrat):
    tl, tr, br, bl = quadrat.corners
    assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1] and tr[1] < br[1]
    unit = np.array([[[0, 0], [1, 0], [1, 1], [0, 1]]], dtype=np.float64)
    assert np.allclose(cv2.perspectiveTransform(unit, quadrat.homography)[0], quadrat.corners)


def test_grid_points_sit_on_the_string(quadrat):
    points = quadrat.grid_points
    assert points.shape == (117, 2)
    expected = cv2.perspectiveTransform(grid_template()[None], quadrat.homography)[0]
    assert np.allclose(points, expected)
    interior = np.array([i for i, (x, y) in enumerate(grid_template()) if 0 < x < 1 and 0 < y < 1])
    cols, rows = np.round(points[interior] - 0.5).astype(int).T
    assert len(interior) == 81
    assert quadrat.string_mask[rows, cols].mean() > 0.6  # the rest lie under colonies
    cell = float(np.linalg.norm(points[1] - points[0]))
    beside = np.round(points[interior] + cell / 2 - 0.5).astype(int)
    on = quadrat.image[rows, cols].astype(float)
    off = quadrat.image[beside[:, 1], beside[:, 0]].astype(float)
    assert np.median(np.abs(on - off).sum(axis=1)) > 30


def test_string_mask_follows_the_strings(quadrat):
    size = (quadrat.image.shape[1], quadrat.image.shape[0])
    near = draw_grid_mask(quadrat.grid_points, size, 3 * quadrat.string_width + 4)
    assert quadrat.string_mask.any()
    assert (quadrat.string_mask & ~near).sum() <= 0.01 * quadrat.string_mask.sum()


def test_the_world_varies_with_the_seed():
    scenes = [quadrat_image((480, 360), seed) for seed in range(12)]
    looks = [scene.look for scene in scenes]
    assert len({look["frame"] for look in looks}) >= 2
    assert len({tuple(look["string_colour"]) for look in looks}) >= 3
    assert len({look["jpeg_quality"] for look in looks}) >= 6
    turns = [np.degrees(np.arctan2(*(s.corners[1] - s.corners[0])[::-1])) for s in scenes]
    assert max(turns) - min(turns) > 15
    extents = [float(np.ptp(s.corners, axis=0).max()) / 360 for s in scenes]
    assert min(extents) < 0.7 < max(extents)
    for scene in scenes:
        assert (scene.corners >= 0).all() and (scene.corners <= (480, 360)).all()


def test_corals_are_disjoint_labelled_masks_inside_the_frame(quadrat):
    assert len(quadrat.corals) >= 5
    total = np.zeros(quadrat.image.shape[:2], dtype=int)
    frame = quadrat.corners.astype(np.float32)
    for coral in quadrat.corals:
        assert coral.label in GENERA
        assert coral.mask.shape == quadrat.image.shape[:2] and coral.mask.dtype == bool
        assert coral.mask.sum() >= 50
        total += coral.mask
        ys, xs = np.nonzero(coral.mask)
        assert cv2.pointPolygonTest(frame, (float(xs.mean()), float(ys.mean())), False) > 0
    assert total.max() == 1


def test_genera_look_different():
    scenes = [quadrat_image(400, seed, corals=14) for seed in range(6)]
    colours = {}
    for genus in GENERA:
        pixels = [s.image[c.mask] for s in scenes for c in s.corals if c.label == genus]
        assert pixels, f"seeds 0-5 draw every genus ({genus} missing)"
        colours[genus] = np.concatenate(pixels).mean(axis=0)
    assert len(GENERA) >= 5
    for a in GENERA:
        for b in GENERA:
            if a < b:
                assert np.abs(colours[a] - colours[b]).sum() > 30, (a, b, colours)


def test_genera_choice_and_errors():
    assert {c.label for c in quadrat_image(200, seed=1, genera=["Porites"]).corals} == {"Porites"}
    with pytest.raises(ValueError, match="genera must be among"):
        quadrat_image(200, genera=["Favites"])

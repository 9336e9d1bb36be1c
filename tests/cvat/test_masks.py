"""Masks to outlines: parts, outer rings, holes, borders, boxes."""

from __future__ import annotations

import cv2
import numpy as np

from quadratseg_handlers.cvat.masks import bounding_box, mask_parts, outer_ring, polygon_to_mask


def disc(shape: tuple[int, int], center: tuple[int, int], radius: int) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.circle(canvas, center, radius, 1, -1)
    return canvas.astype(bool)


def test_bounding_box_is_inclusive():
    mask = np.zeros((10, 10), dtype=bool)
    mask[3:6, 2:9] = True
    assert bounding_box(mask) == (2, 3, 8, 5)
    assert bounding_box(np.zeros((4, 4), dtype=bool)) is None


def test_disc_outline_lies_on_the_circle():
    mask = disc((200, 200), (100, 90), 40)
    ring = outer_ring(mask, tolerance=1.0)
    radii = np.hypot(ring[:, 0] - 100, ring[:, 1] - 90)
    assert len(ring) >= 8 and np.abs(radii - 40).max() <= 2.0


def test_ring_mask_polygon_fills_the_hole_but_part_keeps_it():
    mask = disc((100, 100), (50, 50), 30) & ~disc((100, 100), (50, 50), 12)
    (part,) = mask_parts(mask)
    assert part.area == int(mask.sum())
    assert not part.bitmap[50 - part.y0, 50 - part.x0]  # the hole is kept in the bitmap
    filled = polygon_to_mask(part.polygon, 100, 100)
    assert filled[50, 50]  # the polygon has no hole


def test_parts_with_origin_min_area_and_border():
    mask = np.zeros((50, 60), dtype=bool)
    mask[0:10, 0:10] = True  # touches the border
    mask[30:32, 40:42] = True  # 4 px
    parts = mask_parts(mask, origin=(100, 200), min_area=5)
    assert len(parts) == 1
    assert parts[0].box == (100, 200, 109, 209)
    assert parts[0].polygon[:, 0].min() == 100 and parts[0].polygon[:, 1].min() == 200
    assert len(mask_parts(mask, min_area=1)) == 2


def test_tiny_parts_without_three_outline_points_are_dropped():
    mask = np.zeros((10, 10), dtype=bool)
    mask[5, 5] = True
    mask[1, 1:3] = True
    assert mask_parts(mask) == []


def test_an_island_inside_a_hole_is_its_own_part():
    ring = disc((100, 100), (50, 50), 40) & ~disc((100, 100), (50, 50), 20)
    island = disc((100, 100), (50, 50), 8)
    outer, inner = mask_parts(ring | island)
    assert (outer.area, inner.area) == (int(ring.sum()), int(island.sum()))
    assert not outer.bitmap[50 - outer.y0, 50 - outer.x0]  # the island is not in the ring's bitmap
    height, width = inner.bitmap.shape
    window = island[inner.y0 : inner.y0 + height, inner.x0 : inner.x0 + width]
    assert np.array_equal(inner.bitmap, window)


def test_parts_are_exactly_the_connected_components():
    rng = np.random.default_rng(0)
    for _ in range(300):
        shape = tuple(int(v) for v in rng.integers(1, 30, 2))
        mask = rng.random(shape) < rng.uniform(0.1, 0.9)
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        parts = mask_parts(mask, origin=(5, 7), tolerance=0.0)
        seen = set()
        for part in parts:
            height, width = part.bitmap.shape
            window = labels[part.y0 - 7 : part.y0 - 7 + height, part.x0 - 5 : part.x0 - 5 + width]
            (index,) = np.unique(window[part.bitmap])
            assert np.array_equal(part.bitmap, window == index)
            assert part.area == int((labels == index).sum())
            seen.add(int(index))
        assert len(seen) == len(parts)
        areas = [part.area for part in parts]
        assert areas == sorted(areas, reverse=True)
        # A component holding a 2 x 2 block encloses an area: its outline has >= 3 points.
        block = mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:] & mask[1:, 1:]
        assert set(np.unique(labels[:-1, :-1][block]).tolist()) <= seen


def test_a_strided_view_or_a_byte_mask_splits_as_its_boolean_copy():
    rng = np.random.default_rng(1)
    for _ in range(50):
        big = rng.random((40, 50)) < 0.5
        view = big[3:37:2, 5:45]  # rows strided, columns offset: not contiguous
        expected = mask_parts(np.ascontiguousarray(view), origin=(2, 3))
        for mask in (view, view.astype(np.uint8) * 255):
            parts = mask_parts(mask, origin=(2, 3))
            assert [(p.x0, p.y0, p.area) for p in parts] == [(p.x0, p.y0, p.area) for p in expected]
            for part, want in zip(parts, expected, strict=True):
                assert part.bitmap.dtype == bool
                assert np.array_equal(part.bitmap, want.bitmap)
                assert np.array_equal(part.polygon, want.polygon)
    assert mask_parts(np.zeros((5, 5), dtype=np.uint8)) == []

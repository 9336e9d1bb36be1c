"""backends/inpainting: SimpleLama's padding cropped back, and the tiles that send only the
masked part of an image to the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lama_for_tests import HEIGHT, WIDTH, grid_points, textured_photo, tiny_lama_file

from quadratseg_handlers.backends.inpainting import LamaBackend, inpaint, tiles
from quadratseg_handlers.ops.gridmask import draw_grid_mask


@pytest.fixture(scope="module")
def lama_model(tmp_path_factory) -> Path:
    return tiny_lama_file(tmp_path_factory.mktemp("lama"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return textured_photo()


@pytest.mark.slow
def test_simple_lama_padding_is_cropped_back(lama_model, photo):
    backend = LamaBackend(lama_model)
    mask = draw_grid_mask(grid_points(), (WIDTH, HEIGHT), 8)
    raw = backend.lama(photo, mask.astype(np.uint8) * 255)
    assert raw.size == (408, 304)  # SimpleLama's own answer: padded to a multiple of 8
    painted = backend(photo, mask)
    assert painted.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(painted, np.asarray(raw)[:HEIGHT, :WIDTH])


def test_only_masked_pixels_come_from_the_backend_and_tiles_cover_the_mask():
    image = np.full((300, 500, 3), 7, dtype=np.uint8)
    mask = np.zeros((300, 500), dtype=bool)
    mask[10:20, 30:40] = True  # in cell (0, 0)
    mask[150, 250] = True  # in cell (1, 2)
    mask[250, 450] = True  # in cell (2, 4)
    windows = []

    def paint_white(window: np.ndarray, window_mask: np.ndarray) -> np.ndarray:
        windows.append(window.shape[:2])
        return np.full_like(window, 255)

    result = inpaint(paint_white, image, mask, tile_size=100, margin=16)
    assert windows == [(116, 116), (132, 132), (116, 116)]  # clipped at the image border
    np.testing.assert_array_equal(result[mask], 255)
    np.testing.assert_array_equal(result[~mask], 7)
    whole = inpaint(paint_white, image, mask)
    assert windows[-1] == (300, 500)  # one call on the whole image
    np.testing.assert_array_equal(whole, result)
    cells = [cell for cell, _ in tiles(mask, 100, 16)]
    assert cells == [
        (slice(0, 100), slice(0, 100)),
        (slice(100, 200), slice(200, 300)),
        (slice(200, 300), slice(400, 500)),
    ]

"""backends/inpainting: SimpleLama's padding cropped back, and the tiles that send only the
masked part of an image to the model."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from quadratseg_handlers.backends.inpainting import LamaBackend, inpaint, tiles
from quadratseg_handlers.demo.tinymodels.lama import tiny_lama
from quadratseg_handlers.ops.gridmask import draw_grid_mask
from quadratseg_handlers.ops.template import grid_template

WIDTH, HEIGHT = 403, 301
"""Odd on purpose: SimpleLama pads to 408 x 304 and does not crop back."""


@pytest.fixture(scope="module")
def lama_model(tmp_path_factory) -> Path:
    return tiny_lama(tmp_path_factory.mktemp("lama") / "big-lama.pt")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A textured RGB image of the odd test size."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return cv2.GaussianBlur(image, (0, 0), 2)


def grid_points(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """The 117 points of a lattice spanning the image with a 0.5-cell margin, as (x, y)."""
    return (grid_template() * 10 + 0.5) / 11 * (width, height)


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

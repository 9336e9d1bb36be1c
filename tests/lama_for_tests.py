"""What the grid-removal tests share: the odd image size, a textured photo of it, the grid
lattice over it, and a tiny big-lama file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from quadratseg_handlers.demo.tinymodels.lama import tiny_lama
from quadratseg_handlers.ops.template import grid_template

WIDTH, HEIGHT = 403, 301
"""Odd on purpose: SimpleLama pads to 408 x 304 and does not crop back."""


def textured_photo() -> np.ndarray:
    """A textured RGB image of the odd test size."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return cv2.GaussianBlur(image, (0, 0), 2)


def grid_points(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """The 117 points of a lattice spanning the image with a 0.5-cell margin, as (x, y)."""
    return (grid_template() * 10 + 0.5) / 11 * (width, height)


def tiny_lama_file(folder: Path) -> Path:
    """A tiny big-lama TorchScript file in ``folder``."""
    return tiny_lama(folder / "big-lama.pt")

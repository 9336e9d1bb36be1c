"""Drawn photos cropped so that one bar of the frame lies out of the photo, for the tests of
the grid string's step (``ops.grid_string``) and of what confirms a retried frame."""

from __future__ import annotations

import numpy as np

from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.ops.quadrat import quadrat_side

SIDES = ("top", "right", "bottom", "left")


def cut_photo(
    image: np.ndarray, corners: np.ndarray, side: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo cut 4.5 % of the quadrat's side inside the frame on ``side``, the true
    corners in it, and the corners a detector gives: the cut side's two at the edge."""
    length = quadrat_side(corners)
    pair = [SIDES.index(side), (SIDES.index(side) + 1) % 4]
    axis = 1 if side in ("top", "bottom") else 0
    if side in ("top", "left"):
        cut = int(corners[pair, axis].max() + 0.045 * length)
        photo = image[cut:] if axis else image[:, cut:]
        truth = corners - (np.array([0.0, cut]) if axis else np.array([cut, 0.0]))
        edge = 1.0
    else:
        cut = int(corners[pair, axis].min() - 0.045 * length)
        photo = image[:cut] if axis else image[:, :cut]
        truth = corners.copy()
        edge = cut - 1.0
    given = truth.copy()
    given[pair, axis] = edge
    return np.ascontiguousarray(photo), truth, given


def drawn(seed: int) -> tuple[np.ndarray, np.ndarray]:
    scene = quadrat_image((1200, 900), seed, rotation=4.0, perspective=0.03)
    return scene.image, np.asarray(scene.corners, dtype=np.float64)

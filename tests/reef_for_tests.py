"""Quadrats drawn over real reef for the tests: the committed MIT patches of
tests/data/reef-textures (held-out source photos) as the photo, a metal frame with legs past
its corners and a taut grid string drawn over them, with their truth.

The scene is a :class:`SyntheticQuadrat` with no colonies, so the demo's pipeline scores its
corners, grid points and grid removal as it scores the drawn world's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from quadratseg_handlers.core.request import load_image
from quadratseg_handlers.demo.synthetic import SyntheticQuadrat
from quadratseg_handlers.ops.gridmask import draw_grid_mask
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import quadrat_side
from quadratseg_handlers.ops.template import grid_template

TEXTURES = Path(__file__).resolve().parent / "data" / "reef-textures"

UNIT = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)


def reef_patches() -> list[np.ndarray]:
    """The committed reef patches, RGB, in name order."""
    return [load_image(path) for path in sorted(TEXTURES.glob("*.jpg"))]


def reef_mosaic(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A ``size`` (width, height) photo tiled with randomly scaled and flipped reef patches."""
    width, height = size
    patches = reef_patches()
    tile = int(rng.integers(256, 400))
    rows, cols = -(-height // tile), -(-width // tile)
    photo = np.zeros((rows * tile, cols * tile, 3), dtype=np.uint8)
    for row in range(rows):
        for col in range(cols):
            patch = patches[int(rng.integers(len(patches)))]
            crop = int(rng.integers(256, 513))
            x, y = rng.integers(0, 513 - crop, 2)
            patch = patch[y : y + crop, x : x + crop]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            resized = cv2.resize(patch, (tile, tile), interpolation=cv2.INTER_AREA)
            photo[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile] = resized
    return np.ascontiguousarray(photo[:height, :width])


def _bar(image: np.ndarray, start: np.ndarray, end: np.ndarray, width: float, shade: int) -> None:
    """A round metal tube: a darker outline, the tube, a bright line along its middle."""
    a = tuple(int(round(v)) for v in start)
    b = tuple(int(round(v)) for v in end)
    dark = (shade // 2, shade // 2, shade // 2)
    cv2.line(image, a, b, dark, max(2, int(round(width))), cv2.LINE_AA)
    cv2.line(image, a, b, (shade, shade, shade - 8), max(1, int(round(width * 0.7))), cv2.LINE_AA)
    bright = min(255, shade + 40)
    cv2.line(image, a, b, (bright,) * 3, max(1, int(round(width * 0.2))), cv2.LINE_AA)


def framed_reef(seed: int, size: tuple[int, int] = (1024, 768)) -> SyntheticQuadrat:
    """Real reef with a quadrat drawn over it: metal bars (their centre lines cross at the
    corners, legs leave each corner diagonally past it), a grid string, a JPEG round trip."""
    rng = np.random.default_rng(seed)
    width, height = size
    photo = reef_mosaic(rng, size)
    short = min(width, height)
    span = short * rng.uniform(0.62, 0.75)
    centre = np.array([width / 2, height / 2]) + rng.uniform(-0.04, 0.04, 2) * short
    angle = np.deg2rad(rng.uniform(-8, 8))
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = centre + ((UNIT - 0.5) * span) @ rotate.T
    corners = corners + rng.uniform(-0.03, 0.03, (4, 2)) * span
    homography = cv2.getPerspectiveTransform(UNIT.astype(np.float32), corners.astype(np.float32))
    grid = project(homography, grid_template())
    side = quadrat_side(corners)

    string_width = float(rng.uniform(1.5, 3.5))
    string = draw_grid_mask(grid, size, string_width)
    colour = [(235, 230, 215), (230, 210, 60), (240, 120, 60), (40, 40, 40)][int(rng.integers(4))]
    photo[string] = colour
    bars = np.zeros((height, width), dtype=np.uint8)
    bar_width = side * rng.uniform(0.025, 0.04)
    shade = int(rng.integers(150, 215))
    for k in range(4):
        start, end = corners[k], corners[(k + 1) % 4]
        along = (end - start) / np.linalg.norm(end - start)
        reach = along * bar_width * 0.8  # the tubes run a little past the crossing
        _bar(photo, start - reach, end + reach, bar_width, shade)
        cv2.line(bars, tuple(np.round(start - reach).astype(int)),
                 tuple(np.round(end + reach).astype(int)), 1, int(round(bar_width)))  # fmt: skip
    for corner in corners:
        outward = (corner - centre) / np.linalg.norm(corner - centre)
        _bar(photo, corner, corner + outward * side * 0.12, bar_width * 1.1, shade - 20)
    photo = cv2.GaussianBlur(photo, (0, 0), 0.7)
    ok, data = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()
    return SyntheticQuadrat(
        image=image,
        corners=corners,
        grid_points=grid,
        corals=[],
        homography=homography,
        string_mask=string & ~bars.astype(bool),
        string_width=string_width,
        side=side,
        look={"frame": "metal bars drawn over real reef", "seed": seed},
    )

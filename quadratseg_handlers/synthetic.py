"""Synthetic images for demos, tests and benchmarks, drawn deterministically from a seed."""

from __future__ import annotations

import cv2
import numpy as np


def blobs_image(
    width: int = 640, height: int = 480, count: int = 6, seed: int = 0
) -> np.ndarray:
    """A dark textured RGB image with ``count`` bright elliptic blobs of varied brightness."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(20, 90, size=(height, width, 3), dtype=np.uint8)
    image: np.ndarray = cv2.GaussianBlur(noise, (0, 0), 3)
    radius = max(4, min(width, height) // 12)
    for _ in range(count):
        center = (
            int(rng.integers(radius, width - radius)),
            int(rng.integers(radius, height - radius)),
        )
        axes = (int(rng.integers(radius // 2, radius)), int(rng.integers(radius // 2, radius)))
        level = int(rng.integers(215, 256))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(image, center, axes, angle, 0, 360, (level, level, level), -1)
    return image

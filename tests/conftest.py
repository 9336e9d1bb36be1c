"""Shared fixtures: offline model libraries, drawn images, Nuclio helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from quadratseg_handlers.backends.offline import configure_ultralytics

configure_ultralytics(Path(tempfile.gettempdir()) / f"quadratseg-test-ultralytics-{os.getuid()}")


@pytest.fixture
def rect_image() -> np.ndarray:
    """A black 200x120 image with two white rectangles and one grey (level 100) rectangle."""
    image = np.zeros((120, 200, 3), dtype=np.uint8)
    image[10:30, 20:60] = 255  # 40 x 20 at (20, 10)
    image[50:100, 100:150] = 230  # 50 x 50 at (100, 50)
    image[80:90, 10:30] = 100
    return image

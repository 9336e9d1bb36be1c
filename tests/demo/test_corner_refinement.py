"""REFINE_CORNERS with the trained demo corner model: the second pass, on the quadrat warped
upright, places the corners closer to the drawn truth (photos from seeds never trained on)."""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg_handlers.core.request import encode_image
from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.datasets import random_photo_size_wh
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import TEST_SEEDS
from quadratseg_handlers.handlers.grid import GridCornersHandler
from quadratseg_handlers.local.harness import FunctionClient, response_json
from quadratseg_handlers.ops.quadrat import quadrat_side
from quadratseg_handlers.ops.template import CORNER_POINTS, packaged_template_path

pytestmark = pytest.mark.slow

PHOTOS = 8
"""Held-out photos (long side 1024 to 1600 px), the pipeline test's first ones."""


def test_the_second_pass_brings_the_corners_closer(committed_models):
    settings = {
        "MODEL_PATH": committed_models / "gridcorners.pt",
        "DEVICE": "cpu",
        "CONF_THRESHOLD": "0.1",
        "TEMPLATE_PATH": packaged_template_path(CORNER_POINTS),
    }
    clients = {
        flag: FunctionClient(GridCornersHandler, {**settings, "REFINE_CORNERS": flag})
        for flag in ("false", "true")
    }
    errors: dict[str, list[float]] = {flag: [] for flag in clients}
    for offset in range(PHOTOS):
        seed = TEST_SEEDS + 1000 + offset
        scene = quadrat_image(random_photo_size_wh(np.random.default_rng(seed), (1024, 1600)), seed)
        body = {"image": encode_image(scene.image, "JPEG")}
        for flag, client in clients.items():
            shapes = response_json(client.call(body))
            assert [shape["type"] for shape in shapes] == ["skeleton"]
            found = accuracy.skeleton_of(shapes, CORNER_POINTS)
            side = quadrat_side(scene.corners)
            errors[flag].append(float(accuracy.point_errors(found, scene.corners, side).max()))
    plain, refined = (np.array(errors[flag]) for flag in ("false", "true"))
    assert (refined <= accuracy.CORNER_TOLERANCE).all(), refined.round(4)
    assert np.median(refined) < 0.8 * np.median(plain), (plain.round(4), refined.round(4))

"""RETRY_THRESHOLD with the trained demo corner model: a frame the detector scores below the
threshold is answered from a second try at a lower one when the frame's bars confirm its 4
corners, and a photo with no frame stays empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quadratseg_handlers.core.request import encode_image
from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.datasets import random_photo_size_wh
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import MODELS, TEST_SEEDS
from quadratseg_handlers.handlers.grid import GridCornersHandler
from quadratseg_handlers.local.harness import FunctionClient, response_json
from quadratseg_handlers.ops.quadrat import quadrat_side
from quadratseg_handlers.ops.template import CORNER_POINTS, packaged_template_path

pytestmark = pytest.mark.slow

LOW_SCORED = (TEST_SEEDS + 5054, TEST_SEEDS + 5146)
"""Held-out drawn photos (two metal frames) where the committed model finds fewer than 3 corners
at the demo's threshold (0.1) and all 4 at 0.01 (4 of the 400 from TEST_SEEDS + 5000 on)."""

REEF_PATCHES = Path(__file__).parents[1] / "data" / "reef-textures"


def clients(models: Path) -> dict[str, FunctionClient]:
    """The demo's shipped corner settings (RETRY_THRESHOLD=0.01 among them), and the same
    with the retry off."""
    settings = {
        **MODELS["gridcorners"].settings,
        "MODEL_PATH": models / "gridcorners.pt",
        "DEVICE": "cpu",
        "TEMPLATE_PATH": packaged_template_path(CORNER_POINTS),
    }
    assert settings["RETRY_THRESHOLD"] == "0.01"
    return {
        "0": FunctionClient(GridCornersHandler, {**settings, "RETRY_THRESHOLD": "0"}),
        "0.01": FunctionClient(GridCornersHandler, settings),
    }


def test_a_low_scored_frame_is_answered_when_its_bars_confirm_it(committed_models):
    plain, retried = clients(committed_models).values()
    for seed in LOW_SCORED:
        scene = quadrat_image(random_photo_size_wh(np.random.default_rng(seed), (1024, 1600)), seed)
        body = {"image": encode_image(scene.image, "JPEG")}
        empty = plain.call(body)
        assert response_json(empty) == [], seed
        assert empty.headers["X-Quadratseg-Warning"].startswith("no skeleton: "), seed
        response = retried.call(body)
        shapes = response_json(response)
        assert [shape["type"] for shape in shapes] == ["skeleton"], seed
        found = accuracy.skeleton_of(shapes, CORNER_POINTS)
        errors = accuracy.point_errors(found, scene.corners, quadrat_side(scene.corners))
        assert errors.max() <= accuracy.CORNER_TOLERANCE, (seed, errors.round(4))
        assert 0 < float(shapes[0]["confidence"]) < 50, seed  # the detector's, per cent: low
        assert response.headers["X-Quadratseg-Warning"] == (
            "quadrat found at RETRY_THRESHOLD=0.01, below the threshold 0.1: the frame's bars "
            "confirm its 4 corners"
        ), seed


def test_photos_without_a_frame_stay_empty(committed_models):
    """The committed real reef patches: at 0.01 the detector answers a quadrat on 3 of the
    16 (9 before its run with more painted and taped frames; measured with the bars' check
    switched off), and the bars confirm none."""
    retried = clients(committed_models)["0.01"]
    patches = sorted(REEF_PATCHES.glob("*.jpg"))
    assert len(patches) >= 8
    for patch in patches:
        image = np.asarray(Image.open(patch).convert("RGB"))
        response = retried.call({"image": encode_image(image, "JPEG")})
        assert response_json(response) == [], patch.name
        assert "RETRY_THRESHOLD" not in response.headers.get("X-Quadratseg-Warning", "")

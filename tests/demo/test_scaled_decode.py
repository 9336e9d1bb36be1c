"""The trained demo models answer a JPEG decoded scaled (SCALED_DECODE=true, the default) as
well as one decoded at full size, in the photo's pixels, on a held-out photo.

The two paths feed the network slightly different pixels (libjpeg's block averages, vs
ultralytics' bilinear shrink of every pixel), so trained models move their answers by a
fraction of a network-input pixel; both are scored against the drawn truth. The exactness of
the mapping itself is tested on tiny models (tests/handlers/test_yolo.py, test_grid.py) and
on known masks (tests/backends/test_ultralytics.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg_handlers.core.request import encode_image
from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.pipeline import CORAL_MIN_AREA
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import MODELS, TEST_SEEDS
from quadratseg_handlers.demo.warped import remove_string, warped_masks, warped_view
from quadratseg_handlers.handlers.grid import GridCornersHandler, GridPoseHandler
from quadratseg_handlers.handlers.yolo import CoralSegV4Handler
from quadratseg_handlers.local.harness import FunctionClient, response_json
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import quadrat_side
from quadratseg_handlers.ops.template import CORNER_POINTS, GRID_POINTS, packaged_template_path

pytestmark = pytest.mark.slow

FUNCTIONS = {
    "corners": (GridCornersHandler, "gridcorners"),
    "grid": (GridPoseHandler, "gridpose"),
    "corals": (CoralSegV4Handler, "coralseg"),
}
"""Each function with its demo model, served with that model's demo settings."""


@pytest.fixture(scope="module")
def clients(committed_models):
    """Each function twice: scaled decode and full decode."""
    made = {}
    for name, (handler, model) in FUNCTIONS.items():
        env = MODELS[model].settings
        for scaled in ("true", "false"):
            settings = {"MODEL_PATH": committed_models / MODELS[model].file, "DEVICE": "cpu", **env}
            if handler is not CoralSegV4Handler:
                settings["TEMPLATE_PATH"] = packaged_template_path(handler.template_points)
            made[name, scaled] = FunctionClient(handler, {**settings, "SCALED_DECODE": scaled})
    return made


def both(clients, name: str, image: np.ndarray) -> tuple[list, list]:
    body = {"image": encode_image(image, "JPEG")}
    scaled, full = (response_json(clients[name, flag].call(body)) for flag in ("true", "false"))
    return scaled, full


@pytest.mark.parametrize("size", [(4000, 3000), (1920, 1920)], ids=["4000x3000", "1920"])
def test_trained_models_answer_a_scaled_decode_as_well_as_a_full_one(clients, size):
    scene = quadrat_image(size, TEST_SEEDS + 9)
    input_pixel = max(size) / 320  # photo pixels per network-input pixel

    corners = [
        accuracy.skeleton_of(a, CORNER_POINTS) for a in both(clients, "corners", scene.image)
    ]
    assert corners[0] is not None and corners[1] is not None
    side = quadrat_side(scene.corners)
    errors = [accuracy.point_errors(c, scene.corners, side).max() for c in corners]
    assert errors[0] <= accuracy.CORNER_TOLERANCE, errors
    assert np.hypot(*(corners[0] - corners[1]).T).max() <= input_pixel

    view = warped_view(scene, min(size))
    grids = [accuracy.skeleton_of(a, GRID_POINTS) for a in both(clients, "grid", view.image)]
    assert grids[0] is not None and grids[1] is not None
    grid_side = quadrat_side(project(view.transform, scene.corners))
    hits = [
        (accuracy.point_errors(g, view.grid_points, grid_side) <= accuracy.GRID_TOLERANCE).mean()
        for g in grids
    ]
    assert hits[0] >= max(hits[1], 0.98), hits
    assert np.median(np.hypot(*(grids[0] - grids[1]).T)) <= 0.5 * min(size) / 352

    clean = remove_string(view)
    truth = warped_masks(scene, view.transform, clean.shape[1::-1])
    height, width = clean.shape[:2]
    min_area = int(CORAL_MIN_AREA * grid_side * grid_side)
    scores = [
        accuracy.score_corals(accuracy.shape_instances(a, height, width), truth, min_area)
        for a in both(clients, "corals", clean)
    ]
    scaled, full = scores
    assert min(scaled.found, full.found) >= 2, scores
    # Decoded at a DCT reduction or in full and resized, the pixels differ a little: a colony
    # scored at the serving threshold may come or go, never more than one.
    assert abs(scaled.found - full.found) <= 1, scores
    assert abs((scaled.shapes - scaled.true_shapes) - (full.shapes - full.true_shapes)) <= 1

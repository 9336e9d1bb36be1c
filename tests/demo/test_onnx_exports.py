"""Each trained demo model exported to ONNX answers like its PyTorch checkpoint.

The export is ultralytics' own (the one a lab runs before `quadratseg package best.onnx`); both
files are served by the same handler class through Nuclio objects, on held-out photos, at the
function's default threshold (CVAT sends none unless the user sets one).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from quadratseg_handlers.backends.offline import configure_ultralytics
from quadratseg_handlers.core.request import cvat_request
from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import MODELS, TEST_SEEDS, verified_models
from quadratseg_handlers.demo.warped import remove_string, warped_view
from quadratseg_handlers.handlers.grid import GridCornersHandler, GridPoseHandler
from quadratseg_handlers.handlers.yolo import CoralSegV4Handler
from quadratseg_handlers.local.harness import FunctionClient, response_json

pytestmark = pytest.mark.slow

HANDLERS = {
    "gridcorners": GridCornersHandler,
    "gridpose": GridPoseHandler,
    "coralseg": CoralSegV4Handler,
}
SEEDS = [TEST_SEEDS + 2000 + offset for offset in range(3)]

POINT_TOLERANCE = {"gridpose": 0.005, "gridcorners": 0.0075}
"""Largest point difference between the exports, as a fraction of the quadrat's side: well
under each stage's bar (1 % and 2 %). The static ONNX input is letterboxed to a square where
ultralytics' torch predict pads to a rectangle; a corner box cut by the photo's edge takes its
centre from two of its sides (RESTORE_CUT_BOXES), so their differences add (0.52 % measured)."""


def export_onnx(weights: Path, folder: Path) -> Path:
    """ultralytics' ONNX export of a checkpoint (static shape, no onnxslim: offline here)."""
    configure_ultralytics()
    from ultralytics import YOLO

    copy = folder / weights.name
    shutil.copy(weights, copy)
    exported = YOLO(str(copy)).export(format="onnx", simplify=False, dynamic=False)
    return Path(exported)


def model_input(name: str, seed: int) -> np.ndarray:
    """What the model's stage sees: the photo, the warped quadrat, or it with the grid removed."""
    scene = quadrat_image((1280, 960), seed)
    if name == "gridcorners":
        return scene.image
    view = warped_view(scene, 640)
    return view.image if name == "gridpose" else remove_string(view)


@pytest.mark.parametrize("name", list(MODELS))
def test_the_onnx_export_gives_the_same_answers(name, tmp_path, committed_models):
    weights = verified_models(committed_models)[name]
    onnx = export_onnx(weights, tmp_path)
    clients = [
        FunctionClient(HANDLERS[name], env={"MODEL_PATH": path, "DEVICE": "cpu"})
        for path in (weights, onnx)
    ]
    for seed in SEEDS:
        image = model_input(name, seed)
        torch_answer, onnx_answer = (
            response_json(client.call(cvat_request(image))) for client in clients
        )
        if name == "coralseg":
            height, width = image.shape[:2]
            reference = accuracy.shape_instances(torch_answer, height, width)
            exported = accuracy.shape_instances(onnx_answer, height, width)
            score = accuracy.score_corals(exported, reference, min_area=0)
            assert score.recall >= 0.9 and score.precision >= 0.9, (seed, score)
            continue
        points = 4 if name == "gridcorners" else 117
        first = accuracy.skeleton_of(torch_answer, points)
        second = accuracy.skeleton_of(onnx_answer, points)
        assert first is not None and second is not None
        side = float(np.ptp(first, axis=0).max())
        assert accuracy.point_errors(second, first, side).max() <= POINT_TOLERANCE[name]

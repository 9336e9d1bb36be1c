"""On a CUDA device the trained demo models answer as they do on the CPU, in the photo's pixels.

On a GPU the masks go back to the photo through torch on the device (the CPU path uses
OpenCV), the decode and the letterbox are the same, and the network's arithmetic differs by
rounding (FP32, and FP16 with ``HALF=true``). So the corners and grid points land within a
fraction of a photo pixel of the CPU's, and the corals score against the drawn truth as the
CPU's do, give or take one colony sitting right at the serving threshold. Skipped without
CUDA: these machines have none; the device tool's GPU runs these.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
from quadratseg_handlers.ops.template import CORNER_POINTS, GRID_POINTS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SIZE = (4000, 3000)
"""A full-size photo: the masks' way back to it is the longest."""


def client(handler, model: str, device: str, **settings: str) -> FunctionClient:
    """``handler`` serving demo ``model`` with its demo settings on ``device``."""
    return FunctionClient(handler, {**MODELS[model].settings, **settings, "DEVICE": device})


def answers(handler, model: str, image: np.ndarray, path, **settings: str) -> list:
    """The CPU's answer and the GPU's to one JPEG of ``image``."""
    body = {"image": encode_image(image, "JPEG")}
    return [
        response_json(client(handler, model, device, MODEL_PATH=str(path), **settings).call(body))
        for device in ("cpu", "cuda:0")
    ]


def test_corners_and_grid_points_on_cuda_land_where_the_cpus_do(committed_models):
    scene = quadrat_image(SIZE, TEST_SEEDS + 9)
    corners = [
        accuracy.skeleton_of(a, CORNER_POINTS)
        for a in answers(
            GridCornersHandler, "gridcorners", scene.image, committed_models / "gridcorners.pt"
        )
    ]
    assert corners[0] is not None and corners[1] is not None
    assert np.hypot(*(corners[0] - corners[1]).T).max() <= 1.0

    view = warped_view(scene, 1920)
    grids = [
        accuracy.skeleton_of(a, GRID_POINTS)
        for a in answers(GridPoseHandler, "gridpose", view.image, committed_models / "gridpose.pt")
    ]
    assert grids[0] is not None and grids[1] is not None
    assert np.hypot(*(grids[0] - grids[1]).T).max() <= 1.0


@pytest.mark.parametrize("half", ["false", "true"], ids=["fp32", "fp16"])
def test_corals_on_cuda_score_as_the_cpus_do(committed_models, half):
    scene = quadrat_image((1600, 1200), TEST_SEEDS + 9)
    view = warped_view(scene, 1920)
    clean = remove_string(view)
    truth = warped_masks(scene, view.transform, clean.shape[1::-1])
    side = quadrat_side(project(view.transform, scene.corners))
    height, width = clean.shape[:2]
    cpu, cuda = (
        accuracy.score_corals(
            accuracy.shape_instances(a, height, width), truth, int(CORAL_MIN_AREA * side * side)
        )
        for a in answers(
            CoralSegV4Handler, "coralseg", clean, committed_models / "coralseg.pt", HALF=half
        )
    )
    assert cpu.found >= 2, cpu
    assert abs(cpu.found - cuda.found) <= 1, (cpu, cuda)
    assert abs((cpu.shapes - cpu.true_shapes) - (cuda.shapes - cuda.true_shapes)) <= 1

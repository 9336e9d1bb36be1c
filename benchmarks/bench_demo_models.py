"""The trained demo models: each handler end to end vs its bare ultralytics predict.

Unlike the random-weight benchmarks, these models find what a real quadrat holds (4 corners,
117 grid points, a dozen colonies), so the handler's own steps (decode, template matching or
masks to shapes, JSON) are measured on realistic answers. Each model sees what its stage sees
in the pipeline, drawn from a held-out seed as a 1920 x 1920 JPEG: the photo (gridcorners), the
warped quadrat (gridpose), the warped quadrat with the grid removed (coralseg). Bare and
handler calls alternate; the overhead is the median of the per-pair ratios.
"""

from __future__ import annotations

import base64

import numpy as np

from quadratseg_handlers.handlers.grid import GridCornersHandler, GridPoseHandler
from quadratseg_handlers.handlers.yolo import CoralSegV4Handler
from quadratseg_handlers.local.demo_models import (
    DEFAULT_FOLDER,
    TEST_SEEDS,
    remove_string,
    verified_models,
    warped_view,
)
from quadratseg_handlers.local.synthetic import quadrat_image

from .timing import bare_vs_handler, jpeg_bytes

SIZE = 1920
HANDLERS = {
    "gridcorners": GridCornersHandler,
    "gridpose": GridPoseHandler,
    "coralseg": CoralSegV4Handler,
}


def stage_input(name: str) -> np.ndarray:
    """The 1920 x 1920 image the model's stage sees, from a held-out seed."""
    scene = quadrat_image(SIZE, TEST_SEEDS + 5000)
    if name == "gridcorners":
        return scene.image
    view = warped_view(scene, SIZE)
    return view.image if name == "gridpose" else remove_string(view)


def compare(name: str, imgsz: int, runs: int) -> str:
    """One table row: answer size, bare predict, handler, overhead."""
    handler = HANDLERS[name](
        model_path=verified_models(DEFAULT_FOLDER)[name], imgsz=imgsz, device="cpu"
    )
    handler.load()
    body = {"image": base64.b64encode(jpeg_bytes(stage_input(name))).decode()}
    paired = bare_vs_handler(handler, body, runs)
    shapes = paired["answer"]
    answer = (
        f"{len(shapes[0]['elements'])} points" if shapes and "elements" in shapes[0] else
        f"{len(shapes)} shapes"
    )  # fmt: skip
    return (
        f"| {name} | {imgsz} | {answer} | {paired['bare']:.0f} | "
        f"{paired['handler']:.0f} | {paired['overhead']:+.0f} % |"
    )


def run() -> str:
    """Return the Markdown section."""
    rows = [
        compare(name, imgsz, 7 if imgsz == 640 else 3) for imgsz in (640, 1920) for name in HANDLERS
    ]
    return (
        "## Trained demo models: handler vs bare predict\n\n"
        "The committed demo models (`demo-models/`, trained at 320 px) predicting at `IMGSZ` 640 "
        "and 1920 on a 1920 x 1920 JPEG of what their stage sees (held-out seed). The handler "
        "column includes base64 and JPEG decoding, the answer's shapes and the JSON; "
        "overhead = median of per-pair ratios - 1.\n\n"
        "| Model | imgsz | Answer | Bare predict ms | Handler ms | Overhead |\n"
        "| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows)
    )

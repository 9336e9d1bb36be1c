"""Every catalogue function with small real models: its settings and a request it answers.

The bad-input matrix and the fuzz test run each function as it is deployed (its handler class,
its function.yaml environment, tiny weights from ``demo/tinymodels``), with settings that keep
the models quick on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quadratseg_handlers.core.references import resolve
from quadratseg_handlers.core.request import cvat_request, encode_image
from quadratseg_handlers.demo.tinymodels import TINY_MODELS, tiny_model_files
from quadratseg_handlers.demo.tinymodels.coralscop import coralscop_files
from quadratseg_handlers.deploy.catalog import FUNCTIONS, FunctionSpec
from quadratseg_handlers.local.bundle import blobs_image

QUICK = {
    "DEVICE": "cpu",
    "IMGSZ": "64",
    "SAM_MODEL_TYPE": "auto",
    "SAM_POINTS_PER_SIDE": "2",
    "SAM_POINTS_PER_BATCH": "4",
    "SAM_CROP_N_LAYERS": "0",
}
"""Settings that keep the tiny models fast (each applied where the handler declares it)."""

SLOW = {"pth-mmseg-coralscopsegformer"}
"""Functions whose models take seconds per request on a CPU: their cases are marked slow."""


def function_params() -> list[Any]:
    """One pytest param per catalogue function (every one has tiny models or none)."""
    return [
        pytest.param(spec, id=spec.name, marks=[pytest.mark.slow] if spec.name in SLOW else [])
        for spec in FUNCTIONS.values()
    ]


def function_env(spec: FunctionSpec, folder: Path) -> dict[str, str]:
    """Tiny model files written into ``folder``, and the settings that point at them."""
    if spec.name in TINY_MODELS:
        files = tiny_model_files(spec.name, folder)
    elif spec.files:
        files = coralscop_files(folder)
    else:
        files = {}
    env = dict(spec.env)
    env.update({f.env: str(files[f.argument]) for f in spec.files if f.argument in files})
    declared = {s.name for s in resolve(spec.handler).declared_settings()}
    env.update({name: value for name, value in QUICK.items() if name in declared})
    return env


def function_image() -> np.ndarray:
    return blobs_image(64, 48, count=3, seed=1)


def valid_body(spec: FunctionSpec) -> dict[str, Any]:
    """A request the function answers 200 (an inpainter also gets a mask)."""
    image = function_image()
    body = cvat_request(image)
    if spec.kind == "inpainter":
        mask = np.zeros(image.shape[:2], dtype=np.uint8)
        mask[10:20, 10:30] = 255
        body["mask"] = encode_image(mask, "PNG")
    return body

"""A small handler written for the tests: bright regions -> CVAT rectangles.

It proves the base handler before any real model exists, and can be told to fail
(FAIL_WITH) so the tests can check how the base answers model errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import cv2
import numpy as np

from quadratseg_handlers import BaseHandler, Setting, cvat
from quadratseg_handlers import config as cfg

Box = tuple[int, int, int, int, float]


class CudaOutOfMemory(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError (same class name, same message)."""


CudaOutOfMemory.__name__ = "OutOfMemoryError"


class BrightBoxHandler(BaseHandler[list[Box]]):
    """Regions brighter than LEVEL become rectangles scored by mean brightness / 255."""

    function_name = "test-bright-boxes"
    uses_torch = False
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("LEVEL", cfg.number(0, 255, integer=True), 128, "grey level", "integer"),
        Setting("FAIL_WITH", cfg.choice("", "error", "oom"), "", "make predict fail"),
    )
    setting_defaults = {"CONF_THRESHOLD": 0.5}
    loads = 0

    def load_model(self) -> None:
        type(self).loads += 1
        self.level = int(self.config["LEVEL"])

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[list[Box]]:
        if self.config["FAIL_WITH"] == "error":
            raise ValueError("weights are corrupt\nsecond line")
        if self.config["FAIL_WITH"] == "oom":
            raise CudaOutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB")
        results = []
        for image in images:
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(
                (gray > self.level).astype(np.uint8)
            )
            boxes = []
            for index in range(1, count):
                x, y, w, h = (int(v) for v in stats[index, :4])
                score = float(gray[labels == index].mean()) / 255
                if score >= threshold:
                    boxes.append((x, y, x + w - 1, y + h - 1, score))
            results.append(boxes)
        return results

    def to_shapes(self, prediction: list[Box], image: np.ndarray) -> list[cvat.Shape]:
        return [cvat.rectangle("bright", box[:4], box[4]) for box in prediction]

    def labels(self) -> list[cvat.LabelSpec]:
        return [cvat.label_spec("bright", "rectangle")]

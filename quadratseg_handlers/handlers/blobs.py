"""An example handler with no weights: bright regions of an image become CVAT polygons.

It shows the shape of every model handler (settings, load, predict, labels) and drives the
foundation's demo and tests. Score = the region's mean brightness scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import cv2
import numpy as np

from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import Setting
from quadratseg_handlers.core.instances import Instance, InstanceHandler


class BlobHandler(InstanceHandler):
    """Pixels at or above BLOB_LEVEL, split into connected regions, one instance each."""

    function_name = "example-blobs"
    uses_torch = False
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("BLOB_LABEL", cfg.text, "blob", "Label name of the example blob handler."),
        Setting(
            "BLOB_LEVEL",
            cfg.number(1, 255, integer=True),
            200,
            "Grey level (1..255) at or above which a pixel belongs to a blob (example handler).",
            "integer",
        ),
    )

    def load_model(self) -> None:
        """Nothing to load: the label is the only 'class'."""
        self.class_names = [self.config["BLOB_LABEL"]]

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[list[Instance]]:
        """Threshold each image's grey levels and score each connected region by brightness."""
        level = int(self.config["BLOB_LEVEL"])
        results = []
        for image in images:
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            count, regions, stats, _ = cv2.connectedComponentsWithStats(
                (gray >= level).astype(np.uint8), connectivity=8
            )
            instances = []
            for index in range(1, count):
                x, y, w, h = (int(v) for v in stats[index, :4])
                crop = regions[y : y + h, x : x + w] == index
                score = float(gray[y : y + h, x : x + w][crop].mean()) / 255.0
                if score >= threshold:
                    instances.append(Instance(self.class_names[0], crop, score, origin=(x, y)))
            instances.sort(key=lambda inst: -inst.score)
            results.append(instances)
        return results

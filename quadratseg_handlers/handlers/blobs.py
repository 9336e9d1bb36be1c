"""An example handler with no weights: bright regions of an image become CVAT polygons.

It shows the shape of every model handler (settings, load, predict, labels) and drives the
foundation's demo and tests. Score = the region's mean brightness scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from quadratseg_handlers.core.config import setting
from quadratseg_handlers.core.instances import Instance, InstanceHandler, SegmentationSettings


@dataclass(frozen=True)
class BlobSettings(SegmentationSettings):
    """The blob label and the grey level that makes a blob."""

    blob_label: str = setting("blob", "Label name of the example blob handler.")
    blob_level: int = setting(
        200,
        "Grey level (1..255) at or above which a pixel belongs to a blob (example handler).",
        low=1,
        high=255,
    )


class BlobHandler(InstanceHandler):
    """Pixels at or above BLOB_LEVEL, split into connected regions, one instance each."""

    function_name = "example-blobs"
    uses_torch = False
    settings_class = BlobSettings
    settings: BlobSettings

    def load_model(self) -> None:
        """Nothing to load: the label is the only 'class'."""
        self.class_names = [self.settings.blob_label]

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[list[Instance]]:
        """Threshold each image's grey levels and score each connected region by brightness."""
        level = self.settings.blob_level
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

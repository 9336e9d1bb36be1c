"""pth-yolo-coralsegv4 / pth-yolo-coralsegbanggai: coral instances from a YOLO segmentation model.

ultralytics loads and predicts (:mod:`quadratseg_handlers.backends.ultralytics`); each
detection's mask comes back in original-image pixels and the shapes are
:class:`~quadratseg_handlers.core.instances.InstanceHandler`'s polygons or CVAT masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from quadratseg_handlers.backends.ultralytics import YoloSettings, load_configured_yolo
from quadratseg_handlers.backends.ultralytics_results import result_instances
from quadratseg_handlers.core.instances import Instance, InstanceHandler, SegmentationSettings


@dataclass(frozen=True)
class YoloSegSettings(YoloSettings, SegmentationSettings):
    """The common settings, then how instances become shapes, then the YOLO model's."""


class YoloSegHandler(InstanceHandler):
    """A YOLO instance segmentation model (task ``segment``): one instance per detection."""

    function_name = "pth-yolo-coralseg"
    settings_class = YoloSegSettings
    settings: YoloSegSettings
    tasks: ClassVar[tuple[str, ...]] = ("segment",)

    def load_model(self) -> None:
        """Load MODEL_PATH, check it segments, fix the predict settings and warm it up."""
        self.yolo = load_configured_yolo(self.settings, self.tasks, self.device)
        self.class_names = self.yolo.names

    def decode_size(self) -> int | None:
        """The network input's long side: masks map straight from it to the photo."""
        return self.yolo.decode_side

    def model_family(self) -> str | None:
        """The weights' architecture (``YOLO11n-seg``), read from the file."""
        return self.yolo.family

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[list[Instance]]:
        """One batched ultralytics predict; instances in original-image pixels."""
        results = self.yolo.predict(images, threshold)
        return [result_instances(r, image) for r, image in zip(results, images, strict=True)]


class CoralSegV4Handler(YoloSegHandler):
    """CRIOBE fine-grained coral segmentation (the CRIOBE model has 16 genera; labels come
    from the weights)."""

    function_name = "pth-yolo-coralsegv4"


class CoralSegBanggaiHandler(YoloSegHandler):
    """Banggai extended coral segmentation (the Banggai model has 10 classes; labels come from
    the weights)."""

    function_name = "pth-yolo-coralsegbanggai"

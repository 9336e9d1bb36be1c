"""pth-yolo-coralsegv4 as a cvat-sdk auto-annotation function: coral genera as polygons (or masks)
with YOLO11-seg.

``cvat-cli task auto-annotate TASK_ID --function-module quadratseg_handlers.sdk.coralsegv4
-p model_path=str:runs/train/weights/best.pt``:
the parameters are the function's settings in lower case (docs/cvat-sdk.md).
"""

from __future__ import annotations

from typing import Any

from quadratseg_handlers.sdk.function import DetectorFunction, create_or_exit


def create(**parameters: Any) -> DetectorFunction:
    """cvat-cli's entry: the loaded function; a bad parameter exits with one line."""
    return create_or_exit("coralsegv4", parameters)

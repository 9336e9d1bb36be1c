"""example-blobs as a cvat-sdk auto-annotation function: bright regions as polygons (the example
function, no weights).

``cvat-cli task auto-annotate TASK_ID --function-module quadratseg_handlers.sdk.blobs
-p blob_level=int:200``:
the parameters are the function's settings in lower case (docs/cvat-sdk.md).
"""

from __future__ import annotations

from typing import Any

from quadratseg_handlers.sdk.function import DetectorFunction, create_or_exit


def create(**parameters: Any) -> DetectorFunction:
    """cvat-cli's entry: the loaded function; a bad parameter exits with one line."""
    return create_or_exit("blobs", parameters)

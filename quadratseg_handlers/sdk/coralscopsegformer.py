"""pth-mmseg-coralscopsegformer as a cvat-sdk auto-annotation function: coral instances from
CoralSCoP labelled by a SegFormer.

``cvat-cli task auto-annotate TASK_ID --function-module quadratseg_handlers.sdk.coralscopsegformer
-p segformer_weights=str:best_segformer.pth
-p segformer_config=str:best_segformer_config.py
-p sam_weights=str:vit_b_coralscop.pth``:
the parameters are the function's settings in lower case (docs/cvat-sdk.md).
"""

from __future__ import annotations

from typing import Any

from quadratseg_handlers.sdk.function import DetectorFunction, create_or_exit


def create(**parameters: Any) -> DetectorFunction:
    """cvat-cli's entry: the loaded function; a bad parameter exits with one line."""
    return create_or_exit("coralscopsegformer", parameters)

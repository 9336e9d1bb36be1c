"""The pth-mmseg-coralscopsegformer bundle's files with tiny models (tests, demo, packaging).

The SegFormer config names a custom backbone module written beside it; ship that module with
``quadratseg package --source`` (``source`` below). The tiny SAM needs ``SAM_MODEL_TYPE=auto``.
"""

from __future__ import annotations

from pathlib import Path

from quadratseg_handlers.demo.tinymodels.sam import tiny_sam
from quadratseg_handlers.demo.tinymodels.segformer import MODULE_NAME, tiny_segformer


def coralscop_files(folder: str | Path) -> dict[str, Path]:
    """Tiny SegFormer config + checkpoint and tiny CoralSCoP-style SAM, by file argument."""
    directory = Path(folder)
    segformer = tiny_segformer(directory / "segformer")
    return {
        "segformer-weights": segformer.weights,
        "segformer-config": segformer.config,
        "sam-weights": tiny_sam(directory / "vit_b_coralscop.pth"),
    }


def source(files: dict[str, Path]) -> Path:
    """The custom backbone module the tiny config imports (``--source``)."""
    return files["segformer-config"].parent / f"{MODULE_NAME}.py"

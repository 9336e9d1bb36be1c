"""Builders of small real models (random weights) saved as real checkpoint files.

Tests, the demo and packaging tests load them through the same code path as real weights.
:data:`TINY_MODELS` says which builder writes each catalogued function's files; reading it
imports no model library (each builder imports its own when called).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from quadratseg_handlers.demo.tinymodels.yolo import (
    coral_segmentation_files,
    grid_corner_files,
    grid_point_files,
)

TinyModel = Callable[[Path], Mapping[str, Path]]
"""Writes small real weight files into a folder; returns them by file argument name."""


def lama_files(folder: str | Path) -> dict[str, Path]:
    """The pth-lama bundle's files with a tiny model: ``{"lama-model": .../big-lama.pt}``."""
    from quadratseg_handlers.demo.tinymodels.lama import tiny_lama

    return {"lama-model": tiny_lama(Path(folder) / "big-lama.pt")}


TINY_MODELS: dict[str, TinyModel] = {
    "pth-yolo-coralsegv4": coral_segmentation_files,
    "pth-yolo-coralsegbanggai": coral_segmentation_files,
    "pth-yolo-gridcorners": grid_corner_files,
    "pth-yolo-gridpose": grid_point_files,
    "pth-lama": lama_files,
}
"""Function name -> the builder of its bundle's files with tiny models. Not here: example-blobs
(no files) and pth-mmseg-coralscopsegformer, whose config imports a module the bundle must ship
by ``--source`` (:mod:`.coralscop` writes both)."""


def tiny_model_files(function: str, folder: Path) -> dict[str, Path]:
    """The files of ``function`` (its full name) with tiny models, written into ``folder``."""
    builder = TINY_MODELS.get(function)
    if builder is None:
        raise ValueError(
            f"{function} has no tiny-model builder; functions with one: {', '.join(TINY_MODELS)}"
        )
    return dict(builder(folder))

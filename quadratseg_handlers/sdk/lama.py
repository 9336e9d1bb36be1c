"""pth-lama (grid removal) is not a cvat-sdk auto-annotation function; what fits instead.

A cvat-sdk detection function answers shapes for a task's frames; grid removal answers a new
image, which neither ``task auto-annotate`` nor an agent can upload. ``--function-module
quadratseg_handlers.sdk.lama`` therefore exits with one line saying so. What fits is
:func:`clean_images`: the grid points found by the gridpose function (the SDK function's own
answer), the string painted out by the grid-removal handler, each cleaned photo written as a
PNG for a new CVAT task (docs/cvat-sdk.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from quadratseg_handlers.core.contract import ImageHandler
from quadratseg_handlers.deploy.archive import write_atomically
from quadratseg_handlers.sdk.function import DetectorFunction, create_or_exit


def create(**parameters: Any) -> DetectorFunction:
    """cvat-cli's entry: always exits with one line (pth-lama is not a detector)."""
    return create_or_exit("lama", parameters)


def clean_images(
    photos: Iterable[str | Path],
    folder: str | Path,
    grid: DetectorFunction,
    remover: ImageHandler,
    *,
    force: bool = False,
) -> dict[Path, Path | None]:
    """Each photo with its grid string painted out, written as ``folder/<stem>.png``.

    ``grid`` is the gridpose function (its skeleton gives the string's keypoints), ``remover``
    a grid-removal handler (:class:`~quadratseg_handlers.handlers.lama.LamaHandler`). A photo
    without a grid skeleton is left out (None in the result). Each file is written whole or
    not at all; an existing one is an error unless ``force``.
    """
    output = Path(folder)
    output.mkdir(parents=True, exist_ok=True)
    written: dict[Path, Path | None] = {}
    for photo in map(Path, photos):
        with Image.open(photo) as opened:
            opened.load()
            skeletons = [s for s in grid.shapes(opened) if s["type"] == "skeleton"]
            if not skeletons:
                written[photo] = None
                continue
            cleaned = Image.fromarray(remover.annotate(opened, keypoints=skeletons[0]))
        target = output / f"{photo.stem}.png"
        write_atomically(target, _png_writer(cleaned), force=force)
        written[photo] = target
    return written


def _png_writer(image: Image.Image) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        image.save(path, "PNG")

    return write

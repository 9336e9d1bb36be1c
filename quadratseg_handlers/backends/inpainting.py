"""Inpainting backends and the compositing that keeps every unmasked pixel as it was.

A backend is a callable ``(rgb, mask) -> rgb`` of the same size: :class:`LamaBackend` runs a
big-lama TorchScript model through ``simple-lama-inpainting``, :class:`OpenCvBackend` runs
``cv2.inpaint`` (no weights). :func:`inpaint` calls one on the whole image or, with a tile
size, only on windows around the masked pixels, and copies back only the masked pixels, so
the rest of the image is returned bit-identical whatever the backend does to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from quadratseg_handlers.backends.checkpoints import torchscript_problem
from quadratseg_handlers.core.config import temporary_environment
from quadratseg_handlers.core.messages import first_line

Backend = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(H x W x 3 uint8 RGB, H x W bool mask) -> H x W x 3 uint8 RGB, masked pixels painted."""

PROBE_SIZE = 64
"""Side of the image a LaMa model must inpaint at load time to be accepted."""


class LamaBackend:
    """big-lama (TorchScript) through ``simple_lama_inpainting.SimpleLama``.

    SimpleLama reads the model path from the LAMA_MODEL environment variable (and downloads
    from the internet when it is unset), so the path is set for the construction only.
    SimpleLama pads both sides to a multiple of 8 (mirroring the border) and returns the
    padded result: the padding is cropped off here.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        """Load the model on ``device`` and check it on a small image.

        Raises FileNotFoundError for a missing file and ValueError for a file that is not a
        TorchScript model with big-lama's ``forward(image, mask)``, or whose code calls torch's
        file operations (:func:`torchscript_problem`).
        """
        import torch
        from simple_lama_inpainting import SimpleLama

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"file not found: {self.path}")
        problem = torchscript_problem(self.path)
        if problem:
            raise ValueError(problem)
        with temporary_environment({"LAMA_MODEL": str(self.path)}):
            try:
                self.lama = SimpleLama(device=torch.device(device))
            except (RuntimeError, ValueError, OSError) as exc:
                reason = first_line(exc, 300, type(exc).__name__)
                raise ValueError(f"not a TorchScript model: {reason}") from None
        probe = np.zeros((PROBE_SIZE, PROBE_SIZE, 3), dtype=np.uint8)
        probe_mask = np.zeros((PROBE_SIZE, PROBE_SIZE), dtype=bool)
        probe_mask[PROBE_SIZE // 4 : PROBE_SIZE // 2] = True
        try:
            shape = self(probe, probe_mask).shape
        except Exception as exc:
            reason = first_line(exc, 300, type(exc).__name__)
            raise ValueError(
                f"the model fails on a {PROBE_SIZE} x {PROBE_SIZE} test image: {reason}"
            ) from None
        if shape != probe.shape:
            raise ValueError(
                f"the model returns {shape} for a {probe.shape} image; expected big-lama's "
                "forward(image [1,3,H,W], mask [1,1,H,W]) -> [1,3,H,W]"
            )

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The model's output for the whole image, cropped back to the image size."""
        height, width = mask.shape
        painted = np.asarray(self.lama(image, mask.astype(np.uint8) * 255))
        return painted[:height, :width]


class OpenCvBackend:
    """``cv2.inpaint`` (Telea's fast marching method): no weights, no torch, CPU only."""

    def __init__(self, radius: int = 3) -> None:
        self.radius = radius

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Inpaint the masked pixels from a neighbourhood of ``radius`` pixels."""
        return cv2.inpaint(image, mask.astype(np.uint8), self.radius, cv2.INPAINT_TELEA)


def composite(image: np.ndarray, mask: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """A copy of ``image`` whose masked pixels (only) are taken from ``painted``."""
    result = image.copy()
    result[mask] = painted[mask]
    return result


def tiles(
    mask: np.ndarray, tile_size: int, margin: int
) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """The (cell, window) slice pairs of the tile_size cells that hold masked pixels.

    Cells partition the image; each window is its cell grown by ``margin`` pixels of context
    on every side (clipped to the image). Cells without a masked pixel are skipped.
    """
    height, width = mask.shape
    for top in range(0, height, tile_size):
        for left in range(0, width, tile_size):
            cell = (
                slice(top, min(top + tile_size, height)),
                slice(left, min(left + tile_size, width)),
            )
            if not mask[cell].any():
                continue
            window = (
                slice(max(top - margin, 0), min(top + tile_size + margin, height)),
                slice(max(left - margin, 0), min(left + tile_size + margin, width)),
            )
            yield cell, window


def inpaint(
    backend: Backend,
    image: np.ndarray,
    mask: np.ndarray,
    tile_size: int = 0,
    margin: int = 0,
) -> np.ndarray:
    """Paint out the masked pixels of an RGB image; every other pixel comes back unchanged.

    ``tile_size`` 0 runs the backend once on the whole image. A positive ``tile_size`` runs it
    on each tile_size cell that holds masked pixels, seen through a window with ``margin``
    pixels of context, which bounds the memory a call needs whatever the image size.
    """
    if not mask.any():
        return image.copy()
    if tile_size <= 0:
        return composite(image, mask, backend(image, mask))
    result = image.copy()
    for cell, window in tiles(mask, tile_size, margin):
        painted = backend(image[window], mask[window])
        inner = (
            slice(cell[0].start - window[0].start, cell[0].stop - window[0].start),
            slice(cell[1].start - window[1].start, cell[1].stop - window[1].start),
        )
        result[cell] = composite(image[cell], mask[cell], painted[inner])
    return result

"""Memory: what decoding an image takes, recognising a request that ran out of it, and
giving it back after a large one.

Decoding a 100-megapixel image and running a model on it grows the worker's heap by gigabytes;
CPython and glibc keep most of those pages after the arrays are freed, so one large request
would leave the worker holding them until it is restarted. :func:`release_memory` collects
garbage and asks glibc to return free heap pages to the system (``malloc_trim``); elsewhere
(macOS, musl) only the collection runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

from PIL import Image

LARGE_REQUEST_PIXELS = 16_000_000
"""Requests of at least this many pixels (all images together) give memory back afterwards;
smaller ones leave the heap as it is, which is faster for the next request of the same size."""


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def release_memory() -> bool:
    """Collect garbage and return free heap pages to the system; True when glibc trimmed."""
    gc.collect()
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))


def is_out_of_memory(exc: BaseException) -> bool:
    """True for host or CUDA out-of-memory errors (without importing torch)."""
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def empty_cuda_cache() -> None:
    """Return the CUDA allocator's cached blocks after running out of memory (no-op without
    torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
"""Bytes per pixel PIL holds a decoded image of these modes in; every other mode (RGB, RGBA,
CMYK, LA, I, F...) takes 4."""

RGB_BYTES = 3
"""Bytes per pixel of the RGB array every decode ends in."""


WIDE_GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
"""16- and 32-bit grey: their levels are read through a copy of the image before they are
stretched to 8 bits, so they count twice."""


def decode_memory(image: Image.Image) -> int:
    """About the most bytes decoding ``image`` takes, from its header: the decoded image as
    PIL holds it (1 to 4 bytes a pixel, by mode and bit depth; twice for 16- and 32-bit
    grey) and the RGB array it becomes. The faster decoders (OpenCV, libjpeg-turbo) take
    less; measured, a 100-megapixel 16-bit grey PNG peaks at 900 MB against the 700 counted."""
    held = MODE_BYTES.get(image.mode, 4) * (2 if image.mode in WIDE_GREY_MODES else 1)
    return image.width * image.height * (held + RGB_BYTES)

"""Memory: recognising a request that ran out of it, and giving it back after a large one.

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

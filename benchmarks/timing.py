"""Timing helpers shared by the benchmarks: repeated runs, medians, percentiles, synthetic JPEGs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

QUADRATS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "quadrats"


def measure(function: Callable[[], object], runs: int = 5, warmup: int = 1) -> list[float]:
    """Wall times in seconds of ``runs`` calls after ``warmup`` uncounted ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def median_ms(times: list[float]) -> float:
    """Median of a list of seconds, in milliseconds."""
    return statistics.median(times) * 1000


def interleaved(
    functions: dict[str, Callable[[], object]], runs: int = 5
) -> dict[str, list[float]]:
    """Time several functions side by side, alternating calls so machine noise hits all alike."""
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return times


def quadrat_photos(size: int = 1920) -> list[tuple[str, np.ndarray]]:
    """The real quadrat photos from ../shared when present, resized to size x size (RGB)."""
    photos = []
    for path in sorted(QUADRATS.glob("*.jpg")):
        bgr = cv2.imread(str(path))
        if bgr is not None:
            resized = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_CUBIC)
            photos.append((path.name, cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)))
    return photos


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    """An RGB array encoded as JPEG."""
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()

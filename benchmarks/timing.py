"""Timing helpers shared by the benchmarks: repeated runs, medians, percentiles, synthetic JPEGs."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.core.request import image_bytes

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
    """An RGB array encoded as JPEG (the library's encoder)."""
    return image_bytes(image, "jpeg", quality)


def bare_vs_handler(handler: Any, body: dict[str, str], runs: int) -> dict[str, Any]:
    """A YOLO handler end to end vs its bare ultralytics predict on the same decoded image.

    Calls alternate; the overhead is the median of the per-pair ratios (each handler call timed
    right after a bare call), which a busy shared machine disturbs less than a ratio of medians.
    Returns the medians in ms, the overhead in %, and the handler's answer.
    """
    from quadratseg_handlers.core.request import bgr_pixels, decode_image
    from quadratseg_handlers.local.harness import make_context, make_event

    event, context = make_event(body), make_context()
    bgr = bgr_pixels(decode_image(body["image"], 10**9))
    options = handler.yolo.options
    times = interleaved(
        {
            "bare": lambda: handler.yolo.model.predict(bgr, conf=0.25, verbose=False, **options),
            "handler": lambda: handler.handle(context, event),
        },
        runs=runs,
    )
    ratios = [h / b for b, h in zip(times["bare"], times["handler"], strict=True)]
    return {
        "bare": median_ms(times["bare"]),
        "handler": median_ms(times["handler"]),
        "overhead": 100 * (statistics.median(ratios) - 1),
        "answer": json.loads(handler.handle(context, event).body),
    }

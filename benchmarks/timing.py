"""Timing helpers shared by the benchmarks: repeated runs, medians, percentiles, synthetic JPEGs."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.core.request import image_bytes

QUADRATS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "quadrats"


def bench_device() -> str:
    """The torch device the benchmarks run their models on: ``BENCH_DEVICE``, read as a
    function's ``DEVICE`` setting (``cpu`` by default; ``auto`` is cuda:0 when present)."""
    from quadratseg_handlers.core.config import ConfigError, device, resolve_device

    value = os.environ.get("BENCH_DEVICE", "cpu")
    try:
        return resolve_device(device(value))
    except ConfigError as error:
        raise ConfigError(f"BENCH_DEVICE={value!r}: {error}") from None


def on_gpu() -> bool:
    """Whether :func:`bench_device` is a CUDA device."""
    return bench_device().startswith("cuda")


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
    from quadratseg_handlers.core import runtime
    from quadratseg_handlers.core.request import bgr_pixels, decode_image
    from quadratseg_handlers.local.harness import make_context, make_event

    event, context = make_event(body), make_context()
    bgr = bgr_pixels(decode_image(body["image"], 10**9))
    options = handler.yolo.options
    times = interleaved(
        {
            "bare": lambda: handler.yolo.model.predict(bgr, conf=0.25, verbose=False, **options),
            "handler": lambda: runtime.respond(handler, context, event),
        },
        runs=runs,
    )
    ratios = [h / b for b, h in zip(times["bare"], times["handler"], strict=True)]
    return {
        "bare": median_ms(times["bare"]),
        "handler": median_ms(times["handler"]),
        "overhead": 100 * (statistics.median(ratios) - 1),
        "answer": json.loads(runtime.respond(handler, context, event).body),
    }


def started_function(name: str, env: dict[str, str]) -> tuple[Any, float]:
    """Function ``name`` started through real Nuclio objects with ``env`` (``init_context``
    run), and the seconds its start took."""
    from quadratseg_handlers.deploy.catalog import handler_class
    from quadratseg_handlers.local.harness import FunctionClient

    started = time.perf_counter()
    client = FunctionClient(handler_class(name), env)
    client.start()
    return client, time.perf_counter() - started


def timed_requests(client: Any, event: Any, runs: int) -> tuple[list[float], Any]:
    """Seconds of ``runs`` requests after one uncounted, and the last response; any answer
    but HTTP 200 is an error."""
    times = []
    for _ in range(runs + 1):
        begun = time.perf_counter()
        response = client.call(event)
        times.append(time.perf_counter() - begun)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code} {response.body!r}")
    return times[1:], response


def in_fresh_process(module: str, name: str) -> dict[str, Any] | None:
    """``python -m benchmarks.MODULE NAME`` in a fresh process: the JSON of its last line, or
    None when it failed (its error output then goes to stderr)."""
    child = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", name],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    if child.returncode != 0:
        print(child.stderr[-4000:], file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def stage_view(side: int) -> Any:
    """The held-out quadrat of the stage benchmarks (seed TEST_SEEDS + 5000) warped upright,
    ``side`` pixels square: what gridpose and LaMa see, and, its string removed, the corals'."""
    from quadratseg_handlers.demo.synthetic import quadrat_image
    from quadratseg_handlers.demo.training import TEST_SEEDS
    from quadratseg_handlers.demo.warped import warped_view

    return warped_view(quadrat_image((1600, 1200), TEST_SEEDS + 5000), side)


def stage_input(stage: str, size: tuple[int, int]) -> np.ndarray:
    """The ``size`` (width, height) image a stage ("gridcorners", "gridpose" or "coralseg")
    sees: the photo, the warped quadrat, or the warped quadrat with its string removed. The
    warped quadrat is square; for a non-square size it is stretched to fill the frame."""
    from quadratseg_handlers.demo.synthetic import quadrat_image
    from quadratseg_handlers.demo.training import TEST_SEEDS
    from quadratseg_handlers.demo.warped import remove_string

    if stage == "gridcorners":
        return quadrat_image(size, TEST_SEEDS + 5000).image
    view = stage_view(max(size))
    image = view.image if stage == "gridpose" else remove_string(view)
    if size[0] == size[1]:
        return image
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))

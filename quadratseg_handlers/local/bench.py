"""The deployment guide's benchmark: time a function over HTTP, as CVAT would call it.

Requests cycle over the test images (bodies encoded once, beforehand, so encoding is not
timed), ``concurrency`` at a time; warm-up requests run first and are not counted. The report
is the guide's table (model, image size, average, p50, p95, throughput in images per minute)
and, on demand, the same figures as JSON.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from quadratseg_handlers.local.client import Answer, FunctionError, HttpFunction


@dataclass
class BenchResult:
    """Timings of the counted requests and what went wrong."""

    model: str
    url: str
    image_size: str
    images: int
    concurrency: int
    warmup: int
    times: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def succeeded(self) -> int:
        return len(self.times)

    def stats(self) -> dict[str, float]:
        """Average, percentiles (seconds) and throughput (images per minute) of the successes."""
        if not self.times:
            return {}
        times = np.asarray(self.times)
        return {
            "avg_s": float(times.mean()),
            "p50_s": float(np.percentile(times, 50)),
            "p95_s": float(np.percentile(times, 95)),
            "min_s": float(times.min()),
            "max_s": float(times.max()),
            "throughput_img_per_min": self.succeeded / self.wall_seconds * 60.0
            if self.wall_seconds > 0
            else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything measured, for ``--json``."""
        return {
            "model": self.model,
            "url": self.url,
            "image_size": self.image_size,
            "images": self.images,
            "num_runs": self.succeeded + sum(self.errors.values()),
            "concurrency": self.concurrency,
            "warmup": self.warmup,
            "succeeded": self.succeeded,
            "errors": dict(self.errors),
            "wall_s": self.wall_seconds,
            **self.stats(),
            "times_s": self.times,
        }


def size_text(sizes_wh: Sequence[tuple[int, int]]) -> str:
    """``1920x1920`` when all images share a (width, height), else the smallest and largest."""
    unique = sorted(set(sizes_wh), key=lambda s: (s[0] * s[1], s))
    if len(unique) == 1:
        return f"{unique[0][0]}x{unique[0][1]}"
    return f"{unique[0][0]}x{unique[0][1]} .. {unique[-1][0]}x{unique[-1][1]}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _rate(per_minute: float) -> str:
    return f"{per_minute:.0f}" if per_minute >= 10 else f"{per_minute:.1f}"


def table(result: BenchResult) -> str:
    """The guide's table, with p50 and p95 added, as Markdown."""
    stats = result.stats()
    head = "| Model | Image Size | Avg Time | p50 | p95 | Throughput |\n|---|---|---|---|---|---|"
    if not stats:
        return f"{head}\n| {result.model} | {result.image_size} | - | - | - | 0 img/min |"
    return (
        f"{head}\n| {result.model} | {result.image_size} | {_seconds(stats['avg_s'])} | "
        f"{_seconds(stats['p50_s'])} | {_seconds(stats['p95_s'])} | "
        f"{_rate(stats['throughput_img_per_min'])} img/min |"
    )


class ProgressBar:
    """A one-line progress bar on a terminal; a line per tenth elsewhere (logs stay readable)."""

    def __init__(self, total: int, stream: TextIO | None = None, label: str = "bench") -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()
        self.last_tenth = 0

    def update(self, done: int) -> None:
        """Show ``done`` of ``total``, with the rate so far."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = done / elapsed * 60
        if self.tty:
            width = 30
            filled = int(width * done / self.total)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                f"{_rate(rate)} img/min"
            )
            if done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        tenth = done * 10 // self.total
        if tenth > self.last_tenth:
            self.last_tenth = tenth
            print(f"{self.label}: {done}/{self.total} ({_rate(rate)} img/min)", file=self.stream)


def run(
    function: HttpFunction,
    bodies: Sequence[bytes],
    num_runs: int,
    concurrency: int = 1,
    warmup: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> BenchResult:
    """Send ``warmup`` uncounted then ``num_runs`` counted requests, ``concurrency`` at a time.

    Failed requests (non-200 answers) are counted in ``errors`` by status and not timed.
    """
    if num_runs < 1 or concurrency < 1:
        raise ValueError("num_runs and concurrency must be at least 1")
    warmup = concurrency if warmup is None else warmup
    result = BenchResult("", function.url, "", len(bodies), concurrency, warmup)
    lock = threading.Lock()
    done = 0

    def send(index: int) -> Answer:
        return function.post(bodies[index % len(bodies)])

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, range(warmup)))

        def counted(index: int) -> None:
            nonlocal done
            try:
                answer: Answer | None = send(index)
                problem = ""
            except FunctionError as exc:
                answer, problem = None, str(exc)
            with lock:
                if answer is not None and answer.status == 200:
                    result.times.append(answer.seconds)
                elif answer is not None:
                    result.errors[f"HTTP {answer.status}: {answer.error_text()[:80]}"] += 1
                else:
                    result.errors[problem[:100]] += 1
                done += 1
                if progress is not None:
                    progress(done)

        started = time.perf_counter()
        list(pool.map(counted, range(num_runs)))
        result.wall_seconds = time.perf_counter() - started
    return result

"""Grid functions: template matching of the 117 grid points and 4 corners, and the gridpose
handler end to end at 1920 x 1920 against the bare YOLO predict it wraps.

Matching runs on synthetic detections with known truth (synthetic_detections: rotation up to
+-25 degrees, perspective, scale, sigma 2 px at 1920 px, 20 % missed, 10 % spurious), so the
accuracy is measured as well as the time. The end-to-end model is a YOLO11n detect network
with random weights whose every anchor fires (300 boxes, the most it keeps), loaded from a
real checkpoint through MODEL_PATH.
"""

from __future__ import annotations

import base64
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from quadratseg_handlers.backends.ultralytics_results import result_points
from quadratseg_handlers.core.config import temporary_environment
from quadratseg_handlers.core.request import decode_image
from quadratseg_handlers.demo.synthetic import quadrat_image, synthetic_detections
from quadratseg_handlers.demo.tinymodels.yolo import tiny_yolo
from quadratseg_handlers.handlers.grid import GridPoseHandler
from quadratseg_handlers.local.harness import FunctionClient, make_event
from quadratseg_handlers.ops.matching import match_points
from quadratseg_handlers.ops.template import corner_template, grid_template

from .timing import interleaved, jpeg_bytes, median_ms, quadrat_photos

SAMPLES = 60
"""Synthetic views per template."""


def _matching_rows() -> list[str]:
    rows = []
    cases = (
        ("117 grid points", grid_template(), 0.12, 20),
        ("4 corners", corner_template(), 0.3, 3),
    )
    for name, template, max_cost, min_matches in cases:
        times, correct, fills = [], [], []
        for seed in range(SAMPLES):
            sample = synthetic_detections(template, seed=seed)
            runs = []
            for _ in range(5):
                started = time.perf_counter()
                result = match_points(
                    sample.detections,
                    template,
                    (1920, 1920),
                    scores=sample.scores,
                    max_cost=max_cost,
                    min_matches=min_matches,
                )
                runs.append(time.perf_counter() - started)
            times.append(min(runs))
            truth = np.full(len(template), -1)
            for index, owner in enumerate(sample.truth):
                if owner >= 0:
                    truth[owner] = index
            correct.append(float(np.mean(result.detection == truth)) if result.ok else 0.0)
            if result.ok and result.filled.any():
                gaps = result.points[result.filled] - sample.true_points[result.filled]
                fills.append(float(np.linalg.norm(gaps, axis=1).mean()))
        fill = f"{statistics.mean(fills):.2f}" if fills else "-"
        rows.append(
            f"| {name} | {statistics.median(times) * 1000:.2f} | "
            f"{float(np.percentile(times, 95)) * 1000:.2f} | {100 * statistics.mean(correct):.2f} "
            f"| {fill} |"
        )
    return rows


def _end_to_end_rows() -> tuple[str, list[str]]:
    photos = quadrat_photos(1920) or [("synthetic quadrat", quadrat_image(1920, seed=1).image)]
    name, image = photos[0]
    data = jpeg_bytes(image)
    text = base64.b64encode(data).decode()
    event = make_event({"image": text})
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as folder:
        path = tiny_yolo(Path(folder) / "best.pt", "detect", ["grid_point"], deterministic=False)
        with temporary_environment({"MODEL_PATH": str(path), "DEVICE": "cpu"}):
            client = FunctionClient(GridPoseHandler)
            handler = client.start()
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            model, options = handler.yolo.model, {**handler.yolo.options, "verbose": False}
            found = result_points(model.predict(bgr, conf=0.25, **options)[0], 0.25)
            template = grid_template()
            times = interleaved(
                {
                    "bare `model.predict` (decoded BGR array)": lambda: model.predict(
                        bgr, conf=0.25, **options
                    ),
                    "handler end to end (JPEG request -> JSON)": lambda: client.call(event),
                    "of which: base64 + JPEG decode": lambda: decode_image(text, 10**9),
                    f"of which: matching the model's {len(found.points)} points": lambda: (
                        match_points(
                            found.points,
                            template,
                            (1920, 1920),
                            scores=found.scores,
                            min_matches=20,
                        )
                    ),
                },
                runs=5,
            )
    medians = {label: median_ms(values) for label, values in times.items()}
    bare_ms, handler_ms = list(medians.values())[:2]
    rows = [f"| {label} | {value:.1f} |" for label, value in medians.items()]
    rows.insert(
        2,
        f"| overhead over the bare predict | {handler_ms - bare_ms:.1f} "
        f"({100 * (handler_ms / bare_ms - 1):.0f} %) |",
    )
    return f"{name}, {len(data) / 1e6:.1f} MB JPEG", rows


def run() -> str:
    """Return the Markdown section."""
    matching = "\n".join(_matching_rows())
    source, end_to_end = _end_to_end_rows()
    return (
        "## Grid functions (template matching)\n\n"
        f"`match_points` on {SAMPLES} synthetic views per template (rotation up to +-25 "
        "degrees, perspective, scale 0.55-0.9 of the image, sigma 2 px at 1920 px, 20 % of the "
        "points missed, 10 % spurious); time is the best of 5 runs per view. Correct = template "
        "points answered with their true detection, or filled when it was missed. Target: "
        "< 5 ms for 117 points.\n\n"
        "| Template | Median ms | p95 ms | Correct % | Filled point error px |\n"
        "| --- | --- | --- | --- | --- |\n" + matching + "\n\n"
        "A missed corner is placed by the affine map through the other three (a homography "
        "needs four points), so with perspective it lands off by the perspective itself; a "
        "missed grid point is placed by the homography of about 90 others.\n\n"
        f"pth-yolo-gridpose end to end on a 1920 x 1920 image ({source}), YOLO11n detect with "
        "random weights at its checkpoint size (640), 300 boxes per image, CPU; median of 5 "
        "interleaved runs. The random network's boxes sit on its anchor lattice, so matching "
        "them is harder than matching a trained model's grid points.\n\n"
        "| Step | Median ms |\n| --- | --- |\n" + "\n".join(end_to_end)
    )

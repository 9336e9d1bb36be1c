"""YOLO segmentation: the handler end to end vs the bare ultralytics predict, and shape cost.

The model is YOLO11n-seg as ``quadratseg_handlers.demo.tinymodels`` builds it (the real layers,
random weights, every anchor firing), so each 1920 x 1920 frame yields the many instances a
dense quadrat does, whatever its content. Both sides get the same decoded array in the same
run, interleaved; the handler also decodes the JPEG and writes the JSON, as it does in Nuclio.
Mask-to-shape cost is measured on 300 coral-like masks of known shape in a real ultralytics
``Results``, at the network resolution of a 640 model (the production case) and at full
resolution.
"""

from __future__ import annotations

import base64
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from quadratseg_handlers.backends.ultralytics_results import Letterbox, result_instances
from quadratseg_handlers.core.request import decode_image
from quadratseg_handlers.demo.tinymodels.yolo import tiny_yolo
from quadratseg_handlers.handlers.yolo import YoloSegHandler
from quadratseg_handlers.local.bundle import blobs_image

from .timing import bare_vs_handler, jpeg_bytes, measure, median_ms, quadrat_photos

SIZE = 1920
INSTANCES = 300


def frames() -> list[tuple[str, np.ndarray]]:
    """One real quadrat photo upscaled to 1920 x 1920 when present, and a synthetic frame."""
    photos = quadrat_photos(SIZE)[:1]
    return [*photos, ("synthetic, 300 blobs", blobs_image(SIZE, SIZE, count=300, seed=2))]


def coral_masks(
    count: int, shape: tuple[int, int], scale: float, radii: tuple[int, int], seed: int = 0
) -> np.ndarray:
    """``count`` lobed, coral-like masks (``radii`` in original pixels) drawn at ``scale``."""
    rng = np.random.default_rng(seed)
    height, width = shape
    masks = np.zeros((count, height, width), dtype=np.uint8)
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    for mask in masks:
        radius = rng.uniform(*radii) * scale
        centre = rng.uniform(radius, [width - radius, height - radius])
        lobes = 1 + sum(
            rng.uniform(0.05, 0.25) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
            for k in (3, 5, 7)
        )
        ring = centre + (radius * lobes)[:, None] * np.c_[np.cos(angles), np.sin(angles)]
        cv2.fillPoly(mask, [np.round(ring).astype(np.int32)], 1)
    return masks


def coral_result(input_size: int, radii: tuple[int, int]) -> Any:
    """A real ultralytics Results of 300 coral masks on a 1920 frame, masks at ``input_size``."""
    import torch
    from ultralytics.engine.results import Results

    letterbox = Letterbox.between((input_size, input_size), (SIZE, SIZE))
    scale_x, scale_y = float(letterbox.scale_x), float(letterbox.scale_y)
    masks = coral_masks(INSTANCES, (input_size, input_size), scale_x, radii)
    boxes = []
    for mask in masks:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        x1 = (cols[0] - letterbox.left) / scale_x
        y1 = (rows[0] - letterbox.top) / scale_y
        x2 = (cols[-1] + 1 - letterbox.left) / scale_x
        y2 = (rows[-1] + 1 - letterbox.top) / scale_y
        boxes.append([x1, y1, x2, y2, 0.9, 0])
    return Results(
        np.zeros((SIZE, SIZE, 3), dtype=np.uint8),
        path="corals.jpg",
        names={0: "coral"},
        boxes=torch.tensor(boxes, dtype=torch.float32),
        masks=torch.from_numpy(masks),
    )


T = TypeVar("T")


def timed(steps: dict[str, list[float]], name: str, step: Callable[[], T]) -> T:
    """Run ``step``, adding its wall time in ms to ``steps[name]``; return its value."""
    started = time.perf_counter()
    value = step()
    steps.setdefault(name, []).append((time.perf_counter() - started) * 1000)
    return value


def request_steps(
    handler: YoloSegHandler, body: dict[str, str], steps: dict[str, list[float]]
) -> float:
    """Run one request step by step, adding each step's ms to ``steps``.

    Returns the summed area of the instances over the frame's area.
    """
    image = timed(steps, "base64 + JPEG decode", lambda: decode_image(body["image"], 10**9))
    results = timed(steps, "ultralytics predict", lambda: handler.yolo.predict([image], 0.25))
    instances = timed(steps, "masks to original pixels", lambda: result_instances(results[0]))
    shapes = timed(steps, "instances to polygons", lambda: handler.to_shapes(instances, image))
    timed(steps, "JSON", lambda: json.dumps(shapes))
    return sum(int(instance.mask.sum()) for instance in instances) / SIZE**2


def stage_times(handler: YoloSegHandler, body: dict[str, str], runs: int) -> dict[str, float]:
    """Median ms of each step of a request, over ``runs`` requests."""
    steps: dict[str, list[float]] = {}
    area = [request_steps(handler, body, steps) for _ in range(runs)][-1]
    return {"area": area, **{name: statistics.median(ms) for name, ms in steps.items()}}


def compare(handler: YoloSegHandler, frame: np.ndarray, runs: int) -> dict[str, float]:
    """Bare predict vs the handler end to end on one JPEG frame, and the handler's steps."""
    body = {"image": base64.b64encode(jpeg_bytes(frame)).decode()}
    paired = bare_vs_handler(handler, body, runs)
    return {
        "shapes": len(paired["answer"]),
        "bare": paired["bare"],
        "handler": paired["handler"],
        "overhead": paired["overhead"],
        **stage_times(handler, body, runs=3),
    }


def end_to_end_section(model: Path) -> str:
    """Handler end to end vs bare predict, per image size and frame."""
    rows, breakdown = [], []
    stages = ""
    for imgsz, runs in ((640, 9), (1920, 3)):
        handler = YoloSegHandler(model_path=model, imgsz=imgsz, device="cpu")
        handler.load()
        for name, frame in frames():
            figures = compare(handler, frame, runs)
            head = [figures.pop(key) for key in ("shapes", "area", "bare", "handler", "overhead")]
            shapes, area, bare, handled, overhead = head
            rows.append(
                f"| {imgsz} | {name} | {shapes:.0f} | {area:.1f} | {bare:.0f} | {handled:.0f} | "
                f"{overhead:+.1f} % |"
            )
            own = sum(ms for step, ms in figures.items() if step != "ultralytics predict")
            share = 100 * own / figures["ultralytics predict"]
            breakdown.append(
                f"| {imgsz} | {name} | "
                + " | ".join(f"{ms:.0f}" for ms in figures.values())
                + f" | {share:.1f} % |"
            )
            stages = " | ".join(figures)
    columns = stages.count("|") + 2
    return (
        "| imgsz | Frame (1920 x 1920 JPEG) | Shapes | Area / frame area | Bare predict ms | "
        "Handler ms | Overhead |\n| --- | --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + "\n\nWhere the handler's time goes (medians of 3 requests run step by step, ms; the "
        "last column is the handler's own steps over the predict, a steadier estimate of the "
        "overhead than the end-to-end pairs on a shared machine):\n\n"
        f"| imgsz | Frame | {stages} | Own steps / predict |\n| --- | --- |"
        + " --- |" * columns
        + "\n"
        + "\n".join(breakdown)
    )


COLONIES = {"dense quadrat": (20, 110), "large colonies": (30, 250)}
"""Coral-like masks: radius range in original pixels."""


def conversion_section() -> str:
    """Cost of turning 300 coral masks of a real Results into CVAT shapes."""
    rows = []
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    polygons = YoloSegHandler()
    masks = YoloSegHandler(convert_to_polyline=False)
    for colonies, radii in COLONIES.items():
        for input_size in (640, SIZE):
            result = coral_result(input_size, radii)
            instances = result_instances(result)
            cover = sum(int(i.mask.sum()) for i in instances) / SIZE**2
            to_pixels = median_ms(measure(lambda r=result: result_instances(r), runs=5))
            to_polygons = median_ms(
                measure(lambda i=instances: polygons.to_shapes(i, image), runs=5)
            )
            to_masks = median_ms(measure(lambda i=instances: masks.to_shapes(i, image), runs=3))
            rows.append(
                f"| {colonies}, radius {radii[0]}-{radii[1]} px | {cover:.1f} | {input_size} | "
                f"{to_pixels:.0f} | {to_polygons:.0f} | "
                f"{to_pixels + to_polygons:.0f} | {to_masks:.0f} |"
            )
    return (
        "| Masks | Area / frame area | Mask resolution | To original pixels ms | "
        "To polygons ms | Total ms | To CVAT masks ms |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows)
    )


def run() -> str:
    """Return the Markdown section."""
    with tempfile.TemporaryDirectory() as folder:
        model = tiny_yolo(Path(folder) / "best.pt", "segment", ["coral"], imgsz=640)
        end_to_end = end_to_end_section(model)
    conversion = conversion_section()
    return (
        "## YOLO segmentation (pth-yolo-coralsegv4, pth-yolo-coralsegbanggai)\n\n"
        "YOLO11n-seg (the real architecture with random weights from `tiny_yolo`, every anchor "
        "firing: 300 box-shaped instances per frame, much larger than real colonies), CPU, "
        "`MAX_DET=300`. Bare = `model.predict` on "
        "the decoded array; handler = the Nuclio handler on the JPEG request (decode, predict, "
        "masks to original pixels, polygons, JSON). 9 interleaved pairs at 640, 3 at 1920; "
        "times are medians, the overhead is the median of the per-pair ratios.\n\n"
        + end_to_end
        + "\n\n### 300 coral-like masks to CVAT shapes\n\n"
        "A real ultralytics `Results` holding 300 lobed masks on a 1920 x 1920 frame, with the "
        "masks at the network resolution of a 640 model (the production case) or at full "
        'resolution; medians of 5 runs (3 for CVAT masks). "To polygons" is the '
        'mask-to-polygon step; "Total" adds bringing the masks to original pixels.\n\n' + conversion
    )

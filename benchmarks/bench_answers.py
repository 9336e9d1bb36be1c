"""CVAT answers for 300 instances: mask shapes vs polygons, and the JSON text before and after.

The instances are 300 coral-like masks of a real ultralytics ``Results`` on a 1920 x 1920
frame (``bench_yolo.coral_result``, masks at a 640 model's resolution), in original pixels.
Side by side in one run, interleaved: the shapes as polygons and as CVAT masks, and the
answer's JSON text as the handler writes it (``cvat.answer_json``) against what the library
did before: each mask's values as a Python list (``tolist`` plus the box) written by
``json.dumps``. Both texts are checked to be the same bytes.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import numpy as np

from quadratseg_handlers import cvat
from quadratseg_handlers.backends.ultralytics_results import result_instances
from quadratseg_handlers.cvat.masks import MaskValues
from quadratseg_handlers.handlers.yolo import YoloSegHandler

from .bench_yolo import COLONIES, SIZE, coral_result
from .timing import interleaved, median_ms

RUNS = {"dense quadrat": 5, "large colonies": 2}
"""Interleaved runs per case (the list encoder takes seconds on the large colonies)."""


def list_masks(shapes: list[cvat.Shape]) -> list[cvat.Shape]:
    """The shapes as the library built them before: each mask's values one Python list."""
    return [
        {
            **shape,
            "mask": shape["mask"].crop.astype(np.uint8).reshape(-1).tolist()
            + list(shape["mask"].box),
        }
        if isinstance(shape.get("mask"), MaskValues)
        else shape
        for shape in shapes
    ]


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    """The median of the per-run ratios (each pair timed back to back)."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def case(radii: tuple[int, int], runs: int) -> dict[str, Any]:
    """Median ms of each step for one set of 300 masks, and the answer sizes."""
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    instances = result_instances(coral_result(640, radii))
    polygons, masks = YoloSegHandler(), YoloSegHandler(convert_to_polyline=False)
    polygon_shapes = polygons.to_shapes(instances, image)
    mask_shapes = masks.to_shapes(instances, image)
    listed = list_masks(mask_shapes)
    text = cvat.answer_json(mask_shapes)
    if text != json.dumps(listed) or cvat.answer_json(polygon_shapes) != json.dumps(polygon_shapes):
        raise AssertionError("answer_json differs from json.dumps")
    times = interleaved(
        {
            "polygons": lambda: polygons.to_shapes(instances, image),
            "masks": lambda: masks.to_shapes(instances, image),
            "masks as lists (before)": lambda: list_masks(masks.to_shapes(instances, image)),
            "polygon JSON": lambda: cvat.answer_json(polygon_shapes),
            "mask JSON": lambda: cvat.answer_json(mask_shapes),
            "mask JSON (before)": lambda: json.dumps(listed),
        },
        runs=runs,
    )
    return {
        "instances": len(instances),
        "values": sum(len(shape["mask"]) for shape in mask_shapes),
        "polygon bytes": len(cvat.answer_json(polygon_shapes)),
        "mask bytes": len(text),
        **{name: median_ms(values) for name, values in times.items()},
        "ratio": paired_ratio(times["masks"], times["polygons"]),
        "ratio before": paired_ratio(times["masks as lists (before)"], times["polygons"]),
    }


def run() -> str:
    """Return the Markdown section."""
    shape_rows, json_rows = [], []
    for colonies, radii in COLONIES.items():
        f = case(radii, RUNS[colonies])
        name = f"{colonies}, radius {radii[0]}-{radii[1]} px"
        shape_rows.append(
            f"| {name} | {f['instances']} | {f['polygons']:.0f} | {f['masks']:.0f} | "
            f"{f['ratio']:.2f} | {f['masks as lists (before)']:.0f} | {f['ratio before']:.2f} |"
        )
        json_rows.append(
            f"| {name} | {f['values'] / 1e6:.1f} M | {f['polygon bytes'] / 1e6:.1f} MB | "
            f"{f['polygon JSON']:.0f} | {f['mask bytes'] / 1e6:.1f} MB | "
            f"{f['mask JSON (before)']:.0f} | {f['mask JSON']:.0f} | "
            f"{f['mask JSON (before)'] / f['mask JSON']:.0f}x |"
        )
    return (
        "## CVAT answers: mask shapes and JSON (300 instances)\n\n"
        "300 coral-like masks of a real ultralytics `Results` on a 1920 x 1920 frame (masks at "
        "a 640 model's resolution, brought to original pixels first), turned into the shapes "
        "`YoloSegHandler` answers: polygons (`CONVERT_TO_POLYLINE=true`) or CVAT masks "
        "(`false`; every mask carries its outline polygon too). Medians of interleaved runs "
        f"({RUNS['dense quadrat']} dense, {RUNS['large colonies']} large), ms; ratios are the "
        "medians of the per-run ratios. 'Before' is the "
        "library's previous encoder, run in the same process: each mask's values as a Python "
        "list (`tolist()` plus the box) written by `json.dumps`; the JSON text is the same "
        "bytes either way (checked).\n\n"
        "| Masks | Instances | To polygons | To CVAT masks | Masks / polygons | "
        "To masks as lists (before) | Before / polygons |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(shape_rows) + "\n\n"
        "| Masks | Mask values | Polygon answer | Polygon JSON ms | Mask answer | "
        "Mask JSON before ms | Mask JSON now ms | Speed-up |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(json_rows) + "\n\n"
        "The polygon answer is unchanged: `json.dumps` in C over some 10^5 coordinates. A mask "
        "answer carries one value per pixel of each mask's box (three bytes of JSON each), so "
        "its text stays far larger than the polygons' and its time follows those bytes."
    )

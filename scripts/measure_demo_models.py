"""Measure demo models where docs/demo.md's table says: drawn world, drawn frames over held-out
real reef, real quadrat photos. Each function is packaged and served with the demo's settings
and called over HTTP as `make demo` calls it.

    python scripts/measure_demo_models.py --models demo-models --out measure.json

(a) drawn world, held-out seeds: all 4 corners within 2 % of the side (share of photos), grid
    points at their index within 1 % (grid warped from the found corners), corals found/right;
(b) drawn frames and string over the held-out reef sources (demo/reef.py HELD_OUT_SOURCES):
    the same corner and grid figures, and on the same frames without string, the share of
    photos where gridpose still answers a grid;
(c) real photos (no string) against hand-annotated corners (a JSON of {file: 4 x [x, y]}, TL
    TR BR BL): all 4 corners within 3 % of the side, and gridpose's answer.
Needs the reef textures (--reef-textures) for (b) and the photos for (c); skips what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.datasets import random_photo_size_wh
from quadratseg_handlers.demo.pipeline import (
    CORNERS,
    GRID,
    LAMA,
    STAGES,
    WARP_SIDE,
    Pipeline,
    PipelineRun,
    StageFailed,
    served_functions,
)
from quadratseg_handlers.demo.reef import reef_quadrat
from quadratseg_handlers.demo.reef_photos import ReefTextures
from quadratseg_handlers.demo.synthetic import SyntheticQuadrat, quadrat_image
from quadratseg_handlers.demo.training import TEST_SEEDS, verified_models
from quadratseg_handlers.ops.template import grid_template

REEF_SEEDS = TEST_SEEDS + 2000
"""First seed of (b)'s photos: docs/demo.md's table (900,002,000 on)."""

REAL_TOLERANCE = 0.03
"""A corner on a real photo is right within this share of the side (hand annotation)."""

DARK_BARS = 80.0
"""Bars darker than this (:func:`bar_brightness`, 0-255) are painted or taped black or a dark
colour, about as dark as the reef under water: the frames the corner model misses most."""


def bar_brightness(scene: SyntheticQuadrat) -> float:
    """The median grey level (0-255) of the photo along the frame's bars: 25 points on the
    middle 60 % of each side between the drawn corners (clear of corners and legs), those
    inside the photo."""
    grey = cv2.cvtColor(scene.image, cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    corners = np.asarray(scene.corners, dtype=np.float64)
    levels = [
        grey[int(y), int(x)]
        for start, end in zip(corners, np.roll(corners, -1, axis=0), strict=True)
        for x, y in start + np.outer(np.linspace(0.2, 0.8, 25), end - start)
        if 0 <= x < width and 0 <= y < height
    ]
    return float(np.median(levels)) if levels else float("nan")


def dark_frames(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How the frames painted or taped dark fare (rows whose ``bars`` are under
    :data:`DARK_BARS`): how many there are, on how many all 4 corners are within 2 %, and on
    how many no quadrat was found."""
    dark = [row for row in rows if row["bars"] < DARK_BARS]
    errors = [row["corner_error"] for row in dark]
    return {
        "photos": len(dark),
        "corners_within_2pc": sum(error is not None and error <= 0.02 for error in errors),
        "no_quadrat": sum(error is None for error in errors),
    }


def corners_and_grid(
    pipeline: Pipeline, scene: SyntheticQuadrat, remove_string: bool = False
) -> dict[str, Any]:
    """Stages 1-3 on one photo, as the pipeline runs them (the corners checked by the grid):
    worst corner error, grid hits, and gridpose's raw answer; with ``remove_string``, stage 4
    too where a grid was found, and how visible the drawn string stays after it."""
    run = PipelineRun(scene.image, scene)
    out: dict[str, Any] = {"corner_error": None, "grid_hits": None, "grid_answered": False}
    try:
        pipeline._corners(run)
        out["detected_corner_error"] = run.corner_error
        pipeline._warp(run, WARP_SIDE)
        pipeline._grid(run)
        if remove_string and run.grid is not None:
            pipeline._grid_removal(run)
    except StageFailed as failure:
        out["failure"] = str(failure)
    if np.isfinite(run.corner_error):
        out["corner_error"] = run.corner_error
    if np.isfinite(run.grid_hits):
        out["grid_hits"] = run.grid_hits
    skeleton = [s for s in run.answers.get("03-grid", []) if s.get("type") == "skeleton"]
    out["grid_answered"] = bool(skeleton)
    out["grid_confidence"] = float(skeleton[0].get("confidence", 0)) if skeleton else None
    out["found_corners"] = None if run.corners is None else np.round(run.corners, 1).tolist()
    if run.repaint is not None:
        out["string_visible"] = run.repaint.string_visible
    return out


def real_scene(path: Path, corners: np.ndarray) -> SyntheticQuadrat:
    """A real photo dressed as a scene: its annotated corners are the truth, nothing else is."""
    image = np.asarray(Image.open(path).convert("RGB"))
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    homography = cv2.getPerspectiveTransform(unit, corners.astype(np.float32))
    points = cv2.perspectiveTransform(grid_template()[None].astype(np.float64), homography)[0]
    side = float(max(np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)))
    blank = np.zeros(image.shape[:2], dtype=bool)
    return SyntheticQuadrat(image, corners, points, [], homography, blank, 1.0, side, {})


def share(values: list[bool]) -> str:
    """``k/n (p %)``."""
    return f"{sum(values)}/{len(values)} ({100 * sum(values) / max(len(values), 1):.0f} %)"


def drawn_world(urls: dict[str, str], photos: int) -> dict[str, Any]:
    """(a): the whole pipeline on held-out drawn photos (the accuracy test's seeds)."""
    pipeline = Pipeline(urls)
    runs = []
    for offset in range(photos):
        seed = TEST_SEEDS + 1000 + offset
        size = random_photo_size_wh(np.random.default_rng(seed), (1024, 1600))
        runs.append(pipeline.run(quadrat_image(size, seed)))
    corals = [run.corals for run in runs if run.corals is not None]
    found = sum(c.found for c in corals)
    colonies = sum(c.colonies for c in corals)
    right = sum(c.true_shapes for c in corals)
    shapes = sum(c.shapes for c in corals)
    hits = [run.grid_hits if run.grid is not None else 0.0 for run in runs]
    visible = [run.repaint.string_visible for run in runs if run.repaint is not None]
    return {
        "photos": photos,
        "corners_within_2pc": share(
            [run.corner_error <= accuracy.CORNER_TOLERANCE for run in runs]
        ),
        "grid_points_within_1pc": f"{100 * float(np.mean(hits)):.1f} %",
        "string_visible_mean": f"{100 * float(np.mean(visible)):.1f} %" if visible else None,
        "string_visible": [round(share, 4) for share in visible],
        "corals_found": f"{found}/{colonies} ({100 * found / max(colonies, 1):.0f} %)",
        "corals_right": f"{right}/{shapes} ({100 * right / max(shapes, 1):.0f} %)",
        "failures": [run.failure for run in runs if run.failure],
    }


def reef_world(
    urls: dict[str, str], textures: ReefTextures, photos: int, first_seed: int = REEF_SEEDS
) -> dict[str, Any]:
    """(b): corners and grid on drawn frames with string over held-out reef (seeds from
    ``first_seed``); gridpose on the same kinds of frames without string (seed + 500)."""
    pipeline = Pipeline(urls)
    strung, bare = [], []
    for offset in range(photos):
        seed = first_seed + offset
        size = random_photo_size_wh(np.random.default_rng(seed), (1024, 1600))
        scene = reef_quadrat(size, seed, textures, string=True)
        looks: dict[str, Any] = {
            "seed": seed,
            "frame": scene.look["frame"],
            "bars": bar_brightness(scene),
        }
        strung.append(looks | corners_and_grid(pipeline, scene, remove_string=True))
        empty = reef_quadrat(size, seed + 500, textures, string=False)
        bare.append({"seed": seed + 500, "frame": empty.look["frame"]}
                    | corners_and_grid(pipeline, empty))  # fmt: skip
    ok = [r["corner_error"] is not None and r["corner_error"] <= 0.02 for r in strung]
    hits = [r["grid_hits"] or 0.0 for r in strung]
    bare_ok = [r["corner_error"] is not None and r["corner_error"] <= 0.02 for r in bare]
    answered = [r["grid_answered"] for r in bare if r["corner_error"] is not None]
    confidence = [r["grid_confidence"] for r in bare if r.get("grid_confidence") is not None]
    visible = [r["string_visible"] for r in strung if "string_visible" in r]
    return {
        "photos": photos,
        "first_seed": first_seed,
        "sources": list(textures.sources),
        "corners_within_2pc": share(ok),
        "grid_points_within_1pc": f"{100 * float(np.mean(hits)):.1f} %",
        "string_visible_mean": f"{100 * float(np.mean(visible)):.1f} %" if visible else None,
        "string_removed_on": len(visible),
        "dark_frames": dark_frames(strung),
        "stringless_corners_within_2pc": share(bare_ok),
        "stringless_grid_answered": share(answered),
        "stringless_grid_confidence_mean": round(float(np.mean(confidence)), 3)
        if confidence
        else None,
        "with_string": strung,
        "without_string": bare,
    }


def real_photos(urls: dict[str, str], folder: Path, annotated: dict[str, Any]) -> dict[str, Any]:
    """(c): corners against the hand annotation, and whether gridpose answers a grid."""
    pipeline = Pipeline(urls)
    rows = []
    for name, corners in sorted(annotated.items()):
        path = folder / name
        if not path.is_file():
            continue
        scene = real_scene(path, np.asarray(corners, dtype=np.float64))
        rows.append({"photo": name} | corners_and_grid(pipeline, scene))
    ok = [r["corner_error"] is not None and r["corner_error"] <= REAL_TOLERANCE for r in rows]
    return {
        "photos": len(rows),
        "corners_within_3pc": share(ok),
        "grid_answered": share([r["grid_answered"] for r in rows]),
        "rows": rows,
    }


def table_rows(figures: dict[str, Any]) -> list[str]:
    """docs/demo.md's table rows for what was measured."""
    rows = [
        "| Photos | All 4 corners within the bar | Grid points within 1 % "
        "| String still visible after removal | Corals found / right |",
        "| --- | --- | --- | --- | --- |",
    ]
    drawn, reef, real = figures.get("drawn"), figures.get("reef"), figures.get("real")
    if drawn:
        rows.append(
            f"| drawn world, {drawn['photos']} held-out seeds | {drawn['corners_within_2pc']} "
            f"(2 %) | {drawn['grid_points_within_1pc']} | {drawn['string_visible_mean']} of its "
            f"contrast (mean) | {drawn['corals_found']} / "
            f"{drawn['corals_right']} |"
        )
    if reef:
        rows.append(
            f"| drawn frames and string over held-out real reef (sources "
            f"{', '.join(reef['sources'])}), {reef['photos']} photos | "
            f"{reef['corners_within_2pc']} (2 %) | {reef['grid_points_within_1pc']} | "
            f"{reef['string_visible_mean']} of its contrast (mean of the "
            f"{reef['string_removed_on']} photos with a grid) | - |"
        )
        confidence = reef["stringless_grid_confidence_mean"]
        rows.append(
            f"| the same without string, {reef['photos']} photos | "
            f"{reef['stringless_corners_within_2pc']} (2 %) | gridpose answers a grid on "
            f"{reef['stringless_grid_answered']}"
            + ("" if confidence is None else f" (mean confidence {confidence} %)")
            + " | no string | - |"
        )
    if real:
        rows.append(
            f"| real quadrat photos (CRIOBE frame, no string), {real['photos']} photos | "
            f"{real['corners_within_3pc']} (3 %) | gridpose answers a grid on "
            f"{real['grid_answered']} | no string | - |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="demo-models")
    parser.add_argument("--out", required=True, help="JSON file for the figures")
    parser.add_argument("--reef-textures", default="../shared/data/reef-textures")
    parser.add_argument("--real-photos", default="../shared/data/quadrats")
    parser.add_argument("--real-corners", default=None, help="JSON of annotated corners")
    parser.add_argument("--drawn", type=int, default=16, help="(a) photos; 0 skips")
    parser.add_argument("--reef", type=int, default=60, help="(b) photos; 0 skips")
    parser.add_argument(
        "--reef-first-seed", type=int, default=REEF_SEEDS, help="(b) photos' first seed"
    )
    args = parser.parse_args(argv)
    models = verified_models(Path(args.models))
    figures: dict[str, Any] = {"models": str(args.models)}
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {line}", file=sys.stderr, flush=True)

    stages = STAGES if args.drawn else (CORNERS, GRID, LAMA) if args.reef else (CORNERS, GRID)
    with (
        tempfile.TemporaryDirectory(prefix="quadratseg-measure-") as temporary,
        served_functions(Path(temporary), Path(temporary) / "bundles", models, log, stages) as (
            urls,
            _labels,
        ),
    ):
        if args.real_corners and Path(args.real_corners).is_file():
            annotated = json.loads(Path(args.real_corners).read_text())
            figures["real"] = real_photos(urls, Path(args.real_photos), annotated)
            summary = {k: v for k, v in figures["real"].items() if k != "rows"}
            log(f"(c) real photos: {json.dumps(summary)}")
        reef = Path(args.reef_textures)
        if args.reef and reef.is_dir():
            held_out = ReefTextures.from_folder(reef).held_out()
            figures["reef"] = reef_world(urls, held_out, args.reef, args.reef_first_seed)
            summary = {k: v for k, v in figures["reef"].items() if not k.startswith("with")}
            log(f"(b) over held-out reef: {json.dumps(summary)}")
        if args.drawn:
            figures["drawn"] = drawn_world(urls, args.drawn)
            log(f"(a) drawn world: {json.dumps(figures['drawn'])}")
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(table_rows(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

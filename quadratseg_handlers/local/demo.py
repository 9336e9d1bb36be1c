"""The demo: the whole QUADRATSEG pipeline over HTTP, on a drawn quadrat, with small models.

No trained weights exist on a fresh machine, so the demo draws its own world: a synthetic
quadrat photograph (perspective frame, taut grid string, coral colonies of three genera) and
the tiny models the tests use. Those have random weights (a few minutes of CPU training does
not teach a YOLO anything here: measured, see docs/demo.md), and the demo says so: where a
random-weight model finds no quadrat or grid, the drawn ground truth carries the pipeline on,
and the summary names which points came from where. Grid removal runs the OpenCV backend,
which needs no weights and really removes the string.

Each function is packaged into a real bundle, served by ``quadratseg serve``'s server and
called over HTTP the way the QUADRATSEG bridge calls it:
gridcorners -> warp -> gridpose -> grid removal -> coral segmentation.
"""

from __future__ import annotations

import base64
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from quadratseg_handlers import cvat
from quadratseg_handlers.core.request import encode_image, load_image
from quadratseg_handlers.cvat.shapes import skeleton_points
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import open_bundle
from quadratseg_handlers.deploy.packager import PackageRequest, build_wheel, package
from quadratseg_handlers.deploy.rendering import SourceTree
from quadratseg_handlers.local.client import HttpFunction
from quadratseg_handlers.local.overlay import draw_shapes, save_png
from quadratseg_handlers.local.server import BackgroundServer
from quadratseg_handlers.local.synthetic import quadrat_image
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import quadrat_transform, warp_quadrat

CORNERS = "pth-yolo-gridcorners"
GRID = "pth-yolo-gridpose"
LAMA = "pth-lama"
CORALS = "pth-yolo-coralsegv4"
STAGES = (CORNERS, GRID, LAMA, CORALS)

LINE_WIDTH = 16
"""Grid-removal line width for the drawn 1024 px quadrat: the string and its shadow."""

SERVE_ENV: dict[str, dict[str, str]] = {LAMA: {"INPAINT_BACKEND": "opencv"}}
"""Settings the demo changes when serving: grid removal without weights (OpenCV)."""


@dataclass
class StageReport:
    """What one pipeline stage did: its function, HTTP time, result and where points came from."""

    stage: str
    function: str
    milliseconds: float
    result: str
    note: str = ""


def _skeleton(shapes: list[cvat.Shape], points: int) -> cvat.Shape | None:
    """The one skeleton with ``points`` elements in a gridcorners/gridpose answer, if any."""
    for shape in shapes:
        if shape.get("type") == "skeleton" and len(shape.get("elements", [])) == points:
            return shape
    return None


def _truth_skeleton(label: str, points: np.ndarray) -> cvat.Shape:
    """Ground-truth points as a skeleton, drawn in the overlays where a model found none."""
    elements = [
        cvat.skeleton_element(str(index), point, None)
        for index, point in enumerate(points, start=1)
    ]
    return cvat.skeleton(label, elements)


class Pipeline:
    """The served functions and the stage reports; one call per stage, as the bridge does."""

    def __init__(self, urls: dict[str, str], labels: dict[str, list[cvat.LabelSpec]]) -> None:
        self.clients = {name: HttpFunction(url, timeout=600) for name, url in urls.items()}
        self.labels = labels
        self.reports: list[StageReport] = []

    def call(self, stage: str, function: str, payload: dict[str, Any]) -> Any:
        """POST a JSON payload to a function; raise RuntimeError on a non-200 answer."""
        started = time.perf_counter()
        answer = self.clients[function].post_json(payload)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status != 200:
            raise RuntimeError(
                f"{stage}: {function} answered {answer.status}: {answer.error_text()}"
            )
        self.reports.append(StageReport(stage, function, elapsed, ""))
        return answer.json()

    def note(self, result: str, note: str = "") -> None:
        """Describe the last stage's outcome."""
        self.reports[-1].result = result
        self.reports[-1].note = note

    def points(
        self, shapes: list[cvat.Shape], truth: np.ndarray, label: str, tolerance: float
    ) -> tuple[np.ndarray, list[cvat.Shape]]:
        """The points the next stage uses, and the shapes to draw.

        The model's skeleton when it lies within ``tolerance`` pixels (mean) of the drawn
        truth; otherwise (random weights) the drawn points, drawn beside the model's answer
        and named as such in the summary.
        """
        found = _skeleton(shapes, len(truth))
        if found is not None:
            points = skeleton_points(found)
            error = float(np.linalg.norm(points - truth, axis=1).mean())
            if error <= tolerance:
                self.note(f"{len(truth)} points from the model, {error:.1f} px from the drawn ones")
                return points, shapes
            self.note(
                f"a skeleton {error:.0f} px (mean) from the drawn points",
                "random weights: drawn points used",
            )
        else:
            self.note(f"{len(shapes)} shapes, no skeleton", "random weights: drawn points used")
        return truth, [*shapes, _truth_skeleton(label, truth)]


@contextlib.contextmanager
def served_functions(
    work: Path, bundles_dir: Path, log: Callable[[str], None]
) -> Iterator[tuple[dict[str, str], dict[str, list[cvat.LabelSpec]]]]:
    """Package the pipeline's functions with their tiny models and serve each one locally."""
    source = SourceTree.of_library()
    wheel = build_wheel(source, work / "wheel")
    bundles_dir.mkdir(parents=True, exist_ok=True)
    bundles: dict[str, Path] = {}
    labels: dict[str, list[cvat.LabelSpec]] = {}
    for name in STAGES:
        spec = FUNCTIONS[name]
        (work / name).mkdir()
        files = spec.tiny_model_builder()(work / name)
        request = PackageRequest(spec, files, output=bundles_dir / f"{name}.zip", force=True)
        result = package(request, source=source, wheel=wheel)
        bundles[name], labels[name] = result.output, result.labels
        log(f"packaged {name:<22} {result.size / 1e6:6.1f} MB in {result.seconds:4.1f} s")
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        urls = {}
        for name, bundle in bundles.items():
            config = stack.enter_context(open_bundle(bundle))
            server = BackgroundServer(config, workers=1, env=SERVE_ENV.get(name))
            urls[name] = stack.enter_context(server)
        log(f"serving {len(urls)} functions ({time.perf_counter() - started:.1f} s to start)")
        yield urls, labels


def run_demo(
    output: str | Path = "demo-output",
    size: int = 1024,
    seed: int = 3,
    log: Callable[[str], None] = print,
) -> list[StageReport]:
    """Run the pipeline end to end and write one overlay per stage into ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    scene = quadrat_image(size, seed)
    photo = scene.image
    Image.fromarray(photo).save(out / "00-photo.jpg", quality=92)
    tolerance = 0.01 * size
    log(f"drew a {size} x {size} quadrat: {len(scene.corals)} colonies, 117 grid points")
    with (
        tempfile.TemporaryDirectory(prefix="quadratseg-demo-") as temporary,
        served_functions(Path(temporary), out / "bundles", log) as (urls, labels),
    ):
        pipeline = Pipeline(urls, labels)
        photo_b64 = encode_image(photo, "JPEG", quality=92)

        shapes = pipeline.call("1 corners", CORNERS, {"image": photo_b64})
        corners, drawn = pipeline.points(shapes, scene.corners, "quadrat_corner", tolerance)
        save_png(
            draw_shapes(photo, drawn, labels[CORNERS], title="1 gridcorners"),
            out / "01-corners.png",
        )

        started = time.perf_counter()
        warped = warp_quadrat(photo, corners, size)
        pipeline.reports.append(
            StageReport(
                "2 warp",
                "warp_quadrat (local)",
                (time.perf_counter() - started) * 1000,
                f"{size} x {size} upright quadrat",
            )
        )
        save_png(warped, out / "02-warped.png")
        truth_grid = project(quadrat_transform(corners, size), scene.grid_points)

        shapes = pipeline.call("3 grid points", GRID, {"image": encode_image(warped, "PNG")})
        grid, drawn = pipeline.points(shapes, truth_grid, "grid", tolerance)
        save_png(draw_shapes(warped, drawn, labels[GRID], title="3 gridpose"), out / "03-grid.png")

        answer = pipeline.call(
            "4 grid removal",
            LAMA,
            {
                "image": encode_image(warped, "PNG"),
                "keypoints": grid.tolist(),
                "format": "png",
                "line_width": LINE_WIDTH,
            },
        )
        clean = load_image(base64.b64decode(answer["image"]))
        changed = float((clean != warped).any(axis=2).mean())
        pipeline.note(f"{changed:.1%} of pixels repainted", "OpenCV backend (no weights)")
        save_png(clean, out / "04-grid-removed.png")

        shapes = pipeline.call("5 corals", CORALS, {"image": encode_image(clean, "PNG")})
        genera = sorted({shape["label"] for shape in shapes})
        pipeline.note(
            f"{len(shapes)} shapes, labels {', '.join(genera) or '-'}",
            "random weights: shapes show the plumbing, not corals",
        )
        save_png(
            draw_shapes(clean, shapes, labels[CORALS], title="5 coralsegv4"), out / "05-corals.png"
        )
        problems = cvat.validate_response(shapes, labels[CORALS], (size, size))
        if problems:
            raise RuntimeError(f"coral segmentation answer is not valid CVAT JSON: {problems[0]}")
    return pipeline.reports


def summary(reports: list[StageReport]) -> str:
    """The stage table the demo prints."""
    lines = [f"{'stage':<16} {'function':<22} {'ms':>7}  result", "-" * 78]
    for report in reports:
        note = f"  [{report.note}]" if report.note else ""
        lines.append(
            f"{report.stage:<16} {report.function:<22} {report.milliseconds:7.0f}  "
            f"{report.result}{note}"
        )
    return "\n".join(lines)

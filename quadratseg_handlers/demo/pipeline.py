"""The demo: the whole QUADRATSEG pipeline over HTTP, with trained models, on a drawn quadrat
or on a user's own photo.

The drawn photo comes from a seed no demo model was trained on
(:data:`~quadratseg_handlers.demo.training.TEST_SEEDS`), so it also shows what the
committed models do on data they have not seen. Each function is packaged into a real bundle
with its trained weights from ``demo-models/``, served by ``quadratseg serve``'s server and
called over HTTP the way the QUADRATSEG bridge calls it, every stage on the previous stage's
answer: gridcorners -> warp -> gridpose -> grid removal -> coral segmentation. Each stage's
answer is scored against the drawn truth (:mod:`~quadratseg_handlers.demo.accuracy`); a
stage that fails stops the pipeline and says why, and nothing falls back to the truth.
A user's photo (``--photo``) has no truth: its stages answer and draw their overlays, and
nothing is scored. Grid removal runs the OpenCV backend: the LaMa weights cannot be
downloaded here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from quadratseg_handlers import cvat
from quadratseg_handlers.core.request import encode_image, load_image
from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.synthetic import SyntheticQuadrat, quadrat_image
from quadratseg_handlers.demo.tinymodels import tiny_model_files
from quadratseg_handlers.demo.training import DEFAULT_FOLDER, MODELS, TEST_SEEDS, verified_models
from quadratseg_handlers.demo.warped import WARP_MARGIN, warped_masks
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import open_bundle
from quadratseg_handlers.deploy.packager import PackageRequest, build_wheel, package
from quadratseg_handlers.deploy.rendering import SourceTree
from quadratseg_handlers.local.client import HttpFunction
from quadratseg_handlers.local.overlay import draw_shapes, save_png
from quadratseg_handlers.local.server import BackgroundServer
from quadratseg_handlers.ops.gridmask import draw_grid_mask
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import (
    corners_against_placement,
    grid_in_photo,
    grid_placement,
    quadrat_side,
    quadrat_transform,
)
from quadratseg_handlers.ops.template import CORNER_POINTS, GRID_POINTS

CORNERS = "pth-yolo-gridcorners"
GRID = "pth-yolo-gridpose"
LAMA = "pth-lama"
CORALS = "pth-yolo-coralsegv4"
STAGES = (CORNERS, GRID, LAMA, CORALS)

WARP_SIDE = 1024
"""Side of the upright quadrat the demo warps the photo to (pixels)."""

POINT_MARGIN = 6
"""Pixels grid removal's line reaches past the string on each side: the 95th percentile of the
grid points' error in the WARP_SIDE warp, measured on held-out photos (docs/demo.md)."""

CORAL_MIN_AREA = 0.002
"""Colonies smaller than this share of the quadrat's area are not counted in recall."""

SERVE_ENV: dict[str, dict[str, str]] = {LAMA: {"INPAINT_BACKEND": "opencv"}}
"""Settings the demo changes when serving: grid removal without weights (OpenCV)."""

BACKEND_NAMES = {"opencv": "OpenCV", "lama": "LaMa"}
"""How the grid-removal row names the inpainting backend it ran."""

VISIBLE_BAR = 0.1
"""Grid removal passes when the drawn string keeps at most this share of its contrast."""

NO_TRUTH = "no truth for this photo: not scored"


class StageFailed(RuntimeError):
    """A stage's answer cannot carry the pipeline on (no quadrat, no grid, an HTTP error)."""


@dataclass
class StageReport:
    """What one pipeline stage did: its function, HTTP time, and its answer scored."""

    stage: str
    function: str
    milliseconds: float
    result: str = ""
    passed: bool = True


@dataclass
class PipelineRun:
    """One photo through the pipeline: every stage's answer, score and report."""

    photo: np.ndarray
    scene: SyntheticQuadrat | None = None
    """The drawn truth; None for a user's photo, whose answers are not scored."""
    reports: list[StageReport] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    """Each function's CVAT answer, by the name of the file it is written to."""
    corners: np.ndarray | None = None
    corners_given: bool = False
    """The corners were given (:meth:`Pipeline.run_from_corners`): the grid does not check them."""
    corner_error: float = float("nan")
    """Worst corner's distance from the truth, as a share of the quadrat's side."""
    transform: np.ndarray | None = None
    """Photo pixels -> warped pixels, from the model's corners."""
    warped: np.ndarray | None = None
    grid: np.ndarray | None = None
    grid_hits: float = float("nan")
    """Share of the 117 points at their true index within 1 % of the side."""
    clean: np.ndarray | None = None
    repaint: accuracy.RepaintScore | None = None
    coral_shapes: list[cvat.Shape] = field(default_factory=list)
    corals: accuracy.CoralScore | None = None
    """Scored in the warped image."""
    photo_corals: accuracy.CoralScore | None = None
    """Scored in the photo's own pixels, the shapes mapped back through the warp."""
    failure: str = ""


def shapes_to_photo(shapes: list[cvat.Shape], transform: np.ndarray) -> list[cvat.Shape]:
    """Polygon shapes in warped pixels carried back into the photo's pixels."""
    inverse = np.linalg.inv(transform)
    mapped = []
    for shape in shapes:
        points = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
        mapped.append({**shape, "points": project(inverse, points).reshape(-1).tolist()})
    return mapped


class Pipeline:
    """The served functions, called one stage after the other as the bridge does."""

    def __init__(self, urls: Mapping[str, str], line_width: int | None = None) -> None:
        self.clients = {name: HttpFunction(url, timeout=600) for name, url in urls.items()}
        self.line_width = line_width

    def call(self, run: PipelineRun, stage: str, function: str, payload: dict[str, Any]) -> Any:
        """POST a JSON payload; a non-200 answer fails the stage."""
        started = time.perf_counter()
        answer = self.clients[function].post_json(payload)
        run.reports.append(StageReport(stage, function, (time.perf_counter() - started) * 1000))
        if answer.status != 200:
            raise StageFailed(f"{function} answered {answer.status}: {answer.error_text()}")
        return answer.json()

    def run(
        self, source: SyntheticQuadrat | np.ndarray, *, warp_side: int = WARP_SIDE
    ) -> PipelineRun:
        """Every stage on the previous one's answer; a failed stage stops the run. A drawn
        quadrat is scored against its truth; a photo (an RGB array) only answers."""
        run = self._start(source)
        self._stages(run, self._corners)
        return self._after_corners(run, warp_side)

    def run_from_corners(
        self, source: SyntheticQuadrat | np.ndarray, corners: Any, *, warp_side: int = WARP_SIDE
    ) -> PipelineRun:
        """The stages after the corners, warped from ``corners`` given (TL, TR, BR, BL: a hand
        annotation, or the truth), to see the later stages apart from the corner model."""
        run = self._start(source)
        run.corners = np.asarray(corners, dtype=np.float64)
        run.corners_given = True
        return self._after_corners(run, warp_side)

    def _after_corners(self, run: PipelineRun, warp_side: int) -> PipelineRun:
        if run.failure:
            return run
        self._stages(run, lambda ran: self._warp(ran, warp_side), self._grid)
        if run.grid is not None:
            self._stages(run, self._grid_removal)
        elif not run.failure:
            run.clean = run.warped
            run.reports.append(StageReport("4 grid removal", LAMA, 0.0, "not run: no grid"))
        if not run.failure:
            self._stages(run, self._corals)
        return run

    def corners_of(self, source: SyntheticQuadrat | np.ndarray) -> PipelineRun:
        """The first stage alone (the corners), scored when ``source`` is drawn."""
        run = self._start(source)
        self._stages(run, self._corners)
        return run

    @staticmethod
    def _start(source: SyntheticQuadrat | np.ndarray) -> PipelineRun:
        if isinstance(source, SyntheticQuadrat):
            return PipelineRun(source.image, source)
        return PipelineRun(np.asarray(source))

    @staticmethod
    def _stages(run: PipelineRun, *stages: Callable[[PipelineRun], None]) -> None:
        """Run ``stages`` in order on ``run`` until one fails (the failure is recorded)."""
        try:
            for stage in stages:
                stage(run)
        except StageFailed as failure:
            run.failure = str(failure)
            if run.reports:
                run.reports[-1].result = f"FAILED: {failure}"
                run.reports[-1].passed = False

    def _corners(self, run: PipelineRun) -> None:
        scene = run.scene
        shapes = self.call(run, "1 corners", CORNERS, {"image": encode_image(run.photo, "JPEG")})
        run.answers["01-corners"] = shapes
        found = accuracy.skeleton_of(shapes, CORNER_POINTS)
        if found is None:
            raise StageFailed(f"no quadrat found ({len(shapes)} shapes, no 4-point skeleton)")
        run.corners = found
        if scene is None:
            side_px = quadrat_side(found)
            run.reports[-1].result = f"4 corners, the quadrat's side {side_px:.0f} px ({NO_TRUTH})"
            return
        side = quadrat_side(scene.corners)
        run.corner_error = float(accuracy.point_errors(found, scene.corners, side).max())
        run.reports[-1].result = (
            f"4 corners, worst {run.corner_error:.1%} of the side from the drawn one "
            f"(bar {accuracy.CORNER_TOLERANCE:.0%})"
        )
        run.reports[-1].passed = run.corner_error <= accuracy.CORNER_TOLERANCE

    def _warp(self, run: PipelineRun, side: int) -> None:
        started = time.perf_counter()
        self._warped(run, side)
        run.reports.append(
            StageReport(
                "2 warp",
                "warp_quadrat (local)",
                (time.perf_counter() - started) * 1000,
                f"{side} x {side} upright quadrat, {WARP_MARGIN:.0%} margin",
            )
        )

    def _grid(self, run: PipelineRun) -> None:
        assert run.warped is not None and run.transform is not None
        shapes = self.call(run, "3 grid points", GRID, {"image": encode_image(run.warped, "PNG")})
        report = run.reports[-1]
        run.answers["03-grid"] = shapes
        found = accuracy.skeleton_of(shapes, GRID_POINTS)
        scene = run.scene
        if found is None and scene is None:
            report.result = (
                f"no grid answered ({len(shapes)} shapes): no string to remove; "
                "the corals run on the warped photo"
            )
            return
        if found is None:
            raise StageFailed(f"no grid found ({len(shapes)} shapes, no 117-point skeleton)")
        run.grid = found
        if not run.corners_given:
            skeletons = [shape for shape in shapes if shape.get("type") == "skeleton"]
            self._check_corners(run, cvat.shape_score(skeletons[0]))
        if scene is None:
            report.result = f"{GRID_POINTS} points answered ({NO_TRUTH})"
            return
        truth = project(run.transform, scene.grid_points)
        side = quadrat_side(project(run.transform, scene.corners))
        errors = accuracy.point_errors(run.grid, truth, side)
        run.grid_hits = float((errors <= accuracy.GRID_TOLERANCE).mean())
        hits = int((errors <= accuracy.GRID_TOLERANCE).sum())
        report.result = (
            f"{hits}/{GRID_POINTS} points at their index within "
            f"{accuracy.GRID_TOLERANCE:.0%} of the side (bar 98 %)"
        )
        report.passed = run.grid_hits >= 0.98

    @staticmethod
    def _warped(run: PipelineRun, side: int) -> None:
        """The quadrat warped upright from ``run.corners`` into ``run.transform``/``warped``."""
        assert run.corners is not None
        try:
            run.transform = quadrat_transform(run.corners, side, int(round(WARP_MARGIN * side)))
        except ValueError as error:
            raise StageFailed(f"the corners cannot be warped: {error}") from None
        run.warped = np.asarray(
            cv2.warpPerspective(run.photo, run.transform, (side, side), flags=cv2.INTER_LINEAR)
        )

    def _check_corners(self, run: PipelineRun, confidence: float | None) -> None:
        """The corners checked against the grid found inside them, answered with
        ``confidence`` (:func:`~quadratseg_handlers.ops.quadrat.corners_checked_by_grid`):
        where they disagree, they move where the grid puts them, the quadrat is warped again
        from there and the grid carried into the new warp."""
        assert run.corners is not None and run.transform is not None and run.grid is not None
        assert run.warped is not None
        started = time.perf_counter()
        size = (run.photo.shape[1], run.photo.shape[0])
        in_photo = grid_in_photo(run.grid, run.transform)
        placed, why_not = grid_placement(in_photo, confidence, size)
        checked = corners_against_placement(run.corners, placed)
        report = StageReport("3b corners", "corners_checked_by_grid (local)", 0)
        run.reports.append(report)
        if np.array_equal(checked, run.corners):
            report.result = (
                "the corners agree with the grid found inside them"
                if placed is not None
                else f"not checked: {why_not}"
            )
        else:
            moved = float(np.linalg.norm(checked - run.corners, axis=1).max())
            report.result = f"moved where the grid puts them (up to {moved:.0f} px)"
            run.corners = checked
            self._warped(run, run.warped.shape[0])
            assert run.transform is not None
            run.grid = project(run.transform, in_photo)
            for name, points in (("01-corners", checked), ("03-grid", run.grid)):
                run.answers[name] = cvat.with_skeleton_moved(run.answers[name], points)
            if run.scene is not None:
                side = quadrat_side(run.scene.corners)
                run.corner_error = float(
                    accuracy.point_errors(checked, run.scene.corners, side).max()
                )
                report.result += (
                    f"; worst now {run.corner_error:.1%} of the side from the drawn one"
                )
                report.passed = run.corner_error <= accuracy.CORNER_TOLERANCE
        report.milliseconds = (time.perf_counter() - started) * 1000

    def string_width(self, run: PipelineRun) -> int | None:
        """Grid removal's line width: the string's width in the warped image, plus the grid
        points' typical error on each side (POINT_MARGIN), as a lab sets it for its frame;
        on a photo with no truth, the function's own setting (None) unless one was given."""
        if self.line_width:
            return self.line_width
        if run.scene is None:
            return None
        assert run.warped is not None
        side = run.warped.shape[0] * (1 - 2 * WARP_MARGIN)
        plane = run.scene.string_width / run.scene.side
        return int(round(plane * side + 2 * POINT_MARGIN))

    def _grid_removal(self, run: PipelineRun) -> None:
        assert run.warped is not None and run.grid is not None and run.transform is not None
        width = self.string_width(run)
        payload: dict[str, Any] = {
            "image": encode_image(run.warped, "PNG"),
            "keypoints": run.grid.tolist(),
            "format": "png",
        }
        if width is not None:
            payload["line_width"] = width
        answer = self.call(run, "4 grid removal", LAMA, payload)
        backend = SERVE_ENV.get(LAMA, {}).get("INPAINT_BACKEND", "lama")
        run.reports[-1].function = f"{LAMA} ({BACKEND_NAMES.get(backend, backend)})"
        run.clean = load_image(base64.b64decode(answer["image"]))
        line = f"line width {width} px" if width else "the function's line width"
        if run.scene is None:
            done = f"the string between the points painted out ({line}; {NO_TRUTH})"
            run.reports[-1].result = done
            return
        size = (run.warped.shape[1], run.warped.shape[0])
        string = cv2.warpPerspective(
            run.scene.string_mask.astype(np.uint8), run.transform, size, flags=cv2.INTER_NEAREST
        ).astype(bool)
        painted = draw_grid_mask(run.grid, size, width or 1)
        score = run.repaint = accuracy.score_repaint(run.warped, run.clean, string, painted)
        rest = "every other pixel unchanged" if score.outside_untouched else "OTHERS CHANGED"
        run.reports[-1].result = (
            f"string still visible: {score.string_visible:.0%} of its contrast "
            f"(bar {VISIBLE_BAR:.0%}; {score.string_repainted:.0%} of its pixels changed), "
            f"{rest} ({line})"
        )
        run.reports[-1].passed = score.outside_untouched and score.string_visible <= VISIBLE_BAR

    def _corals(self, run: PipelineRun) -> None:
        assert run.clean is not None and run.transform is not None and run.corners is not None
        shapes = self.call(run, "5 corals", CORALS, {"image": encode_image(run.clean, "PNG")})
        run.coral_shapes = shapes
        run.answers["05-corals"] = shapes
        run.answers["06-corals-on-photo"] = shapes_to_photo(shapes, run.transform)
        height, width = run.clean.shape[:2]
        found = accuracy.shape_instances(shapes, height, width)
        if run.scene is None:
            genera = ", ".join(sorted({label for label, _ in found})) or "none"
            count = f"{len(found)} {'colony' if len(found) == 1 else 'colonies'}"
            run.reports[-1].result = f"{count} answered ({genera}; {NO_TRUTH})"
            return
        side = quadrat_side(project(run.transform, run.scene.corners))
        truth = warped_masks(run.scene, run.transform, (width, height))
        run.corals = accuracy.score_corals(found, truth, int(CORAL_MIN_AREA * side * side))
        photo_height, photo_width = run.scene.image.shape[:2]
        in_photo = accuracy.shape_instances(
            shapes_to_photo(shapes, run.transform), photo_height, photo_width
        )
        photo_truth = [(coral.label, coral.mask) for coral in run.scene.corals]
        photo_side = quadrat_side(run.scene.corners)
        run.photo_corals = accuracy.score_corals(
            in_photo, photo_truth, int(CORAL_MIN_AREA * photo_side * photo_side)
        )
        score = run.corals
        run.reports[-1].result = (
            f"{len(found)} colonies answered: {score.found}/{score.colonies} drawn ones found "
            f"({score.recall:.0%}), {score.precision:.0%} of answers right (bars 85 %)"
        )
        run.reports[-1].passed = score.recall >= 0.85 and score.precision >= 0.85


@contextlib.contextmanager
def served_functions(
    work: Path,
    bundles_dir: Path,
    models: Mapping[str, Path],
    log: Callable[[str], None] = print,
    stages: tuple[str, ...] = STAGES,
) -> Iterator[tuple[dict[str, str], dict[str, list[cvat.LabelSpec]]]]:
    """Package the pipeline's functions (``stages``) with the trained weights and serve them."""
    source = SourceTree.of_library()
    wheel = build_wheel(source, work / "wheel")
    bundles_dir.mkdir(parents=True, exist_ok=True)
    trained = {model.function: model for model in MODELS.values() if model.name in models}
    bundles: dict[str, Path] = {}
    labels: dict[str, list[cvat.LabelSpec]] = {}
    for name in stages:
        spec = FUNCTIONS[name]
        (work / name).mkdir()
        model = trained.get(name)
        files = {"weights": models[model.name]} if model else tiny_model_files(name, work / name)
        env = model.serve_env if model else ()
        request = PackageRequest(
            spec, files, output=bundles_dir / f"{name}.zip", force=True, env=env
        )
        result = package(request, source=source, wheel=wheel)
        bundles[name], labels[name] = result.output, result.labels
        log(f"packaged {name:<22} {result.size / 1e6:6.1f} MB in {result.seconds:4.1f} s")
        settings = [*env, *(f"{key}={value}" for key, value in SERVE_ENV.get(name, {}).items())]
        log(f"settings {name:<22} {' '.join(settings) or 'its defaults'}")
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        urls = {}
        for name, bundle in bundles.items():
            config = stack.enter_context(open_bundle(bundle))
            server = BackgroundServer(config, workers=1, env=SERVE_ENV.get(name))
            urls[name] = stack.enter_context(server)
        log(f"serving {len(urls)} functions ({time.perf_counter() - started:.1f} s to start)")
        yield urls, labels


def points_skeleton(label: str, points: np.ndarray) -> cvat.Shape:
    """A skeleton with elements "1".."N" at ``points``, to draw a stage's points."""
    elements = [cvat.skeleton_element(str(i), p, None) for i, p in enumerate(points, start=1)]
    return cvat.skeleton(label, elements)


def write_overlays(run: PipelineRun, labels: Mapping[str, list[cvat.LabelSpec]], out: Path) -> None:
    """One picture per stage that ran, into ``out``, and each function's CVAT answer as JSON
    into ``out/answers`` (the corals twice: in the warped image and in the photo's pixels)."""
    photo = run.photo
    Image.fromarray(photo).save(out / "00-photo.jpg", quality=92)
    answers = out / "answers"
    answers.mkdir(exist_ok=True)
    for stale in answers.glob("*.json"):
        stale.unlink()
    for name, shapes in run.answers.items():
        (answers / f"{name}.json").write_text(json.dumps(shapes, indent=1) + "\n")
    if run.corners is not None:
        corners = points_skeleton("quadrat_corner", run.corners)
        save_png(
            draw_shapes(photo, [corners], labels[CORNERS], title="1 gridcorners"),
            out / "01-corners.png",
        )
    if run.warped is not None:
        save_png(run.warped, out / "02-warped.png")
    if run.grid is not None and run.warped is not None:
        grid = points_skeleton("grid", run.grid)
        save_png(
            draw_shapes(run.warped, [grid], labels[GRID], title="3 gridpose"), out / "03-grid.png"
        )
    if run.clean is not None:
        save_png(run.clean, out / "04-grid-removed.png")
    if "05-corals" in run.answers and run.clean is not None and run.transform is not None:
        save_png(
            draw_shapes(run.clean, run.coral_shapes, labels[CORALS], title="5 coralsegv4"),
            out / "05-corals.png",
        )
        save_png(
            draw_shapes(
                photo,
                shapes_to_photo(run.coral_shapes, run.transform),
                labels[CORALS],
                title="6 coralsegv4, in the photo's pixels",
            ),
            out / "06-corals-on-photo.png",
        )


def run_demo(
    output: str | Path = "demo-output",
    size: tuple[int, int] = (1600, 1200),
    seed: int = TEST_SEEDS + 3,
    models: str | Path = DEFAULT_FOLDER,
    log: Callable[[str], None] = print,
) -> PipelineRun:
    """Run the pipeline end to end on one drawn photo; overlays and bundles go to ``output``."""
    found = verified_models(Path(models))
    scene = quadrat_image(size, seed)
    log(
        f"drew a {size[0]} x {size[1]} quadrat (seed {seed}): {len(scene.corals)} colonies, "
        f"117 grid points, {scene.look['frame']} frame"
    )
    return _serve_and_run(scene, Path(output), found, Path(models), log)


def run_photo_demo(
    photo: np.ndarray,
    output: str | Path = "demo-output",
    models: str | Path = DEFAULT_FOLDER,
    log: Callable[[str], None] = print,
) -> PipelineRun:
    """Run the pipeline on a user's own photo (an RGB array): answers and overlays into
    ``output``, nothing scored, since there is no truth to score against."""
    found = verified_models(Path(models))
    height, width = photo.shape[:2]
    log(f"your photo, {width} x {height}: the stages answer and draw; {NO_TRUTH}")
    return _serve_and_run(np.asarray(photo), Path(output), found, Path(models), log)


def _serve_and_run(
    source: SyntheticQuadrat | np.ndarray,
    out: Path,
    found: Mapping[str, Path],
    folder: Path,
    log: Callable[[str], None],
) -> PipelineRun:
    """Package and serve the functions, run the pipeline on ``source``, write its overlays."""
    out.mkdir(parents=True, exist_ok=True)
    if folder.resolve() != DEFAULT_FOLDER.resolve():
        log(
            f"the weights in {folder} are served with the demo models' settings below "
            "(chosen for the demo models on drawn held-out photos; a lab's models may want "
            "others: `quadratseg package MODEL FILE --env NAME=VALUE`)"
        )
    with (
        tempfile.TemporaryDirectory(prefix="quadratseg-demo-") as temporary,
        served_functions(Path(temporary), out / "bundles", found, log) as (urls, labels),
    ):
        run = Pipeline(urls).run(source)
        write_overlays(run, labels, out)
        if run.coral_shapes:
            problems = cvat.validate_response(
                run.coral_shapes, labels[CORALS], (WARP_SIDE, WARP_SIDE)
            )
            if problems:
                raise RuntimeError(f"coral answer is not valid CVAT JSON: {problems[0]}")
    return run


def summary(reports: list[StageReport]) -> str:
    """The stage table the demo prints."""
    width = max([22, *(len(report.function) for report in reports)])
    lines = [f"{'stage':<16} {'function':<{width}} {'ms':>7}  result", "-" * (74 + width)]
    for report in reports:
        mark = "" if report.passed else "  <-- below the bar"
        lines.append(
            f"{report.stage:<16} {report.function:<{width}} {report.milliseconds:7.0f}  "
            f"{report.result}{mark}"
        )
    return "\n".join(lines)

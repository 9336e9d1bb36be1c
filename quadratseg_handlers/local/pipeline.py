"""The bridge's chain for labs without it: survey photos through four deployed functions.

``quadratseg pipeline PHOTO... --corners URL --grid URL --removal URL --corals URL --out DIR``
calls each function over HTTP as CVAT and the QUADRATSEG bridge do, every stage on the
previous stage's answer: the frame's corners on the photo, the quadrat warped upright from
them (:func:`~quadratseg_handlers.ops.quadrat.warp_quadrat`), the grid points on the warped
quadrat, the string painted out between them (the grid-removal function's image), and the
corals segmented on the clean quadrat. Every stage's images and a CVAT for images 1.1 export
per stage land in ``--out``, ready to become CVAT tasks; a photo a stage fails on is reported
with the reason (the function's own, when it gives one) and skipped from that stage on (the
stages it passed keep its images and answers, to fix by hand in CVAT). The corners are
checked against the grid found inside them
(:func:`~quadratseg_handlers.ops.quadrat.corners_checked_by_grid`): where they disagree, the
corners' answer moves where the grid puts them and the quadrat is warped again from there
(``keep_corners`` turns that off).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from quadratseg_handlers.core.request import RequestError, encode_image, load_image
from quadratseg_handlers.cvat.images_xml import ImageAnnotations, write_images_xml
from quadratseg_handlers.cvat.shapes import shape_score, skeleton_points, with_skeleton_moved
from quadratseg_handlers.cvat.spec import LabelSpec
from quadratseg_handlers.deploy.archive import write_atomically
from quadratseg_handlers.local.client import FunctionError, HttpFunction, image_files
from quadratseg_handlers.local.overlay import draw_shapes, save_png
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import (
    corners_checked_by_grid,
    grid_in_photo,
    quadrat_transform,
    warp_quadrat,
)
from quadratseg_handlers.ops.template import CORNER_POINTS, GRID_POINTS

STAGES = ("corners", "grid", "corals")
"""The stages whose answers are annotations, each a CVAT task: photos, warped, clean."""
FOLDERS = {"corners": "1-corners", "grid": "2-grid", "corals": "3-corals"}
EXPORT_NAME = "annotations.xml"
DEFAULT_WARP_SIDE = 1024
DEFAULT_WARP_MARGIN = 0.05
"""The warped quadrat's side and the margin around it (a share of the side): the frame stays
whole, as the demo models were trained (docs/demo.md)."""


class PhotoFailed(Exception):
    """A stage could not carry this photo on: one line, with the function's reason."""


@dataclass
class PhotoResult:
    """One photo through the chain: each stage's answer, image and size, or the failure."""

    photo: Path
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)
    """Each stage's image as written (the photo, the warped quadrat, the clean one)."""
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    corners_moved: bool = False
    """The corners were moved where the grid puts them (the answer disagreed with it)."""
    failure: str = ""


@dataclass
class Chain:
    """The four functions, the warp and the output folder."""

    corners: HttpFunction
    grid: HttpFunction
    removal: HttpFunction
    corals: HttpFunction
    out: Path
    warp_side: int = DEFAULT_WARP_SIDE
    warp_margin: float = DEFAULT_WARP_MARGIN
    line_width: int | None = None
    keep_corners: bool = False
    """Warp from the corners as answered, unchecked by the grid."""
    labels: dict[str, list[LabelSpec] | None] = field(default_factory=dict)

    def stage_folder(self, stage: str) -> Path:
        return self.out / FOLDERS[stage] / "images"

    def shapes(
        self, function: HttpFunction, stage: str, image: np.ndarray, result: PhotoResult
    ) -> str:
        """A detector's shapes for an image (sent as PNG, lossless) into ``result``, and the
        function's warning about it; PhotoFailed on an error answer."""
        answer = function.post_json({"image": encode_image(image, "PNG")})
        if answer.status != 200:
            raise PhotoFailed(f"{stage}: HTTP {answer.status}: {answer.error_text()}")
        try:
            shapes = answer.json()
        except (ValueError, UnicodeDecodeError):
            shapes = None
        if not isinstance(shapes, list):
            raise PhotoFailed(f"{stage}: the answer is not a list of CVAT shapes")
        result.answers[stage] = shapes
        return answer.warning

    @staticmethod
    def skeleton(result: PhotoResult, stage: str, points: int, warning: str) -> dict[str, Any]:
        """The stage's skeleton of ``points`` points; PhotoFailed, with the function's reason,
        without one."""
        shapes = result.answers[stage]
        for shape in shapes:
            is_skeleton = isinstance(shape, dict) and shape.get("type") == "skeleton"
            if is_skeleton and len(shape.get("elements") or []) == points:
                return dict(shape)
        why = f" (the function says: {warning})" if warning else ""
        raise PhotoFailed(f"{stage}: no {points}-point skeleton in {len(shapes)} shape(s){why}")

    def run_photo(self, result: PhotoResult) -> None:
        """Every stage for one photo, writing each stage's image and answer into ``result``;
        PhotoFailed stops it at the stage that fails."""
        photo = result.photo
        try:
            image = load_image(photo)
        except (OSError, ValueError, RequestError) as exc:
            raise PhotoFailed(f"not a readable image ({exc})") from None
        self._save(image, "corners", f"{photo.stem}.jpg", result)
        warning = self.shapes(self.corners, "corners", image, result)
        frame = self.skeleton(result, "corners", CORNER_POINTS, warning)
        corners = skeleton_points(frame)
        warped, transform = self.warp(image, corners)
        self._save(warped, "grid", f"{photo.stem}.png", result)
        warning = self.shapes(self.grid, "grid", warped, result)
        grid = self.skeleton(result, "grid", GRID_POINTS, warning)
        points = skeleton_points(grid)
        if not self.keep_corners:
            warped, points = self.check_corners(image, (warped, transform), (frame, grid), result)
        clean = self.remove_grid(warped, points)
        self._save(clean, "corals", f"{photo.stem}.png", result)
        self.shapes(self.corals, "corals", clean, result)

    def check_corners(
        self,
        image: np.ndarray,
        warp: tuple[np.ndarray, np.ndarray],
        skeletons: tuple[dict[str, Any], dict[str, Any]],
        result: PhotoResult,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The corners' and the grid's ``skeletons`` (the grid found in ``warp``: the warped
        image and the photo -> warp transform) checked against each other: where the corners
        disagree with the grid, both answers move (the corners where the grid puts them, the
        grid into the warp made from there) and the new warp replaces the grid stage's image.
        The warp and its grid points."""
        warped, transform = warp
        frame, grid = skeletons
        corners, points = skeleton_points(frame), skeleton_points(grid)
        size = (image.shape[1], image.shape[0])
        in_photo = grid_in_photo(points, transform)
        checked = corners_checked_by_grid(corners, in_photo, shape_score(grid), size)
        if np.array_equal(checked, corners):
            return warped, points
        result.corners_moved = True
        result.answers["corners"] = with_skeleton_moved(result.answers["corners"], checked)
        answered = self.skeleton(result, "corners", CORNER_POINTS, "")
        warped, moved = self.warp(image, skeleton_points(answered))  # as the answer holds them
        points = project(moved, in_photo)
        self._save(warped, "grid", f"{result.photo.stem}.png", result)
        result.answers["grid"] = with_skeleton_moved(result.answers["grid"], points)
        return warped, points

    def warp(self, image: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The quadrat warped upright from ``corners`` and the photo -> warp transform."""
        margin = int(round(self.warp_margin * self.warp_side))
        try:
            transform = quadrat_transform(corners, self.warp_side, margin)
        except ValueError as exc:
            raise PhotoFailed(f"warp: {exc}") from None
        return warp_quadrat(image, corners, self.warp_side, margin=margin), transform

    def remove_grid(self, warped: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The grid-removal function's image: the string between ``points`` painted out."""
        body: dict[str, Any] = {
            "image": encode_image(warped, "PNG"),
            "keypoints": points.tolist(),
            "format": "png",
        }
        if self.line_width is not None:
            body["line_width"] = self.line_width
        answer = self.removal.post_json(body)
        if answer.status != 200:
            raise PhotoFailed(f"grid removal: HTTP {answer.status}: {answer.error_text()}")
        try:
            return load_image(base64.b64decode(answer.json()["image"]))
        except (ValueError, KeyError, TypeError, OSError, RequestError) as exc:
            raise PhotoFailed(f"grid removal: no image in the answer ({exc})") from None

    def _save(self, image: np.ndarray, stage: str, name: str, result: PhotoResult) -> None:
        folder = self.stage_folder(stage)
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(np.ascontiguousarray(image))
        suffix = "JPEG" if name.endswith(".jpg") else "PNG"
        write_atomically(
            folder / name, lambda path: picture.save(path, format=suffix, quality=95), force=True
        )
        result.images[stage] = folder / name
        result.sizes[stage] = (image.shape[1], image.shape[0])

    def write_overlays(self, result: PhotoResult) -> None:
        """Each stage's answer drawn on its image, in ``out/overlays``."""
        for stage in STAGES:
            if stage not in result.answers:
                continue
            image = load_image(result.images[stage])
            drawn = draw_shapes(image, result.answers[stage], self.labels.get(stage), title=stage)
            save_png(drawn, self.out / "overlays" / f"{result.photo.stem}-{FOLDERS[stage]}.png")

    def write_exports(self, results: Sequence[PhotoResult]) -> dict[str, Path]:
        """One CVAT for images 1.1 file per stage, of the photos the stage answered."""
        written = {}
        for stage in STAGES:
            images = [
                ImageAnnotations(r.images[stage].name, *r.sizes[stage], shapes=r.answers[stage])
                for r in results
                if stage in r.answers
            ]
            path = self.out / FOLDERS[stage] / EXPORT_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            write_export(path, FOLDERS[stage], images, self.labels.get(stage) or [])
            written[stage] = path
        return written


def write_export(
    path: Path, task: str, images: Sequence[ImageAnnotations], labels: Sequence[LabelSpec]
) -> None:
    """A CVAT for images 1.1 file, written atomically (a reader never sees half of it)."""

    def write(target: Path) -> None:
        with target.open("wb") as stream:
            write_images_xml(stream, task, images, labels)

    write_atomically(path, write, force=True)


def _write_text(path: Path, text: str) -> None:
    def write(target: Path) -> None:
        target.write_text(text)

    write_atomically(path, write, force=True)


def photo_paths(arguments: Sequence[str | Path]) -> list[Path]:
    """The photos named, folders expanded to their images (sorted); FunctionError for a
    missing path, two photos of one name (their stage images would collide), or none."""
    photos: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            photos += image_files(path)
        elif path.is_file():
            photos.append(path)
        else:
            raise FunctionError(f"{path}: no such photo or folder")
    stems: dict[str, Path] = {}
    for photo in photos:
        if photo.stem in stems:
            raise FunctionError(f"{stems[photo.stem]} and {photo}: two photos named {photo.stem}")
        stems[photo.stem] = photo
    if not photos:
        raise FunctionError("no photos given")
    return photos


def run_chain(
    chain: Chain,
    photos: Sequence[Path],
    progress: Callable[[int], None] | None = None,
    on_failure: Callable[[PhotoResult], None] | None = None,
) -> list[PhotoResult]:
    """Every photo through the chain in turn; a failed photo is reported and skipped. Writes
    the overlays, the stage exports and ``summary.json``."""
    chain.out.mkdir(parents=True, exist_ok=True)
    chain.labels = {
        "corners": chain.corners.labels(),
        "grid": chain.grid.labels(),
        "corals": chain.corals.labels(),
    }
    results = []
    for done, photo in enumerate(photos, start=1):
        result = PhotoResult(photo)
        try:
            chain.run_photo(result)
        except (PhotoFailed, FunctionError) as exc:
            result.failure = str(exc)
            if on_failure is not None:
                on_failure(result)
        chain.write_overlays(result)
        results.append(result)
        if progress is not None:
            progress(done)
    chain.write_exports(results)
    summary = {
        "photos": len(results),
        "completed": sum(not r.failure for r in results),
        "failed": {str(r.photo): r.failure for r in results if r.failure},
        "corners_moved_by_the_grid": [str(r.photo) for r in results if r.corners_moved],
        "shapes": {stage: sum(len(r.answers.get(stage, [])) for r in results) for stage in STAGES},
    }
    text = json.dumps(summary, indent=2) + "\n"
    _write_text(chain.out / "summary.json", text)
    return results


def functions(urls: Mapping[str, str], timeout: float) -> dict[str, HttpFunction]:
    """The four functions by stage name (FunctionError for a bad URL)."""
    return {name: HttpFunction(url, timeout=timeout) for name, url in urls.items()}

"""The grid functions: pth-yolo-gridcorners (4 frame corners) and pth-yolo-gridpose (117 points).

Both run a YOLO model whose detections are points: a detect model's box centres, or a pose
model's keypoints. :mod:`quadratseg_handlers.matching` puts them in template order and the
answer is ONE CVAT skeleton per image, elements "1".."N" in that order. A template point with
no detection is placed by the fitted homography and answered as a visible element with
confidence "0" (FILLED_POINTS_OUTSIDE=true flags it ``outside`` instead); see docs/grid.md.
With USE_TEMPLATE_MATCHING=false the raw detections come back as CVAT points.

:func:`warp_quadrat` is the step between the two functions: the perspective crop of the
quadrat from its 4 ordered corners.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from . import config as cfg
from . import cvat
from .config import ConfigError, Setting
from .cvat import LabelSpec, Shape
from .handler import BaseHandler
from .matching import Match, match_points
from .template import (
    CORNER_POINTS,
    GRID_POINTS,
    load_template,
    packaged_template_path,
    skeleton_edges,
    sublabels,
)
from .yolo import YOLO_SETTINGS, load_yolo

log = logging.getLogger(__name__)

POINT_TASKS = ("detect", "pose")
"""YOLO tasks whose output can be read as points."""


def _path(value: Any) -> Path:
    """A file path that need not exist yet (checked when it is read)."""
    return Path(cfg.text(value)).expanduser()


GRID_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "TEMPLATE_PATH",
        _path,
        "/opt/nuclio/kp_template.npy",
        "Template `.npy`: (N, 2) normalised (x, y) of the points in skeleton order. When it "
        "is the default path and that file is absent, the template shipped in the package is "
        "used (logged at start-up).",
        "path",
    ),
    Setting(
        "SKELETON_LABEL",
        cfg.text,
        "grid",
        "Name of the skeleton label; its sublabels are \"1\"..\"N\" in template order.",
    ),
    Setting(
        "USE_TEMPLATE_MATCHING",
        cfg.boolean,
        True,
        "`true`: one skeleton per image in template order (Hungarian matching); `false`: "
        "the raw detections as CVAT points, labelled with the model's class names.",
        "boolean",
    ),
    Setting(
        "HUNGARIAN_THRESH",
        cfg.number(0.001, 2.0),
        0.12,
        "Largest distance between a detection and its template point after alignment, in "
        "normalised image units (fraction of the width / height); farther pairs are rejected.",
        "number",
    ),
    Setting(
        "MIN_MATCHES",
        cfg.number(2, integer=True),
        20,
        "Fewest template points that must get a detection; below it the answer is empty and "
        "the log says why (a fit from fewer would guess the skeleton).",
        "integer",
    ),
    Setting(
        "FILLED_POINTS_OUTSIDE",
        cfg.boolean,
        False,
        "How template points without a detection are answered: `false`: visible at the "
        "homography's position with confidence 0; `true`: flagged `outside` (hidden in CVAT).",
        "boolean",
    ),
)


@dataclass(frozen=True)
class PointDetections:
    """What a points model found in one image."""

    points: np.ndarray
    """(M, 2) image pixels: box centres, or keypoints."""
    scores: np.ndarray
    """(M,) box confidence, or keypoint confidence when the pose model has one."""
    labels: tuple[str, ...]
    """Class name of each point (of its box or pose instance)."""


@dataclass(frozen=True)
class GridPrediction:
    """One image's detections and, with template matching, their ordering."""

    detections: PointDetections
    match: Match | None
    """None when USE_TEMPLATE_MATCHING is false."""


def _array(values: Any) -> np.ndarray:
    """A torch tensor or array as a float64 NumPy array."""
    if hasattr(values, "cpu"):
        values = values.cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def result_points(result: Any, threshold: float) -> PointDetections:
    """The points of one ultralytics ``Results``: pose keypoints when there are any (those
    scoring >= ``threshold``), else box centres."""
    names = result.names
    boxes = result.boxes
    classes = [names[int(c)] for c in _array(boxes.cls)] if boxes is not None else []
    keypoints = getattr(result, "keypoints", None)
    if keypoints is not None and keypoints.xy is not None and len(keypoints.xy):
        xy = _array(keypoints.xy)
        conf = (
            _array(keypoints.conf)
            if keypoints.conf is not None
            else np.repeat(_array(boxes.conf)[:, None], xy.shape[1], axis=1)
        )
        keep = conf >= threshold
        owner = np.nonzero(keep)[0]
        return PointDetections(
            points=xy[keep].reshape(-1, 2),
            scores=conf[keep],
            labels=tuple(classes[i] for i in owner),
        )
    if boxes is None or len(boxes) == 0:
        return PointDetections(np.zeros((0, 2)), np.zeros(0), ())
    return PointDetections(
        points=_array(boxes.xywh)[:, :2], scores=_array(boxes.conf), labels=tuple(classes)
    )


class GridHandler(BaseHandler[GridPrediction]):
    """A YOLO points model whose points are ordered by a template into one skeleton."""

    template_points: ClassVar[int] = GRID_POINTS
    """Points of the skeleton (and of a valid template)."""

    settings: ClassVar[tuple[Setting, ...]] = (*YOLO_SETTINGS, *GRID_SETTINGS)

    template: np.ndarray
    """(N, 2) the normalised template, read at start-up."""
    template_source: Path
    """The file the template was read from."""
    class_names: list[str]
    """The model's class names, in class-index order."""

    def load_model(self) -> None:
        """Read and check the template, then load the model and check its task."""
        self.template_source = self._template_file()
        self.template = load_template(self.template_source, self.template_points)
        if int(self.config["MIN_MATCHES"]) > self.template_points:
            raise ConfigError(
                f"MIN_MATCHES={self.config['MIN_MATCHES']}: more than the "
                f"{self.template_points} points of the template"
            )
        self.yolo = load_yolo(self.config["MODEL_PATH"], POINT_TASKS)
        self.yolo.configure(self.config, self.device)
        self.class_names = self.yolo.names

    def _template_file(self) -> Path:
        """TEMPLATE_PATH, or the packaged template when it is the default path and absent."""
        path = Path(self.config["TEMPLATE_PATH"])
        default = next(s.default for s in self.declared_settings() if s.name == "TEMPLATE_PATH")
        if not path.exists() and path == Path(default):
            packaged = packaged_template_path(self.template_points)
            log.warning("%s: template file %s absent, using the packaged default %s",
                        self.function_name, path, packaged)
            return packaged
        return path

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[GridPrediction]:
        """One batched YOLO predict, then each image's points put in template order."""
        results = self.yolo.predict(images, threshold)
        predictions = []
        for image, result in zip(images, results, strict=True):
            found = result_points(result, threshold)
            match = self.order(found, image) if self.config["USE_TEMPLATE_MATCHING"] else None
            predictions.append(GridPrediction(found, match))
        return predictions

    def order(self, found: PointDetections, image: np.ndarray) -> Match:
        """Match the points to the template; log why when there is no skeleton."""
        match = match_points(
            found.points,
            self.template,
            (image.shape[1], image.shape[0]),
            scores=found.scores,
            max_cost=float(self.config["HUNGARIAN_THRESH"]),
            min_matches=int(self.config["MIN_MATCHES"]),
        )
        if not match.ok:
            self.warn(
                "no skeleton: " + match.reason,
                detections=len(found.points),
                MIN_MATCHES=int(self.config["MIN_MATCHES"]),
                HUNGARIAN_THRESH=float(self.config["HUNGARIAN_THRESH"]),
            )
        return match

    def to_shapes(self, prediction: GridPrediction, image: np.ndarray) -> list[Shape]:
        """One skeleton in template order, or the raw points without template matching."""
        match = prediction.match
        if match is None:
            found = prediction.detections
            raw = zip(found.points, found.scores, found.labels, strict=True)
            return [cvat.points(label, point, score) for point, score, label in raw]
        if not match.ok:
            return []
        height, width = image.shape[:2]
        outside = bool(self.config["FILLED_POINTS_OUTSIDE"])
        return [skeleton_shape(self.config["SKELETON_LABEL"], match, width, height, outside)]

    def labels(self) -> list[LabelSpec]:
        """The skeleton (sublabels and svg from the template), or the class names as points."""
        if not self.config["USE_TEMPLATE_MATCHING"]:
            return [cvat.label_spec(name, "points") for name in self.class_names]
        return [
            cvat.skeleton_spec(
                self.config["SKELETON_LABEL"],
                sublabels(self.template_points),
                self.template,
                skeleton_edges(self.template_points),
            )
        ]


class GridCornersHandler(GridHandler):
    """pth-yolo-gridcorners: the quadrat frame's corners TL, TR, BR, BL."""

    function_name = "pth-yolo-gridcorners"
    template_points = CORNER_POINTS
    setting_defaults: ClassVar[dict[str, Any]] = {
        "TEMPLATE_PATH": "/opt/nuclio/kp_template_corners.npy",
        "SKELETON_LABEL": "quadrat_corner",
        "HUNGARIAN_THRESH": 0.3,
        "MIN_MATCHES": 3,
    }


class GridPoseHandler(GridHandler):
    """pth-yolo-gridpose: the 117 grid points, row-major from the top-left."""

    function_name = "pth-yolo-gridpose"
    template_points = GRID_POINTS


def skeleton_shape(
    label: str, match: Match, width: int, height: int, filled_outside: bool = False
) -> Shape:
    """The CVAT skeleton of a successful match: elements "1".."N" in template order.

    A matched element carries its detection's confidence. A filled element (no detection) is
    visible at the homography's position with confidence "0", or ``outside`` when
    ``filled_outside``; one that falls outside the image is always ``outside``.
    """
    inside = (
        (match.points[:, 0] >= 0)
        & (match.points[:, 0] <= width)
        & (match.points[:, 1] >= 0)
        & (match.points[:, 1] <= height)
    )
    elements = [
        cvat.skeleton_element(
            name,
            point,
            float(score),
            outside=bool(filled and (filled_outside or not visible)),
        )
        for name, point, score, filled, visible in zip(
            sublabels(len(match.points)), match.points, match.scores, match.filled, inside,
            strict=True,
        )
    ]
    return cvat.skeleton(label, elements)


def skeleton_points(shape: Shape) -> np.ndarray:
    """(N, 2) points of a CVAT skeleton shape, ordered by their numeric sublabel names."""
    elements = sorted(shape["elements"], key=lambda element: int(element["label"]))
    return np.array([element["points"] for element in elements], dtype=np.float64)


def quadrat_transform(corners: Any, size: int | tuple[int, int], margin: int = 0) -> np.ndarray:
    """The 3 x 3 homography taking the quadrat's corners (TL, TR, BR, BL) to an upright
    ``size`` (an int for a square, or (width, height)) image, ``margin`` pixels inside it.

    Raises ValueError unless the corners are 4 finite points forming a convex quadrilateral
    in that (clockwise on screen) order.
    """
    quad = np.asarray(corners, dtype=np.float64)
    if quad.shape != (CORNER_POINTS, 2) or not np.all(np.isfinite(quad)):
        raise ValueError(f"expected 4 finite corners (TL, TR, BR, BL), got shape {quad.shape}")
    edges = np.roll(quad, -1, axis=0) - quad
    following = np.roll(edges, -1, axis=0)
    turns = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
    if not np.all(turns > 0):
        raise ValueError(
            "corners must be TL, TR, BR, BL of a convex quadrilateral (clockwise on screen)"
        )
    width, height = (size, size) if isinstance(size, int) else size
    if width <= 2 * margin or height <= 2 * margin:
        raise ValueError(f"size {width}x{height} leaves nothing inside a {margin}-pixel margin")
    low, right, bottom = float(margin), float(width - 1 - margin), float(height - 1 - margin)
    target = np.array([[low, low], [right, low], [right, bottom], [low, bottom]])
    return np.asarray(
        cv2.getPerspectiveTransform(quad.astype(np.float32), target.astype(np.float32)),
        dtype=np.float64,
    )


def warp_quadrat(
    image: np.ndarray,
    corners: Any,
    size: int | tuple[int, int],
    *,
    margin: int = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """The quadrat cropped upright from ``image``: corners TL, TR, BR, BL go to the corners of
    a ``size`` image (``margin`` pixels inside), the step between gridcorners and gridpose.

    ``corners`` may be a (4, 2) array or the gridcorners skeleton shape itself.
    """
    if isinstance(corners, dict):
        corners = skeleton_points(corners)
    matrix = quadrat_transform(corners, size, margin)
    width, height = (size, size) if isinstance(size, int) else size
    return cv2.warpPerspective(
        np.asarray(image), matrix, (int(width), int(height)), flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
    )

"""The grid functions: pth-yolo-gridcorners (4 frame corners) and pth-yolo-gridpose (117 points).

Both run a YOLO model whose detections are points: a detect model's box centres, or a pose
model's keypoints. :mod:`quadratseg_handlers.ops.matching` puts them in template order and the
answer is ONE CVAT skeleton per image, elements "1".."N" in that order. A template point with
no detection is placed by the fitted homography and answered as a visible element with
confidence "0" (FILLED_POINTS_OUTSIDE=true flags it ``outside`` instead); see docs/grid.md.
With USE_TEMPLATE_MATCHING=false the raw detections come back as CVAT points.

The step between the two functions, the upright crop of the quadrat from its 4 corners, is
:func:`quadratseg_handlers.ops.quadrat.warp_quadrat`. With REFINE_CORNERS=true gridcorners
predicts a second time on that crop and merges the two passes' corners; with
FIT_FRAME_BARS=true a corner off the frame's bars moves where they cross
(:mod:`quadratseg_handlers.ops.frame_bars`; docs/grid.md); with RETRY_THRESHOLD a photo with
no quadrat is tried again at a lower threshold, its answer kept when the bars confirm it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from quadratseg_handlers import cvat
from quadratseg_handlers.backends.ultralytics import YoloSettings, load_configured_yolo
from quadratseg_handlers.backends.ultralytics_results import PointDetections, result_points
from quadratseg_handlers.core.config import ConfigError, retuned, setting
from quadratseg_handlers.core.contract import BaseHandler
from quadratseg_handlers.core.request import photo_size_hw, reduction
from quadratseg_handlers.cvat.shapes import Shape
from quadratseg_handlers.cvat.spec import LabelSpec
from quadratseg_handlers.ops.frame_bars import WEAK_SCORE, corners_from_bars, corners_on_bars
from quadratseg_handlers.ops.grid_string import corners_on_string, cut_sides
from quadratseg_handlers.ops.matching import Match, match_points, project
from quadratseg_handlers.ops.quadrat import merge_corner_passes, quadrat_transform, warp_quadrat
from quadratseg_handlers.ops.template import (
    CORNER_POINTS,
    GRID_POINTS,
    load_template,
    skeleton_edges,
    sublabels,
    template_file,
)

POINT_TASKS = ("detect", "pose")
"""YOLO tasks whose output can be read as points."""


@dataclass(frozen=True)
class GridSettings(YoloSettings):
    """The YOLO settings, then how detections become one skeleton in template order."""

    template_path: Path = setting(
        Path("/opt/nuclio/kp_template.npy"),
        "Template `.npy`: (N, 2) normalised (x, y) of the points in skeleton order. When it "
        "is the default path and that file is absent, the template shipped in the package is "
        "used (logged at start-up).",
    )
    skeleton_label: str = setting(
        "grid", 'Name of the skeleton label; its sublabels are "1".."N" in template order.'
    )
    use_template_matching: bool = setting(
        True,
        "`true`: one skeleton per image in template order (Hungarian matching); `false`: "
        "the raw detections as CVAT points, labelled with the model's class names.",
    )
    hungarian_thresh: float = setting(
        0.12,
        "Largest distance between a detection and its template point after alignment, in "
        "normalised image units (fraction of the width / height); farther pairs are rejected.",
        low=0.001,
        high=2.0,
    )
    min_matches: int = setting(
        20,
        "Fewest template points that must get a detection; below it the answer is empty and "
        "the log says why (a fit from fewer would guess the skeleton).",
        low=2,
    )
    restore_cut_boxes: bool = setting(
        True,
        "Detect models: a box cut by the image's edge along one axis is made square again "
        "(its uncut side) before its centre becomes the point; `false`: the cut box's centre, "
        "up to half a box inward of the point (see docs/grid.md).",
    )
    point_confidence: bool = setting(
        False,
        "`false`: the confidence is the skeleton's only (declared on the skeleton label, as "
        "QUADRATSEG's projects have it); `true`: every element also carries its point's "
        "confidence, declared on each sublabel (projects that declare it on sublabels).",
    )
    filled_points_outside: bool = setting(
        False,
        "How template points without a detection are answered: `false`: visible at the "
        "homography's position with confidence 0; `true`: flagged `outside` (hidden in CVAT).",
    )

    def matching(self) -> dict[str, Any]:
        """:func:`match_points`' options from these settings."""
        return {"max_cost": self.hungarian_thresh, "min_matches": self.min_matches}


@dataclass(frozen=True)
class PoseSettings(GridSettings):
    """The grid settings, then what gridpose may assume of its input."""

    warped_input: bool = setting(
        False,
        "`true`: every request is the quadrat warped upright as the template lies (the "
        "pipeline's warp, TEMPLATE_PATH made for its margin), so when a border row of the "
        "string is missing (cut off by the photo's edge, black in the warp) the lattice is "
        "placed where the template puts it rather than one row off; `false`: the grid may "
        "lie anywhere in the image. See docs/grid.md.",
    )

    def matching(self) -> dict[str, Any]:
        """:func:`match_points`' options, with WARPED_INPUT."""
        return {**super().matching(), "warped": self.warped_input}


@dataclass(frozen=True)
class CornerSettings(GridSettings):
    """The grid settings with the corners' defaults, then the corners' checks."""

    template_path: Path = retuned(
        GridSettings, "template_path", Path("/opt/nuclio/kp_template_corners.npy")
    )
    skeleton_label: str = retuned(GridSettings, "skeleton_label", "quadrat_corner")
    hungarian_thresh: float = retuned(GridSettings, "hungarian_thresh", 0.3)
    min_matches: int = retuned(GridSettings, "min_matches", 3)
    refine_corners: bool = setting(
        False,
        "`true`: a second predict on the quadrat warped upright from the first pass's corners "
        "(640 px, 10 % margin); corners both passes detect within 3 % of the side are "
        "averaged, otherwise the better scored one is kept. Two predicts per image; see "
        "docs/grid.md.",
    )
    fit_frame_bars: bool = setting(
        False,
        "`true`: the frame's 4 bars are fitted as straight lines over their visible length, "
        "and a corner whose two bars cross more than 2 % of the side away moves to the "
        "crossing (a corner hidden under a colony, or one the detector was unsure of); once "
        "two corners agree with their bars, the agreeing ones snap to the crossings, and a "
        "corner cut off by the photo's edge moves out to where its bars cross beyond it; a "
        "side whose bar the photo's edge cut off goes where the grid string's spacing puts "
        "it. About 80 ms per image on a 2-core CPU (about 45 ms more with a corner near the "
        "photo's edge). See docs/grid.md.",
    )
    retry_threshold: float = setting(
        0.0,
        "Where no quadrat is found at the request's threshold, predict again at this lower "
        "one (below CONF_THRESHOLD) and answer the quadrat only when the frame confirms all "
        "4 corners (each within 2 % of the side of its bars' crossing, or, on a side the "
        "photo's edge cut off, of where the grid string puts it; needs FIT_FRAME_BARS=true): "
        "a frame the detector scores low, without the stray boxes a low threshold lets "
        "through. The answer's confidence stays the detector's, and a warning says so. "
        "Costs one more predict (two with REFINE_CORNERS) on photos with no quadrat only; "
        "0: off.",
        low=0.0,
        high=1.0,
    )

    def __post_init__(self) -> None:
        """REFINE_CORNERS and FIT_FRAME_BARS need the corners in template order;
        RETRY_THRESHOLD needs the frame's bars and a CONF_THRESHOLD above it."""
        checks = (
            ("REFINE_CORNERS", self.refine_corners),
            ("FIT_FRAME_BARS", self.fit_frame_bars),
        )
        for name, on in checks:
            if on and not self.use_template_matching:
                raise ConfigError(
                    f"{name}=true needs USE_TEMPLATE_MATCHING=true: it warps the quadrat "
                    "from its ordered corners"
                )
        retry = self.retry_threshold
        if retry > 0 and not self.fit_frame_bars:
            raise ConfigError(
                f"RETRY_THRESHOLD={retry:g} needs FIT_FRAME_BARS=true: "
                "the frame's bars confirm what it finds"
            )
        if 0 < self.conf_threshold <= retry:
            raise ConfigError(
                f"RETRY_THRESHOLD={retry:g} must be below CONF_THRESHOLD="
                f"{self.conf_threshold:g}: it is tried where that finds no quadrat"
            )


SECOND_PASS_SIDE = 640
"""Side of the upright warp the corners' second pass predicts on (pixels)."""

SECOND_PASS_MARGIN = 0.1
"""Margin around the quadrat in that warp, as a fraction of its side: the frame stays whole."""


@dataclass(frozen=True)
class GridPrediction:
    """One image's detections and, with template matching, their ordering."""

    detections: PointDetections
    match: Match | None
    """None when USE_TEMPLATE_MATCHING is false."""


class GridHandler(BaseHandler[GridPrediction]):
    """A YOLO points model whose points are ordered by a template into one skeleton."""

    template_points: ClassVar[int] = GRID_POINTS
    """Points of the skeleton (and of a valid template)."""

    settings_class = GridSettings
    settings: GridSettings

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
        if self.settings.min_matches > self.template_points:
            raise ConfigError(
                f"MIN_MATCHES={self.settings.min_matches}: more than the "
                f"{self.template_points} points of the template"
            )
        self.yolo = load_configured_yolo(self.settings, POINT_TASKS, self.device)
        self.class_names = self.yolo.names

    def _template_file(self) -> Path:
        """TEMPLATE_PATH, or the packaged template when it is the default path and absent."""
        default = type(self.settings).template_path
        return template_file(
            self.settings.template_path, default, self.template_points, self.function_name
        )

    def decode_size(self) -> int | None:
        """The network input's long side: points are scaled back to the photo."""
        return self.yolo.decode_side

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[GridPrediction]:
        """Each image's points in template order (:meth:`points`); why there is no skeleton
        is logged for each image without one."""
        predictions = self.points(images, threshold)
        for prediction in predictions:
            match = prediction.match
            if match is not None and not match.ok:
                self.warn(
                    "no skeleton: " + match.reason,
                    detections=len(prediction.detections.points),
                    MIN_MATCHES=self.settings.min_matches,
                    HUNGARIAN_THRESH=self.settings.hungarian_thresh,
                )
        return predictions

    def points(self, images: Sequence[np.ndarray], threshold: float) -> list[GridPrediction]:
        """One batched YOLO predict, then each image's points put in template order."""
        results = self.yolo.predict(images, threshold)
        predictions = []
        for image, result in zip(images, results, strict=True):
            found = result_points(
                result, threshold, image, restore_cut=self.settings.restore_cut_boxes
            )
            use_template = self.settings.use_template_matching
            match = self.match_template(found, image) if use_template else None
            predictions.append(GridPrediction(found, match))
        return predictions

    def match_template(self, found: PointDetections, image: np.ndarray) -> Match:
        """The points matched to the template with this function's settings."""
        height, width = photo_size_hw(image)
        return match_points(
            found.points,
            self.template,
            (width, height),
            scores=found.scores,
            **self.settings.matching(),
        )

    def to_shapes(self, prediction: GridPrediction, image: np.ndarray) -> list[Shape]:
        """One skeleton in template order, or the raw points without template matching."""
        match = prediction.match
        if match is None:
            found = prediction.detections
            raw = zip(found.points, found.scores, found.labels, strict=True)
            return [cvat.points(label, point, score) for point, score, label in raw]
        if not match.ok:
            return []
        height, width = photo_size_hw(image)
        return [
            skeleton_shape(
                self.settings.skeleton_label,
                match,
                width,
                height,
                filled_outside=self.settings.filled_points_outside,
                point_confidence=self.settings.point_confidence,
            )
        ]

    def labels(self) -> list[LabelSpec]:
        """The skeleton (sublabels and svg from the template), or the class names as points."""
        if not self.settings.use_template_matching:
            return [cvat.label_spec(name, "points") for name in self.class_names]
        return self.template_labels()

    def template_labels(self) -> list[LabelSpec]:
        """The skeleton label, read from the template alone (no weights needed): what
        ``quadratseg labels`` prints for a grid function."""
        if not self.settings.use_template_matching:
            raise ConfigError(
                "USE_TEMPLATE_MATCHING=false: the labels are the model's class names; "
                "give the packaged bundle instead"
            )
        template = getattr(self, "template", None)
        if template is None:
            template = load_template(self._template_file(), self.template_points)
        points = self.template_points
        confidence = [cvat.CONFIDENCE_SPEC] if self.settings.point_confidence else []
        return [
            cvat.skeleton_spec(
                self.settings.skeleton_label,
                sublabels(points),
                template,
                skeleton_edges(points),
                sublabel_attributes=confidence,
            )
        ]


class GridCornersHandler(GridHandler):
    """pth-yolo-gridcorners: the quadrat frame's corners TL, TR, BR, BL."""

    function_name = "pth-yolo-gridcorners"
    template_points = CORNER_POINTS
    settings_class = CornerSettings
    settings: CornerSettings

    def decode_size(self) -> int | None:
        """The network input, or the second pass's warp side when that is larger: the second
        pass and the frame's bars look at the quadrat closer than the first pass does."""
        side = super().decode_size()
        if side is not None and (self.settings.refine_corners or self.settings.fit_frame_bars):
            return max(side, SECOND_PASS_SIDE)
        return side

    def points(self, images: Sequence[np.ndarray], threshold: float) -> list[GridPrediction]:
        """The corners of each image (:meth:`corners`); where there is no quadrat and
        RETRY_THRESHOLD is below ``threshold``, the corners found at RETRY_THRESHOLD when the
        frame confirms all four (:func:`on_its_frame`)."""
        found = self.corners(images, threshold)
        retry = self.settings.retry_threshold
        missing = [index for index, each in enumerate(found) if not _has_quadrat(each)]
        if not (missing and 0 < retry < threshold):
            return found
        again = self.corners([images[index] for index in missing], retry)
        for index, each in zip(missing, again, strict=True):
            match = each.match
            if match is None or not match.ok:
                continue
            confirmed = on_its_frame(images[index], match)
            if confirmed:
                found[index] = each
                self.warn(
                    f"quadrat found at RETRY_THRESHOLD={retry:g}, below the threshold "
                    f"{threshold:g}: {confirmed}",
                    confidence=round(skeleton_score(match), 3),
                )
        return found

    def corners(self, images: Sequence[np.ndarray], threshold: float) -> list[GridPrediction]:
        """The corners of each image, refined by a second pass when REFINE_CORNERS is true,
        then checked against the frame's bars when FIT_FRAME_BARS is true."""
        found = super().points(images, threshold)
        if self.settings.refine_corners:
            found = self.second_pass(images, found, threshold)
        if self.settings.fit_frame_bars:
            found = [self.on_bars(image, each) for image, each in zip(images, found, strict=True)]
        return found

    def on_bars(self, image: np.ndarray, prediction: GridPrediction) -> GridPrediction:
        """The prediction with its corners moved where the frame's bars cross
        (:func:`corners_from_bars`, on the image as decoded), and a side the photo's edge
        cut off where the grid string puts it (:func:`cut_sides`); the match's homography
        follows the moved corners, its scores and detections stay the detector's."""
        match = prediction.match
        if match is None or not match.ok:
            return prediction
        factor = reduction(image)
        weak = match.filled | (match.scores < WEAK_SCORE)
        on_bars = corners_from_bars(image, match.points / factor, weak=weak)
        corners = cut_sides(image, on_bars)[0] * factor
        if np.array_equal(corners, match.points):
            return prediction
        homography, _ = cv2.findHomography(self.template, corners, 0)
        return GridPrediction(
            prediction.detections, replace(match, points=corners, homography=homography)
        )

    def second_pass(
        self, images: Sequence[np.ndarray], first: list[GridPrediction], threshold: float
    ) -> list[GridPrediction]:
        """One batched predict on the quadrats warped upright from the first pass's corners;
        each corner is then merged from both passes (:func:`merge_corner_passes`). Where the
        second pass finds no quadrat the first pass's answer stands, without a log line."""
        warps: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for index, (image, prediction) in enumerate(zip(images, first, strict=True)):
            if prediction.match is not None and prediction.match.ok:
                found = upright_quadrat(image, prediction.match.points)
                if found is not None:
                    warps[index] = found
        if not warps:
            return first
        results = self.yolo.predict([warp for warp, _ in warps.values()], threshold)
        refined = list(first)
        for (index, (warp, to_photo)), result in zip(warps.items(), results, strict=True):
            second = self.match_template(result_points(result, threshold, warp), warp)
            if second.ok:
                refined[index] = self.merged(images[index], first[index], second, to_photo)
        return refined

    def merged(
        self, image: np.ndarray, first: GridPrediction, second: Match, to_photo: np.ndarray
    ) -> GridPrediction:
        """The two passes' corners merged and matched again (the first pass's answer when
        the merged corners do not match)."""
        assert first.match is not None
        points, scores = merge_corner_passes(
            first.match.points,
            np.where(first.match.filled, 0.0, first.match.scores),
            project(to_photo, second.points),
            np.where(second.filled, 0.0, second.scores),
        )
        detected = scores > 0
        labels = tuple(self.class_names[:1]) * int(detected.sum())
        found = PointDetections(points[detected], scores[detected], labels)
        match = self.match_template(found, image)
        return GridPrediction(found, match) if match.ok else first


class GridPoseHandler(GridHandler):
    """pth-yolo-gridpose: the 117 grid points, row-major from the top-left."""

    function_name = "pth-yolo-gridpose"
    template_points = GRID_POINTS
    settings_class = PoseSettings
    settings: PoseSettings


def upright_quadrat(image: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The quadrat warped upright from ``corners`` (photo pixels) for the second pass, and
    the map from the warp's pixels back to the photo's; None when the corners are not a
    convex quadrilateral in template order."""
    factor = reduction(image)
    in_image = np.asarray(corners) / factor
    margin = round(SECOND_PASS_MARGIN * SECOND_PASS_SIDE)
    try:
        to_warp = quadrat_transform(in_image, SECOND_PASS_SIDE, margin)
    except ValueError:
        return None
    warp = warp_quadrat(np.asarray(image), in_image, SECOND_PASS_SIDE, margin=margin)
    return warp, np.diag([factor, factor, 1.0]) @ np.linalg.inv(to_warp)


def skeleton_shape(
    label: str,
    match: Match,
    width: int,
    height: int,
    *,
    filled_outside: bool = False,
    point_confidence: bool = False,
) -> Shape:
    """The CVAT skeleton of a successful match: elements "1".."N" in template order.

    The skeleton's confidence is :func:`skeleton_score`. With ``point_confidence`` each
    element also carries its own: the detection's score, "0" for a filled point. A filled
    element (no detection) is visible at the homography's position, or ``outside`` when
    ``filled_outside``; one that falls outside the image is always ``outside``.
    """
    inside = (
        (match.points[:, 0] >= 0)
        & (match.points[:, 0] <= width)
        & (match.points[:, 1] >= 0)
        & (match.points[:, 1] <= height)
    )
    elements = cvat.skeleton_elements(
        sublabels(len(match.points)),
        match.points,
        match.scores.tolist() if point_confidence else None,
        (match.filled & (filled_outside | ~inside)).tolist(),
    )
    return cvat.skeleton(label, elements, skeleton_score(match))


def _has_quadrat(prediction: GridPrediction) -> bool:
    return prediction.match is not None and prediction.match.ok


def on_its_frame(image: np.ndarray, match: Match) -> str:
    """What confirms each of the match's 4 corners (photo pixels) in ``image``, said for the
    warning header: its two bars crossing there (:func:`corners_on_bars`), or, on a side the
    photo's edge cut off, the grid string (:func:`corners_on_string`); "" when some corner
    is not confirmed."""
    corners = match.points / reduction(image)
    on_bars = corners_on_bars(image, corners)
    if on_bars.all():
        return "the frame's bars confirm its 4 corners"
    on_string = corners_on_string(image, corners, on_bars) & ~on_bars
    if not (on_bars | on_string).all():
        return ""
    return (
        f"the frame's bars confirm {int(on_bars.sum())} of its corners, the grid string "
        f"the {int(on_string.sum())} on the side the photo's edge cuts off"
    )


def skeleton_score(match: Match) -> float:
    """The skeleton's confidence: the mean of its points' scores, a filled point counting 0.

    A skeleton of 117 points found with 0.9 each but 17 of them filled scores 0.77: how much
    of the skeleton the detector saw, and how surely.
    """
    scores = np.where(match.filled, 0.0, match.scores)
    return float(scores.mean()) if len(scores) else 0.0

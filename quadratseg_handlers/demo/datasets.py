"""The demo models' data sets: the photos each model learns from and their YOLO labels.

Each model sees what its stage sees in the pipeline (see :mod:`~quadratseg_handlers.demo.training`):
the whole photo with a box around each frame corner (gridcorners), the quadrat warped upright
from slightly wrong corners with a box around each grid point (gridpose), the warped quadrat with
its string painted out and one polygon a colony (coralseg). Photos come from the drawn world
(:func:`~quadratseg_handlers.demo.synthetic.quadrat_image`) or, in a run over real reef,
:func:`~quadratseg_handlers.demo.reef.reef_quadrat`; each is drawn from its seed alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from quadratseg_handlers.demo.reef import reef_quadrat
from quadratseg_handlers.demo.reef_photos import ReefTextures
from quadratseg_handlers.demo.synthetic import SyntheticQuadrat, quadrat_image
from quadratseg_handlers.demo.warped import remove_string, warped_masks, warped_view


class DataModel(Protocol):
    """What drawing a data set needs of a demo model
    (:class:`~quadratseg_handlers.demo.training.DemoModel`)."""

    @property
    def name(self) -> str: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def imgsz(self) -> int: ...
    @property
    def train_images(self) -> int: ...
    @property
    def val_images(self) -> int: ...
    @property
    def train_seeds(self) -> range: ...
    @property
    def val_seeds(self) -> range: ...


CORNER_NOISE = 0.006
"""Sigma of the corner error the warped training photos are drawn with (fraction of the side)."""

CORNER_BOX = 0.1
"""Side of the box around a frame corner, as a fraction of the quadrat's side."""

POINT_BOX = 0.06
"""Side of the box around a grid point, as a fraction of the warped image's side."""

MIN_BOX = 0.05
"""Smallest box side, as a fraction of the photo's long side: at 320 px that is 16 px, two
strides of YOLO's finest head, so that every box holds anchor centres to learn from."""

REEF_DRAWN_SHARE = 4
"""In a run over real reef, photos whose seed is a multiple of this come from the drawn world,
so that the drawn world is not forgotten."""

FRAME_STREAM = 11
"""Second word of the random stream that picks a run's frame for a seed (see
:attr:`~quadratseg_handlers.demo.training.Refinement.frames`): apart from the stream that
draws the photo itself."""

ASPECTS: tuple[tuple[int, int], ...] = ((1, 1), (4, 3), (3, 4), (3, 2), (16, 9))
"""Aspect ratios of the drawn photographs (width : height)."""


def random_photo_size_wh(rng: np.random.Generator, long_side: tuple[int, int]) -> tuple[int, int]:
    """A random (width, height): one of :data:`ASPECTS`, the long side within ``long_side``."""
    aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
    longest = int(rng.integers(long_side[0], long_side[1] + 1))
    if aspect[0] >= aspect[1]:
        return longest, max(32, round(longest * aspect[1] / aspect[0]))
    return max(32, round(longest * aspect[0] / aspect[1])), longest


def jittered_corners(scene: SyntheticQuadrat, rng: np.random.Generator) -> np.ndarray:
    """The true corners moved by a corner detector's typical error (CORNER_NOISE of the side)."""
    side = scene.side
    noise = np.clip(rng.normal(0.0, CORNER_NOISE, (4, 2)), -3 * CORNER_NOISE, 3 * CORNER_NOISE)
    return np.asarray(scene.corners + noise * side)


def _box_lines(points: np.ndarray, box: float, size: tuple[int, int]) -> list[str]:
    """YOLO detect labels: a ``box``-pixel square around each point inside the image."""
    width, height = size
    lines = []
    for x, y in points:
        if 0 <= x < width and 0 <= y < height:
            lines.append(f"0 {x / width:.6f} {y / height:.6f} {box / width:.6f} {box / height:.6f}")
    return lines


def _polygon_lines(
    masks: list[tuple[str, np.ndarray]], names: tuple[str, ...], min_area: int
) -> list[str]:
    """YOLO segment labels: the largest outline of each colony of at least ``min_area`` px."""
    lines = []
    for label, mask in masks:
        if int(mask.sum()) < min_area:
            continue
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        outline = max(contours, key=cv2.contourArea).reshape(-1, 2)
        if len(outline) < 3:
            continue
        height, width = mask.shape
        coords = " ".join(f"{x / width:.5f} {y / height:.5f}" for x, y in outline)
        lines.append(f"{names.index(label)} {coords}")
    return lines


def run_frame(seed: int, frames: tuple[str, ...] | None) -> str | None:
    """The frame a run drawing ``frames`` puts in the photo of ``seed``, one of them at random
    (on its own stream: the photo's draws stay the same); None without ``frames``."""
    if not frames:
        return None
    return frames[int(np.random.default_rng((seed, FRAME_STREAM)).integers(len(frames)))]


def _scene(
    size: tuple[int, int],
    seed: int,
    reef: ReefTextures | None,
    frames: tuple[str, ...] | None = None,
) -> SyntheticQuadrat:
    """The drawn world's photo, or over real reef when ``reef`` (one in REEF_DRAWN_SHARE drawn),
    its frame drawn from ``frames`` when given."""
    if reef is None or seed % REEF_DRAWN_SHARE == 0:
        return quadrat_image(size, seed)
    return reef_quadrat(size, seed, reef, frame=run_frame(seed, frames))


def draw_example(
    model: DataModel,
    seed: int,
    reef: ReefTextures | None = None,
    frames: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """One training photo of ``model`` and its YOLO label lines, drawn from ``seed`` (over
    real reef from ``reef``'s patches when given, with one of ``frames`` when given; no grid
    point labels without a string)."""
    rng = np.random.default_rng(seed + 7)
    if model.name == "gridcorners":
        size = random_photo_size_wh(rng, (512, 832))
        scene = _scene(size, seed, reef, frames)
        box = max(CORNER_BOX * scene.side, MIN_BOX * max(size))
        return scene.image, _box_lines(scene.corners, box, size)
    scene = _scene(random_photo_size_wh(rng, (640, 1024)), seed, reef, frames)
    warp = int(rng.integers(model.imgsz, 2 * model.imgsz))
    margin = rng.uniform(0.02, 0.08)
    view = warped_view(scene, warp, corners=jittered_corners(scene, rng), margin=margin)
    if model.name == "gridpose":
        if not scene.look.get("string", True):
            return view.image, []
        return view.image, _box_lines(view.grid_points, POINT_BOX * warp, (warp, warp))
    clean = remove_string(view)
    min_area = int(0.0005 * warp * warp)
    masks = warped_masks(scene, view.transform, (warp, warp))
    return clean, _polygon_lines(masks, model.names, min_area)


def write_dataset(
    model: DataModel,
    folder: Path,
    log: Callable[[str], None] = print,
    reef: ReefTextures | None = None,
    frames: tuple[str, ...] | None = None,
) -> Path:
    """Draw ``model``'s training and validation photos into a YOLO data set; return its yaml
    (over real reef and with one of ``frames`` as :func:`draw_example` says)."""
    data = folder / "data.yaml"
    if data.is_file() and _drawn(folder) == model.train_images + model.val_images:
        log(f"{model.name}: reusing the photos drawn in {folder}")
        return data
    started = time.perf_counter()
    for split, seeds in (("train", model.train_seeds), ("val", model.val_seeds)):
        images, labels = folder / "images" / split, folder / "labels" / split
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            image, lines = draw_example(model, seed, reef, frames)
            Image.fromarray(image).save(images / f"{seed}.png", compress_level=1)
            (labels / f"{seed}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data.write_text(
        json.dumps(
            {
                "path": str(folder.resolve()),
                "train": "images/train",
                "val": "images/val",
                "names": dict(enumerate(model.names)),
            }
        )
    )
    log(f"{model.name}: drew {model.train_images} + {model.val_images} photos in "
        f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return data


def _drawn(folder: Path) -> int:
    """How many labelled photos a data set folder holds."""
    return sum(1 for _ in (folder / "labels").glob("*/*.txt"))

"""A small handler written for the tests: bright regions -> CVAT rectangles.

It proves the base handler before any real model exists, and can be told to fail
(FAIL_WITH) so the tests can check how the base answers model errors.
"""

from __future__ import annotations

import importlib
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from quadratseg_handlers import BaseHandler, ConfigError, ImageHandler, cvat, setting
from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import retuned
from quadratseg_handlers.core.contract import DetectorSettings, ImageSettings
from quadratseg_handlers.core.request import Request, RequestError, decode_image, encode_image

Box = tuple[int, int, int, int, float]


RECT_IMAGE_BOXES = [
    {
        "label": "bright",
        "type": "rectangle",
        "points": [20.0, 10.0, 59.0, 29.0],
        "confidence": "100",
        "attributes": [{"name": "confidence", "value": "100"}],
    },
    {
        "label": "bright",
        "type": "rectangle",
        "points": [100.0, 50.0, 149.0, 99.0],
        "confidence": "90",
        "attributes": [{"name": "confidence", "value": "90"}],
    },
]
"""BrightBoxHandler's exact CVAT answer for the ``rect_image`` fixture (tests/conftest.py)."""


@dataclass(frozen=True)
class BrightBoxSettings(DetectorSettings):
    conf_threshold: float = retuned(DetectorSettings, "conf_threshold", 0.5)
    level: int = setting(128, "grey level", low=0, high=255)
    fail_with: Literal["", "error", "oom"] = setting("", "make predict fail")


class BrightBoxHandler(BaseHandler[list[Box]]):
    """Regions brighter than LEVEL become rectangles scored by mean brightness / 255."""

    function_name = "test-bright-boxes"
    uses_torch = False
    settings_class = BrightBoxSettings
    settings: BrightBoxSettings
    loads = 0

    def load_model(self) -> None:
        type(self).loads += 1
        self.level = self.settings.level

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[list[Box]]:
        if self.settings.fail_with == "error":
            raise ValueError("weights are corrupt\nsecond line")
        if self.settings.fail_with == "oom":
            import torch  # the real class CUDA raises; it exists in every torch build

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        results = []
        for image in images:
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            count, labels, stats, _ = cv2.connectedComponentsWithStats(
                (gray > self.level).astype(np.uint8)
            )
            boxes = []
            for index in range(1, count):
                x, y, w, h = (int(v) for v in stats[index, :4])
                score = float(gray[labels == index].mean()) / 255
                if score >= threshold:
                    boxes.append((x, y, x + w - 1, y + h - 1, score))
            results.append(boxes)
        return results

    def to_shapes(self, prediction: list[Box], image: np.ndarray) -> list[cvat.Shape]:
        return [cvat.rectangle("bright", box[:4], box[4]) for box in prediction]

    def labels(self) -> list[cvat.LabelSpec]:
        return [cvat.label_spec("bright", "rectangle")]


@dataclass(frozen=True)
class LevelBoxSettings(DetectorSettings):
    levels_path: Path = setting(
        Path("/opt/nuclio/levels.npy"), "grey levels", parse=cfg.existing_file
    )
    names_path: Path = setting(
        Path("/opt/nuclio/names.json"), "label names", parse=cfg.existing_file
    )
    names_module: str = setting("", "module holding NAMES")


class LevelBoxHandler(BaseHandler[list[tuple[str, Box]]]):
    """A handler with real 'weights' for the packaging tests, no model library needed.

    LEVELS_PATH is a .npy of 1 to 8 grey levels (the 'checkpoint'); NAMES_PATH a JSON list of
    label names (a shipped default, like a keypoint template); NAMES_MODULE, when set, a module
    shipped next to main.py whose NAMES replace them (like an mmseg config's custom modules).
    Each level is a label; regions brighter than it become rectangles scored by brightness.
    """

    function_name = "test-level-boxes"
    uses_torch = False
    settings_class = LevelBoxSettings
    settings: LevelBoxSettings

    def load_model(self) -> None:
        path = self.settings.levels_path
        levels = np.load(path, allow_pickle=False)
        if levels.ndim != 1 or not 1 <= len(levels) <= 8 or not np.all(levels < 255):
            raise ConfigError(
                f"LEVELS_PATH={path}: expected 1 to 8 grey levels below 255, got shape "
                f"{levels.shape}"
            )
        names = json.loads(self.settings.names_path.read_text())
        if self.settings.names_module:
            names = importlib.import_module(self.settings.names_module).NAMES
        if len(names) < len(levels):
            raise ConfigError(f"NAMES_PATH: {len(names)} names for {len(levels)} levels")
        self.levels = [(str(names[i]), float(level)) for i, level in enumerate(levels)]

    def predict(
        self, images: Sequence[np.ndarray], threshold: float
    ) -> list[list[tuple[str, Box]]]:
        results = []
        for image in images:
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            found = []
            for name, level in self.levels:
                count, regions, stats, _ = cv2.connectedComponentsWithStats(
                    (gray > level).astype(np.uint8)
                )
                for index in range(1, count):
                    x, y, w, h = (int(v) for v in stats[index, :4])
                    score = float(gray[regions == index].mean()) / 255
                    if score >= threshold:
                        found.append((name, (x, y, x + w - 1, y + h - 1, score)))
            results.append(found)
        return results

    def to_shapes(self, prediction: list[tuple[str, Box]], image: np.ndarray) -> list[cvat.Shape]:
        return [cvat.rectangle(name, box[:4], box[4]) for name, box in prediction]

    def labels(self) -> list[cvat.LabelSpec]:
        return [cvat.label_spec(name, "rectangle") for name, _ in self.levels]


def level_box_files(folder: Path) -> dict[str, Path]:
    """The 'tiny model' of LevelBoxHandler: two grey levels, 90 and 200."""
    path = folder / "levels.npy"
    np.save(path, np.array([90.0, 200.0]))
    return {"levels": path}


@dataclass(frozen=True)
class MaskFillSettings(ImageSettings):
    fill_path: Path = setting(
        Path("/opt/nuclio/fill.npy"), "RGB fill colour", parse=cfg.existing_file
    )


class MaskFillHandler(ImageHandler):
    """An inpainter for the packaging tests: masked pixels take the colour in FILL_PATH.

    Request ``{"image": b64, "mask": b64}`` (mask > 0 = fill); answer ``{"image": b64 PNG}``,
    the shape of pth-lama's exchange.
    """

    function_name = "test-mask-fill"
    uses_torch = False
    settings_class = MaskFillSettings
    settings: MaskFillSettings

    def load_model(self) -> None:
        fill = np.load(self.settings.fill_path, allow_pickle=False)
        if fill.shape != (3,):
            raise ConfigError(f"FILL_PATH: expected an RGB colour, got shape {fill.shape}")
        self.fill = fill.astype(np.uint8)

    def to_image(self, request: Request) -> np.ndarray:
        if "mask" not in request.body:
            raise RequestError("missing 'mask'")
        mask = decode_image(request.body["mask"], self.settings.max_image_pixels, "mask")
        image = request.images[0].copy()
        if mask.shape != image.shape:
            raise RequestError(f"mask is {mask.shape[:2]}, image {image.shape[:2]}")
        image[mask[..., 0] > 0] = self.fill
        return image

    def answer(self, request: Request, image: np.ndarray) -> dict[str, str]:
        return {"image": encode_image(image, fmt="PNG")}


def mask_fill_files(folder: Path) -> dict[str, Path]:
    """The 'tiny model' of MaskFillHandler: pure red."""
    path = folder / "fill.npy"
    np.save(path, np.array([255, 0, 0], dtype=np.uint8))
    return {"fill": path}


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")

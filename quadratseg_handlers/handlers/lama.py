"""pth-lama: paint the grid string out of a quadrat photo, for clean coral segmentation.

Request: ``{"image": b64, "keypoints": [[x, y], ... 117]}`` (the grid points in skeleton
order, or pth-yolo-gridpose's skeleton: its ``elements`` list or the whole shape), or
``{"image": b64, "mask": b64 PNG}``. Optional: ``line_width`` (keypoints only), ``format``
(``same``, ``png``, ``jpeg``) and ``return_mask``. Answer: ``{"image": b64}`` plus ``"mask"``
(PNG, 255 = painted) when asked. Only masked pixels change. See docs/lama.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import ImageOps

from quadratseg_handlers.backends.inpainting import Backend, LamaBackend, OpenCvBackend, inpaint
from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import ConfigError, Setting
from quadratseg_handlers.core.handler import BaseHandler, RawAnswer
from quadratseg_handlers.core.request import (
    Request,
    RequestError,
    b64,
    decode_base64,
    image_bytes,
    load_image,
    open_image,
    parse_choice,
    parse_flag,
    parse_integer,
    to_rgb_array,
)
from quadratseg_handlers.cvat.spec import LabelSpec
from quadratseg_handlers.ops.gridmask import dilate, draw_grid_mask
from quadratseg_handlers.ops.matching import fill_from_template
from quadratseg_handlers.ops.template import GRID_POINTS, grid_sublabels, grid_template

MIN_SIDE = 8
"""Images this small or smaller per side are refused: big-lama's padding fails on them."""

IMAGE_TYPES = {"image/jpeg": "jpeg", "image/png": "png"}
"""``Accept`` values answered with the image file itself, and their format."""

MAX_LINE_WIDTH = 512
"""Widest grid line accepted, in pixels (setting and request)."""

OUTPUT_FORMATS = ("same", "png", "jpeg")


def _tile_size(value: Any) -> int:
    size = int(cfg.number(0, integer=True)(value))
    if 0 < size < 64:
        raise ConfigError("must be 0 (whole image) or at least 64")
    return size


def parse_keypoints(value: Any) -> np.ndarray:
    """The (117, 2) grid points of a request's ``keypoints``, in skeleton order; NaN rows are
    points the request does not give (to be placed by :func:`complete_keypoints`).

    Accepts 117 ``[x, y]`` pairs (or ``[x, y, v]`` triplets, v = 0: not given) in skeleton
    order, a list of CVAT skeleton elements (``{"label": "1".."117", "points": [x, y],
    "outside": ...}`` in any order; absent or ``outside`` elements are not given) or a
    skeleton shape holding ``elements``.
    """
    if isinstance(value, Mapping):
        if not isinstance(value.get("elements"), list):
            raise RequestError(
                "'keypoints' given as an object must be a CVAT skeleton shape with 'elements'"
            )
        value = value["elements"]
    if not isinstance(value, list):
        raise RequestError(
            f"'keypoints' must be a list of {GRID_POINTS} [x, y] pairs or CVAT skeleton "
            f"elements, got {type(value).__name__}"
        )
    if value and isinstance(value[0], Mapping):
        pairs = _element_pairs(value)
    elif len(value) != GRID_POINTS:
        raise RequestError(
            f"'keypoints' must hold the {GRID_POINTS} grid points, got {len(value)} (send "
            "CVAT skeleton elements, or [x, y, 0] for a point not given)"
        )
    else:
        pairs = value
    points = np.full((GRID_POINTS, 2), np.nan)
    for index, pair in enumerate(pairs):
        if pair is None:
            continue
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) not in (2, 3)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        ):
            raise RequestError(
                f"keypoint {index + 1} must be [x, y] or [x, y, v] numbers, got {pair!r:.80}"
            )
        if not all(math.isfinite(v) for v in pair):
            raise RequestError(f"keypoint {index + 1} is not finite: {pair!r}")
        if len(pair) == 2 or pair[2] != 0:
            points[index] = pair[:2]
    return points


def _element_pairs(elements: list[Any]) -> list[Any]:
    """The points of CVAT skeleton elements in sublabel order; None for an absent or
    ``outside`` element."""
    names = grid_sublabels()
    position = {name: index for index, name in enumerate(names)}
    pairs: list[Any] = [None] * GRID_POINTS
    seen: set[str] = set()
    for index, element in enumerate(elements):
        if not isinstance(element, Mapping) or not isinstance(element.get("label"), str):
            raise RequestError(
                f"'keypoints': element {index} must be a skeleton element with a 'label'"
            )
        label = element["label"]
        if label not in position:
            raise RequestError(
                f"'keypoints': element {index} has sublabel {label!r}; the grid's are "
                f'"1".."{GRID_POINTS}"'
            )
        if label in seen:
            raise RequestError(f"'keypoints': sublabel {label!r} appears twice")
        seen.add(label)
        if not element.get("outside"):
            pairs[position[label]] = element.get("points", "missing")
    return pairs


def complete_keypoints(points: np.ndarray, minimum: int) -> np.ndarray:
    """The 117 points with those not given placed by the homography from the grid lattice
    to the given ones; RequestError when fewer than ``minimum`` are given."""
    given = ~np.isnan(points).any(axis=1)
    count = int(given.sum())
    if count == GRID_POINTS:
        return points
    if count < minimum:
        raise RequestError(
            f"'keypoints': only {count} of the {GRID_POINTS} grid points are given (not "
            f"outside, v != 0); at least MIN_KEYPOINTS={minimum} are needed to place the rest"
        )
    try:
        return fill_from_template(points, given, grid_template())
    except ValueError as exc:
        raise RequestError(f"'keypoints': {exc}") from None


def decode_mask(data: Any, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """A request's base64 mask image as a bool array; non-zero grey = paint (as SimpleLama)."""
    mask_image = open_image(decode_base64(data, "mask"), max_pixels, "mask")
    try:
        mask_image.load()
        grey = np.asarray(ImageOps.exif_transpose(mask_image).convert("L"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError(f"'mask' could not be decoded: {exc}") from None
    width, height = size
    if grey.shape != (height, width):
        raise RequestError(
            f"'mask' is {grey.shape[1]}x{grey.shape[0]} but 'image' is {width}x{height}; "
            "they must be the same size"
        )
    return grey > 0


def accepted_image_type(accept: str) -> str | None:
    """``image/jpeg`` or ``image/png`` when the ``Accept`` header asks for that image type
    (and not for JSON); None: the JSON answer."""
    types = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    if "application/json" in types:
        return None
    return next((kind for kind in types if kind in IMAGE_TYPES), None)


@dataclass(frozen=True)
class InpaintFields:
    """The fields of a grid-removal request besides the image, checked before it is decoded."""

    points: np.ndarray | None
    """(117, 2) grid points, or None when a mask is sent."""
    line_width: int
    output_format: str
    """``same``, ``png`` or ``jpeg``."""
    return_mask: bool


def inpaint_fields(body: Mapping[str, Any], output_format: str, line_width: int) -> InpaintFields:
    """Check a request's fields (defaults: the function's settings) without decoding the image,
    so that a malformed request is answered before the costly work."""
    if body.get("images") is not None:
        raise RequestError("pth-lama paints one image per request: send 'image', not 'images'")
    if body.get("image") is None:
        raise RequestError(
            'missing \'image\': expected {"image": "<base64>", "keypoints": '
            f'[[x, y], ... {GRID_POINTS}]}} or {{"image": ..., "mask": "<base64 PNG>"}}'
        )
    chosen = parse_choice(
        body.get("format"), "format", OUTPUT_FORMATS, output_format, {"jpg": "jpeg"}
    )
    return_mask = parse_flag(body, "return_mask")
    has_keypoints, has_mask = body.get("keypoints") is not None, body.get("mask") is not None
    if has_keypoints == has_mask:
        raise RequestError(
            "give exactly one of 'keypoints' (the grid points) or 'mask' (a base64 PNG)"
        )
    if has_mask and body.get("line_width") is not None:
        raise RequestError("'line_width' applies to 'keypoints' only, not to a 'mask'")
    points = parse_keypoints(body["keypoints"]) if has_keypoints else None
    width = parse_integer(
        body.get("line_width"), "line_width", 1, MAX_LINE_WIDTH, line_width, "number of pixels"
    )
    return InpaintFields(points, width, chosen, return_mask)


@dataclass(kw_only=True)
class InpaintRequest(Request):
    """A grid-removal request: the image, the mask to paint (dilated) and how to answer."""

    mask: np.ndarray
    output_format: str
    return_mask: bool


class LamaHandler(BaseHandler[np.ndarray]):
    """Grid removal: draw the string mask from the grid points, inpaint it, composite back."""

    function_name = "pth-lama"
    unused_settings = frozenset({"CONF_THRESHOLD", "MAX_BATCH_SIZE", "MAX_REQUEST_PIXELS"})
    """No scores to threshold, and batches are refused whatever their size (one image and
    its mask, each within MAX_IMAGE_PIXELS)."""
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting(
            "INPAINT_BACKEND",
            cfg.choice("lama", "opencv"),
            "lama",
            "`lama`: big-lama (LAMA_MODEL) through simple-lama-inpainting; `opencv`: "
            "`cv2.inpaint` (Telea), no weights and no torch. Chosen explicitly, never a fallback.",
            "choice",
        ),
        Setting(
            "LAMA_MODEL",
            cfg.file_path,
            "/opt/nuclio/big-lama.pt",
            "big-lama TorchScript file (INPAINT_BACKEND=lama); missing or unusable stops start-up.",
            "path",
        ),
        Setting(
            "GRID_LINE_WIDTH",
            cfg.number(1, MAX_LINE_WIDTH, integer=True),
            8,
            "Width in pixels of the grid-string lines painted out; a request's `line_width` "
            "overrides it.",
            "integer",
        ),
        Setting(
            "GRID_FRAME_LINES",
            cfg.boolean,
            False,
            "Also paint the segments along the frame between its grid points (rows and columns "
            "0 and 10); by default only the 18 strings are painted.",
            "boolean",
        ),
        Setting(
            "MIN_KEYPOINTS",
            cfg.number(4, GRID_POINTS, integer=True),
            20,
            "Fewest grid points a request must give (not outside, v != 0); the others are "
            "placed by the homography from the grid lattice to the given ones.",
            "integer",
        ),
        Setting(
            "MASK_DILATION",
            cfg.number(0, 256, integer=True),
            0,
            "Grow every mask (drawn or sent) by this many pixels before inpainting.",
            "integer",
        ),
        Setting(
            "OUTPUT_FORMAT",
            cfg.choice(*OUTPUT_FORMATS),
            "same",
            "Answer image format: `same` (JPEG for a JPEG input, PNG otherwise), `png` "
            "(lossless: unmasked pixels bit-identical) or `jpeg`; a request's `format` overrides.",
            "choice",
        ),
        Setting(
            "JPEG_QUALITY",
            cfg.number(1, 100, integer=True),
            95,
            "Quality (1..100) of JPEG answers.",
            "integer",
        ),
        Setting(
            "OPENCV_INPAINT_RADIUS",
            cfg.number(1, 100, integer=True),
            3,
            "Neighbourhood radius in pixels of `cv2.inpaint` (INPAINT_BACKEND=opencv).",
            "integer",
        ),
        Setting(
            "INPAINT_TILE_SIZE",
            _tile_size,
            0,
            "0: inpaint the whole image in one model call. N >= 64: only the N x N cells "
            "holding masked pixels, each with INPAINT_TILE_MARGIN pixels of context (bounds "
            "memory on large images).",
            "integer",
        ),
        Setting(
            "INPAINT_TILE_MARGIN",
            cfg.number(0, 4096, integer=True),
            128,
            "Context in pixels around each cell when INPAINT_TILE_SIZE > 0.",
            "integer",
        ),
    )

    def torch_needed(self) -> bool:
        """Only the LaMa backend runs on torch."""
        return bool(self.config["INPAINT_BACKEND"] == "lama")

    def load_model(self) -> None:
        """Load the chosen backend; a LaMa model is test-run once on a small image."""
        self.backend: Backend
        if self.config["INPAINT_BACKEND"] == "opencv":
            self.backend = OpenCvBackend(int(self.config["OPENCV_INPAINT_RADIUS"]))
            return
        path = cfg.required_file(
            "LAMA_MODEL",
            self.config["LAMA_MODEL"],
            "the function image fetches big-lama.pt at build time (docs/lama.md), or set "
            "INPAINT_BACKEND=opencv to inpaint without weights",
        )
        try:
            self.backend = LamaBackend(path, self.device)
        except ValueError as exc:
            raise ConfigError(f"LAMA_MODEL={path}: {exc}") from None

    def labels(self) -> list[LabelSpec]:
        """None: pth-lama answers with an image, not with CVAT shapes."""
        return []

    def grid_mask(self, points: np.ndarray, size: tuple[int, int], line_width: int) -> np.ndarray:
        """The string mask of 117 grid points on an image of ``size`` (width, height), undilated."""
        return draw_grid_mask(points, size, line_width, frame=bool(self.config["GRID_FRAME_LINES"]))

    def dilated(self, mask: np.ndarray) -> np.ndarray:
        """A drawn or sent mask grown by MASK_DILATION pixels: what gets painted."""
        return dilate(mask, int(self.config["MASK_DILATION"]))

    def paint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Inpaint the masked pixels (whole image or tiles); unmasked pixels stay as they are."""
        return inpaint(
            self.backend,
            image,
            mask,
            int(self.config["INPAINT_TILE_SIZE"]),
            int(self.config["INPAINT_TILE_MARGIN"]),
        )

    def remove_grid(
        self, image: Any, keypoints: Any = None, *, mask: Any = None, line_width: int | None = None
    ) -> np.ndarray:
        """Notebook entry: the RGB image with the grid (or a given bool mask) painted out.

        ``keypoints``: a (117, 2) array or anything a request's ``keypoints`` may hold.
        """
        self.load()
        rgb = load_image(image)
        if (keypoints is None) == (mask is None):
            raise ValueError("give either keypoints or mask")
        if mask is None:
            width = int(self.config["GRID_LINE_WIDTH"]) if line_width is None else line_width
            points = keypoints if isinstance(keypoints, np.ndarray) else parse_keypoints(keypoints)
            points = complete_keypoints(points, int(self.config["MIN_KEYPOINTS"]))
            mask = self.grid_mask(points, (rgb.shape[1], rgb.shape[0]), width)
        return self.paint(rgb, self.dilated(np.asarray(mask, dtype=bool)))

    def parse_request(self, body: Mapping[str, Any]) -> Request:
        """One image plus its keypoints or mask; every problem answered 4xx before inpainting."""
        fields = inpaint_fields(
            body, self.config["OUTPUT_FORMAT"], int(self.config["GRID_LINE_WIDTH"])
        )
        max_pixels = int(self.config["MAX_IMAGE_PIXELS"])
        opened = open_image(decode_base64(body["image"]), max_pixels)
        output_format = fields.output_format
        if output_format == "same":
            output_format = "jpeg" if opened.format == "JPEG" else "png"
        image = to_rgb_array(opened)
        size = (image.shape[1], image.shape[0])
        if min(size) <= MIN_SIDE:
            raise RequestError(
                f"'image' is {size[0]}x{size[1]}; grid removal needs more than {MIN_SIDE} "
                "pixels per side"
            )
        if fields.points is not None:
            points = complete_keypoints(fields.points, int(self.config["MIN_KEYPOINTS"]))
            mask = self.grid_mask(points, size, fields.line_width)
        else:
            mask = decode_mask(body["mask"], size, max_pixels)
        return InpaintRequest(
            images=[image],
            threshold=0.0,
            batch=False,
            body=dict(body),
            mask=self.dilated(mask),
            output_format=output_format,
            return_mask=fields.return_mask,
        )

    def infer(self, request: Request) -> Any:
        """Inpaint and answer ``{"image": b64}`` (plus ``"mask"`` when asked), or the image
        file itself when the request accepts only ``image/jpeg`` or ``image/png``."""
        if not isinstance(request, InpaintRequest):
            raise TypeError("LamaHandler.infer needs the InpaintRequest of its parse_request")
        raw = accepted_image_type(request.accept)
        if raw is not None and request.return_mask:
            raise RequestError("'return_mask' needs the JSON answer: Accept application/json")
        painted = self.paint(request.images[0], request.mask)
        quality = int(self.config["JPEG_QUALITY"])
        if raw is not None:
            return RawAnswer(image_bytes(painted, IMAGE_TYPES[raw], quality), raw)
        payload = {"image": b64(image_bytes(painted, request.output_format, quality))}
        if request.return_mask:
            payload["mask"] = b64(image_bytes(request.mask.astype(np.uint8) * 255, "png"))
        return payload

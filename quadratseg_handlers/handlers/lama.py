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
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import ImageOps

from quadratseg_handlers.backends.inpainting import Backend, LamaBackend, OpenCvBackend, inpaint
from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import ConfigError, retuned, setting
from quadratseg_handlers.core.contract import ImageHandler, ImageSettings, RawAnswer
from quadratseg_handlers.core.request import (
    Request,
    RequestError,
    b64,
    check_complete,
    check_decode_memory,
    decode_base64,
    image_bytes,
    load_image,
    open_image,
    parse_choice,
    parse_flag,
    parse_integer,
    shown,
    to_rgb_array,
)
from quadratseg_handlers.cvat.shapes import skeleton_elements_by_label
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

MAX_COORDINATE = 1e15
"""Largest keypoint coordinate (and visibility) accepted, in pixels, compared before any
conversion: points outside the image are clipped to its border, but an integer of hundreds of
digits would overflow a float, and no photo's grid point is this far out."""


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
                f"keypoint {index + 1} must be [x, y] or [x, y, v] numbers, got {shown(pair)}"
            )
        if not all(isinstance(v, int) or math.isfinite(v) for v in pair):
            raise RequestError(f"keypoint {index + 1} is not finite: {shown(pair)}")
        if not all(-MAX_COORDINATE <= v <= MAX_COORDINATE for v in pair):
            raise RequestError(
                f"keypoint {index + 1} is out of range (coordinates within +-{MAX_COORDINATE:.0e} "
                f"pixels): {shown(pair)}"
            )
        if len(pair) == 2 or pair[2] != 0:
            points[index] = pair[:2]
    return points


def _element_pairs(elements: list[Any]) -> list[Any]:
    """The points of CVAT skeleton elements in sublabel order; None for an absent or
    ``outside`` element."""
    try:
        by_label = skeleton_elements_by_label(elements)
    except ValueError as exc:
        raise RequestError(f"'keypoints': {exc}") from None
    position = {name: index for index, name in enumerate(grid_sublabels())}
    pairs: list[Any] = [None] * GRID_POINTS
    for index, (label, element) in enumerate(by_label.items()):
        if label not in position:
            raise RequestError(
                f"'keypoints': element {index} has sublabel {label!r}; the grid's are "
                f'"1".."{GRID_POINTS}"'
            )
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


def decode_mask(data: Any, size_wh: tuple[int, int], max_pixels: int) -> np.ndarray:
    """A request's base64 mask image as a bool array; non-zero grey = paint (as SimpleLama)."""
    raw = decode_base64(data, "mask")
    mask_image = open_image(raw, max_pixels, "mask")
    check_complete(mask_image, raw, "mask")
    try:
        mask_image.load()
        grey = np.asarray(ImageOps.exif_transpose(mask_image).convert("L"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError(f"'mask' could not be decoded: {exc}") from None
    width, height = size_wh
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


LAMA_MIB_PER_MEGAPIXEL = 980
"""big-lama's memory per megapixel of the image (or window) it runs on: its activations and
SimpleLama's tensors. Measured on big-lama's architecture, whole requests of 0.26, 0.52 and
1.05 megapixels: 283, 589 and 1096 MiB, 1035 MiB per megapixel with the handler's share
(docs/lama.md)."""

LAMA_MIB = 35
"""big-lama's memory in one call besides what grows with the pixels."""

HANDLER_MIB_PER_MEGAPIXEL = 55
"""The handler's own memory around big-lama per megapixel of the image: the decoded image,
the masks, the crop and the composite (docs/lama.md)."""

OPENCV_MIB_PER_MEGAPIXEL = 12
"""A request's memory per megapixel with INPAINT_BACKEND=opencv, everything included
(measured: 16, 43 and 89 MiB for 1, 4 and 9 megapixels; docs/lama.md)."""


@dataclass(frozen=True)
class LamaSettings(ImageSettings):
    """The device and image limits, the backend, how the string is drawn, and the answer."""

    max_image_pixels: int = retuned(ImageSettings, "max_image_pixels", 40_000_000)
    max_inpaint_mb: int = setting(
        8192,
        "Most memory in MiB one request may take to inpaint, estimated from the image's "
        "header before anything is decoded: big-lama takes about 980 MiB per megapixel of "
        "the image (or of one INPAINT_TILE_SIZE window) and the handler 55 MiB per megapixel; "
        "OpenCV 12 MiB per megapixel. More is answered 413. The default is the deployment "
        "guide's memory request (whole images up to about 7.9 megapixels with big-lama); on "
        "a GPU, set it to the GPU's memory.",
        low=1,
    )

    inpaint_backend: Literal["lama", "opencv"] = setting(
        "lama",
        "`lama`: big-lama (LAMA_MODEL) through simple-lama-inpainting; `opencv`: "
        "`cv2.inpaint` (Telea), no weights and no torch. Chosen explicitly, never a fallback.",
    )
    lama_model: Path = setting(
        Path("/opt/nuclio/big-lama.pt"),
        "big-lama TorchScript file (INPAINT_BACKEND=lama); missing or unusable stops start-up.",
    )
    grid_line_width: int = setting(
        8,
        "Width in pixels of the grid-string lines painted out; a request's `line_width` "
        "overrides it.",
        low=1,
        high=MAX_LINE_WIDTH,
    )
    grid_frame_lines: bool = setting(
        False,
        "Also paint the segments along the frame between its grid points (rows and columns "
        "0 and 10); by default only the 18 strings are painted.",
    )
    min_keypoints: int = setting(
        20,
        "Fewest grid points a request must give (not outside, v != 0); the others are "
        "placed by the homography from the grid lattice to the given ones.",
        low=4,
        high=GRID_POINTS,
    )
    mask_dilation: int = setting(
        0,
        "Grow every mask (drawn or sent) by this many pixels before inpainting.",
        low=0,
        high=256,
    )
    output_format: Literal["same", "png", "jpeg"] = setting(
        "same",
        "Answer image format: `same` (JPEG for a JPEG input, PNG otherwise), `png` "
        "(lossless: unmasked pixels bit-identical) or `jpeg`; a request's `format` overrides.",
    )
    jpeg_quality: int = setting(95, "Quality (1..100) of JPEG answers.", low=1, high=100)
    opencv_inpaint_radius: int = setting(
        3,
        "Neighbourhood radius in pixels of `cv2.inpaint` (INPAINT_BACKEND=opencv).",
        low=1,
        high=100,
    )
    inpaint_tile_size: int = setting(
        0,
        "0: inpaint the whole image in one model call. N >= 64: only the N x N cells "
        "holding masked pixels, each with INPAINT_TILE_MARGIN pixels of context (bounds "
        "memory on large images).",
        parse=_tile_size,
    )
    inpaint_tile_margin: int = setting(
        128, "Context in pixels around each cell when INPAINT_TILE_SIZE > 0.", low=0, high=4096
    )


def inpaint_mib(settings: LamaSettings, size_wh: tuple[int, int]) -> float:
    """About how much memory (MiB) inpainting an image of ``size_wh`` takes, by backend and
    tiling: what MAX_INPAINT_MB bounds."""
    megapixels = size_wh[0] * size_wh[1] / 1e6
    if settings.inpaint_backend == "opencv":
        return OPENCV_MIB_PER_MEGAPIXEL * megapixels
    model = megapixels
    if settings.inpaint_tile_size > 0:
        window = settings.inpaint_tile_size + 2 * settings.inpaint_tile_margin
        model = min(megapixels, window * window / 1e6)
    return HANDLER_MIB_PER_MEGAPIXEL * megapixels + LAMA_MIB_PER_MEGAPIXEL * model + LAMA_MIB


def check_inpaint_memory(settings: LamaSettings, size_wh: tuple[int, int]) -> None:
    """413 when an image of ``size_wh`` (from its header) would take more than MAX_INPAINT_MB
    to inpaint."""
    needed, budget = inpaint_mib(settings, size_wh), settings.max_inpaint_mb
    if needed <= budget:
        return
    width, height = size_wh
    whole = settings.inpaint_backend == "lama" and settings.inpaint_tile_size == 0
    advice = (
        "set INPAINT_TILE_SIZE=1024 or send a smaller image" if whole else "send a smaller image"
    )
    raise RequestError(
        f"'image' is {width}x{height} = {width * height / 1e6:.1f} megapixels: inpainting it "
        f"takes about {needed / 1024:.1f} GiB, over the limit of {budget} MiB "
        f"(MAX_INPAINT_MB); {advice}",
        status=413,
    )


class LamaHandler(ImageHandler):
    """Grid removal: draw the string mask from the grid points, inpaint it, composite back.

    No scores to threshold, and batches are refused whatever their size: one image and its
    mask, each within MAX_IMAGE_PIXELS.
    """

    function_name = "pth-lama"
    settings_class = LamaSettings
    settings: LamaSettings

    def torch_needed(self) -> bool:
        """Only the LaMa backend runs on torch."""
        return self.settings.inpaint_backend == "lama"

    def load_model(self) -> None:
        """Load the chosen backend; a LaMa model is test-run once on a small image."""
        self.backend: Backend
        if self.settings.inpaint_backend == "opencv":
            self.backend = OpenCvBackend(self.settings.opencv_inpaint_radius)
            return
        path = cfg.required_file(
            "LAMA_MODEL",
            self.settings.lama_model,
            "the function image fetches big-lama.pt at build time (docs/lama.md), or set "
            "INPAINT_BACKEND=opencv to inpaint without weights",
        )
        try:
            self.backend = LamaBackend(path, self.device)
        except ValueError as exc:
            raise ConfigError(f"LAMA_MODEL={path}: {exc}") from None

    def grid_mask(
        self, points: np.ndarray, size_wh: tuple[int, int], line_width: int
    ) -> np.ndarray:
        """The string mask of 117 grid points on an image of ``size_wh``, undilated."""
        return draw_grid_mask(points, size_wh, line_width, frame=self.settings.grid_frame_lines)

    def dilated(self, mask: np.ndarray) -> np.ndarray:
        """A drawn or sent mask grown by MASK_DILATION pixels: what gets painted."""
        return dilate(mask, self.settings.mask_dilation)

    def paint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Inpaint the masked pixels (whole image or tiles); unmasked pixels stay as they are."""
        settings = self.settings
        return inpaint(
            self.backend, image, mask, settings.inpaint_tile_size, settings.inpaint_tile_margin
        )

    def annotate(
        self, image: Any, keypoints: Any = None, *, mask: Any = None, line_width: int | None = None
    ) -> np.ndarray:
        """Notebook entry: the RGB image (path, bytes, PIL image or array) with the grid, or
        a given bool mask, painted out.

        ``keypoints``: a (117, 2) array or anything a request's ``keypoints`` may hold.
        """
        self.load()
        rgb = load_image(image)
        if (keypoints is None) == (mask is None):
            raise ValueError("give either keypoints or mask")
        if mask is None:
            width = self.settings.grid_line_width if line_width is None else line_width
            points = keypoints if isinstance(keypoints, np.ndarray) else parse_keypoints(keypoints)
            points = complete_keypoints(points, self.settings.min_keypoints)
            mask = self.grid_mask(points, (rgb.shape[1], rgb.shape[0]), width)
        return self.paint(rgb, self.dilated(np.asarray(mask, dtype=bool)))

    def parse_request(self, body: Mapping[str, Any]) -> Request:
        """One image plus its keypoints or mask; every problem answered 4xx before inpainting."""
        settings = self.settings
        fields = inpaint_fields(body, settings.output_format, settings.grid_line_width)
        raw = decode_base64(body["image"])
        opened = open_image(raw, settings.max_image_pixels)
        check_decode_memory([opened], settings.max_decode_mb)
        check_inpaint_memory(settings, opened.size)
        output_format = fields.output_format
        if output_format == "same":
            output_format = "jpeg" if opened.format == "JPEG" else "png"
        check_complete(opened, raw)
        image = to_rgb_array(opened)
        size_wh = (image.shape[1], image.shape[0])
        if min(size_wh) <= MIN_SIDE:
            raise RequestError(
                f"'image' is {size_wh[0]}x{size_wh[1]}; grid removal needs more than {MIN_SIDE} "
                "pixels per side"
            )
        if fields.points is not None:
            points = complete_keypoints(fields.points, settings.min_keypoints)
            mask = self.grid_mask(points, size_wh, fields.line_width)
        else:
            mask = decode_mask(body["mask"], size_wh, settings.max_image_pixels)
        return InpaintRequest(
            images=[image],
            threshold=0.0,
            batch=False,
            body=dict(body),
            mask=self.dilated(mask),
            output_format=output_format,
            return_mask=fields.return_mask,
        )

    def to_image(self, request: Request) -> np.ndarray:
        """The request's image with its mask inpainted; a request asking for the image file
        and the mask together is refused first (the mask needs the JSON answer)."""
        request = inpaint_request(request)
        if request.return_mask and accepted_image_type(request.accept) is not None:
            raise RequestError("'return_mask' needs the JSON answer: Accept application/json")
        return self.paint(request.images[0], request.mask)

    def answer(self, request: Request, image: np.ndarray) -> Any:
        """``{"image": b64}`` (plus ``"mask"`` when asked), or the image file itself when the
        request accepts only ``image/jpeg`` or ``image/png``."""
        request = inpaint_request(request)
        raw = accepted_image_type(request.accept)
        quality = self.settings.jpeg_quality
        if raw is not None:
            return RawAnswer(image_bytes(image, IMAGE_TYPES[raw], quality), raw)
        payload = {"image": b64(image_bytes(image, request.output_format, quality))}
        if request.return_mask:
            payload["mask"] = b64(image_bytes(request.mask.astype(np.uint8) * 255, "png"))
        return payload


def inpaint_request(request: Request) -> InpaintRequest:
    """The :class:`InpaintRequest` that :meth:`LamaHandler.parse_request` made."""
    if not isinstance(request, InpaintRequest):
        raise TypeError("LamaHandler needs the InpaintRequest of its parse_request")
    return request

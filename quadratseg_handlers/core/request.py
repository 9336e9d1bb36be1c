"""The CVAT/Nuclio request: reading it (body parsing, base64 image decoding, limits, clear
errors) and writing one (:func:`cvat_request`) as CVAT and the bridge do.

CVAT posts ``{"image": "<base64 of the frame file>", "threshold": 0.5}`` (threshold only when
the user set one). Nuclio hands the body over as a dict when the content type is exactly
``application/json`` and as bytes otherwise; a str comes from some test harnesses. Every
problem raises :class:`RequestError` with the HTTP status the client should see.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pybase64
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from quadratseg_handlers.core import jpeg
from quadratseg_handlers.core.memory import decode_memory
from quadratseg_handlers.core.messages import first_line


class RequestError(Exception):
    """A request the function cannot serve, with the HTTP status to answer it with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ReducedImage(np.ndarray):
    """An RGB image decoded at a fraction of its photo's size (libjpeg's DCT scaling).

    Pixel ``(i, j)`` covers the photo's pixels ``[i * reduction, (i + 1) * reduction)`` in
    each axis; ``photo_size_hw`` is the (height, width) of the photo CVAT shows, EXIF
    orientation applied. Arrays derived from it (slices, copies) are plain images again.
    """

    reduction: int = 1
    photo_size_hw: tuple[int, int] = (0, 0)

    @classmethod
    def of(cls, pixels: np.ndarray, factor: int, size_hw: tuple[int, int]) -> ReducedImage:
        """``pixels`` viewed as the 1/``factor`` decode of a photo of ``size_hw`` (height,
        width)."""
        image = pixels.view(cls)
        image.reduction, image.photo_size_hw = factor, size_hw
        return image

    def __array_finalize__(self, obj: Any) -> None:
        self.reduction, self.photo_size_hw = 1, (0, 0)


def reduction(image: np.ndarray) -> int:
    """Photo pixels per image pixel along each axis: 1 unless ``image`` is a ReducedImage."""
    return image.reduction if isinstance(image, ReducedImage) and image.reduction > 1 else 1


def photo_size_hw(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of the photo ``image`` was decoded from: its own size unless reduced."""
    if reduction(image) > 1:
        return cast(ReducedImage, image).photo_size_hw
    return int(image.shape[0]), int(image.shape[1])


@dataclass
class Request:
    """A decoded request: RGB images, the effective threshold, and the rest of the body.

    An image may be a :class:`ReducedImage` when the handler asked for a smaller decode
    (:meth:`~quadratseg_handlers.core.contract.BaseHandler.decode_size`): shapes are still
    answered in the pixels of its photo (:func:`photo_size_hw`).
    """

    images: list[np.ndarray]
    threshold: float
    batch: bool
    body: dict[str, Any] = field(default_factory=dict)
    accept: str = ""
    """The request's ``Accept`` header (set by the handler from the event)."""

    @property
    def pixels(self) -> int:
        """Total number of pixels decoded over all images (for the request log line)."""
        return sum(int(image.shape[0] * image.shape[1]) for image in self.images)


JSON_CONTENT_TYPE = "application/json"
"""The one content type Nuclio parses: its handler then gets the parsed JSON value."""


def parse_body(body: Any, content_type: str = "") -> dict[str, Any]:
    """Return the JSON object of a request body given as dict, bytes, bytearray or str.

    With ``content_type`` exactly ``application/json`` Nuclio has parsed the body already: a
    str is then a JSON string, which is no object (it is not parsed a second time).
    """
    if isinstance(body, dict):
        return body
    if isinstance(body, str) and content_type == JSON_CONTENT_TYPE:
        raise RequestError("JSON body must be an object, got a string")
    if isinstance(body, (bytes, bytearray, memoryview)):
        if len(body) == 0:
            raise RequestError("empty request body; expected a JSON object with an 'image' field")
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(
                'request body is not UTF-8 JSON; send {"image": "<base64>"} '
                "with Content-Type: application/json"
            ) from None
    if isinstance(body, str):
        if not body.strip():
            raise RequestError("empty request body; expected a JSON object with an 'image' field")
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as exc:
            raise RequestError(f"malformed JSON body: {exc.msg} at position {exc.pos}") from None
        except RecursionError:
            raise RequestError("malformed JSON body: nested too deeply") from None
        except ValueError:  # an integer past Python's conversion limit (4300 digits)
            raise RequestError(
                f"malformed JSON body: a number of more than {MAX_JSON_DIGITS} digits"
            ) from None
        if not isinstance(parsed, dict):
            raise RequestError(f"JSON body must be an object, got {type(parsed).__name__}")
        return parsed
    if body is None:
        raise RequestError("empty request body; expected a JSON object with an 'image' field")
    if isinstance(body, (list, int, float)):  # Nuclio's parse of a JSON body that is no object
        raise RequestError(f"JSON body must be an object, got {type(body).__name__}")
    raise RequestError(f"unsupported request body type {type(body).__name__}")


MAX_JSON_DIGITS = 4300
"""Python's limit on the digits of an integer it converts from text (``sys.int_info``): a
JSON body holding a longer one does not parse."""

MAX_NUMBER_TEXT = 64
"""Longest number given as text (a ``threshold`` of ``"0.5"``) that is read at all."""


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a 4000-digit number
    or a long string is named, not echoed)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a number of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def bounded_number(value: Any, low: float, high: float) -> float | None:
    """``value`` as a float when it is a JSON number (or numeric text) within [low, high],
    compared before it is converted (an integer of hundreds of digits overflows a float);
    None otherwise."""
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_TEXT:
            return None
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value) if low <= value <= high else None


def parse_threshold(value: Any, default: float) -> float:
    """The request's threshold in [0, 1]; absent, null or 0 means the configured default."""
    if value is None:
        return default
    threshold = bounded_number(value, 0.0, 1.0)
    if threshold is None:
        raise RequestError(f"'threshold' must be a number in [0, 1], got {shown(value)}")
    return threshold if threshold > 0 else default


def parse_flag(body: Mapping[str, Any], name: str) -> bool:
    """A true/false field of the body (absent: false); anything but a JSON boolean is a 400."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise RequestError(f"'{name}' must be true or false, got {shown(value)}")
    return value


def parse_integer(value: Any, name: str, low: int, high: int, default: int, unit: str = "") -> int:
    """An integral number field in [low, high] (absent or null: ``default``); else a 400."""
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()))
    ):
        kind = f"an integer {unit}".rstrip()
        raise RequestError(f"'{name}' must be {kind}, got {shown(value)}")
    if not low <= value <= high:
        raise RequestError(f"'{name}' must be from {low} to {high}, got {shown(value)}")
    return int(value)


def parse_choice(
    value: Any,
    name: str,
    options: Sequence[str],
    default: str,
    aliases: Mapping[str, str] | None = None,
) -> str:
    """One of ``options`` (case-insensitive, ``aliases`` allowed; absent: ``default``)."""
    chosen = default if value is None else value
    text = chosen.lower() if isinstance(chosen, str) else ""
    text = (aliases or {}).get(text, text)
    if text not in options:
        raise RequestError(f"'{name}' must be one of {', '.join(options)}, got {shown(value)}")
    return text


def decode_base64(data: Any, field_name: str = "image") -> bytes:
    """Decode a base64 string (standard or URL-safe, a data: URL prefix allowed) to bytes.

    Canonical base64, what clients send, is decoded as it is by pybase64 (SIMD, some 50 times
    faster than the standard library for a photo). Other forms (URL-safe, unpadded,
    line-wrapped) are normalised first. The standard library has the last word on anything
    pybase64 refuses, so exactly the strings ``base64.b64decode(validate=True)`` accepts
    are accepted (pybase64 also refuses padding after a complete group, which it allows).
    """
    if not isinstance(data, str):
        raise RequestError(f"'{field_name}' must be a base64 string, got {type(data).__name__}")
    text = data.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if not text:
        raise RequestError(f"'{field_name}' is empty")
    with contextlib.suppress(ValueError):
        return pybase64.b64decode(text, validate=True)
    text = "".join(text.split())
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    for decode in (pybase64.b64decode, base64.b64decode):
        with contextlib.suppress(ValueError):
            return decode(text, validate=True)
    raise RequestError(f"'{field_name}' is not valid base64")


def open_image(data: bytes, max_pixels: int, field_name: str = "image") -> Image.Image:
    """Open image bytes lazily and enforce the pixel limit from the header, before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise RequestError(
            f"'{field_name}' is over the limit of {max_pixels / 1e6:.1f} megapixels "
            f"(MAX_IMAGE_PIXELS): {exc}",
            status=413,
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, ImportError):
        # ImportError: importing ultralytics patches Image.open to try the optional pi_heif
        # package on bytes PIL cannot identify; without it, that is still not an image.
        raise RequestError(
            f"'{field_name}' is not a decodable image (expected JPEG, PNG, TIFF, BMP or WebP bytes)"
        ) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise RequestError(f"'{field_name}' has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise RequestError(
            f"'{field_name}' is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.1f} megapixels (MAX_IMAGE_PIXELS)",
            status=413,
        )
    return image


GREY_ROWS = 256
"""Rows of a 16- or 32-bit grey image stretched to 8 bits at a time (bounds the float copies)."""


def _stretched_grey(image: Image.Image) -> np.ndarray:
    """A 16- or 32-bit grey image as RGB, its levels stretched so that its peak is 255; row
    blocks at a time, so that the float copies stay small (a float64 copy of a 100-megapixel
    image is 800 MB, and the arithmetic took four of them)."""
    levels = np.asarray(image)
    peak = float(levels.max()) if levels.size and levels.max() > 0 else 1.0
    scale = 255.0 / peak
    rgb = np.empty((*levels.shape, 3), dtype=np.uint8)
    for top in range(0, levels.shape[0], GREY_ROWS):
        block = levels[top : top + GREY_ROWS].astype(np.float64)
        block *= scale
        np.clip(block, 0, 255, out=block)
        rgb[top : top + GREY_ROWS] = block.astype(np.uint8)[..., None]
    return rgb


def to_rgb_array(image: Image.Image, field_name: str = "image") -> np.ndarray:
    """Decode fully, apply the EXIF orientation (as CVAT displays it) and return HxWx3 uint8 RGB."""
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
                return _stretched_grey(image)
            image = image.convert("RGB")
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise RequestError(f"'{field_name}' could not be decoded: {first_line(exc)}") from None


JPEG_FORMATS = frozenset({"JPEG", "MPO"})
"""PIL's names for a JPEG file: MPO is a camera's JPEG followed by more pictures (its first,
the one PIL and OpenCV decode, is the photo)."""

OPENCV_FORMATS = frozenset({*JPEG_FORMATS, "PNG", "WEBP", "BMP"})
"""Formats OpenCV decodes faster than PIL (``make bench``: docs/performance.md, decoding);
TIFF, where PIL is faster, and every other format stay on PIL."""

OPENCV_MODES = frozenset({"RGB", "RGBA", "L"})
"""8-bit modes whose OpenCV decode gives PIL's ``convert("RGB")`` pixels; CMYK, palette and
16-bit images stay on PIL (its colour conversion and grey-level stretch)."""

DCT_REDUCTIONS = (8, 4, 2)
"""The reductions libjpeg decodes a JPEG at directly (IMREAD_REDUCED_COLOR_8/4/2)."""

_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}

_ORIENTATIONS = {  # EXIF orientation -> the array view that displays the photo upright
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: a.swapaxes(0, 1)[::-1],
}

_PNG_METADATA = (b"eXIf", b"exif", b"Exif", b"tiff:Orientation")
"""Byte strings of orientation metadata PIL may find in a PNG only by reading all of it."""


def jpeg_reduction(size_wh: tuple[int, int], min_side: int | None) -> int:
    """The largest DCT reduction whose decoded long side is still >= ``min_side`` (1: none),
    for a photo of ``size_wh`` (width, height)."""
    if min_side is None:
        return 1
    long_side = max(size_wh)
    return next((k for k in DCT_REDUCTIONS if -(-long_side // k) >= min_side), 1)


def _orientation(image: Image.Image, data: bytes) -> int | None:
    """The EXIF orientation PIL would apply, read without decoding; None when only a full
    read could tell (a PNG holding metadata, possibly after its pixels)."""
    if image.format == "PNG" and any(marker in data for marker in _PNG_METADATA):
        return None
    if image.format == "PNG":
        return 1
    return exif_orientation(image.getexif().get(ExifTags.Base.Orientation, 1))


def exif_orientation(value: Any) -> int:
    """An EXIF Orientation value as PIL's ``exif_transpose`` reads it: 2 to 8 (by equality:
    a rational 6/1 is 6), else 1. Text, garbage and out-of-range values mean no rotation, as
    PIL treats them, so that both decoders show the photo the same way."""
    try:
        return next((number for number in _ORIENTATIONS if bool(number == value)), 1)
    except Exception:  # a value whose comparison fails is no orientation either
        return 1


def check_complete(image: Image.Image, data: bytes, field_name: str = "image") -> None:
    """Refuse a JPEG whose data is damaged or cut short before its end marker (400) before
    PIL decodes it (PIL would fill the missing part with grey), at a reduction of 8 (the
    least a decode costs). One cut short with no end marker PIL refuses itself."""
    if image.format in JPEG_FORMATS and jpeg.has_end_marker(data):
        _strict_jpeg(data, 8, field_name, "CMYK" if image.mode == "CMYK" else "RGB")


def _strict_jpeg(
    data: bytes, factor: int, field_name: str, colorspace: str = "RGB"
) -> np.ndarray | None:
    """:func:`jpeg.strict_decode`, a damaged JPEG refused with a 400."""
    try:
        return jpeg.strict_decode(data, factor, colorspace)
    except jpeg.DamagedJpeg as exc:
        raise RequestError(
            f"'{field_name}' is a damaged or cut-short JPEG ({exc}): its missing pixels would "
            "be grey"
        ) from None


def _opencv_pixels(
    image: Image.Image, data: bytes, factor: int, field_name: str = "image"
) -> np.ndarray | None:
    """RGB pixels of ``data`` decoded by OpenCV, or libjpeg-turbo for a JPEG (at
    1/``factor``, orientation applied), or None where they cannot honour the file as PIL does
    (format, mode, orientation in the pixel data); a JPEG cut short or damaged is refused."""
    if image.format not in OPENCV_FORMATS or image.mode not in OPENCV_MODES:
        return None
    orientation = _orientation(image, data)
    if orientation is None:
        return None
    if image.format in JPEG_FORMATS:
        if not jpeg.has_end_marker(data):
            return None  # cut short: PIL says so
        rgb = _strict_jpeg(data, factor, field_name)
        if rgb is None:
            return None
        return np.ascontiguousarray(_ORIENTATIONS.get(orientation, lambda a: a)(rgb))
    flags = _REDUCED_FLAGS[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if bgr is None:
        return None
    upright = _ORIENTATIONS.get(orientation, lambda a: a)(bgr)
    return cv2.cvtColor(np.ascontiguousarray(upright), cv2.COLOR_BGR2RGB)


def decode_opened(
    image: Image.Image, data: bytes, field_name: str = "image", min_side: int | None = None
) -> np.ndarray:
    """The RGB pixels of an opened image, by the fastest decoder that honours it.

    ``min_side``: the long side the caller needs at least; a JPEG is then decoded at the
    largest DCT reduction that keeps it (a :class:`ReducedImage`), never smaller. None: full
    resolution. Formats and files OpenCV cannot honour as PIL does are decoded by PIL.
    """
    reduced = jpeg_reduction(image.size, min_side) if image.format in JPEG_FORMATS else 1
    pixels = _opencv_pixels(image, data, reduced, field_name)
    if pixels is None:
        check_complete(image, data, field_name)
        return to_rgb_array(image, field_name)
    if reduced == 1:
        return pixels
    width, height = image.size
    orientation = _orientation(image, data) or 1
    upright_hw = (height, width) if orientation < 5 else (width, height)
    return ReducedImage.of(pixels, reduced, upright_hw)


def decode_image(
    data: Any, max_pixels: int, field_name: str = "image", min_side: int | None = None
) -> np.ndarray:
    """Base64 image field -> RGB uint8 array, with every failure turned into a RequestError."""
    raw = decode_base64(data, field_name)
    return decode_opened(open_image(raw, max_pixels, field_name), raw, field_name, min_side)


MIB = 1024 * 1024


def check_decode_memory(images: Sequence[Image.Image], max_mb: int | None) -> None:
    """413 when decoding these opened images would take more than ``max_mb`` MiB
    (MAX_DECODE_MB, :func:`decode_memory`), checked before any is decoded."""
    needed = sum(decode_memory(image) for image in images)
    if max_mb is not None and needed > max_mb * MIB:
        modes = "/".join(sorted({image.mode for image in images}))
        raise RequestError(
            f"decoding the request's images ({modes}) takes up to {needed / MIB:.0f} MiB, over "
            f"the limit of {max_mb} MiB (MAX_DECODE_MB)",
            status=413,
        )


def decode_images(
    fields: Sequence[tuple[Any, str]],
    max_pixels: int,
    max_total: int,
    min_side: int | None = None,
    max_mb: int | None = None,
) -> list[np.ndarray]:
    """Base64 image fields (value, field name) -> RGB arrays, within the pixel and memory
    limits.

    Every header is read before any image is decoded: each image at most ``max_pixels``
    (MAX_IMAGE_PIXELS), all of them together at most ``max_total`` (MAX_REQUEST_PIXELS)
    and, by their mode and bit depth, ``max_mb`` MiB to decode (MAX_DECODE_MB); the limits
    count the photos' pixels, whatever ``min_side`` lets the decode reduce.
    """
    opened = []
    for data, name in fields:
        raw = decode_base64(data, name)
        opened.append((open_image(raw, max_pixels, name), raw, name))
    total = sum(image.width * image.height for image, _, _ in opened)
    if total > max_total:
        raise RequestError(
            f"the request's images hold {total / 1e6:.1f} megapixels together, over the limit "
            f"of {max_total / 1e6:.1f} megapixels per request (MAX_REQUEST_PIXELS)",
            status=413,
        )
    check_decode_memory([image for image, _, _ in opened], max_mb)
    return [decode_opened(image, raw, name, min_side) for image, raw, name in opened]


def load_image(source: Any, max_pixels: int = 10**9) -> np.ndarray:
    """An RGB array from a path, raw file bytes, a PIL image or an array (notebook use)."""
    if isinstance(source, np.ndarray):
        if source.ndim == 2:
            source = np.stack([source] * 3, axis=-1)
        if source.ndim != 3 or source.shape[2] not in (3, 4):
            raise ValueError(f"expected an HxW, HxWx3 or HxWx4 array, got shape {source.shape}")
        return np.ascontiguousarray(source[..., :3].astype(np.uint8, copy=False))
    if isinstance(source, Image.Image):
        return to_rgb_array(source)
    if isinstance(source, (str, Path)):
        source = Path(source).read_bytes()
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        return decode_opened(open_image(data, max_pixels), data)
    raise TypeError(f"cannot load an image from {type(source).__name__}")


def bgr_pixels(image: np.ndarray) -> np.ndarray:
    """An RGB array's pixels in the BGR order OpenCV-based models read (a contiguous copy).

    OpenCV swaps the channels 14 to 50 times faster than numpy copies a reversed view (5 ms
    against 0.1 for a 1000 x 750 photo, 35 against 2.5 at 1920 x 1920), a copy every YOLO
    and SegFormer request makes.
    """
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype in (np.uint8, np.uint16):
        return cast(np.ndarray, cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))
    return np.ascontiguousarray(image[..., ::-1])


def image_bytes(image: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """An RGB (or single-channel) uint8 array as PNG or JPEG (``fmt`` "png"/"jpeg") file bytes."""
    pixels = bgr_pixels(image[..., :3]) if image.ndim == 3 else image
    if fmt == "jpeg":
        ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise RuntimeError(f"{fmt} encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def b64(data: bytes) -> str:
    """Bytes as the ASCII base64 text a JSON body carries."""
    return base64.b64encode(data).decode("ascii")


def encode_image(image: Any, fmt: str = "JPEG", quality: int = 95) -> str:
    """Base64 of an image file: a path or bytes as they are, an array or PIL image encoded as
    ``fmt`` (arrays as PNG or JPEG through :func:`image_bytes`, anything else through PIL)."""
    if isinstance(image, (str, Path)):
        return b64(Path(image).read_bytes())
    if isinstance(image, (bytes, bytearray)):
        return b64(bytes(image))
    kind = {"JPG": "jpeg", "JPEG": "jpeg", "PNG": "png"}.get(fmt.upper())
    if kind is not None and isinstance(image, np.ndarray):
        return b64(image_bytes(np.ascontiguousarray(image, dtype=np.uint8), kind, quality))
    buffer = io.BytesIO()
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    options = {"quality": quality} if kind == "jpeg" else {}
    pil.save(buffer, format=(kind or fmt).upper(), **options)
    return b64(buffer.getvalue())


def cvat_request(image: Any, threshold: float | None = None, **fields: Any) -> dict[str, Any]:
    """The body CVAT sends: ``{"image": b64}`` plus ``threshold`` when given, plus ``fields``."""
    body: dict[str, Any] = {"image": encode_image(image)}
    if threshold is not None:
        body["threshold"] = threshold
    body.update(fields)
    return body

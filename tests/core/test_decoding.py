"""Image decoding: the fastest decoder per format gives PIL's pixels, and a scaled JPEG decode
keeps the photo's size, its EXIF orientation and the pixel limits."""

from __future__ import annotations

import base64
import io
import random

import cv2
import numpy as np
import pytest
from PIL import Image

from quadratseg_handlers.core import request as req
from quadratseg_handlers.core.request import (
    ReducedImage,
    RequestError,
    decode_opened,
    jpeg_reduction,
    open_image,
    photo_size_hw,
    reduction,
    to_rgb_array,
)

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 300 x 400 RGB picture with detail at every scale (noise on smooth gradients)."""
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:300, 0:400]
    smooth = np.stack([rows * 0.8, cols * 0.6, (rows + cols) * 0.35], axis=-1)
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def file_bytes(pixels: np.ndarray, fmt: str, orientation: int = 1, mode: str = "RGB") -> bytes:
    image = Image.fromarray(pixels).convert(mode)
    options: dict = {"quality": 90} if fmt in ("JPEG", "WEBP") else {}
    if orientation != 1:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pil_pixels(data: bytes) -> np.ndarray:
    """What the library decoded before OpenCV: PIL, EXIF orientation applied."""
    return to_rgb_array(open_image(data, 10**9))


def decoded(data: bytes, min_side: int | None = None) -> np.ndarray:
    return decode_opened(open_image(data, 10**9), data, min_side=min_side)


@pytest.mark.parametrize(
    "fmt, mode, orientation, opencv",
    [
        ("JPEG", "RGB", 1, True),
        ("JPEG", "L", 1, True),
        *[("JPEG", "RGB", o, True) for o in range(2, 9)],
        ("WEBP", "RGB", 6, True),
        ("WEBP", "RGBA", 1, True),
        ("PNG", "RGB", 1, True),
        ("PNG", "RGBA", 1, True),
        ("PNG", "L", 1, True),
        ("BMP", "RGB", 1, True),
        ("PNG", "RGB", 8, False),  # orientation PIL may find only by reading it all
        ("PNG", "P", 1, False),
        ("PNG", "I;16", 1, False),  # 16-bit grey: PIL's stretch to the peak
        ("JPEG", "CMYK", 1, False),
        ("TIFF", "RGB", 1, False),  # PIL is faster
    ],
)
def test_each_format_decodes_to_pils_pixels_by_the_decoder_chosen(
    photo, fmt, mode, orientation, opencv
):
    data = file_bytes(photo, fmt, orientation, mode)
    opened = open_image(data, 10**9)
    assert (req._opencv_pixels(opened, data, 1) is not None) == opencv
    expected = pil_pixels(data)
    got = decoded(data)
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_a_camera_mpo_decodes_its_first_picture_scaled(photo):
    buffer = io.BytesIO()
    second = Image.fromarray(np.ascontiguousarray(photo[::-1]))
    Image.fromarray(photo).save(buffer, format="MPO", save_all=True, append_images=[second])
    data = buffer.getvalue()
    assert open_image(data, 10**9).format == "MPO"
    assert np.array_equal(decoded(data), pil_pixels(data))
    image = decoded(data, min_side=100)
    assert reduction(image) == 4 and photo_size_hw(image) == (300, 400)


def test_a_truncated_jpeg_is_refused_not_padded_with_grey(photo):
    data = file_bytes(photo, "JPEG")
    with pytest.raises(RequestError, match="could not be decoded"):
        decoded(data[: len(data) // 2])
    with pytest.raises(RequestError, match="could not be decoded"):
        decoded(data[: len(data) // 2], min_side=50)


def test_a_damaged_png_is_refused(photo):
    data = file_bytes(photo, "PNG")
    with pytest.raises(RequestError, match="could not be decoded"):
        decoded(data[: len(data) // 2])


@pytest.mark.parametrize(
    "size, min_side, expected",
    [
        ((4000, 3000), 640, 4),  # 1000 >= 640 > 500
        ((3000, 4000), 320, 8),
        ((1920, 1920), 640, 2),  # 960 >= 640 > 480
        ((1920, 1080), 1024, 1),
        ((1921, 1000), 961, 2),  # ceil(1921 / 2) = 961
        ((1000, 800), None, 1),
    ],
)
def test_the_reduction_is_the_largest_keeping_the_long_side(size, min_side, expected):
    assert jpeg_reduction(size, min_side) == expected


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_scaled_jpeg_decode_is_the_upright_photo_at_a_quarter(orientation):
    rows, cols = np.mgrid[0:1200, 0:1600]
    smooth = np.stack([rows * 0.2, cols * 0.15, (rows + cols) * 0.09], axis=-1).astype(np.uint8)
    data = file_bytes(smooth, "JPEG", orientation)
    full = pil_pixels(data)
    image = decoded(data, min_side=400)
    assert isinstance(image, ReducedImage)
    assert reduction(image) == 4
    assert photo_size_hw(image) == full.shape[:2]
    assert image.shape[:2] == (full.shape[0] // 4, full.shape[1] // 4)
    quarter = cv2.resize(full, image.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(image.astype(int) - quarter).mean() < 2.0
    # A slice is a plain image of its own size again.
    assert reduction(image[:10]) == 1 and photo_size_hw(image[:10]) == (10, image.shape[1])


def test_only_a_jpeg_is_decoded_scaled(photo):
    for fmt in ("PNG", "WEBP", "TIFF"):
        image = decoded(file_bytes(photo, fmt), min_side=50)
        assert reduction(image) == 1
        assert photo_size_hw(image) == (300, 400)


def test_the_pixel_limits_count_the_photo_not_the_reduced_decode(photo):
    data = req.b64(file_bytes(np.zeros((1200, 1600, 3), np.uint8), "JPEG"))
    with pytest.raises(RequestError, match="MAX_IMAGE_PIXELS") as error:
        req.decode_images([(data, "image")], 1_000_000, 10**9, min_side=100)
    assert error.value.status == 413
    with pytest.raises(RequestError, match="MAX_REQUEST_PIXELS") as error:
        req.decode_images([(data, "a"), (data, "b")], 10**9, 3_000_000, min_side=100)
    assert error.value.status == 413
    (image,) = req.decode_images([(data, "image")], 2_000_000, 2_000_000, min_side=100)
    assert photo_size_hw(image) == (1200, 1600) and reduction(image) == 8


RAW = bytes(range(256)) * 3 + b"\xfb\xff"
"""Bytes whose base64 holds '+' and '/' (and '-' and '_' in the URL-safe alphabet)."""


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode(),
        base64.b64encode(RAW).decode().rstrip("="),
        "\n".join(base64.encodebytes(RAW).decode().split()),
        " data:image/png;base64," + base64.b64encode(RAW).decode() + "\n",
    ],
    ids=["canonical", "url-safe", "unpadded", "line-wrapped", "data-url"],
)
def test_base64_in_every_form_clients_send(text):
    assert req.decode_base64(text) == RAW


@pytest.mark.parametrize("text", ["@@@", "ab!d", "abc=d", "a", "é" + "A" * 7])
def test_text_outside_the_base64_alphabet_is_refused(text):
    with pytest.raises(req.RequestError, match="'image' is not valid base64"):
        req.decode_base64(text)


def standard_library_decoding(text: str) -> bytes | None:
    """What decode_base64 accepted before pybase64: the standard library's strict decoding of
    the normalised text (None where it refused)."""
    text = text.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split()).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True) if text else None
    except ValueError:
        return None


def test_base64_accepts_exactly_what_the_standard_library_accepts():
    # pybase64 refuses padding after a complete group ("QUJD===="), which the standard
    # library decodes: such strings must still decode, and nothing else may change
    pieces = ["QUJD", "QQ", "QUI", "w/+", "-_", "=", "==", "====", " ", "\n", "\u00a0", "é", "!"]
    rng = random.Random(16)
    texts = ["QUJD====", "QQ======", "QUJDQQ==QUJD", "QUJD\u00a0", "QU\u00a0JD"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 5))) for _ in range(3000)]
    for text in texts:
        expected = standard_library_decoding(text)
        if expected is None:
            with pytest.raises(req.RequestError, match="'image' is (not valid base64|empty)"):
                req.decode_base64(text)
        else:
            assert req.decode_base64(text) == expected, repr(text)
    assert req.decode_base64("QUJD====") == b"ABC"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_bgr_pixels_are_the_channels_reversed_in_a_contiguous_copy(dtype):
    rgb = np.random.default_rng(3).integers(0, 255, (37, 53, 3)).astype(dtype)
    reduced = req.ReducedImage.of(rgb, 4, (212, 148))
    for image in (rgb, rgb[::2, 1:], reduced):
        swapped = req.bgr_pixels(image)
        assert swapped.flags.c_contiguous and swapped.dtype == image.dtype
        assert np.array_equal(swapped, np.asarray(image)[..., ::-1])
        assert not np.shares_memory(swapped, image)

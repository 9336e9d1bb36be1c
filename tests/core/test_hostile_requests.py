"""Hostile requests (issue 29): numbers past what a float holds, EXIF orientation as text, JPEG
data cut short behind an end marker, and tiny files whose headers ask for minutes of work and
gigabytes. Each is answered 4xx with a JSON message, fast, before the costly work; valid
images decode to the same pixels as before."""

from __future__ import annotations

import io
import json
import struct
import time
import tracemalloc

import cv2
import numpy as np
import pytest
from handlers_for_tests import BrightBoxHandler, huge_png_header
from PIL import Image

from quadratseg_handlers.core import jpeg
from quadratseg_handlers.core.request import (
    RequestError,
    b64,
    decode_images,
    decode_opened,
    exif_orientation,
    open_image,
    parse_body,
    parse_integer,
    parse_threshold,
    to_rgb_array,
)
from quadratseg_handlers.handlers.lama import LamaHandler, check_inpaint_memory, parse_keypoints
from quadratseg_handlers.local.harness import FunctionClient, make_event, response_json
from quadratseg_handlers.ops.template import GRID_POINTS

HUGE = "9" * 400
"""A JSON integer of 400 digits: a Python int, but no float."""


def answer(client: FunctionClient, body: bytes | dict) -> tuple[int, str]:
    response = client.call(make_event(body, "application/json" if isinstance(body, dict) else ""))
    return response.status_code, response_json(response)["error"]


def photo_file(fmt: str = "JPEG", size_wh: tuple[int, int] = (403, 301), **options) -> bytes:
    rng = np.random.default_rng(7)
    pixels = cv2.GaussianBlur(
        rng.integers(0, 256, (size_wh[1], size_wh[0], 3), np.uint8), (0, 0), 2
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def claimed_jpeg(width: int, height: int, scan_bytes: int = 200) -> bytes:
    """A real 64 x 64 grey JPEG re-headed to claim ``width`` x ``height``, its scan cut after
    ``scan_bytes`` and the end marker written after it: some 600 bytes."""
    grey = Image.open(io.BytesIO(photo_file(size_wh=(64, 64)))).convert("L")
    buffer = io.BytesIO()
    grey.save(buffer, "JPEG", quality=90)
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, height, width)
    scan = data.index(b"\xff\xda")
    return bytes(data[: scan + 14 + scan_bytes]) + b"\xff\xd9"


@pytest.fixture
def detector() -> FunctionClient:
    return FunctionClient(BrightBoxHandler)


class ScaledBrightBoxHandler(BrightBoxHandler):
    """A detector that decodes JPEGs at a reduction, as the YOLO functions do."""

    def decode_size(self) -> int | None:
        return 640


@pytest.fixture
def opencv_lama(tmp_path) -> FunctionClient:
    return FunctionClient(
        LamaHandler, {"INPAINT_BACKEND": "opencv", "LAMA_MODEL": tmp_path / "absent.pt"}
    )


# --- numbers ------------------------------------------------------------------------------


def test_an_integer_past_pythons_digit_limit_is_a_400_not_a_500(detector):
    body = b'{"image": "x", "threshold": ' + b"7" * 5000 + b"}"
    with pytest.raises(RequestError, match="a number of more than 4300 digits") as error:
        parse_body(body)
    assert error.value.status == 400
    assert answer(detector, body) == (
        400, "malformed JSON body: a number of more than 4300 digits"
    )  # fmt: skip


@pytest.mark.parametrize("value", [int(HUGE), -int(HUGE), "1" * 5000, "1e999", float("nan")])
def test_a_threshold_past_a_float_is_a_400(value):
    with pytest.raises(RequestError, match="'threshold' must be a number in \\[0, 1\\]"):
        parse_threshold(value, 0.5)


def test_numbers_are_compared_before_they_are_converted():
    assert parse_threshold("0.25", 0.5) == 0.25 and parse_threshold(1, 0.5) == 1.0
    assert parse_threshold(0, 0.5) == 0.5
    with pytest.raises(RequestError, match="got a number of 400 digits$"):
        parse_integer(int(HUGE), "line_width", 1, 512, 8)
    with pytest.raises(RequestError, match="must be an integer"):
        parse_integer(1e400, "line_width", 1, 512, 8)
    assert parse_integer(12.0, "line_width", 1, 512, 8) == 12


def test_huge_numbers_through_a_detector_and_lama_are_400s(detector, opencv_lama):
    image = b64(photo_file("PNG"))
    threshold = f'{{"image": "{image}", "threshold": {HUGE}}}'.encode()
    status, error = answer(detector, threshold)
    assert status == 400 and error.startswith("'threshold' must be a number in [0, 1], got a")
    points = json.dumps([[10.0, 10.0]] * GRID_POINTS)
    huge_point = points.replace("10.0", HUGE, 1)
    body = f'{{"image": "{image}", "keypoints": {points}, "line_width": {HUGE}}}'.encode()
    assert answer(opencv_lama, body) == (
        400, "'line_width' must be from 1 to 512, got a number of 400 digits"
    )  # fmt: skip
    status, error = answer(
        opencv_lama, f'{{"image": "{image}", "keypoints": {huge_point}}}'.encode()
    )
    assert status == 400 and len(error) < 200
    assert error.startswith("keypoint 1 is out of range (coordinates within +-1e+15 pixels): [999")


def test_keypoints_far_outside_but_finite_are_still_accepted():
    points = parse_keypoints([[-9e9, 2.0]] + [[1.0, 2.0]] * (GRID_POINTS - 1))
    assert points[0].tolist() == [-9e9, 2.0]


# --- EXIF orientation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(6, 6), (8, 8), (1, 1), ("6", 1), ("garbage", 1), (b"\x06", 1), (9, 1), (0, 1), ((6,), 1)],
)
def test_an_exif_orientation_is_read_as_pil_reads_it(value, expected):
    assert exif_orientation(value) == expected


def with_orientation(data: bytes, text: str) -> bytes:
    """The JPEG with an EXIF block whose Orientation is stored as ASCII ``text`` (a writer's
    mistake PIL reads as a str), written by hand: PIL writes the tag as a number only."""
    value = text.encode() + b"\0"
    offset = 8 + 2 + 12 + 4  # the value after the one-entry IFD
    inline = value.ljust(4, b"\0") if len(value) <= 4 else struct.pack("<I", offset)
    ifd = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, 2, len(value)) + inline
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    exif = b"Exif\0\0" + tiff + (value if len(value) > 4 else b"")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("value", ["6", "sideways"])
def test_an_orientation_stored_as_text_means_no_rotation_in_both_decoders(detector, value):
    data = with_orientation(photo_file(), value)
    opened = open_image(data, 10**9)
    assert opened.getexif()[0x0112] == value
    fast = decode_opened(opened, data)
    assert fast.shape == (301, 403, 3)
    assert np.array_equal(fast, to_rgb_array(open_image(data, 10**9)))
    assert detector.call(make_event({"image": b64(data)})).status_code == 200


# --- JPEG data cut short or damaged -------------------------------------------------------


def test_libjpeg_turbo_decodes_opencvs_pixels_at_every_reduction():
    for options in ({"quality": 90}, {"quality": 85, "subsampling": 0}, {"progressive": True}):
        data = photo_file(size_wh=(2003, 1501), **options)
        for factor, flag in (
            (1, cv2.IMREAD_COLOR),
            (2, cv2.IMREAD_REDUCED_COLOR_2),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (8, cv2.IMREAD_REDUCED_COLOR_8),
        ):
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
            pixels = jpeg.strict_decode(data, factor)
            assert pixels is not None
            assert np.array_equal(pixels, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), (options, factor)


@pytest.mark.parametrize("min_side", [None, 640])
def test_a_jpeg_cut_short_behind_its_end_marker_is_a_400_not_grey(min_side):
    data = photo_file(size_wh=(1200, 900), quality=90)
    cut = data[: len(data) * 6 // 10] + b"\xff\xd9"
    started = time.perf_counter()
    with pytest.raises(RequestError, match="damaged or cut-short JPEG") as error:
        decode_images([(b64(cut), "images[0]")], 10**9, 10**9, min_side)
    assert error.value.status == 400 and error.value.message.startswith("'images[0]' is")
    assert time.perf_counter() - started < 1.0
    # the same file through PIL (a lama request, a CMYK JPEG) is refused alike
    with pytest.raises(RequestError, match="damaged or cut-short JPEG"):
        from quadratseg_handlers.core.request import check_complete

        check_complete(open_image(cut, 10**9), cut)


def test_a_600_byte_jpeg_claiming_12000_by_8000_is_refused_in_under_a_second():
    bomb = claimed_jpeg(12000, 8000)
    assert len(bomb) < 650
    client = FunctionClient(ScaledBrightBoxHandler)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        status, error = answer(client, {"image": b64(bomb)})
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 400 and "damaged or cut-short JPEG" in error
    assert seconds < 1.0 and peak < 100 * 1024**2


# --- work and memory budgets --------------------------------------------------------------


def test_lama_refuses_the_12000_by_8000_jpeg_and_a_10000_square_png_from_the_header(
    opencv_lama,
):
    for data, words in (
        (claimed_jpeg(12000, 8000), "12000x8000 = 96.0 megapixels, over the limit of 40.0"),
        (huge_png_header(10_000, 10_000), "10000x10000 = 100.0 megapixels, over the limit of 40"),
    ):
        body = {"image": b64(data), "keypoints": [[1.0, 1.0]] * GRID_POINTS}
        started = time.perf_counter()
        status, error = answer(opencv_lama, body)
        assert time.perf_counter() - started < 1.0
        assert status == 413 and words in error and "(MAX_IMAGE_PIXELS)" in error


def test_big_lama_is_held_to_its_memory_per_megapixel(tmp_path):
    whole = LamaHandler(environ={"LAMA_MODEL": str(tmp_path / "absent.pt"), "DEVICE": "cpu"})
    check_inpaint_memory(whole.settings, (2800, 2800))  # 7.8 megapixels fit in 8 GiB
    with pytest.raises(RequestError, match="MAX_INPAINT_MB") as error:
        check_inpaint_memory(whole.settings, (4000, 3000))
    assert error.value.status == 413
    assert error.value.message == (
        "'image' is 4000x3000 = 12.0 megapixels: inpainting it takes about 12.2 GiB, over the "
        "limit of 8192 MiB (MAX_INPAINT_MB); set INPAINT_TILE_SIZE=1024 or send a smaller image"
    )
    tiled = LamaHandler(environ={"LAMA_MODEL": str(tmp_path / "a.pt"), "INPAINT_TILE_SIZE": "1024"})
    check_inpaint_memory(tiled.settings, (6000, 6000))  # 36 megapixels, a 1.6 MP window


def test_a_16_bit_grey_png_is_stretched_in_row_blocks_to_the_same_pixels():
    rng = np.random.default_rng(5)
    levels = rng.integers(0, 4096, (1500, 2000), dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, "PNG")
    data = buffer.getvalue()
    opened = open_image(data, 10**9)
    assert opened.mode == "I;16"
    array = np.asarray(opened, dtype=np.float64)
    expected = (array * (255.0 / array.max())).clip(0, 255).astype(np.uint8)
    tracemalloc.start()
    try:
        pixels = decode_opened(open_image(data, 10**9), data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(pixels, np.stack([expected] * 3, axis=-1))
    assert peak < 8 * levels.size  # was 3 float64 copies at once: 24 bytes a pixel and more


def test_the_decode_memory_budget_counts_the_bit_depth(detector):
    grey16 = io.BytesIO()
    Image.fromarray(np.zeros((600, 1000), np.uint16)).save(grey16, "PNG")
    client = FunctionClient(BrightBoxHandler, {"MAX_DECODE_MB": 2})
    status, error = answer(client, {"image": b64(grey16.getvalue())})
    assert status == 413
    assert error == (
        "decoding the request's images (I;16) takes up to 4 MiB, over the limit of 2 MiB "
        "(MAX_DECODE_MB)"
    )
    assert detector.call(make_event({"image": b64(photo_file("PNG"))})).status_code == 200


def test_bytes_after_a_complete_scan_are_decoded_as_before():
    data = photo_file(size_wh=(400, 300), quality=90)
    padded = data[:-2] + b"\x12\x34\x56\xff\xd9"
    bgr = cv2.imdecode(np.frombuffer(padded, np.uint8), cv2.IMREAD_COLOR)
    pixels = decode_opened(open_image(padded, 10**9), padded)
    assert np.array_equal(pixels, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_lama_refuses_a_cut_jpeg_image_or_mask_that_pil_would_fill_with_grey(opencv_lama):
    data = photo_file(size_wh=(403, 301), quality=90)
    cut = data[: len(data) // 2] + b"\xff\xd9"
    points = [[1.0, 1.0]] * GRID_POINTS
    status, error = answer(opencv_lama, {"image": b64(cut), "keypoints": points})
    assert status == 400 and error.startswith("'image' is a damaged or cut-short JPEG")
    status, error = answer(opencv_lama, {"image": b64(data), "mask": b64(cut)})
    assert status == 400 and error.startswith("'mask' is a damaged or cut-short JPEG")

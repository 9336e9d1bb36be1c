"""Pixels in: decoding a request's image, and masks back to the photo's pixels.

The first table picks the decoder per format (``OPENCV_FORMATS`` in core/request.py); the
second times what a YOLO function at imgsz 640 decodes a JPEG request with: today's full PIL
decode, the full decode the library does now, and the scaled decode (libjpeg's DCT scaling,
through PIL's ``draft`` and OpenCV's ``IMREAD_REDUCED_COLOR``), each side by side. The third
times one mask's box resampled to the photo by OpenCV (the CPU path of ``mask_in_image``) and
by torch (its path for masks on a GPU), on the CPU and, when there is one, on CUDA.
"""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
from PIL import Image

from quadratseg_handlers.backends.ultralytics_results import (
    Letterbox,
    _sampled_on_device,
    mask_in_image,
)
from quadratseg_handlers.core.request import (
    OPENCV_FORMATS,
    decode_images,
    decode_opened,
    jpeg_reduction,
    open_image,
    to_rgb_array,
)
from quadratseg_handlers.demo.synthetic import quadrat_image

from .timing import interleaved, median_ms

DEVICES = ("cpu", "cuda")
"""On a GPU machine its section is written apart (``decode-gpu``): that machine's CPU decodes."""
RUNS = 7
INPUT_SIDE = 640
"""The network input a scaled decode must not go below (a YOLO function at imgsz 640)."""
LIMIT = 10**9


def file_bytes(image: np.ndarray, fmt: str) -> bytes:
    """An RGB array saved by PIL as ``fmt`` (JPEG and WebP at quality 90)."""
    buffer = io.BytesIO()
    options = {"quality": 90} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pil_decode(data: bytes) -> np.ndarray:
    """The decode before this change: PIL, full size, EXIF orientation applied."""
    return to_rgb_array(open_image(data, LIMIT))


def opencv_decode(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """OpenCV's decode to RGB."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def pil_draft(data: bytes, factor: int) -> np.ndarray:
    """PIL's scaled JPEG decode (``draft``) at 1/``factor``."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    image.draft("RGB", (-(-width // factor), -(-height // factor)))
    return np.asarray(image.convert("RGB"))


REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def format_rows(image: np.ndarray) -> list[str]:
    """One row per format: PIL vs OpenCV full decode of the same file."""
    rows = []
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "TIFF"):
        data = file_bytes(image, fmt)
        times = interleaved(
            {"pil": lambda d=data: pil_decode(d), "opencv": lambda d=data: opencv_decode(d)},
            runs=RUNS,
        )
        pil, opencv = median_ms(times["pil"]), median_ms(times["opencv"])
        chosen = "OpenCV" if fmt in OPENCV_FORMATS else "PIL"
        rows.append(
            f"| {fmt} | {len(data) / 1e6:.1f} | {pil:.1f} | {opencv:.1f} | {pil / opencv:.2f} "
            f"| {chosen} |"
        )
    return rows


def jpeg_row(size: tuple[int, int], seed: int) -> str:
    """One JPEG size: today's decode, the full decode now, both scaled decodes, the request."""
    data = file_bytes(quadrat_image(size, seed=seed).image, "JPEG")
    factor = jpeg_reduction(size, INPUT_SIDE)
    field = [(base64.b64encode(data).decode(), "image")]
    steps = {
        "pil": lambda: pil_decode(data),
        "full": lambda: decode_opened(open_image(data, LIMIT), data),
        "draft": lambda: pil_draft(data, factor),
        "reduced": lambda: opencv_decode(data, REDUCED.get(factor, cv2.IMREAD_COLOR)),
        "scaled": lambda: decode_opened(open_image(data, LIMIT), data, min_side=INPUT_SIDE),
        "request": lambda: decode_images(field, LIMIT, LIMIT, INPUT_SIDE),
    }
    ms = {name: median_ms(t) for name, t in interleaved(steps, runs=RUNS).items()}
    return (
        f"| {size[0]} x {size[1]} | {len(data) / 1e6:.2f} | 1/{factor} | {ms['pil']:.1f} "
        f"| {ms['full']:.1f} | {ms['draft']:.1f} | {ms['reduced']:.1f} | {ms['scaled']:.1f} "
        f"| {ms['request']:.1f} | {ms['pil'] / ms['scaled']:.1f}x |"
    )


def mask_rows() -> list[str]:
    """One row per (photo, input) size: a disc's box resampled by OpenCV and by torch."""
    import torch

    rows = []
    for image_shape, input_shape in [((1920, 1920), (640, 640)), ((3000, 4000), (480, 640))]:
        letterbox = Letterbox.between(input_shape, image_shape)
        in_h, in_w = input_shape
        ys, xs = np.mgrid[0:in_h, 0:in_w]
        disc = (xs - in_w / 2) ** 2 + (ys - in_h / 2) ** 2 <= (min(in_h, in_w) * 0.3) ** 2
        mask = torch.from_numpy(disc.astype(np.uint8))
        height, width = image_shape
        box = (int(width * 0.15), int(height * 0.15), int(width * 0.85), int(height * 0.85))
        steps = {
            "opencv": lambda m=mask, b=box, lb=letterbox, s=image_shape: mask_in_image(m, b, lb, s),
            "torch": lambda m=mask, b=box, lb=letterbox: _sampled_on_device(m, lb, b),
        }
        if torch.cuda.is_available():
            on_gpu = mask.cuda()
            steps["cuda"] = lambda m=on_gpu, b=box, lb=letterbox: _sampled_on_device(m, lb, b)
        ms = {name: median_ms(t) for name, t in interleaved(steps, runs=RUNS).items()}
        cuda = f"{ms['cuda']:.1f}" if "cuda" in ms else "no GPU"
        crop = (box[2] - box[0]) * (box[3] - box[1]) / 1e6
        rows.append(
            f"| {width} x {height} | {in_w} x {in_h} | {crop:.1f} | {ms['opencv']:.1f} "
            f"| {ms['torch']:.1f} | {ms['torch'] / ms['opencv']:.1f} | {cuda} |"
        )
    return rows


def run() -> str:
    """Return the Markdown section."""
    photo = quadrat_image((4000, 3000), seed=11).image
    formats = format_rows(photo)
    sizes = [((1024, 1024), 12), ((1920, 1920), 13), ((4000, 3000), 11)]
    jpegs = [jpeg_row(size, seed) for size, seed in sizes]
    masks = mask_rows()
    return (
        "## Pixels in: decoding, and masks back to the photo\n\n"
        "Synthetic quadrat photographs (`quadrat_image`), medians of "
        f"{RUNS} interleaved runs, ms. Full decodes of one 4000 x 3000 photo saved in each "
        "format (JPEG and WebP at quality 90); the library decodes with the faster one where "
        "it gives PIL's pixels (8-bit RGB, RGBA or grey; EXIF orientation read from the "
        "header; CMYK, palette, 16-bit and PNGs holding EXIF stay on PIL):\n\n"
        "| Format | MB | PIL ms | OpenCV ms | PIL / OpenCV | Decoder |\n"
        "| --- | --- | --- | --- | --- | --- |\n" + "\n".join(formats) + "\n\n"
        f"JPEG requests for a YOLO function at imgsz {INPUT_SIDE} (SCALED_DECODE=true): the "
        "smallest DCT reduction whose long side stays >= 640. PIL full = the decode before "
        "this change; library full = OpenCV now (SCALED_DECODE=false, or a full-resolution "
        "function); PIL draft and OpenCV reduced = the two scaled decoders alone; library "
        "scaled = what the function decodes with (OpenCV reduced, orientation read from the "
        "header); request = base64, header checks and the scaled decode.\n\n"
        "| JPEG | MB | Reduction | PIL full | Library full | PIL draft | OpenCV reduced "
        "| Library scaled | Request | PIL full / scaled |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(jpegs)
        + "\n\n### One mask's box to the photo's pixels\n\n"
        "A disc mask at the network input, its box (70 % of the photo's sides) resampled "
        "bilinearly to the photo and thresholded at one half; medians ms. OpenCV serves "
        "masks on the CPU; torch (index gathers on the mask's device, only the boolean crop "
        "copied to the CPU) serves the masks of large network inputs on a GPU (`COPY_PIXELS`): on "
        "a CPU it is the slower one.\n\n"
        "| Photo | Input | Box megapixels | OpenCV (CPU) | torch (CPU) | torch / OpenCV "
        "| torch (CUDA) |\n| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(masks)
    )

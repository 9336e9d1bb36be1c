"""Ultralytics results as arrays in the photo's pixels: instances, points and boxes.

:func:`result_instances` turns a segmentation result into instances whose masks are in
original-image pixels (the exact letterbox mapping); :func:`result_points` turns a detect or
pose result into points, and :func:`result_boxes` a detect result into boxes. An image decoded
at a fraction of its photo (a ``ReducedImage``) is answered in the photo's pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from quadratseg_handlers.core.instances import Instance
from quadratseg_handlers.core.request import photo_size_hw, reduction
from quadratseg_handlers.ops.boxes import box_centres

if TYPE_CHECKING:
    from ultralytics.engine.results import Results

# --- segmentation results in original-image pixels -------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """Where ultralytics put the original image inside the network input: scale, then padding.

    Mirrors ultralytics' letterbox (and its ``scale_masks``): the image is resized by one gain
    to fit the input, rounded to whole pixels, and centred. Scales are input pixels per
    original pixel, kept as exact fractions. An image decoded at 1/``reduction`` of its
    photo (:class:`~quadratseg_handlers.core.request.ReducedImage`) is composed in: the
    scales then map the photo's pixels straight to the input, never via the reduced image.
    """

    scale_x: Fraction
    scale_y: Fraction
    left: int
    top: int
    extent: tuple[int, int] | None = None
    """(h, w) original pixels the content covers: the reduced image's size times the
    reduction, a few pixels past a photo whose sides are no multiple of it; None: the
    image's own size."""

    @classmethod
    def between(
        cls, input_shape: tuple[int, int], image_shape: tuple[int, int], reduction: int = 1
    ) -> Letterbox:
        """The letterbox of an (h, w) image inside an (h, w) network input, in original
        pixels: the image's own, or its photo's when it is a 1/``reduction`` decode."""
        in_h, in_w = input_shape
        im_h, im_w = image_shape
        gain = min(in_h / im_h, in_w / im_w)
        content_w, content_h = max(round(im_w * gain), 1), max(round(im_h * gain), 1)
        left = round((in_w - content_w) / 2 - 0.1)
        top = round((in_h - content_h) / 2 - 0.1)
        scale_x = Fraction(content_w, im_w * reduction)
        scale_y = Fraction(content_h, im_h * reduction)
        return cls(scale_x, scale_y, left, top, (im_h * reduction, im_w * reduction))

    @property
    def identity(self) -> bool:
        """Whether input pixels are original pixels (retina masks, or no resizing)."""
        return self.scale_x == self.scale_y == 1 and self.left == self.top == 0


ALIGNED_PERIOD = 32
"""Masks are resized on whole periods of the scale (cv2.resize, about 5 times faster than a
general warp) when the scales' denominators are at most this many original pixels."""


def mask_in_image(
    mask: Any, box: Sequence[float], letterbox: Letterbox, image_shape: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The part of an input-resolution mask inside ``box``, resampled to original pixels.

    ``mask`` is one (h, w) 0/1 mask of the network input (a torch tensor or an array), ``box``
    its (x1, y1, x2, y2) in original pixels. Only the box is resampled (bilinear, threshold at
    one half), so the cost follows the instance, not the image: with OpenCV for a CPU mask,
    with torch on the mask's device otherwise (only the boolean crop comes back to the CPU).
    Returns the boolean crop and the (x, y) of its top-left pixel, or None when the box holds
    no pixel.
    """
    im_h, im_w = image_shape
    x0, y0 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
    x1, y1 = min(math.ceil(box[2]), im_w), min(math.ceil(box[3]), im_h)
    if x1 <= x0 or y1 <= y0:
        return None
    if letterbox.identity:
        return _as_array(mask[y0:y1, x0:x1]) > 0, (x0, y0)
    periods = (letterbox.scale_x.denominator, letterbox.scale_y.denominator)
    if not _on_cpu(mask):
        return _sampled_on_device(mask, letterbox, (x0, y0, x1, y1)), (x0, y0)
    if max(periods) <= ALIGNED_PERIOD:
        inside = _resized(mask, letterbox, (x0, y0, x1, y1), letterbox.extent or image_shape)
    else:
        inside = _warped(mask, letterbox, (x0, y0, x1, y1))
    return inside, (x0, y0)


COPY_PIXELS = 1024 * 1024
"""Masks on a GPU whose network input has at most this many pixels go to the CPU in one copy
(as bytes) and are resampled there by OpenCV; larger ones are resampled box by box on the
device. Measured on an H200 with the demo coral model (docs/performance.md): at a 640 x 640
input, 13 masks, copying first answered in 3.6 ms against 8.1 ms box by box on the device; at
1920 x 1920, 90 masks, box by box took 7.6 ms and copying (as floats) 182 ms."""


def masks_in_image(
    masks: Any, boxes: np.ndarray, letterbox: Letterbox, image_shape: tuple[int, int]
) -> list[tuple[np.ndarray, tuple[int, int]] | None]:
    """:func:`mask_in_image` for each of a result's masks, in order.

    On a GPU each box's resampling there costs a few small kernels and a wait, about 0.5 ms
    whatever its size, while copying a mask costs its input-resolution pixels: small inputs
    (up to COPY_PIXELS) come to the CPU together as bytes, large ones stay on the device.
    """
    if not _on_cpu(masks) and masks.shape[-2] * masks.shape[-1] <= COPY_PIXELS:
        import torch

        masks = (masks > 0).to(torch.uint8).cpu()
    return [mask_in_image(m, b, letterbox, image_shape) for m, b in zip(masks, boxes, strict=True)]


def _aligned(start: int, stop: int, scale: Fraction, limit: int) -> tuple[int, int]:
    """[start, stop) widened to whole periods of ``scale`` plus one period each side."""
    period = scale.denominator
    return max((start // period - 1) * period, 0), min((-(-stop // period) + 1) * period, limit)


def _resized(
    mask: Any, letterbox: Letterbox, box: tuple[int, int, int, int], image_shape: tuple[int, int]
) -> np.ndarray:
    """Resample a window whose ends fall on whole pixels of both grids with cv2.resize.

    A window of whole periods starts and ends on a pixel edge of both the input and the
    original image, so resize's own mapping (pixel centres, align_corners=False) is exactly
    the letterbox's.
    """
    x0, y0, x1, y1 = box
    wx0, wx1 = _aligned(x0, x1, letterbox.scale_x, image_shape[1])
    wy0, wy1 = _aligned(y0, y1, letterbox.scale_y, image_shape[0])
    u0, u1 = (letterbox.left + _whole(w, letterbox.scale_x) for w in (wx0, wx1))
    v0, v1 = (letterbox.top + _whole(w, letterbox.scale_y) for w in (wy0, wy1))
    source = _levels(mask[v0:v1, u0:u1])
    window = cv2.resize(source, (wx1 - wx0, wy1 - wy0), interpolation=cv2.INTER_LINEAR)
    return _halved(window)[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]


def _whole(pixels: int, scale: Fraction) -> int:
    """``pixels * scale`` rounded down, in integer arithmetic (a Fraction's is slower)."""
    return pixels * scale.numerator // scale.denominator


def _warped(mask: Any, letterbox: Letterbox, box: tuple[int, int, int, int]) -> np.ndarray:
    """Resample any window with an affine warp (scales whose period is too long to align)."""
    x0, y0, x1, y1 = box
    sx, sy = float(letterbox.scale_x), float(letterbox.scale_y)
    in_h, in_w = mask.shape[-2:]
    u0 = max(math.floor(letterbox.left + x0 * sx) - 1, 0)
    u1 = min(math.ceil(letterbox.left + x1 * sx) + 1, in_w)
    v0 = max(math.floor(letterbox.top + y0 * sy) - 1, 0)
    v1 = min(math.ceil(letterbox.top + y1 * sy) + 1, in_h)
    source = _levels(mask[v0:v1, u0:u1])
    # Output pixel (j, i) is original pixel (x0 + j, y0 + i); its centre sits in the input at
    # left + (x + 0.5) * sx - 0.5, relative to the source crop's first column u0.
    to_source = np.array(
        [
            [sx, 0.0, letterbox.left + (x0 + 0.5) * sx - 0.5 - u0],
            [0.0, sy, letterbox.top + (y0 + 0.5) * sy - 0.5 - v0],
        ]
    )
    levels = cv2.warpAffine(
        source,
        to_source,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return _halved(levels)


def _on_cpu(mask: Any) -> bool:
    """Whether a mask is an array or a CPU tensor (OpenCV resamples those faster than torch)."""
    device = getattr(mask, "device", None)
    return device is None or getattr(device, "type", "cpu") == "cpu"


def _taps(
    start: int, stop: int, scale: Fraction, offset: int, size: int, device: Any
) -> tuple[Any, Any, Any]:
    """Bilinear taps of original pixels [start, stop) in an input axis of ``size`` pixels:
    the two input indices each pixel centre falls between (clamped, as a replicated border)
    and the weight of the second."""
    import torch

    centres = torch.arange(start, stop, dtype=torch.float64, device=device)
    centres = offset + (centres + 0.5) * float(scale) - 0.5
    low = torch.floor(centres)
    weight = (centres - low).to(torch.float32)
    first = low.to(torch.int64).clamp(0, size - 1)
    return first, (low.to(torch.int64) + 1).clamp(0, size - 1), weight


def _sampled_on_device(mask: Any, letterbox: Letterbox, box: tuple[int, int, int, int]) -> Any:
    """The box of a torch mask resampled on its own device (bilinear, pixel centres, as
    :func:`_warped` does with OpenCV), thresholded at one half; the boolean crop as an array."""
    x0, y0, x1, y1 = box
    in_h, in_w = mask.shape[-2:]
    row0, row1, wy = _taps(y0, y1, letterbox.scale_y, letterbox.top, in_h, mask.device)
    col0, col1, wx = _taps(x0, x1, letterbox.scale_x, letterbox.left, in_w, mask.device)
    source = mask.float()
    upper, lower = source.index_select(0, row0), source.index_select(0, row1)
    wx = wx[None, :]
    upper = upper.index_select(1, col0) * (1 - wx) + upper.index_select(1, col1) * wx
    lower = lower.index_select(1, col0) * (1 - wx) + lower.index_select(1, col1) * wx
    levels = upper * (1 - wy[:, None]) + lower * wy[:, None]
    return (levels >= 0.5).cpu().numpy()


def _halved(levels: np.ndarray) -> np.ndarray:
    """Interpolated grey levels thresholded at one half (128), in place, as a boolean array
    (OpenCV writes the 0/1 bytes, which read as booleans without a copy)."""
    cv2.threshold(levels, 127, 1, cv2.THRESH_BINARY, dst=levels)
    return levels.view(bool)


def _levels(window: Any) -> np.ndarray:
    """A mask window as 0/255 grey levels: interpolated, then thresholded at 128 (one half)."""
    values = _as_array(window)
    if values.dtype == np.uint8:
        return cv2.threshold(values, 0, 255, cv2.THRESH_BINARY)[1]
    return np.where(values > 0, np.uint8(255), np.uint8(0))


def _as_array(data: Any) -> np.ndarray:
    """A numpy view of a (possibly CUDA) tensor slice, or the array itself."""
    if hasattr(data, "cpu"):
        data = data.cpu().numpy()
    return np.asarray(data)


def result_instances(result: Results, image: np.ndarray | None = None) -> list[Instance]:
    """The instances of one ultralytics segmentation result, masks in original-image pixels.

    Works from the masks as ultralytics returns them (at the network input's resolution, or
    at the original one with ``retina_masks``): each detection's box is resampled on its own.
    ``image``: the array predicted on; a reduced decode's masks and boxes are answered in its
    photo's pixels, mapped from the network input in one step.
    """
    if result.masks is None or result.boxes is None or len(result.boxes) == 0:
        return []
    factor = 1 if image is None else reduction(image)
    image_shape = (int(result.orig_shape[0]), int(result.orig_shape[1]))
    masks = result.masks.data
    input_shape = (int(masks.shape[-2]), int(masks.shape[-1]))
    letterbox = Letterbox.between(input_shape, image_shape, factor)
    if image is not None:
        image_shape = photo_size_hw(image)
    boxes = _as_array(result.boxes.xyxy) * factor
    scores = _as_array(result.boxes.conf)
    classes = _as_array(result.boxes.cls).astype(int)
    instances = []
    everything = masks_in_image(masks, boxes, letterbox, image_shape)
    for placed, score, cls in zip(everything, scores, classes, strict=True):
        if placed is not None:
            crop, origin = placed
            instances.append(Instance(str(result.names[cls]), crop, float(score), origin))
    return instances


# --- point results (box centres or pose keypoints) ---------------------------------------------


@dataclass(frozen=True)
class PointDetections:
    """What a points model (detect or pose) found in one image."""

    points: np.ndarray
    """(M, 2) image pixels: box centres, or keypoints."""
    scores: np.ndarray
    """(M,) box confidence, or keypoint confidence when the pose model has one."""
    labels: tuple[str, ...]
    """Class name of each point (of its box or pose instance)."""


def _floats(values: Any) -> np.ndarray:
    """A (possibly CUDA) tensor or array as a float64 NumPy array."""
    return _as_array(values).astype(np.float64, copy=False)


def result_points(
    result: Any,
    threshold: float,
    image: np.ndarray | None = None,
    *,
    restore_cut: bool = True,
) -> PointDetections:
    """The points of one ultralytics ``Results``: pose keypoints when there are any (those
    scoring >= ``threshold``), else box centres. ``image``: the array predicted on; a reduced
    decode's points are answered in its photo's pixels. ``restore_cut``: a box cut by the
    image's edge along one axis is made square again before its centre is taken
    (:func:`~quadratseg_handlers.ops.boxes.box_centres`)."""
    factor = 1 if image is None else reduction(image)
    names = result.names
    boxes = result.boxes
    classes = [names[int(c)] for c in _floats(boxes.cls)] if boxes is not None else []
    keypoints = getattr(result, "keypoints", None)
    if keypoints is not None and keypoints.xy is not None and len(keypoints.xy):
        xy = _floats(keypoints.xy) * factor
        conf = (
            _floats(keypoints.conf)
            if keypoints.conf is not None
            else np.repeat(_floats(boxes.conf)[:, None], xy.shape[1], axis=1)
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
    if restore_cut:
        height, width = result.orig_shape[:2]
        centres = box_centres(_floats(boxes.xyxy), width, height)
    else:
        centres = _floats(boxes.xywh)[:, :2]
    return PointDetections(
        points=centres * factor,
        scores=_floats(boxes.conf),
        labels=tuple(classes),
    )


# --- box results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxDetection:
    """One detect box in the photo's pixels: its class name, corners and score."""

    label: str
    xyxy: tuple[float, float, float, float]
    score: float


def result_boxes(result: Any, image: np.ndarray | None = None) -> list[BoxDetection]:
    """The boxes of one ultralytics detect ``Results``, highest score first as ultralytics
    answers them. ``image``: the array predicted on; a reduced decode's boxes are answered in
    its photo's pixels."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return []
    factor = 1 if image is None else reduction(image)
    corners = _floats(boxes.xyxy) * factor
    scores, classes = _floats(boxes.conf), _floats(boxes.cls)
    return [
        BoxDetection(str(result.names[int(cls)]), (x1, y1, x2, y2), float(score))
        for (x1, y1, x2, y2), score, cls in zip(corners.tolist(), scores, classes, strict=True)
    ]

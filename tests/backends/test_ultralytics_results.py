"""backends/ultralytics on real ``Results`` objects built from known masks: instances in the
photo's pixels at any letterbox or reduced decode, on the CPU (OpenCV) and on a device
(torch), and the shapes the YOLO handler makes of them."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from ultralytics.engine.results import Results

from quadratseg_handlers import cvat
from quadratseg_handlers.backends import ultralytics_results as backend
from quadratseg_handlers.backends.ultralytics_results import (
    Letterbox,
    _sampled_on_device,
    mask_in_image,
    masks_in_image,
    result_instances,
)
from quadratseg_handlers.core.request import ReducedImage
from quadratseg_handlers.cvat.masks import mask_parts, polygon_to_mask
from quadratseg_handlers.handlers.yolo import YoloSegHandler

NAMES = ["acropora", "pocillopora", "porites"]
EXPECTED_SPEC = [
    {"name": name, "type": "polygon", "attributes": [cvat.CONFIDENCE_SPEC]} for name in NAMES
]


# --- formatting real ultralytics Results ----------------------------------------------------------

WIDTH, HEIGHT = 1920, 1080
SAME_PIXELS = Letterbox(Fraction(1), Fraction(1), 0, 0)


def disc(center, radius, shape=(HEIGHT, WIDTH), letterbox=SAME_PIXELS):
    """Pixels whose centre, mapped back to original coordinates, lies within the disc."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x = (cols + 0.5 - letterbox.left) / float(letterbox.scale_x)
    y = (rows + 0.5 - letterbox.top) / float(letterbox.scale_y)
    return (x - center[0]) ** 2 + (y - center[1]) ** 2 <= radius**2


def input_disc(image_shape, input_shape):
    """A disc in the original image, drawn as the network input's mask sees it: the letterbox,
    the disc's centre and radius, the input mask, and the disc's box (cut at the bottom)."""
    letterbox = Letterbox.between(input_shape, image_shape)
    height, width = image_shape
    centre, radius = (width * 0.45, height * 0.5), min(height, width) * 0.3
    mask = torch.from_numpy(disc(centre, radius, input_shape, letterbox).astype(np.uint8))
    box = (
        int(centre[0] - radius - 1),
        int(centre[1] - radius - 1),
        int(centre[0] + radius),
        height,
    )
    return letterbox, centre, radius, mask, box


def outline_distance(points, circles, border=False):
    """Distance of each (pixel-index) vertex to the nearest of the circles (or the left edge)."""
    centres = np.asarray(points).reshape(-1, 2) + 0.5
    distances = [np.abs(np.hypot(*(centres - c).T) - r) for c, r in circles]
    if border:
        distances.append(np.abs(centres[:, 0] - 0.5))
    return np.min(distances, axis=0)


TRUTH = [  # (label index, score, circles drawn, circles cut out)
    (0, 0.876, [((400, 300), 150), ((800, 700), 120)], []),  # two discs: one instance, two parts
    (2, 0.5, [((1400, 400), 250)], [((1400, 400), 120)]),  # a ring
    (1, 0.999, [((0, 800), 200)], []),  # a half-disc on the left border
]
EXPECTED_LABELS = ["acropora", "acropora", "porites", "pocillopora"]
EXPECTED_CONFIDENCES = ["87", "87", "50", "99"]


def truth_masks(shape=(HEIGHT, WIDTH), letterbox=SAME_PIXELS):
    masks = []
    for _, _, circles, holes in TRUTH:
        mask = np.zeros(shape, dtype=bool)
        for center, radius in circles:
            mask |= disc(center, radius, shape, letterbox)
        for center, radius in holes:
            mask &= ~disc(center, radius, shape, letterbox)
        masks.append(mask)
    return masks


def truth_boxes():
    boxes = []
    for label, score, circles, _ in TRUTH:
        x1 = max(min(c[0] - r for c, r in circles) - 2, 0)
        y1 = max(min(c[1] - r for c, r in circles) - 2, 0)
        x2 = min(max(c[0] + r for c, r in circles) + 2, WIDTH)
        y2 = min(max(c[1] + r for c, r in circles) + 2, HEIGHT)
        boxes.append([x1, y1, x2, y2, score, label])
    return torch.tensor(boxes, dtype=torch.float32)


def make_result(input_shape=(HEIGHT, WIDTH)) -> Results:
    """A real ultralytics Results with the truth masks at ``input_shape`` (letterboxed)."""
    letterbox = Letterbox.between(input_shape, (HEIGHT, WIDTH))
    masks = np.stack(truth_masks(input_shape, letterbox)).astype(np.uint8)
    return Results(
        np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8),
        path="frame.jpg",
        names=dict(enumerate(NAMES)),
        boxes=truth_boxes(),
        masks=torch.from_numpy(masks),
    )


def decode_cvat_mask(shape) -> np.ndarray:
    x1, y1, x2, y2 = shape["mask"][-4:]
    bitmap = np.zeros((HEIGHT, WIDTH), dtype=bool)
    crop = np.array(shape["mask"][:-4], dtype=bool).reshape(y2 - y1 + 1, x2 - x1 + 1)
    bitmap[y1 : y2 + 1, x1 : x2 + 1] = crop
    return bitmap


def iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("input_shape", [(HEIGHT, WIDTH), (384, 640)], ids=["retina", "640"])
def test_results_become_polygons_on_the_true_outlines(input_shape):
    handler = YoloSegHandler()
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    shapes = handler.to_shapes(result_instances(make_result(input_shape)), image)
    assert [s["label"] for s in shapes] == EXPECTED_LABELS
    assert [s["confidence"] for s in shapes] == EXPECTED_CONFIDENCES
    assert [s["attributes"] for s in shapes] == [
        [{"name": "confidence", "value": value}] for value in EXPECTED_CONFIDENCES
    ]
    assert [s["type"] for s in shapes] == ["polygon"] * 4
    # The two discs are one instance: two polygons, largest first, sharing a group.
    assert [s.get("group_id") for s in shapes] == [1, 1, None, None]
    (_, _, discs, _), (_, _, ring, _), (_, _, half, _) = TRUTH
    assert outline_distance(shapes[0]["points"], discs[:1]).max() <= 2.0
    assert outline_distance(shapes[1]["points"], discs[1:]).max() <= 2.0
    assert outline_distance(shapes[2]["points"], ring).max() <= 2.0  # hole filled
    assert outline_distance(shapes[3]["points"], half, border=True).max() <= 2.0
    assert min(shapes[3]["points"][0::2]) == 0.0
    assert cvat.validate_response(shapes, EXPECTED_SPEC, (WIDTH, HEIGHT)) == []


@pytest.mark.parametrize("input_shape", [(HEIGHT, WIDTH), (384, 640)], ids=["retina", "640"])
def test_results_become_cvat_masks_that_decode_to_the_truth(input_shape):
    handler = YoloSegHandler(convert_to_polyline=False)
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    shapes = handler.to_shapes(result_instances(make_result(input_shape)), image)
    assert [s["type"] for s in shapes] == ["mask"] * 4
    assert [s["label"] for s in shapes] == EXPECTED_LABELS
    assert [s["confidence"] for s in shapes] == EXPECTED_CONFIDENCES
    two_discs, ring, half = truth_masks()
    decoded = [decode_cvat_mask(s) for s in shapes]
    assert iou(decoded[0] | decoded[1], two_discs) > 0.99
    assert iou(decoded[2], ring) > 0.99
    assert not decoded[2][400, 1400]  # the hole is kept in a mask
    assert iou(decoded[3], half) > 0.99
    # The outline carried in points covers the part it belongs to.
    outline = polygon_to_mask(np.reshape(shapes[3]["points"], (-1, 2)), HEIGHT, WIDTH)
    assert iou(outline, half) > 0.98
    spec = [cvat.label_spec(name, "mask") for name in NAMES]
    assert cvat.validate_response(shapes, spec, (WIDTH, HEIGHT)) == []


@pytest.mark.parametrize(
    "image_shape, input_shape",
    [((1080, 1920), (384, 640)), ((1079, 1917), (384, 640)), ((320, 200), (640, 416))],
    ids=["a third, resized", "a third, warped", "twice, resized"],
)
def test_a_mask_comes_back_to_original_pixels_at_any_scale(image_shape, input_shape):
    letterbox, centre, radius, mask, box = input_disc(image_shape, input_shape)
    bitmap, (x, y) = mask_in_image(mask, box, letterbox, image_shape)
    placed = np.zeros(image_shape, dtype=bool)
    placed[y : y + bitmap.shape[0], x : x + bitmap.shape[1]] = bitmap
    assert iou(placed, disc(centre, radius, image_shape)) > 0.99
    # Every outline point within one network-input pixel (or one original pixel if finer).
    input_pixel = max(1 / float(letterbox.scale_x), 1.0)
    (part,) = mask_parts(placed, tolerance=0.0)
    assert outline_distance(part.polygon, [(centre, radius)]).max() <= input_pixel


def test_empty_results_give_no_shapes():
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    names = dict(enumerate(NAMES))
    no_masks = Results(image, path="frame.jpg", names=names, boxes=torch.zeros((0, 6)))
    assert result_instances(no_masks) == []
    none = Results(
        image,
        path="frame.jpg",
        names=names,
        boxes=torch.zeros((0, 6)),
        masks=torch.zeros((0, 384, 640), dtype=torch.uint8),
    )
    assert result_instances(none) == []
    assert YoloSegHandler().to_shapes(result_instances(none), image) == []


def test_letterbox_matches_ultralytics_padding():
    from ultralytics.data.augment import LetterBox

    for image_shape, new_shape, auto in [
        ((1080, 1920), 640, True),
        ((1080, 1920), 640, False),
        ((1000, 750), 320, False),
        ((300, 200), 640, True),
    ]:
        image = np.zeros((*image_shape, 3), dtype=np.uint8)
        padded = LetterBox(new_shape, auto=auto, stride=32)(image=image)
        box = Letterbox.between(padded.shape[:2], image_shape)
        ultra = LetterBox(new_shape, auto=auto, stride=32).get_params({"img": image})
        assert (box.left, box.top) == (ultra["left"], ultra["top"])
        assert round(box.scale_x * image_shape[1]) == ultra["new_unpad"][0]


# --- scaled JPEG decoding: shapes in the photo's pixels ----------------------------------------


def reduced_result(image_shape, input_shape, factor):
    """A Results for the 1/``factor`` decode of an ``image_shape`` photo: the truth masks at
    ``input_shape``, boxes in the reduced image's pixels, and that reduced image."""
    height, width = image_shape
    small = np.zeros((-(-height // factor), -(-width // factor), 3), dtype=np.uint8)
    letterbox = Letterbox.between(input_shape, small.shape[:2], factor)
    masks = np.stack(truth_masks(input_shape, letterbox)).astype(np.uint8)
    boxes = truth_boxes()
    boxes[:, :4] /= factor
    result = Results(
        small,
        path="frame.jpg",
        names=dict(enumerate(NAMES)),
        boxes=boxes,
        masks=torch.from_numpy(masks),
    )
    return result, ReducedImage.of(small, factor, image_shape)


@pytest.mark.parametrize(
    "image_shape, factor",
    [((HEIGHT, WIDTH), 4), ((HEIGHT, WIDTH), 2), ((HEIGHT - 3, WIDTH - 5), 8)],
)
def test_masks_of_a_reduced_decode_map_straight_to_the_photo(image_shape, factor):
    result, image = reduced_result(image_shape, (384, 640), factor)
    instances = result_instances(result, image)
    shapes = YoloSegHandler(convert_to_polyline=False).to_shapes(instances, image)
    assert [s["label"] for s in shapes] == EXPECTED_LABELS
    two_discs, ring, half = (mask[: image_shape[0], : image_shape[1]] for mask in truth_masks())
    decoded = [decode_cvat_mask(s)[: image_shape[0], : image_shape[1]] for s in shapes]
    assert iou(decoded[0] | decoded[1], two_discs) > 0.99
    assert iou(decoded[2], ring) > 0.99
    assert iou(decoded[3], half) > 0.99
    spec = [cvat.label_spec(name, "mask") for name in NAMES]
    assert cvat.validate_response(shapes, spec, image_shape[::-1]) == []


def test_a_reduced_decode_gives_the_masks_of_a_full_one_to_the_pixel():
    full = result_instances(make_result((384, 640)))
    result, image = reduced_result((HEIGHT, WIDTH), (384, 640), 2)
    reduced = result_instances(result, image)
    for a, b in zip(full, reduced, strict=True):
        assert a.origin == b.origin
        assert np.array_equal(a.mask, b.mask)


@pytest.mark.parametrize(
    "image_shape, input_shape",
    [((1080, 1920), (384, 640)), ((1079, 1917), (384, 640)), ((3000, 4000), (480, 640))],
    ids=["a third, resized", "a third, warped", "4000 x 3000"],
)
def test_masks_resampled_by_torch_equal_opencvs(image_shape, input_shape):
    """The device path (torch, used for CUDA masks) against the CPU one (OpenCV)."""
    letterbox, centre, radius, mask, box = input_disc(image_shape, input_shape)
    opencv, origin = mask_in_image(mask, box, letterbox, image_shape)
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    for device in devices:
        on_device = _sampled_on_device(mask.to(device), letterbox, box)
        assert isinstance(on_device, np.ndarray) and on_device.dtype == bool
        assert on_device.shape == opencv.shape
        # OpenCV interpolates in fixed point: a level a hair from one half may round apart.
        assert (on_device != opencv).mean() < 1e-4
    placed = np.zeros(image_shape, dtype=bool)
    placed[
        origin[1] : origin[1] + on_device.shape[0], origin[0] : origin[0] + on_device.shape[1]
    ] = on_device
    assert iou(placed, disc(centre, radius, image_shape)) > 0.99


@pytest.mark.parametrize(
    "image_shape, input_shape",
    [((1080, 1920), (384, 640)), ((3000, 4000), (480, 640)), ((480, 640), (480, 640))],
    ids=["a third, resized", "4000 x 3000", "same size"],
)
@pytest.mark.parametrize("copy_pixels", [backend.COPY_PIXELS, 0], ids=["copied", "on device"])
def test_a_results_masks_on_a_device_equal_each_mask_by_opencv(
    monkeypatch, image_shape, input_shape, copy_pixels
):
    """A whole result's masks on a GPU, copied to the CPU first (small inputs) or resampled
    box by box on the device (large ones, forced here by COPY_PIXELS=0), against OpenCV mask
    by mask. Without CUDA, CPU tensors stand in for the device's."""
    letterbox, _, _, mask, box = input_disc(image_shape, input_shape)
    height, width = image_shape
    masks = torch.stack([mask, mask.flip(1), torch.zeros_like(mask), mask])
    boxes = np.array(
        [box, (0, 0, width, height), (width + 5, 0, width + 50, 40), (10.5, 20.2, 200.7, 90.1)],
        dtype=np.float64,
    )
    pairs = zip(masks, boxes, strict=True)
    expected = [mask_in_image(m, b, letterbox, image_shape) for m, b in pairs]
    assert expected[2] is None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":  # the result's masks count as a GPU's; copied ones as the CPU's
        on_cpu = backend._on_cpu
        copied = bool(copy_pixels)
        monkeypatch.setattr(backend, "_on_cpu", lambda t: copied and t.ndim == 2 and on_cpu(t))
    monkeypatch.setattr(backend, "COPY_PIXELS", copy_pixels)
    placed = masks_in_image(masks.to(device), boxes, letterbox, image_shape)
    assert len(placed) == len(expected)
    for got, want in zip(placed, expected, strict=True):
        if want is None:
            assert got is None
            continue
        assert got[1] == want[1] and got[0].shape == want[0].shape and got[0].dtype == bool
        # OpenCV interpolates in fixed point: a level a hair from one half may round apart.
        assert (got[0] != want[0]).mean() < 1e-4

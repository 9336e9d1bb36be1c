"""The YOLO segmentation functions with real ultralytics: tiny models saved as real checkpoints,
and result formatting on real ``Results`` objects built from known masks."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from ultralytics.engine.results import Results

from quadratseg_handlers import ConfigError, cvat
from quadratseg_handlers.backends import ultralytics_results as backend
from quadratseg_handlers.backends.ultralytics import load_yolo, precision_options
from quadratseg_handlers.backends.ultralytics_results import (
    Letterbox,
    _sampled_on_device,
    mask_in_image,
    masks_in_image,
    result_instances,
)
from quadratseg_handlers.core.request import ReducedImage, cvat_request, encode_image
from quadratseg_handlers.cvat.masks import mask_parts, polygon_to_mask
from quadratseg_handlers.demo.tinymodels.yolo import DETERMINISTIC_SCORE, tiny_yolo
from quadratseg_handlers.deploy.catalog import handler_class
from quadratseg_handlers.handlers.yolo import (
    CoralSegBanggaiHandler,
    CoralSegV4Handler,
    YoloSegHandler,
)
from quadratseg_handlers.local.harness import FunctionClient, response_json

NAMES = ["acropora", "pocillopora", "porites"]
EXPECTED_SPEC = [
    {"name": name, "type": "polygon", "attributes": [cvat.CONFIDENCE_SPEC]} for name in NAMES
]


def quiet_onnx_export(test):
    """Silence what torch says while ultralytics exports to ONNX (deprecation, tracer notes)."""
    test = pytest.mark.filterwarnings("ignore::DeprecationWarning")(test)
    return pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")(test)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny deterministic checkpoints: a segmentation model trained 'at 320' and a detector."""
    folder = tmp_path_factory.mktemp("yolo")
    return {
        "segment": tiny_yolo(folder / "best.pt", "segment", NAMES, imgsz=320),
        "detect": tiny_yolo(folder / "best_detect.pt", "detect", NAMES, imgsz=320),
    }


@pytest.fixture(scope="module")
def onnx_model(models):
    """The segmentation checkpoint exported to ONNX with a fixed 128 x 128 input."""
    from ultralytics import YOLO

    return YOLO(str(models["segment"])).export(format="onnx", imgsz=128)


@pytest.fixture
def full_hd() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)


def client_for(model, handler=CoralSegV4Handler, **env) -> FunctionClient:
    return FunctionClient(handler, {"MODEL_PATH": model, "DEVICE": "cpu", **env})


# --- the functions end to end -------------------------------------------------------------------


@pytest.mark.slow
def test_full_hd_jpeg_gives_valid_deterministic_cvat_json(monkeypatch, models, full_hd):
    client = client_for(models["segment"], MAX_DET=20)
    handler = client.start()
    assert handler.labels() == EXPECTED_SPEC
    response = client.call(cvat_request(full_hd))
    assert response.status_code == 200
    shapes = response_json(response)
    assert cvat.validate_response(shapes, handler.labels(), (1920, 1080)) == []
    # Every anchor of the tiny model fires for class 0 with score sigmoid(3) = 0.9526, and its
    # masks fill their boxes: MAX_DET one-part instances.
    assert len(shapes) == 20
    for shape in shapes:
        assert shape["label"] == "acropora"
        assert shape["type"] == "polygon"
        assert shape["confidence"] == "95"
        assert shape["attributes"] == [{"name": "confidence", "value": "95"}]
        assert "group_id" not in shape
        points = np.array(shape["points"]).reshape(-1, 2)
        assert points.min() >= 0
        assert points[:, 0].max() <= 1919 and points[:, 1].max() <= 1079


@pytest.mark.slow
def test_request_threshold_overrides_conf_threshold(monkeypatch, models, full_hd):
    client = client_for(models["segment"], MAX_DET=5, CONF_THRESHOLD=0.96)
    assert response_json(client.call(cvat_request(full_hd))) == []
    assert len(response_json(client.call(cvat_request(full_hd, threshold=0.9)))) == 5
    assert response_json(client.call(cvat_request(full_hd, threshold=0.97))) == []


@pytest.mark.slow
def test_images_list_runs_one_batched_predict(monkeypatch, models, full_hd):
    client = client_for(models["segment"], MAX_DET=4)
    handler = client.start()
    batches: list[int] = []
    handler.yolo.model.add_callback(
        "on_predict_batch_start", lambda predictor: batches.append(len(predictor.batch[1]))
    )
    same_size = [full_hd, full_hd[::-1]]
    answer = response_json(client.call({"images": [encode_image(f) for f in same_size]}))
    assert batches == [2]
    assert [len(shapes) for shapes in answer] == [4, 4]
    mixed = [full_hd, full_hd[:480, :640], full_hd[:500, :300]]
    answer = response_json(client.call({"images": [encode_image(f) for f in mixed]}))
    assert batches == [2, 3]
    assert len(answer) == 3
    for frame, shapes in zip(mixed, answer, strict=True):
        size = (frame.shape[1], frame.shape[0])
        assert cvat.validate_response(shapes, handler.labels(), size) == []


@contextmanager
def ultralytics_log() -> Iterator[list[str]]:
    """Every message ultralytics logs inside the block, warnings included (with YOLO_VERBOSE=False
    its logger keeps only errors, and it does not propagate)."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield messages
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)


@pytest.mark.parametrize("half", ["true", "false"])
def test_a_predict_through_the_handler_logs_no_deprecation_warning(models, half, capfd):
    """ultralytics 8.4 names FP16 ``quantize=16``; given ``half`` it warns on every predict."""
    with ultralytics_log() as messages:
        client = client_for(models["segment"], MAX_DET=2, HALF=half)
        client.start()
        response = client.call(cvat_request(np.zeros((64, 80, 3), dtype=np.uint8)))
    assert response.status_code == 200
    printed = capfd.readouterr()
    assert not [m for m in [*messages, printed.out, printed.err] if "deprecated" in m]


def test_the_fp16_option_is_what_the_installed_ultralytics_expects(models):
    from ultralytics import YOLO

    model = YOLO(str(models["segment"]))
    with ultralytics_log() as messages:
        for half in (True, False):
            model.predict(np.zeros((64, 64, 3), np.uint8), verbose=False, **precision_options(half))
    assert not [m for m in messages if "deprecated" in m]
    assert precision_options(True) in ({"quantize": 16}, {"half": True})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FP16 inference needs a CUDA device")
def test_half_on_cuda_predicts_in_fp16(models):
    handler = YoloSegHandler(environ={"MODEL_PATH": str(models["segment"]), "HALF": "true"})
    handler.annotate(np.zeros((64, 80, 3), dtype=np.uint8))
    assert handler.yolo.model.predictor.model.fp16 is True
    off = YoloSegHandler(environ={"MODEL_PATH": str(models["segment"]), "HALF": "false"})
    off.annotate(np.zeros((64, 80, 3), dtype=np.uint8))
    assert off.yolo.model.predictor.model.fp16 is False


@pytest.mark.slow
def test_bytes_that_are_no_image_are_a_400_with_ultralytics_loaded(monkeypatch, models):
    # ultralytics replaces PIL's Image.open with one that tries a HEIF plugin (pi-heif, not
    # installed) on bytes PIL cannot identify.
    client = client_for(models["segment"], MAX_DET=1)
    client.start()
    response = client.call({"image": base64.b64encode(b"hello, not an image").decode()})
    assert response.status_code == 400
    assert response_json(response) == {
        "error": "'image' is not a decodable image (expected JPEG, PNG, TIFF, BMP or WebP bytes)"
    }


@pytest.mark.slow
def test_mask_shapes_when_not_converting_to_polygons(monkeypatch, models, full_hd):
    client = client_for(models["segment"], MAX_DET=3, CONVERT_TO_POLYLINE="false")
    handler = client.start()
    assert {label["type"] for label in handler.labels()} == {"mask"}
    shapes = response_json(client.call(cvat_request(full_hd)))
    assert [shape["type"] for shape in shapes] == ["mask"] * 3
    assert cvat.validate_response(shapes, handler.labels(), (1920, 1080)) == []


@pytest.mark.slow
def test_imgsz_defaults_to_the_training_size_and_can_be_set(models, full_hd):
    trained = YoloSegHandler(model_path=models["segment"], device="cpu", max_det=2)
    trained.load()
    assert trained.yolo.imgsz == 320
    assert trained.yolo.predict([full_hd], 0.5)[0].masks.data.shape[1:] == (192, 320)
    larger = YoloSegHandler(model_path=models["segment"], device="cpu", max_det=2, imgsz=640)
    larger.load()
    assert larger.yolo.predict([full_hd], 0.5)[0].masks.data.shape[1:] == (384, 640)


@pytest.mark.slow
def test_a_model_of_another_task_stops_start_up(monkeypatch, models):
    client = client_for(models["detect"])
    with pytest.raises(ConfigError) as caught:
        client.start()
    message = str(caught.value)
    assert message.startswith(f"MODEL_PATH={models['detect']}: ")
    assert "task is 'detect'" in message and "needs 'segment'" in message


@pytest.mark.slow
def test_tiny_detect_and_pose_models_fire_deterministically(tmp_path, models):
    image = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    detector = load_yolo(models["detect"], ["detect", "pose"])
    assert (detector.task, detector.names, detector.imgsz) == ("detect", NAMES, 320)
    corners = tiny_yolo(tmp_path / "corners.pt", "pose", ["quadrat_corner"], kpt_shape=(4, 3))
    pose = load_yolo(corners, ["detect", "pose"])
    assert (pose.task, pose.names) == ("pose", ["quadrat_corner"])
    for model in (detector, pose):
        (result,) = model.model.predict(image[..., ::-1], max_det=7, verbose=False, device="cpu")
        assert len(result.boxes) == 7
        assert result.boxes.cls.tolist() == [0.0] * 7
        assert np.allclose(result.boxes.conf.numpy(), DETERMINISTIC_SCORE)
    assert result.keypoints.data.shape == (7, 4, 3)


def test_unloadable_model_files_stop_start_up_naming_model_path(tmp_path):
    corrupt = tmp_path / "best.pt"
    corrupt.write_bytes(b"not a checkpoint")
    weights = tmp_path / "best.pth"
    weights.write_bytes(b"")
    cases = {
        tmp_path / "missing.pt": "file not found",
        weights: "unsupported model file '.pth'",
        corrupt: "not a model ultralytics can load",
    }
    for path, problem in cases.items():
        with pytest.raises(ConfigError, match=f"^MODEL_PATH={path}: {problem}"):
            load_yolo(path, ["segment"])
    with pytest.raises(ConfigError, match="^MODEL_PATH="):
        YoloSegHandler(model_path=tmp_path / "missing.pt")


def test_both_functions_are_catalogued_with_the_yolo_settings():
    for name, handler in [
        ("pth-yolo-coralsegv4", CoralSegV4Handler),
        ("pth-yolo-coralsegbanggai", CoralSegBanggaiHandler),
    ]:
        assert handler_class(name) is handler
        assert handler.function_name == name
        settings = {s.name: s.default for s in handler.declared_settings()}
        assert settings["MODEL_PATH"] == Path("/opt/nuclio/best.pt")
        assert settings["CONF_THRESHOLD"] == 0.25
        assert settings["IOU_THRESHOLD"] == 0.5
        assert settings["AGNOSTIC_NMS"] is False
        assert settings["IMGSZ"] is None
        assert settings["MAX_DET"] == 300
        assert settings["HALF"] is False
        assert settings["CONVERT_TO_POLYLINE"] is True


@pytest.mark.parametrize("flag", [False, True])
def test_agnostic_nms_reaches_ultralytics_nms(models, flag):
    handler = YoloSegHandler(model_path=models["segment"], device="cpu", agnostic_nms=flag)
    handler.load()
    handler.annotate(np.zeros((96, 128, 3), dtype=np.uint8))
    assert handler.yolo.model.predictor.args.agnostic_nms is flag


def bounding_boxes(shapes) -> np.ndarray:
    points = [np.reshape(shape["points"], (-1, 2)) for shape in shapes]
    return np.array([[*p.min(axis=0), *p.max(axis=0)] for p in points])


@pytest.mark.slow
@quiet_onnx_export
def test_onnx_export_gives_the_same_shapes_as_the_checkpoint(models, onnx_model):
    # The tiny model scores every anchor alike, so which of them a top-k keeps is a matter of
    # tie-breaking; keeping them all (IoU 1 never suppresses, MAX_DET above the 336 anchors of
    # a 128 x 128 input) makes the two answers comparable shape for shape.
    image = np.random.default_rng(4).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    answers = []
    for model, imgsz in ((models["segment"], 128), (onnx_model, None)):
        handler = YoloSegHandler(
            model_path=model, device="cpu", imgsz=imgsz, max_det=400, iou_threshold=1.0
        )
        handler.load()
        assert handler.yolo.task == "segment" and handler.class_names == NAMES
        assert handler.yolo.options["imgsz"] == 128  # the ONNX default: its export size
        answers.append(handler.annotate(image))
    from_pt, from_onnx = answers
    assert len(from_pt) == len(from_onnx) > 300
    assert {s["label"] for s in from_pt + from_onnx} == {"acropora"}
    assert {s["confidence"] for s in from_pt + from_onnx} == {"95"}
    # Pair the shapes by outline extent: every one within one network-input pixel (2 px here).
    pt_boxes, onnx_boxes = bounding_boxes(from_pt), bounding_boxes(from_onnx)
    cost = np.abs(pt_boxes[:, None, :] - onnx_boxes[None, :, :]).max(axis=2)
    rows, cols = linear_sum_assignment(cost)
    assert cost[rows, cols].max() <= 2.0


@pytest.mark.slow
@quiet_onnx_export
def test_a_fixed_size_export_refuses_another_imgsz(onnx_model):
    handler = YoloSegHandler(model_path=onnx_model, device="cpu", imgsz=320)
    with pytest.raises(ConfigError, match=r"^IMGSZ=320: MODEL_PATH=.*best\.onnx was exported"):
        handler.load()


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


def test_the_predictor_keeps_no_image_once_a_request_is_answered(models):
    """ultralytics keeps its last batch until the next predict: a large image would stay held."""
    handler = YoloSegHandler(environ={"MODEL_PATH": str(models["segment"]), "DEVICE": "cpu"})
    handler.annotate(np.zeros((64, 80, 3), dtype=np.uint8))
    predictor = handler.yolo.model.predictor
    assert (predictor.dataset, predictor.batch, predictor.results) == (None, None, None)


CRIOBE_GENERA = (
    "Acanthastrea", "Acropora", "Astreopora", "Atrea", "Fungia", "Goniastrea", "Leptastrea",
    "Merulinidae", "Millepora", "Montastrea", "Montipora", "Other", "Pavona/Leptoseris",
    "Pocillopora", "Porites", "Psammocora",
)  # fmt: skip


@pytest.mark.slow
def test_the_16_criobe_genera_reach_a_cvat_project_with_their_names(tmp_path):
    # Class 0 fires on every anchor: put Pavona/Leptoseris there, '/' included.
    names = ["Pavona/Leptoseris", *(name for name in CRIOBE_GENERA if "/" not in name)]
    model = tiny_yolo(tmp_path / "best.pt", "segment", names, imgsz=320)
    client = client_for(model, MAX_DET=3)
    handler = client.start()
    labels = handler.labels()
    assert sorted(label["name"] for label in labels) == sorted(CRIOBE_GENERA)
    shapes = response_json(client.call(cvat_request(np.full((240, 320, 3), 90, np.uint8))))
    assert [shape["label"] for shape in shapes] == ["Pavona/Leptoseris"] * 3
    project = cvat.project_labels(sorted(labels, key=lambda label: label["name"]))
    assert cvat.cvat_keeps(shapes, labels, project) == shapes


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


def photo_jpeg(size, seed=7, orientation=1) -> str:
    """Base64 of a synthetic quadrat photograph as a JPEG, EXIF ``orientation`` recorded."""
    from PIL import Image

    from quadratseg_handlers.demo.synthetic import quadrat_image

    pixels = quadrat_image(size, seed=seed).image
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return base64.b64encode(buffer.getvalue()).decode()


def assert_same_polygons(scaled, full, size):
    assert len(scaled) == len(full) > 0
    for a, b in zip(scaled, full, strict=True):
        assert (a["label"], a["confidence"]) == (b["label"], b["confidence"])
        points_a, points_b = (np.reshape(s["points"], (-1, 2)) for s in (a, b))
        if points_a.shape == points_b.shape:
            assert np.abs(points_a - points_b).max() <= 1.0
        mask_a, mask_b = (polygon_to_mask(p, size[1], size[0]) for p in (points_a, points_b))
        assert iou(mask_a, mask_b) > 0.98


@pytest.mark.slow
@pytest.mark.parametrize("size", [(4000, 3000), (1920, 1920)])
def test_a_scaled_decode_answers_the_shapes_of_a_full_decode(models, size):
    body = {"image": photo_jpeg(size)}
    answers = {}
    for scaled in ("true", "false"):
        client = client_for(models["segment"], MAX_DET=20, SCALED_DECODE=scaled)
        answers[scaled] = response_json(client.call(body))
    assert_same_polygons(answers["true"], answers["false"], size)
    for shape in answers["true"]:
        points = np.reshape(shape["points"], (-1, 2))
        assert points.max(axis=0).tolist() <= [size[0] - 1, size[1] - 1]


@pytest.mark.slow
def test_an_exif_rotated_jpeg_is_answered_upright_through_the_scaled_decode(models):
    """Orientation 6 (turned 90 degrees clockwise to display): CVAT shows 3000 x 4000."""
    body = {"image": photo_jpeg((4000, 3000), orientation=6)}
    scaled = client_for(models["segment"], MAX_DET=20)
    handler = scaled.start()
    assert handler.decode_size() == 320
    answer = response_json(scaled.call(body))
    full = client_for(models["segment"], MAX_DET=20, SCALED_DECODE="false")
    assert_same_polygons(answer, response_json(full.call(body)), (3000, 4000))
    assert cvat.validate_response(answer, handler.labels(), (3000, 4000)) == []


@pytest.mark.slow
def test_the_pixel_limit_counts_the_photo_through_the_scaled_decode(models):
    client = client_for(models["segment"], MAX_IMAGE_PIXELS=11_000_000)
    response = client.call({"image": photo_jpeg((4000, 3000))})
    assert response.status_code == 413
    assert "MAX_IMAGE_PIXELS" in response_json(response)["error"]

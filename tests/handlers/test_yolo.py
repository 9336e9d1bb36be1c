"""The YOLO segmentation functions with real ultralytics: tiny models saved as real checkpoints
(the formatting of ``Results`` objects is tested in tests/backends/test_ultralytics.py)."""

from __future__ import annotations

import base64
import functools
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from quadratseg_handlers import ConfigError, cvat
from quadratseg_handlers.backends.ultralytics import load_yolo, model_family, precision_options
from quadratseg_handlers.core.request import cvat_request, encode_image
from quadratseg_handlers.cvat.masks import polygon_to_mask
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


def iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


@functools.cache
def quadrat_pixels(size: tuple[int, int], seed: int) -> np.ndarray:
    """A synthetic quadrat photograph, drawn once per run (a 4000 x 3000 one takes seconds)."""
    from quadratseg_handlers.demo.synthetic import quadrat_image

    return quadrat_image(size, seed=seed).image


def photo_jpeg(size, seed=7, orientation=1) -> str:
    """Base64 of a synthetic quadrat photograph as a JPEG, EXIF ``orientation`` recorded."""
    from PIL import Image

    pixels = quadrat_pixels(size, seed)
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


def test_the_model_family_comes_from_an_export_description_or_the_architecture_file(tmp_path):
    description = {"description": "Ultralytics YOLO11s-seg model trained on corals.yaml"}
    assert model_family(None, description) == "YOLO11s-seg"
    weights = tiny_yolo(tmp_path / "best.pt", "segment", ["Acropora", "Porites"])
    assert load_yolo(weights, ("segment",)).family == "YOLO11n-seg"
    assert model_family(object(), {}) is None

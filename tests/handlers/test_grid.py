"""The grid functions end to end: tiny YOLO checkpoints through real nuclio objects.

The pose checkpoints are built so that their keypoints land where the test says: the
keypoint head's weights are zeroed and its biases solved for the wanted positions (a
keypoint is (2 * bias + anchor - 0.5) * stride), so one pose instance answers a real,
shuffled grid with some points missing and a few spurious ones. The detect checkpoint keeps
random weights (deterministic detections) and checks the wiring against a bare predict.
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from cut_frames_for_tests import cut_photo, drawn
from ultralytics import YOLO
from ultralytics.utils import ROOT as ULTRALYTICS_ROOT

from quadratseg_handlers import ConfigError, cvat
from quadratseg_handlers.backends.ultralytics_results import PointDetections
from quadratseg_handlers.core import runtime
from quadratseg_handlers.core.request import encode_image
from quadratseg_handlers.cvat.shapes import skeleton_points
from quadratseg_handlers.demo.tinymodels.yolo import tiny_yolo
from quadratseg_handlers.deploy import catalog
from quadratseg_handlers.handlers.grid import (
    CornerSettings,
    GridCornersHandler,
    GridPoseHandler,
    on_its_frame,
    skeleton_shape,
)
from quadratseg_handlers.local.harness import (
    FunctionClient,
    make_context,
    make_event,
    response_json,
)
from quadratseg_handlers.ops import template as tpl
from quadratseg_handlers.ops.boxes import box_centres
from quadratseg_handlers.ops.frame_bars import corners_from_bars
from quadratseg_handlers.ops.matching import Match, match_points
from quadratseg_handlers.ops.quadrat import quadrat_transform, warp_quadrat

SIDE = 320
"""Side of the test frame, and the inference size (IMGSZ) the tests run at."""
VISIBLE = 0.905
"""Keypoint confidence of the built models' visible points: confidence "90"."""


def quadrat_view(template: np.ndarray) -> np.ndarray:
    """Where a template's points sit in the test image: rotated, in perspective."""
    source = np.float32([[0, 0], [1, 0], [1, 1], [0, 1]])
    target = np.float32([[65, 45], [270, 75], [255, 280], [48, 252]])
    homography = cv2.getPerspectiveTransform(source, target)
    mapped = cv2.perspectiveTransform(template[None].astype(np.float64), homography)[0]
    return np.asarray(mapped, dtype=np.float64)


def frame() -> np.ndarray:
    """The RGB test frame, SIDE x SIDE (a smooth gradient)."""
    ramp = np.linspace(40, 200, SIDE, dtype=np.float64)
    image = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.tile(ramp, (SIDE, 1)), np.full((SIDE, SIDE), 90.0)],
        axis=-1,
    )
    return image.astype(np.uint8)


def png_body(image: np.ndarray) -> dict[str, str]:
    return {"image": encode_image(image, fmt="PNG")}


def build_pose_model(
    path: Path, targets: np.ndarray, confidence: np.ndarray
) -> tuple[Path, np.ndarray]:
    """A pose checkpoint whose single instance has keypoint k at targets[k] in the test frame
    with confidence[k]: heads zeroed, keypoint biases solved from two calibration predicts.

    Returns the path and where the saved checkpoint really puts the keypoints (it stores
    weights in half precision, which moves them by up to about 0.1 pixel)."""
    config = yaml.safe_load((ULTRALYTICS_ROOT / "cfg/models/11/yolo11-pose.yaml").read_text())
    config.update(kpt_shape=[len(targets), 3], nc=1, scale="n")
    config_path = path.with_suffix(".yaml")
    config_path.write_text(yaml.safe_dump(config))
    model = YOLO(str(config_path))
    model.model.names = {0: "grid"}
    head = model.model.model[-1]
    for branch in (*head.cv2, *head.cv4):
        branch[-1].weight.data.zero_()
        branch[-1].bias.data.zero_()
    for level, branch in enumerate(head.cv3):
        # stride-32 anchors all fire (their random weights make one the best), finer ones not
        branch[-1].bias.data.fill_(3.0 if level == len(head.cv3) - 1 else -20.0)

    def keypoints(model: YOLO) -> np.ndarray:
        bgr = np.ascontiguousarray(frame()[:, :, ::-1])
        result = model.predict(bgr, conf=0.25, iou=0.5, max_det=1, imgsz=SIDE, verbose=False)
        return result[0].keypoints.xy[0].numpy().astype(np.float64)

    def keypoints_with(xy_bias: np.ndarray) -> np.ndarray:
        for branch in head.cv4:
            bias = branch[-1].bias.data.view(len(targets), 3)
            bias[:, :2] = torch.as_tensor(xy_bias, dtype=bias.dtype)
            bias[:, 2] = torch.as_tensor(np.log(confidence / (1 - confidence)), dtype=bias.dtype)
        model.predictor = None
        return keypoints(model)

    origin = keypoints_with(np.zeros((len(targets), 2)))
    step = keypoints_with(np.full((len(targets), 2), 0.5)) - origin
    keypoints_with((targets - origin) / (2 * step))
    model.save(str(path))
    placed = keypoints(YOLO(str(path)))
    assert np.abs(placed - targets).max() < 0.2
    return path, placed


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("grid-models")


@pytest.fixture(scope="module")
def grid_case(models):
    """A pose model answering the 117 grid points shuffled, 12 missed, 3 spurious."""
    truth = quadrat_view(tpl.grid_template())
    rng = np.random.default_rng(7)
    missed = np.sort(rng.choice(117, 12, replace=False))
    spurious = quadrat_view(np.array([[0.55, 0.55], [0.25, 0.65], [0.75, 0.15]]))
    order = rng.permutation(117 + 3)
    targets = np.vstack([truth, spurious])[order]
    confidence = np.full(120, VISIBLE)
    confidence[np.isin(order, missed)] = 0.002
    confidence[order >= 117] = 0.6
    path, placed = build_pose_model(models / "grid-pose.pt", targets, confidence)
    detected = truth.copy()
    detected[order[order < 117]] = placed[order < 117]
    return path, truth, detected, missed


@pytest.fixture(scope="module")
def corners_case(models):
    """A pose model answering the 4 corners in the order BL, TR, TL, BR."""
    truth = quadrat_view(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64))
    order = np.array([3, 1, 0, 2])
    path, placed = build_pose_model(models / "corners-pose.pt", truth[order], np.full(4, VISIBLE))
    return path, placed[np.argsort(order)]


@pytest.fixture(scope="module")
def detect_model(models) -> Path:
    """A random-weight detect checkpoint whose every anchor fires (deterministic boxes)."""
    return tiny_yolo(models / "detect.pt", "detect", ["corner"], deterministic=False)


def bare_boxes(path: Path, image: np.ndarray, max_det: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (xyxy) and confidences from a plain ultralytics predict (the reference)."""
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    result = YOLO(str(path)).predict(
        bgr, conf=0.25, iou=0.5, max_det=max_det, imgsz=SIDE, verbose=False
    )[0]
    return result.boxes.xyxy.numpy().astype(np.float64), result.boxes.conf.numpy()


def grid_client(path: Path, **env: str) -> FunctionClient:
    return FunctionClient(GridPoseHandler, {"MODEL_PATH": path, "MAX_DET": 1, "IMGSZ": SIDE, **env})


# --- gridpose end to end ------------------------------------------------------------------


@pytest.mark.slow
def test_gridpose_answers_one_skeleton_in_template_order(monkeypatch, grid_case):
    path, truth, detected, missed = grid_case
    client = grid_client(path)
    response = client.call(png_body(frame()))
    assert response.status_code == 200
    shapes = response_json(response)
    assert len(shapes) == 1
    skeleton = shapes[0]
    assert list(skeleton) == ["label", "type", "elements", "confidence", "attributes"]
    assert skeleton["label"] == "grid" and skeleton["type"] == "skeleton"
    # The mean of 105 scores of 0.90..0.91 (shown "90") and 12 filled points counting 0.
    assert len(missed) == 12
    assert skeleton["confidence"] == "81"
    assert skeleton["attributes"] == [{"name": "confidence", "value": "81"}]
    elements = skeleton["elements"]
    assert [e["label"] for e in elements] == [str(i) for i in range(1, 118)]
    for index, element in enumerate(elements):
        assert element == {
            "label": str(index + 1),
            "type": "points",
            "points": element["points"],
            "attributes": [],
            "outside": 0,
        }
        if index in missed:
            assert np.allclose(element["points"], truth[index], atol=0.5), index
        else:
            assert np.allclose(element["points"], detected[index], atol=0.006), index
    handler = client.start()
    assert cvat.validate_response(shapes, handler.labels(), (SIDE, SIDE)) == []
    assert handler.labels()[0]["attributes"] == [cvat.CONFIDENCE_SPEC]
    assert all(sub["attributes"] == [] for sub in handler.labels()[0]["sublabels"])


def quadratseg_grid_project() -> list[dict]:
    """The grid project as QUADRATSEG declares it: confidence on the skeleton only."""
    names = [str(i) for i in range(1, 118)]
    spec = cvat.skeleton_spec("grid", names, tpl.grid_template(), [])
    return cvat.project_labels([spec])


def sublabel_confidence_project() -> list[dict]:
    """A grid project that declares confidence on every sublabel and not on the skeleton."""
    names = [str(i) for i in range(1, 118)]
    spec = cvat.skeleton_spec(
        "grid", names, tpl.grid_template(), [], [], sublabel_attributes=[cvat.CONFIDENCE_SPEC]
    )
    return cvat.project_labels([spec])


@pytest.mark.slow
def test_cvat_keeps_the_skeleton_confidence_in_quadratseg_projects(monkeypatch, grid_case):
    path, _, _, _ = grid_case
    client = grid_client(path)
    shapes = response_json(client.call(png_body(frame())))
    kept = cvat.cvat_keeps(shapes, client.start().labels(), quadratseg_grid_project())
    assert kept[0]["attributes"] == [{"name": "confidence", "value": "81"}]
    assert len(kept[0]["elements"]) == 117


@pytest.mark.slow
def test_point_confidence_is_kept_in_projects_that_declare_it_on_sublabels(monkeypatch, grid_case):
    path, _, _, missed = grid_case
    client = grid_client(path, POINT_CONFIDENCE="true")
    shapes = response_json(client.call(png_body(frame())))
    handler = client.start()
    assert all(
        sub["attributes"] == [cvat.CONFIDENCE_SPEC] for sub in handler.labels()[0]["sublabels"]
    )
    assert cvat.validate_response(shapes, handler.labels(), (SIDE, SIDE)) == []
    kept = cvat.cvat_keeps(shapes, handler.labels(), sublabel_confidence_project())
    assert kept[0]["attributes"] == []
    values = [element["attributes"] for element in kept[0]["elements"]]
    assert values == [
        [{"name": "confidence", "value": "0" if index in missed else "90"}] for index in range(117)
    ]
    # In a QUADRATSEG project the skeleton's confidence is kept, the elements' are dropped.
    kept = cvat.cvat_keeps(shapes, handler.labels(), quadratseg_grid_project())
    assert kept[0]["attributes"] == [{"name": "confidence", "value": "81"}]
    assert all(element["attributes"] == [] for element in kept[0]["elements"])


@pytest.mark.slow
def test_gridpose_flags_filled_points_outside_when_asked(monkeypatch, grid_case):
    path, _, _, missed = grid_case
    client = grid_client(path, FILLED_POINTS_OUTSIDE="true", SKELETON_LABEL="lattice")
    shapes = response_json(client.call(png_body(frame())))
    assert shapes[0]["label"] == "lattice"
    outside = [i for i, e in enumerate(shapes[0]["elements"]) if e["outside"] == 1]
    assert outside == missed.tolist()
    assert client.start().labels()[0]["name"] == "lattice"


@pytest.mark.slow
def test_gridpose_too_few_matches_is_empty_with_a_log_line(monkeypatch, grid_case):
    path, _, _, _ = grid_case
    client = grid_client(path, MIN_MATCHES="106")
    response = client.call(png_body(frame()))
    assert response.status_code == 200 and response_json(response) == []
    warnings = [r for r in client.logger.records if r[0] == "warn"]
    assert [r[1] for r in warnings] == [
        "no skeleton: only 105 of 117 template points matched, at least 106 needed"
    ]
    assert warnings[0][2] == {
        "function": "pth-yolo-gridpose",
        "detections": 108,
        "MIN_MATCHES": 106,
        "HUNGARIAN_THRESH": 0.12,
    }
    handled = [r for r in client.logger.records if r[1] == "handled request"]
    assert handled[0][2]["shapes"] == 0
    # the reason goes back to the client too, for `quadratseg check` and `annotate`
    assert response.headers == {
        "X-Quadratseg-Warning": "no skeleton: only 105 of 117 template points matched, "
        "at least 106 needed"
    }
    found = grid_client(path).call(png_body(frame()))
    assert len(response_json(found)) == 1 and found.headers == {}  # no warning, no header


@pytest.mark.slow
def test_gridpose_batch_answers_one_list_per_image(monkeypatch, grid_case):
    path, _, _, _ = grid_case
    client = grid_client(path)
    body = {"images": [png_body(frame())["image"]] * 2}
    answer = response_json(client.call(body))
    assert len(answer) == 2 and all(len(shapes) == 1 for shapes in answer)
    assert answer[0] == answer[1]


@pytest.mark.slow
def test_gridpose_in_nuclio_batch_mode_answers_each_event_as_alone(grid_case):
    path, _, _, _ = grid_case
    client = grid_client(path)
    alone = response_json(client.call(png_body(frame())))
    events = [
        make_event(png_body(frame())),
        make_event({"image": "@@"}),
        make_event(png_body(frame())),
    ]
    for index, event in enumerate(events):
        event.id = f"event-{index}"
    responses = runtime.respond_batch(client.start(), make_context(), events)
    assert [r.event_id for r in responses] == ["event-0", "event-1", "event-2"]
    assert [r.status_code for r in responses] == [200, 400, 200]
    assert response_json(responses[0]) == alone == response_json(responses[2])
    assert len(alone) == 1 and alone[0]["type"] == "skeleton"


@pytest.mark.slow
def test_raw_keypoints_without_template_matching(monkeypatch, grid_case):
    path, _, detected, missed = grid_case
    client = grid_client(path, USE_TEMPLATE_MATCHING="false")
    shapes = response_json(client.call(png_body(frame())))
    assert len(shapes) == 117 - 12 + 3
    assert {s["label"] for s in shapes} == {"grid"}
    assert all(s["type"] == "points" and len(s["points"]) == 2 for s in shapes)
    assert sorted(s["confidence"] for s in shapes) == ["60"] * 3 + ["90"] * 105
    kept = np.delete(detected, missed, axis=0)
    found = np.array([s["points"] for s in shapes if s["confidence"] == "90"])
    assert np.abs(np.sort(found, axis=0) - np.sort(kept, axis=0)).max() <= 0.006
    handler = client.start()
    assert handler.labels() == [cvat.label_spec("grid", "points")]
    assert cvat.validate_response(shapes, handler.labels(), (SIDE, SIDE)) == []


# --- gridcorners end to end ---------------------------------------------------------------


@pytest.mark.slow
def test_gridcorners_orders_the_four_corners(monkeypatch, corners_case):
    path, truth = corners_case
    monkeypatch.setenv("MODEL_PATH", str(path))
    monkeypatch.setenv("MAX_DET", "1")
    monkeypatch.setenv("IMGSZ", str(SIDE))
    client = FunctionClient(GridCornersHandler)
    shapes = response_json(client.call(png_body(frame())))
    assert [s["label"] for s in shapes] == ["quadrat_corner"]
    elements = shapes[0]["elements"]
    assert [e["label"] for e in elements] == ["1", "2", "3", "4"]
    assert np.allclose([e["points"] for e in elements], truth, atol=0.006)
    assert shapes[0]["confidence"] == "90" and all(e["attributes"] == [] for e in elements)
    assert cvat.validate_response(shapes, client.start().labels(), (SIDE, SIDE)) == []
    warped = warp_quadrat(frame(), shapes[0], 100)
    assert warped.shape == (100, 100, 3)


@pytest.mark.slow
def test_a_second_pass_that_disagrees_at_the_same_score_keeps_the_first(monkeypatch, corners_case):
    """The built model answers the same network positions on any input: on the quadrat
    warped upright they map back far from the first pass's corners, scored alike, so the
    first pass's answer comes back unchanged."""
    path, _truth = corners_case
    env = {"MODEL_PATH": str(path), "MAX_DET": "1", "IMGSZ": str(SIDE)}
    plain = FunctionClient(GridCornersHandler, env)
    refined = FunctionClient(GridCornersHandler, {**env, "REFINE_CORNERS": "true"})
    body = png_body(frame())
    assert response_json(refined.call(body)) == response_json(plain.call(body))
    assert refined.start().decode_size() == 640 and plain.start().decode_size() == SIDE


@pytest.mark.slow
def test_a_corner_off_the_frames_bars_moves_where_they_cross(monkeypatch, corners_case):
    """The built model answers the same corners whatever the image; the frame drawn in the
    image has its bottom-right corner elsewhere (a colony's edge taken for the corner): with
    FIT_FRAME_BARS that element moves to where the drawn bars cross, and the three others,
    on their bars, snap to their crossings (within a pixel of the drawn corners)."""
    path, truth = corners_case
    drawn = truth.copy()
    drawn[2] += [22.0, 18.0]
    image = frame()
    outline = np.round(drawn * 16).astype(np.int32)
    cv2.polylines(image, [outline], True, (235, 235, 225), 6, cv2.LINE_AA, shift=4)
    env = {"MODEL_PATH": str(path), "MAX_DET": "1", "IMGSZ": str(SIDE)}
    plain = response_json(FunctionClient(GridCornersHandler, env).call(png_body(image)))
    client = FunctionClient(GridCornersHandler, {**env, "FIT_FRAME_BARS": "true"})
    shapes = response_json(client.call(png_body(image)))
    crossings = corners_from_bars(image, [e["points"] for e in plain[0]["elements"]])
    moved = np.array([e["points"] for e in shapes[0]["elements"]])
    assert np.abs(moved - crossings).max() <= 0.02
    assert np.linalg.norm(moved - drawn, axis=1).max() <= 1.0
    assert np.linalg.norm(np.subtract(plain[0]["elements"][2]["points"], drawn[2])) > 20
    for element, point in zip(plain[0]["elements"], moved.tolist(), strict=True):
        element["points"] = point
    assert shapes == plain  # the same skeleton, but for the moved elements
    assert client.start().decode_size() == 640  # the bars are fitted at the second pass's size
    assert cvat.validate_response(shapes, client.start().labels(), (SIDE, SIDE)) == []


@pytest.mark.slow
@pytest.mark.parametrize("restore_cut", ["true", "false"])
def test_detect_model_raw_points_are_the_box_centres(monkeypatch, detect_model, restore_cut):
    """The box centres, boxes cut by the edge restored first unless RESTORE_CUT_BOXES=false
    (the random tiny model answers boxes cut by the frame's edge)."""
    image = frame()
    boxes, confidences = bare_boxes(detect_model, image, max_det=5)
    plain = (boxes[:, :2] + boxes[:, 2:]) / 2
    restored = box_centres(boxes, SIDE, SIDE)
    assert not np.allclose(plain, restored)
    centres = restored if restore_cut == "true" else plain
    monkeypatch.setenv("MODEL_PATH", str(detect_model))
    monkeypatch.setenv("IMGSZ", str(SIDE))
    monkeypatch.setenv("MAX_DET", "5")
    monkeypatch.setenv("USE_TEMPLATE_MATCHING", "false")
    monkeypatch.setenv("RESTORE_CUT_BOXES", restore_cut)
    client = FunctionClient(GridCornersHandler)
    shapes = response_json(client.call(png_body(image)))
    expected = []
    for (x, y), score in zip(centres, confidences, strict=True):
        value = str(int(float(score) * 100))
        expected.append(
            {
                "label": "corner",
                "type": "points",
                "points": [round(float(x), 2), round(float(y), 2)],
                "confidence": value,
                "attributes": [{"name": "confidence", "value": value}],
            }
        )
    assert len(expected) == 5 and shapes == expected
    assert cvat.validate_response(shapes, client.start().labels(), (SIDE, SIDE)) == []


@pytest.mark.slow
def test_detect_model_skeleton_is_the_matching_of_its_box_centres(monkeypatch, detect_model):
    image = frame()
    boxes, confidences = bare_boxes(detect_model, image, max_det=40)
    match = match_points(
        box_centres(boxes, SIDE, SIDE),
        tpl.corner_template(),
        (SIDE, SIDE),
        scores=confidences,
        max_cost=0.3,
        min_matches=3,
    )
    expected = [skeleton_shape("quadrat_corner", match, SIDE, SIDE)] if match.ok else []
    monkeypatch.setenv("MODEL_PATH", str(detect_model))
    monkeypatch.setenv("IMGSZ", str(SIDE))
    monkeypatch.setenv("MAX_DET", "40")
    client = FunctionClient(GridCornersHandler)
    shapes = response_json(client.call(png_body(image)))
    assert shapes == expected
    assert cvat.validate_response(shapes, client.start().labels(), (SIDE, SIDE)) == []


# --- start-up checks ----------------------------------------------------------------------


@pytest.mark.slow
def test_spec_is_generated_from_the_template(monkeypatch, grid_case, corners_case):
    monkeypatch.setenv("MODEL_PATH", str(grid_case[0]))
    (grid,) = _loaded(GridPoseHandler).labels()
    assert grid["name"] == "grid" and grid["type"] == "skeleton"
    assert grid["attributes"] == [cvat.CONFIDENCE_SPEC]
    assert [s["name"] for s in grid["sublabels"]] == [str(i) for i in range(1, 118)]
    assert [s["id"] for s in grid["sublabels"]] == list(range(117))
    assert all(s["attributes"] == [] for s in grid["sublabels"])
    assert grid["svg"].count("<line") == 212 and grid["svg"].count("<circle") == 117
    assert 'data-node-from="1" stroke-width="0.5" data-node-to="2"' in grid["svg"]
    monkeypatch.setenv("MODEL_PATH", str(corners_case[0]))
    (corners,) = _loaded(GridCornersHandler).labels()
    assert corners["name"] == "quadrat_corner"
    assert [s["name"] for s in corners["sublabels"]] == ["1", "2", "3", "4"]
    edges = [(1, 2), (2, 3), (3, 4), (4, 1)]
    for node_from, node_to in edges:
        assert (
            f'data-node-from="{node_from}" stroke-width="0.5" data-node-to="{node_to}"'
            in corners["svg"]
        )
    assert corners["svg"].count("<line") == 4
    assert cvat.spec_json([grid, corners])


def _loaded(handler_class):
    handler = handler_class()
    handler.load()
    return handler


def test_settings_defaults_per_function():
    corners = {s.name: s.default_text for s in GridCornersHandler.declared_settings()}
    pose = {s.name: s.default_text for s in GridPoseHandler.declared_settings()}
    assert corners["TEMPLATE_PATH"] == "/opt/nuclio/kp_template_corners.npy"
    assert pose["TEMPLATE_PATH"] == "/opt/nuclio/kp_template.npy"
    assert (corners["HUNGARIAN_THRESH"], pose["HUNGARIAN_THRESH"]) == ("0.3", "0.12")
    assert (corners["SKELETON_LABEL"], pose["SKELETON_LABEL"]) == ("quadrat_corner", "grid")
    assert (corners["MIN_MATCHES"], pose["MIN_MATCHES"]) == ("3", "20")
    assert corners["MODEL_PATH"] == pose["MODEL_PATH"] == "/opt/nuclio/best.pt"
    assert catalog.handler_class("pth-yolo-gridcorners") is GridCornersHandler
    assert catalog.handler_class("pth-yolo-gridpose") is GridPoseHandler


@pytest.mark.slow
def test_absent_default_template_falls_back_to_the_packaged_one(monkeypatch, grid_case):
    assert not Path("/opt/nuclio/kp_template.npy").exists()
    monkeypatch.setenv("MODEL_PATH", str(grid_case[0]))
    handler = _loaded(GridPoseHandler)
    assert handler.template_source == tpl.packaged_template_path(117)
    assert np.array_equal(handler.template, tpl.grid_template())


@pytest.mark.slow
def test_custom_template_is_used_for_matching_and_spec(monkeypatch, tmp_path, corners_case):
    custom = tmp_path / "corners.npy"
    np.save(custom, np.array([[0.2, 0.15], [0.8, 0.2], [0.75, 0.85], [0.25, 0.8]]))
    monkeypatch.setenv("MODEL_PATH", str(corners_case[0]))
    monkeypatch.setenv("TEMPLATE_PATH", str(custom))
    monkeypatch.setenv("IMGSZ", str(SIDE))
    handler = _loaded(GridCornersHandler)
    assert handler.template_source == custom
    assert handler.template.tolist() == np.load(custom).tolist()
    shapes = handler.annotate(frame())
    assert np.allclose(skeleton_points(shapes[0]), corners_case[1], atol=0.006)


@pytest.mark.parametrize(
    ("handler_class", "env", "message"),
    [
        (
            GridPoseHandler,
            {"MODEL_PATH": "/nonexistent/best.pt"},
            r"^MODEL_PATH='/nonexistent/best.pt': file not found: /nonexistent/best.pt$",
        ),
        (
            GridPoseHandler,
            {"TEMPLATE_PATH": "/nonexistent/t.npy"},
            r"^TEMPLATE_PATH=/nonexistent/t.npy: file not found$",
        ),
        (
            GridPoseHandler,
            {"MIN_MATCHES": "118"},
            r"^MIN_MATCHES=118: more than the 117 points of the template$",
        ),
        (GridPoseHandler, {"HUNGARIAN_THRESH": "0"}, r"^HUNGARIAN_THRESH='0': must be >= 0.001$"),
        (
            GridPoseHandler,
            {"USE_TEMPLATE_MATCHING": "maybe"},
            r"^USE_TEMPLATE_MATCHING='maybe': expected true or false$",
        ),
        (
            GridCornersHandler,
            {"REFINE_CORNERS": "maybe"},
            r"^REFINE_CORNERS='maybe': expected true or false$",
        ),
        (
            GridCornersHandler,
            {"REFINE_CORNERS": "true", "USE_TEMPLATE_MATCHING": "false"},
            r"^REFINE_CORNERS=true needs USE_TEMPLATE_MATCHING=true",
        ),
        (
            GridCornersHandler,
            {"FIT_FRAME_BARS": "yes please"},
            r"^FIT_FRAME_BARS='yes please': expected true or false$",
        ),
        (
            GridCornersHandler,
            {"FIT_FRAME_BARS": "true", "USE_TEMPLATE_MATCHING": "false"},
            r"^FIT_FRAME_BARS=true needs USE_TEMPLATE_MATCHING=true",
        ),
        (
            GridCornersHandler,
            {"RETRY_THRESHOLD": "0.02"},
            r"^RETRY_THRESHOLD=0.02 needs FIT_FRAME_BARS=true",
        ),
        (
            GridCornersHandler,
            {"RETRY_THRESHOLD": "0.3", "FIT_FRAME_BARS": "true", "CONF_THRESHOLD": "0.3"},
            r"^RETRY_THRESHOLD=0.3 must be below CONF_THRESHOLD=0.3",
        ),
        (
            GridCornersHandler,
            {"RETRY_THRESHOLD": "low", "FIT_FRAME_BARS": "true"},
            r"^RETRY_THRESHOLD='low': expected number",
        ),
        (
            GridCornersHandler,
            {"RETRY_THRESHOLD": "2", "FIT_FRAME_BARS": "true"},
            r"^RETRY_THRESHOLD='2': must be <= 1.0$",
        ),
        (
            GridPoseHandler,
            {"WARPED_INPUT": "sometimes"},
            r"^WARPED_INPUT='sometimes': expected true or false$",
        ),
    ],
)
@pytest.mark.slow
def test_bad_settings_stop_start_up_naming_the_variable(
    monkeypatch, grid_case, handler_class, env, message
):
    monkeypatch.setenv("MODEL_PATH", str(grid_case[0]))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context = make_context()
    with pytest.raises(ConfigError, match=message):
        runtime.init_context(handler_class, context)
    assert context.logger.messages("error") == ["start-up failed"]


@pytest.mark.slow
def test_template_of_the_wrong_size_stops_start_up(monkeypatch, tmp_path, grid_case):
    corners = tmp_path / "kp_template_corners.npy"
    np.save(corners, tpl.corner_template())
    monkeypatch.setenv("MODEL_PATH", str(grid_case[0]))
    monkeypatch.setenv("TEMPLATE_PATH", str(corners))
    with pytest.raises(ConfigError, match="holds 4 points, this function's skeleton has 117"):
        _loaded(GridPoseHandler)


@pytest.mark.slow
def test_models_that_give_no_points_are_refused(monkeypatch, models, tmp_path):
    path = tiny_yolo(models / "segment.pt", "segment")
    monkeypatch.setenv("MODEL_PATH", str(path))
    with pytest.raises(
        ConfigError,
        match=r"MODEL_PATH=.*segment.pt: the model's task is "
        r"'segment', this function needs 'detect' or 'pose'",
    ):
        _loaded(GridCornersHandler)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    monkeypatch.setenv("MODEL_PATH", str(junk))
    with pytest.raises(ConfigError, match=r"MODEL_PATH=.*junk.pt: not a model ultralytics can"):
        _loaded(GridCornersHandler)


# --- shapes and the warp helper -----------------------------------------------------------


def test_filled_points_off_the_image_are_outside():
    template = tpl.corner_template()
    detections = np.array([[100.0, 100.0], [300.0, 100.0], [300.0, 300.0]])
    match = match_points(detections, template, (320, 240), max_cost=0.3, min_matches=3)
    shape = skeleton_shape("quadrat_corner", match, 320, 240)
    assert [e["outside"] for e in shape["elements"]] == [0, 0, 0, 1]  # BL at (100, 300)
    assert shape["elements"][3]["points"] == [100.0, 300.0]
    assert shape["confidence"] == "75"  # three points at 1.0, one filled
    assert all("confidence" not in e for e in shape["elements"])
    shape = skeleton_shape("quadrat_corner", match, 320, 240, point_confidence=True)
    assert [e["confidence"] for e in shape["elements"]] == ["100", "100", "100", "0"]


def test_skeleton_points_follow_the_numeric_sublabels():
    shape = cvat.skeleton("grid", [cvat.skeleton_element(str(i), (i, 2 * i)) for i in (10, 2, 1)])
    assert skeleton_points(shape).tolist() == [[1, 2], [2, 4], [10, 20]]


def checkerboard(size: int = 200, cell: int = 25) -> np.ndarray:
    rows = (np.arange(size) // cell)[:, None] + (np.arange(size) // cell)[None, :]
    board = np.where(rows % 2 == 0, 230, 30).astype(np.uint8)
    return np.stack([board, board // 2, 255 - board], axis=-1)


def test_warp_quadrat_undoes_a_perspective_view():
    board = checkerboard()
    corners = np.array([[60.0, 40.0], [330.0, 75.0], [300.0, 310.0], [45.0, 280.0]])
    square = np.float32([[0, 0], [199, 0], [199, 199], [0, 199]])
    view = cv2.warpPerspective(
        board,
        cv2.getPerspectiveTransform(square, np.float32(corners)),
        (400, 360),
        flags=cv2.INTER_LINEAR,
    )
    back = warp_quadrat(view, corners, 200)
    assert back.shape == board.shape
    inner = np.s_[4:-4, 4:-4]
    assert np.mean(np.abs(back[inner].astype(int) - board[inner].astype(int))) < 6
    matrix = quadrat_transform(corners, 200)
    mapped = cv2.perspectiveTransform(corners[None], matrix)[0]
    assert np.allclose(mapped, square, atol=1e-6)


def test_warp_quadrat_sizes_and_margin():
    corners = np.array([[10.0, 10.0], [90.0, 10.0], [90.0, 50.0], [10.0, 50.0]])
    image = np.zeros((60, 100, 3), dtype=np.uint8)
    assert warp_quadrat(image, corners, (160, 80)).shape == (80, 160, 3)
    matrix = quadrat_transform(corners, (160, 80), margin=8)
    mapped = cv2.perspectiveTransform(corners[None], matrix)[0]
    assert np.allclose(mapped, [[8, 8], [151, 8], [151, 71], [8, 71]], atol=1e-6)


@pytest.mark.parametrize(
    ("corners", "message"),
    [
        ([[0, 0], [10, 0], [10, 10]], "expected 4 finite corners"),
        ([[0, 0], [10, 0], [10, 10], [np.nan, 10]], "expected 4 finite corners"),
        ([[0, 0], [0, 10], [10, 10], [10, 0]], "TL, TR, BR, BL of a convex quadrilateral"),
        ([[0, 0], [10, 10], [10, 0], [0, 10]], "TL, TR, BR, BL of a convex quadrilateral"),
    ],
    ids=["three", "nan", "counter-clockwise", "crossed"],
)
def test_warp_quadrat_refuses_bad_corners(corners, message):
    with pytest.raises(ValueError, match=message):
        warp_quadrat(np.zeros((20, 20, 3), np.uint8), corners, 10)


def test_warp_quadrat_refuses_a_margin_larger_than_the_size():
    with pytest.raises(ValueError, match="leaves nothing inside a 5-pixel margin"):
        quadrat_transform([[0, 0], [10, 0], [10, 10], [0, 10]], 10, margin=5)


@pytest.mark.slow
def test_bytes_that_are_no_image_are_a_400_once_ultralytics_patched_pil(monkeypatch, grid_case):
    # ultralytics replaces PIL's Image.open with one that imports pi_heif on unknown bytes
    client = grid_client(grid_case[0])
    response = client.call({"image": base64.b64encode(b"hello, not an image").decode()})
    assert response.status_code == 400
    assert "not a decodable image" in response_json(response)["error"]


# --- scaled JPEG decoding -------------------------------------------------------------------


def jpeg_body(image: np.ndarray) -> dict[str, str]:
    return {"image": encode_image(image, fmt="JPEG", quality=90)}


def skeleton_xy(shapes) -> np.ndarray:
    (skeleton,) = shapes
    return np.array([element["points"] for element in skeleton["elements"]])


@pytest.mark.slow
def test_gridpose_from_a_scaled_decode_equals_the_full_decode(monkeypatch, grid_case):
    path, _truth, detected, _missed = grid_case
    photo = cv2.resize(frame(), (1920, 1920), interpolation=cv2.INTER_LINEAR)
    body = jpeg_body(photo)
    scaled, full = (grid_client(path, SCALED_DECODE=flag) for flag in ("true", "false"))
    assert scaled.start().decode_size() == SIDE
    points = skeleton_xy(response_json(scaled.call(body)))
    assert np.abs(points - skeleton_xy(response_json(full.call(body)))).max() <= 1.0
    # Each detection sits where the model put it in the frame, six photo pixels per pixel.
    assert np.abs(points - detected * 6).max() <= 6.0


@pytest.mark.slow
@pytest.mark.parametrize("size", [(4000, 3000), (1920, 1920)])
def test_raw_points_from_a_scaled_decode_equal_the_full_decode(monkeypatch, grid_case, size):
    path = grid_case[0]
    body = jpeg_body(cv2.resize(frame(), size, interpolation=cv2.INTER_LINEAR))
    answers = []
    for flag in ("true", "false"):
        client = grid_client(path, SCALED_DECODE=flag, USE_TEMPLATE_MATCHING="false")
        answers.append(response_json(client.call(body)))
    scaled, full = (np.array([shape["points"] for shape in answer]) for answer in answers)
    assert scaled.shape == full.shape == (108, 2)  # 105 grid points and 3 spurious
    assert np.abs(scaled - full).max() <= 1.0
    assert (scaled.max(axis=0) <= size).all()


def _match_at(corners: np.ndarray) -> Match:
    return Match(
        points=corners,
        scores=np.full(4, 0.05),
        detection=np.arange(4),
        residuals=np.zeros(4),
        homography=np.eye(3),
        dropped=np.zeros(0, dtype=int),
    )


@pytest.mark.parametrize("seed", (77, 78))
def test_what_confirms_a_retried_frame_is_said_in_its_warning(seed):
    """RETRY_THRESHOLD keeps a low-scored quadrat only when the frame confirms its 4 corners:
    all on their bars, or two on their bars and the two of a side the photo's edge cut off
    where the grid string puts it; corners given at the edge are not confirmed."""
    image, corners = drawn(seed)
    assert on_its_frame(image, _match_at(corners)) == "the frame's bars confirm its 4 corners"
    photo, truth, given = cut_photo(image, corners, "top")
    assert on_its_frame(photo, _match_at(truth)) == (
        "the frame's bars confirm 2 of its corners, the grid string the 2 on the side the "
        "photo's edge cuts off"
    )
    assert on_its_frame(photo, _match_at(given)) == ""


def test_warped_input_reaches_the_template_matching(grid_case):
    """gridpose's WARPED_INPUT decides the lattice's placement when a border row is missing
    (a 1000 px warp, its last row cut off, 3 stray points a row above the first): served
    with it the points land at their indices, served without it the answer differs. The
    corners, whose requests are whole photos, have no such setting."""
    template = tpl.grid_template()
    rows = np.array(tpl.grid_positions())[:, 0]
    truth = (0.05 + 0.9 * template) * 1000.0
    seen = rows < tpl.GRID_SIZE - 1
    stray = truth[rows == 0][:3] - [0.0, 90.0]
    points = np.concatenate([truth[seen], stray])
    found = PointDetections(points, np.full(len(points), 0.9), ("point",) * len(points))
    warp = np.zeros((1000, 1000, 3), np.uint8)
    answers = {}
    for value in ("true", "false"):
        env = {"MODEL_PATH": grid_case[0], "DEVICE": "cpu", "WARPED_INPUT": value}
        handler = FunctionClient(GridPoseHandler, env).start()
        answers[value] = handler.match_template(found, warp).points
    assert np.linalg.norm(answers["true"][seen] - truth[seen], axis=1).max() < 1.0
    assert not np.allclose(answers["false"], answers["true"])
    assert "warped" not in CornerSettings.load(environ={}).matching()

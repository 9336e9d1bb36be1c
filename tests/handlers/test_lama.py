"""pth-lama through real nuclio_sdk objects, with a tiny LaMa-shaped TorchScript model on disk.

The model is loaded by the real path (LAMA_MODEL -> simple_lama_inpainting.SimpleLama ->
torch.jit.load); the opencv backend needs no file at all.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from lama_for_tests import HEIGHT, WIDTH, grid_points, textured_photo, tiny_lama_file
from PIL import Image

from quadratseg_handlers import ConfigError
from quadratseg_handlers.backends.inpainting import LamaBackend
from quadratseg_handlers.core.request import encode_image
from quadratseg_handlers.demo.tinymodels import lama_files
from quadratseg_handlers.demo.tinymodels.lama import LamaInpainter
from quadratseg_handlers.deploy import catalog
from quadratseg_handlers.handlers.lama import LamaHandler, complete_keypoints, parse_keypoints
from quadratseg_handlers.local.harness import (
    FunctionClient,
    handler_module,
    make_context,
    make_event,
    response_json,
)
from quadratseg_handlers.ops.gridmask import dilate, draw_grid_mask


@pytest.fixture(scope="module")
def lama_model(tmp_path_factory) -> Path:
    return tiny_lama_file(tmp_path_factory.mktemp("lama"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return textured_photo()


def decode(b64: str) -> tuple[np.ndarray, str | None]:
    """An answer's base64 image as an array (RGB or grey) and its file format."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    return np.asarray(image), image.format


@pytest.fixture
def client(lama_model) -> FunctionClient:
    return FunctionClient(LamaHandler, {"LAMA_MODEL": lama_model})


@pytest.fixture
def opencv_client(tmp_path) -> FunctionClient:
    return FunctionClient(
        LamaHandler, {"INPAINT_BACKEND": "opencv", "LAMA_MODEL": tmp_path / "absent.pt"}
    )


def body(image: np.ndarray, fmt: str = "PNG", **fields) -> dict:
    request = {"image": encode_image(image, fmt), "keypoints": grid_points().tolist()}
    request.update(fields)
    return request


# --- loading -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_model_loads_through_simple_lama(lama_model, monkeypatch):
    monkeypatch.delenv("LAMA_MODEL", raising=False)
    handler = LamaHandler(lama_model=str(lama_model), device="cpu")
    handler.load()
    from simple_lama_inpainting import SimpleLama

    assert isinstance(handler.backend, LamaBackend)
    assert isinstance(handler.backend.lama, SimpleLama)
    assert isinstance(handler.backend.lama.model, torch.jit.ScriptModule)
    assert "LAMA_MODEL" not in os.environ  # set for SimpleLama's construction only
    assert handler.device == "cpu" and handler.torch_needed()


def test_a_missing_model_stops_start_up_naming_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "big-lama.pt"
    monkeypatch.setenv("LAMA_MODEL", str(missing))
    client = FunctionClient(LamaHandler)
    with pytest.raises(ConfigError) as caught:
        client.start()
    message = str(caught.value)
    assert message.startswith(f"LAMA_MODEL={missing}: file not found;")
    assert "INPAINT_BACKEND=opencv" in message


def test_a_file_that_is_not_torchscript_is_refused(tmp_path):
    junk = tmp_path / "big-lama.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=rf"^LAMA_MODEL={junk}: not a TorchScript model"):
        LamaHandler(lama_model=str(junk)).load()


class MaskOnly(torch.nn.Module):
    """The right signature, the wrong answer: one channel instead of an RGB image."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask.float()


@pytest.mark.slow
def test_a_model_with_the_wrong_output_is_refused(tmp_path):
    path = tmp_path / "mask-only.pt"
    torch.jit.script(MaskOnly()).save(str(path))
    with pytest.raises(ConfigError, match=rf"^LAMA_MODEL={path}: the model .*64 x 64"):
        LamaHandler(lama_model=str(path)).load()


@pytest.mark.slow
def test_the_real_size_architecture_has_big_lamas_parameter_count():
    assert sum(p.numel() for p in LamaInpainter().parameters()) == 50_976_835  # big-lama: 51 M
    assert sum(p.numel() for p in LamaInpainter(4, 1).parameters()) == 24_375  # tiny_lama


def test_lama_files_creates_its_folder(tmp_path):
    # like the other tiny-model builders: the folder need not exist yet
    files = lama_files(tmp_path / "not" / "yet")
    assert files["lama-model"] == tmp_path / "not" / "yet" / "big-lama.pt"
    assert files["lama-model"].is_file()


def test_tile_size_setting_is_validated():
    with pytest.raises(ConfigError, match="INPAINT_TILE_SIZE=10: must be 0"):
        LamaHandler(inpaint_backend="opencv", inpaint_tile_size=10)


def test_catalogue_entry_and_no_labels():
    assert catalog.handler_class("pth-lama") is LamaHandler
    assert LamaHandler(inpaint_backend="opencv").labels() == []


# --- answers -------------------------------------------------------------------------------


@pytest.mark.slow
def test_grid_is_painted_and_nothing_else_changes(client, lama_model, photo):
    response = client.call(body(photo, return_mask=True))
    assert response.status_code == 200
    answer = response_json(response)
    assert sorted(answer) == ["image", "mask"]
    painted, fmt = decode(answer["image"])
    assert fmt == "PNG" and painted.shape == (HEIGHT, WIDTH, 3)
    mask, mask_fmt = decode(answer["mask"])
    expected_mask = draw_grid_mask(grid_points(), (WIDTH, HEIGHT), 8)
    assert mask_fmt == "PNG" and set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask > 0, expected_mask)
    np.testing.assert_array_equal(painted[~expected_mask], photo[~expected_mask])
    model_output = LamaBackend(lama_model)(photo, expected_mask)
    np.testing.assert_array_equal(painted[expected_mask], model_output[expected_mask])
    assert (painted[expected_mask] != photo[expected_mask]).any()


@pytest.mark.slow
def test_the_mask_is_answered_only_when_asked(client, photo):
    assert list(response_json(client.call(body(photo)))) == ["image"]


@pytest.mark.slow
def test_jpeg_in_jpeg_out_at_the_configured_quality(lama_model, photo, monkeypatch):
    monkeypatch.setenv("LAMA_MODEL", str(lama_model))
    monkeypatch.setenv("JPEG_QUALITY", "60")
    client = FunctionClient(LamaHandler)
    jpeg_answer = response_json(client.call(body(photo, "JPEG")))["image"]
    png_answer = response_json(client.call(body(photo, "JPEG", format="png")))["image"]
    painted, fmt = decode(png_answer)
    assert fmt == "PNG"
    ok, expected = cv2.imencode(
        ".jpg", cv2.cvtColor(painted, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 60]
    )
    assert base64.b64decode(jpeg_answer) == expected.tobytes()


@pytest.mark.parametrize(
    ("setting", "field", "input_format", "answer_format"),
    [
        (None, None, "PNG", "PNG"),
        (None, None, "BMP", "PNG"),
        (None, "jpeg", "PNG", "JPEG"),
        (None, "JPG", "PNG", "JPEG"),
        ("png", None, "JPEG", "PNG"),
        ("jpeg", None, "PNG", "JPEG"),
        ("jpeg", "same", "PNG", "PNG"),
    ],
)
def test_output_format(
    opencv_client, photo, monkeypatch, setting, field, input_format, answer_format
):
    if setting:
        monkeypatch.setenv("OUTPUT_FORMAT", setting)
    fields = {"format": field} if field else {}
    answer = response_json(opencv_client.call(body(photo, input_format, **fields)))
    assert decode(answer["image"])[1] == answer_format


def skeleton_elements(points: np.ndarray) -> list[dict]:
    """pth-yolo-gridpose's skeleton elements: sublabels "1".."117", shuffled."""
    elements = [
        {
            "label": str(i + 1),
            "type": "points",
            "points": [float(x), float(y)],
            "outside": 0,
            "attributes": [{"name": "confidence", "value": "90"}],
        }
        for i, (x, y) in enumerate(points)
    ]
    order = np.random.default_rng(0).permutation(len(elements))
    return [elements[i] for i in order]


@pytest.mark.parametrize("form", ["elements", "skeleton"])
def test_cvat_skeleton_keypoints_give_the_same_mask(opencv_client, photo, form):
    elements = skeleton_elements(grid_points())
    keypoints = (
        elements
        if form == "elements"
        else {"label": "grid", "type": "skeleton", "elements": elements, "attributes": []}
    )
    from_pairs = response_json(opencv_client.call(body(photo, return_mask=True)))
    from_cvat = response_json(
        opencv_client.call(body(photo, keypoints=keypoints, return_mask=True))
    )
    assert from_cvat == from_pairs


def test_line_width_from_the_request(opencv_client, photo):
    answer = response_json(opencv_client.call(body(photo, line_width=3, return_mask=True)))
    expected = draw_grid_mask(grid_points(), (WIDTH, HEIGHT), 3)
    np.testing.assert_array_equal(decode(answer["mask"])[0] > 0, expected)


def test_configured_width_frame_lines_and_dilation(photo, monkeypatch):
    monkeypatch.setenv("INPAINT_BACKEND", "opencv")
    monkeypatch.setenv("GRID_LINE_WIDTH", "5")
    monkeypatch.setenv("GRID_FRAME_LINES", "true")
    monkeypatch.setenv("MASK_DILATION", "2")
    answer = response_json(FunctionClient(LamaHandler).call(body(photo, return_mask=True)))
    expected = dilate(draw_grid_mask(grid_points(), (WIDTH, HEIGHT), 5, frame=True), 2)
    mask = decode(answer["mask"])[0] > 0
    np.testing.assert_array_equal(mask, expected)
    painted = decode(answer["image"])[0]
    np.testing.assert_array_equal(painted[~mask], photo[~mask])


def test_points_outside_the_image_are_clipped(opencv_client, photo):
    points = grid_points()
    outside, on_border = points.copy(), points.copy()
    outside[0], on_border[0] = (-40.0, -9e9), (0.0, 0.0)
    outside[60], on_border[60] = (2e4, 150.0), (WIDTH, 150.0)
    answers = [
        response_json(opencv_client.call(body(photo, keypoints=p.tolist(), return_mask=True)))
        for p in (outside, on_border)
    ]
    assert answers[0] == answers[1]


@pytest.mark.slow
def test_a_sent_mask_is_painted_exactly(client, photo):
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[40:90, 100:180] = 255
    mask[200, 7] = 1  # any non-zero grey counts, as in SimpleLama
    request = {
        "image": encode_image(photo, "PNG"),
        "mask": encode_image(mask, "PNG"),
        "return_mask": True,
    }
    answer = response_json(client.call(request))
    painted = decode(answer["image"])[0]
    np.testing.assert_array_equal(decode(answer["mask"])[0] > 0, mask > 0)
    np.testing.assert_array_equal(painted[mask == 0], photo[mask == 0])
    assert (painted[mask > 0] != photo[mask > 0]).any()


@pytest.mark.slow
def test_an_empty_mask_returns_the_image_unchanged(client, photo):
    empty = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    request = {"image": encode_image(photo, "PNG"), "mask": encode_image(empty, "PNG")}
    np.testing.assert_array_equal(decode(response_json(client.call(request))["image"])[0], photo)


def test_opencv_backend_end_to_end(opencv_client, photo):
    handler = opencv_client.start()
    assert handler.device == "cpu" and not handler.torch_needed()
    answer = response_json(opencv_client.call(body(photo, "JPEG", format="png")))
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(encode_image(photo, "JPEG")))))
    mask = draw_grid_mask(grid_points(), (WIDTH, HEIGHT), 8)
    expected = decoded.copy()
    expected[mask] = cv2.inpaint(decoded, mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)[mask]
    np.testing.assert_array_equal(decode(answer["image"])[0], expected)


@pytest.mark.slow
def test_opencv_backend_never_imports_torch(tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from quadratseg_handlers.handlers.lama import LamaHandler\n"
        f"h = LamaHandler(inpaint_backend='opencv', lama_model={str(tmp_path / 'x.pt')!r})\n"
        "image = np.zeros((64, 64, 3), np.uint8)\n"
        "mask = np.zeros((64, 64), bool); mask[30:34] = True\n"
        "h.annotate(image, mask=mask)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.slow
def test_tiles_give_a_full_size_answer(lama_model, photo, monkeypatch):
    monkeypatch.setenv("LAMA_MODEL", str(lama_model))
    monkeypatch.setenv("INPAINT_TILE_SIZE", "128")
    monkeypatch.setenv("INPAINT_TILE_MARGIN", "32")
    answer = response_json(FunctionClient(LamaHandler).call(body(photo)))
    painted = decode(answer["image"])[0]
    mask = draw_grid_mask(grid_points(), (WIDTH, HEIGHT), 8)
    assert painted.shape == photo.shape
    np.testing.assert_array_equal(painted[~mask], photo[~mask])


# --- bad requests --------------------------------------------------------------------------

POINTS = grid_points().tolist()
ELEMENTS = skeleton_elements(grid_points())


def without(elements: list[dict], label: str) -> list[dict]:
    return [e for e in elements if e["label"] != label]


BAD_REQUESTS = {
    "116 points": ({"keypoints": POINTS[:116]}, "must hold the 117 grid points, got 116"),
    "118 points": ({"keypoints": POINTS + [[1, 1]]}, "must hold the 117 grid points, got 118"),
    "no points": ({"keypoints": []}, "got 0"),
    "nan": (
        {"keypoints": POINTS[:5] + [[float("nan"), 3.0]] + POINTS[6:]},
        "keypoint 6 is not finite",
    ),
    "infinity": ({"keypoints": [[float("inf"), 1.0]] + POINTS[1:]}, "keypoint 1 is not finite"),
    "text point": ({"keypoints": POINTS[:-1] + [["1", "2"]]}, "keypoint 117 must be [x, y]"),
    "4 coordinates": ({"keypoints": [[1, 2, 3, 4]] + POINTS[1:]}, "keypoint 1 must be [x, y]"),
    "boolean point": ({"keypoints": [[True, 2]] + POINTS[1:]}, "keypoint 1 must be [x, y]"),
    "keypoints text": ({"keypoints": "1,2"}, "'keypoints' must be a list"),
    "unknown sublabel": (
        {"keypoints": without(ELEMENTS, "5") + [{"label": "118", "points": [1, 1]}]},
        'has sublabel \'118\'; the grid\'s are "1".."117"',
    ),
    "too few points": (
        {"keypoints": ELEMENTS[:19]},
        "only 19 of the 117 grid points are given (not outside, v != 0); at least "
        "MIN_KEYPOINTS=20 are needed",
    ),
    "duplicate sublabel": ({"keypoints": ELEMENTS + [ELEMENTS[0]]}, "twice"),
    "element without label": (
        {"keypoints": [{"points": [1, 2]}] + ELEMENTS[1:]},
        "element 0 must be a skeleton element",
    ),
    "element without points": (
        {"keypoints": [{"label": "1"}] + without(ELEMENTS, "1")},
        "keypoint 1 must be [x, y]",
    ),
    "skeleton without elements": ({"keypoints": {"type": "skeleton"}}, "with 'elements'"),
    "keypoints and mask": ({"mask": "AAAA"}, "exactly one of 'keypoints'"),
    "line width 0": ({"line_width": 0}, "'line_width' must be from 1 to 512"),
    "line width 600": ({"line_width": 600}, "'line_width' must be from 1 to 512"),
    "fractional width": ({"line_width": 2.5}, "'line_width' must be an integer"),
    "width as text": ({"line_width": "8"}, "'line_width' must be an integer"),
    "width true": ({"line_width": True}, "'line_width' must be an integer"),
    "width nan": ({"line_width": float("nan")}, "'line_width' must be an integer"),
    "format gif": ({"format": "gif"}, "'format' must be one of same, png, jpeg"),
    "format number": ({"format": 5}, "'format' must be one of"),
    "return_mask text": ({"return_mask": "yes"}, "'return_mask' must be true or false"),
    "a batch": ({"images": ["AAAA"]}, "one image per request"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_keypoint_requests_are_answered_400(opencv_client, photo, case):
    fields, message = BAD_REQUESTS[case]
    request = body(photo)
    request.update(fields)
    response = opencv_client.call(request)
    assert response.status_code == 400
    assert message in response_json(response)["error"], response_json(response)


def mask_request(photo: np.ndarray, mask_b64: str, **fields) -> dict:
    return {"image": encode_image(photo, "PNG"), "mask": mask_b64, **fields}


BAD_MASKS = {
    "smaller mask": (
        lambda: encode_image(np.zeros((HEIGHT, WIDTH - 1), np.uint8), "PNG"),
        {},
        f"'mask' is {WIDTH - 1}x{HEIGHT} but 'image' is {WIDTH}x{HEIGHT}",
    ),
    "transposed mask": (
        lambda: encode_image(np.zeros((WIDTH, HEIGHT), np.uint8), "PNG"),
        {},
        f"'mask' is {HEIGHT}x{WIDTH} but",
    ),
    "not base64": (lambda: "%%%", {}, "'mask' is not valid base64"),
    "not an image": (
        lambda: base64.b64encode(b"hello").decode(),
        {},
        "'mask' is not a decodable image",
    ),
    "mask with line width": (
        lambda: encode_image(np.zeros((HEIGHT, WIDTH), np.uint8), "PNG"),
        {"line_width": 4},
        "'line_width' applies to 'keypoints' only",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MASKS))
def test_bad_mask_requests_are_answered_400(opencv_client, photo, case):
    make_mask, fields, message = BAD_MASKS[case]
    response = opencv_client.call(mask_request(photo, make_mask(), **fields))
    assert response.status_code == 400
    assert message in response_json(response)["error"], response_json(response)


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"keypoints": POINTS}, "missing 'image'"),
        ({"image": "%%%", "keypoints": POINTS}, "'image' is not valid base64"),
    ],
)
def test_requests_without_a_usable_image_are_answered_400(opencv_client, request_body, message):
    response = opencv_client.call(request_body)
    assert response.status_code == 400
    assert message in response_json(response)["error"]


def test_neither_keypoints_nor_mask_is_answered_400(opencv_client, photo):
    response = opencv_client.call({"image": encode_image(photo, "PNG")})
    assert response.status_code == 400
    assert "exactly one of 'keypoints'" in response_json(response)["error"]


def test_a_json_nan_in_a_bytes_body_is_answered_400(opencv_client, photo):
    text = json.dumps(body(photo)).replace("[" + json.dumps(POINTS[3])[1:-1] + "]", "[NaN, 1.0]", 1)
    response = opencv_client.call(make_event(text.encode(), content_type="text/plain"))
    assert response.status_code == 400
    assert "keypoint 4 is not finite" in response_json(response)["error"]


def test_lama_declares_neither_a_threshold_nor_a_batch_size():
    """It has no scores and refuses every batch, so neither is documented or packaged for it."""
    from quadratseg_handlers.deploy.catalog import find
    from quadratseg_handlers.deploy.packager import env_problems

    names = {setting.name for setting in LamaHandler.declared_settings()}
    assert {"CONF_THRESHOLD", "MAX_BATCH_SIZE"}.isdisjoint(names)
    assert {"DEVICE", "MAX_IMAGE_PIXELS", "INPAINT_BACKEND"} <= names
    assert env_problems(find("lama"), {"CONF_THRESHOLD": "0.4"}) == [
        "--env CONF_THRESHOLD: not a setting of lama (`quadratseg settings lama` lists them)"
    ]


# --- grid points as a review leaves them ----------------------------------------------------


def reviewed(elements: list[dict]) -> list[dict]:
    """Every 7th element marked outside and every 11th deleted, as a reviewer might."""
    result = []
    for element in elements:
        number = int(element["label"])
        if number % 11 == 0:
            continue
        result.append({**element, "outside": number % 7 == 0})
    return result


@pytest.mark.parametrize("form", ["reviewed elements", "triplets with v = 0"])
def test_points_outside_missing_or_v0_are_placed_by_the_lattice(opencv_client, photo, form):
    if form == "reviewed elements":
        keypoints = reviewed(ELEMENTS)
        given = [e for e in keypoints if not e["outside"]]
        assert len(given) < 100
    else:
        keypoints = [[x, y, 0 if i % 5 == 0 else 2] for i, (x, y) in enumerate(POINTS)]
    placed = complete_keypoints(parse_keypoints(keypoints), 20)
    np.testing.assert_allclose(placed, grid_points(), atol=1e-4)
    answer = response_json(opencv_client.call(body(photo, keypoints=keypoints, return_mask=True)))
    expected = draw_grid_mask(placed, (WIDTH, HEIGHT), 8)
    np.testing.assert_array_equal(decode(answer["mask"])[0] > 0, expected)


@pytest.mark.slow
@pytest.mark.parametrize(("side", "status"), [(8, 400), (9, 200)])
def test_images_of_8_pixels_or_less_per_side_are_answered_400(client, side, status):
    image = np.full((side, side + 5, 3), 100, np.uint8)
    request = {
        "image": encode_image(image, "PNG"),
        "keypoints": grid_points(side + 5, side).tolist(),
    }
    response = client.call(request)
    assert response.status_code == status
    if status == 400:
        assert response_json(response)["error"] == (
            f"'image' is {side + 5}x{side}; grid removal needs more than 8 pixels per side"
        )


@pytest.mark.parametrize(("accept", "fmt"), [("image/jpeg", "JPEG"), ("image/png", "PNG")])
def test_accept_an_image_type_answers_the_image_file(opencv_client, photo, accept, fmt):
    event = make_event(body(photo), headers={"Content-Type": "application/json", "Accept": accept})
    response = opencv_client.call(event)
    assert response.status_code == 200 and response.content_type == accept
    image = Image.open(io.BytesIO(response.body))
    assert image.format == fmt and image.size == (WIDTH, HEIGHT)
    as_json = response_json(opencv_client.call(body(photo, format=fmt.lower())))
    assert base64.b64decode(as_json["image"]) == response.body


def test_accept_an_image_type_with_return_mask_is_answered_400(opencv_client, photo):
    event = make_event(body(photo, return_mask=True), headers={"Accept": "image/png"})
    response = opencv_client.call(event)
    assert response.status_code == 400
    assert "'return_mask' needs the JSON answer" in response_json(response)["error"]


def test_nuclio_batch_mode_answers_each_event_alone(tmp_path, photo, monkeypatch):
    """Grid removal has its own infer (an image back, not shapes): in Nuclio's batch mode the
    base answers each event alone, a bad one with its own 400."""
    monkeypatch.setenv("INPAINT_BACKEND", "opencv")
    monkeypatch.setenv("LAMA_MODEL", str(tmp_path / "absent.pt"))
    module = handler_module(LamaHandler)
    context = make_context()
    module.init_context(context)
    single = module.handler(context, make_event(body(photo)))
    events = [make_event(body(photo)), make_event({"image": encode_image(photo)})]
    for index, made in enumerate(events):
        made.id = f"event-{index}"
    first, second = module.handler(context, events)
    assert (first.event_id, second.event_id) == ("event-0", "event-1")
    assert first.status_code == 200 and response_json(first) == response_json(single)
    assert second.status_code == 400 and "keypoints" in response_json(second)["error"]

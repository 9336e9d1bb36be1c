"""The base handler through real nuclio_sdk Context/Event objects: exact JSON, every error."""

from __future__ import annotations

import base64
import io
import json
import os
import sys

import numpy as np
import pytest
from handlers_for_tests import RECT_IMAGE_BOXES, BrightBoxHandler, huge_png_header
from PIL import Image

from quadratseg_handlers import ConfigError
from quadratseg_handlers.core import runtime
from quadratseg_handlers.core.memory import release_memory
from quadratseg_handlers.core.request import cvat_request, encode_image
from quadratseg_handlers.local.harness import (
    FunctionClient,
    make_context,
    make_event,
    response_json,
)


def png_b64(image: np.ndarray) -> str:
    return encode_image(image, fmt="PNG")


@pytest.fixture
def client() -> FunctionClient:
    return FunctionClient(BrightBoxHandler)


def test_exact_cvat_json_for_a_dict_body(client, rect_image):
    response = client.call(make_event({"image": png_b64(rect_image)}))
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert isinstance(response.body, str)
    assert response_json(response) == RECT_IMAGE_BOXES


@pytest.mark.parametrize("encode", [lambda s: s.encode(), lambda s: s, bytearray])
def test_bytes_and_str_bodies_give_the_same_answer(client, rect_image, encode):
    text = json.dumps({"image": png_b64(rect_image)})
    body = encode(text) if not isinstance(encode, type) else encode(text.encode())
    response = client.call(make_event(body, content_type="application/json; charset=utf-8"))
    assert response.status_code == 200
    assert response_json(response) == RECT_IMAGE_BOXES


def test_threshold_from_request_overrides_default(client, rect_image):
    body = {"image": png_b64(rect_image), "threshold": 0.95}
    assert response_json(client.call(make_event(body))) == RECT_IMAGE_BOXES[:1]


@pytest.mark.parametrize("threshold", [0, 0.0, None])
def test_zero_or_absent_threshold_falls_back_to_configured_default(client, rect_image, threshold):
    # CONF_THRESHOLD is 0.5 for this handler: both rectangles pass, the grey one is below LEVEL.
    body = {"image": png_b64(rect_image), "threshold": threshold}
    assert response_json(client.call(make_event(body))) == RECT_IMAGE_BOXES


def test_conf_threshold_from_environment(monkeypatch, rect_image):
    monkeypatch.setenv("CONF_THRESHOLD", "0.95")
    client = FunctionClient(BrightBoxHandler)
    assert response_json(client.call({"image": png_b64(rect_image)})) == RECT_IMAGE_BOXES[:1]


def test_client_settings_hold_while_the_function_runs_and_only_then(monkeypatch, rect_image):
    """FunctionClient's settings are the function's environment, as function.yaml's env."""
    monkeypatch.delenv("CONF_THRESHOLD", raising=False)
    client = FunctionClient(BrightBoxHandler, {"conf_threshold": 0.95})
    assert response_json(client.call({"image": png_b64(rect_image)})) == RECT_IMAGE_BOXES[:1]
    assert client.start().settings.conf_threshold == 0.95
    assert "CONF_THRESHOLD" not in os.environ


def test_batch_returns_one_list_per_image(client, rect_image):
    empty = np.zeros((30, 40, 3), dtype=np.uint8)
    body = {"images": [png_b64(rect_image), png_b64(empty), png_b64(rect_image)]}
    assert response_json(client.call(body)) == [RECT_IMAGE_BOXES, [], RECT_IMAGE_BOXES]


def test_jpeg_frame_and_data_url_and_urlsafe_base64(client, rect_image):
    raw = base64.b64decode(png_b64(rect_image))
    for text in (
        "data:image/png;base64," + base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ):
        assert response_json(client.call({"image": text})) == RECT_IMAGE_BOXES
    jpeg = client.call(cvat_request(rect_image))
    assert jpeg.status_code == 200
    assert [s["points"] for s in response_json(jpeg)] == [e["points"] for e in RECT_IMAGE_BOXES]


def test_model_loads_once_per_worker(rect_image):
    BrightBoxHandler.loads = 0
    client = FunctionClient(BrightBoxHandler)
    for _ in range(3):
        client.call({"image": png_b64(rect_image)})
    assert BrightBoxHandler.loads == 1


def test_one_log_line_per_request(client, rect_image):
    client.call({"image": png_b64(rect_image)})
    client.call({"image": "!!!"})
    infos = [r for r in client.logger.records if r[1] == "handled request"]
    assert len(infos) == 1
    fields = infos[0][2]
    assert fields["pixels"] == 200 * 120 and fields["shapes"] == 2 and fields["ms"] >= 0
    assert client.logger.messages("warn") == ["rejected request"]


def tiff_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    return buffer.getvalue()


BAD_REQUESTS = [
    (b"{not json", 400, "malformed JSON"),
    (b"", 400, "empty request body"),
    (b"\xff\xfe\x00", 400, "not UTF-8"),
    ("[1, 2]", 400, "must be an object"),
    ({}, 400, "missing 'image'"),
    ({"image": None}, 400, "missing 'image'"),
    ({"image": 12}, 400, "must be a base64 string"),
    ({"image": "not base64 at all!"}, 400, "not valid base64"),
    ({"image": ""}, 400, "is empty"),
    ({"image": base64.b64encode(b"hello, not an image").decode()}, 400, "not a decodable image"),
    ({"image": base64.b64encode(huge_png_header(20000, 20000)).decode()}, 413, "megapixels"),
    ({"image": "aGk=", "threshold": 1.5}, 400, "'threshold' must be a number in [0, 1]"),
    ({"image": "aGk=", "threshold": -0.1}, 400, "'threshold'"),
    ({"image": "aGk=", "threshold": "high"}, 400, "'threshold'"),
    ({"image": "aGk=", "threshold": True}, 400, "'threshold'"),
    ({"image": "aGk=", "threshold": float("nan")}, 400, "'threshold'"),
    ({"image": "aGk=", "images": ["aGk="]}, 400, "not both"),
    ({"images": []}, 400, "non-empty list"),
    ({"images": "aGk="}, 400, "non-empty list"),
    ({"images": ["aGk="] * 17}, 413, "MAX_BATCH_SIZE=16"),
    ({"images": ["!!"]}, 400, "'images[0]' is not valid base64"),
    (b"[" * 10_000 + b"]" * 10_000, 400, "malformed JSON body: nested too deeply"),
    (json.dumps(json.dumps({"image": "aGk="})), 400, "JSON body must be an object, got str"),
    (
        {"images": [base64.b64encode(huge_png_header(8000, 8000)).decode()] * 2},
        413,
        "128.0 megapixels together, over the limit of 100.0 megapixels per request "
        "(MAX_REQUEST_PIXELS)",
    ),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_json_errors_and_the_worker_keeps_serving(
    client, rect_image, body, status, message
):
    content_type = "application/json" if isinstance(body, dict) else "text/plain"
    response = client.call(make_event(body, content_type=content_type))
    assert response.status_code == status
    assert response.content_type == "application/json"
    error = response_json(response)
    assert list(error) == ["error"]
    assert message in error["error"]
    assert response_json(client.call({"image": png_b64(rect_image)})) == RECT_IMAGE_BOXES


def test_a_json_string_holding_an_object_is_not_parsed_twice(client, rect_image):
    """Nuclio parses an application/json body: a JSON string reaches the handler as a str."""
    inner = json.dumps({"image": png_b64(rect_image)})
    response = client.call(make_event(inner, content_type="application/json"))
    assert response.status_code == 400
    assert response_json(response) == {"error": "JSON body must be an object, got a string"}


def test_memory_is_given_back_after_a_large_request_only(monkeypatch, client, rect_image):
    released = []
    monkeypatch.setattr(runtime, "LARGE_REQUEST_PIXELS", 200 * 120)
    monkeypatch.setattr(runtime, "release_memory", lambda: released.append(True))
    small = np.ascontiguousarray(rect_image[:60])
    assert client.call({"image": png_b64(small)}).status_code == 200
    assert released == []
    assert response_json(client.call({"image": png_b64(rect_image)})) == RECT_IMAGE_BOXES
    assert released == [True]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_memory_trims_the_heap():
    assert release_memory() is True


def test_pixel_limit_is_configurable_and_answers_413(monkeypatch, rect_image):
    monkeypatch.setenv("MAX_IMAGE_PIXELS", "10000")
    client = FunctionClient(BrightBoxHandler)
    response = client.call({"image": png_b64(rect_image)})
    assert response.status_code == 413
    assert "200x120" in response_json(response)["error"]


def test_truncated_image_is_a_400(client, rect_image):
    raw = base64.b64decode(encode_image(rect_image, fmt="JPEG"))
    response = client.call({"image": base64.b64encode(raw[: len(raw) // 3]).decode()})
    assert response.status_code == 400


def test_other_formats_and_modes_decode_to_rgb(client):
    response = client.call({"image": base64.b64encode(tiff_bytes()).decode()})
    assert response.status_code == 200 and response_json(response) == []
    gray = Image.fromarray(np.full((20, 30), 255, dtype=np.uint8), mode="L")
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    shapes = response_json(client.call({"image": base64.b64encode(buffer.getvalue()).decode()}))
    assert [s["points"] for s in shapes] == [[0.0, 0.0, 29.0, 19.0]]


def test_model_exception_is_500_with_short_message_and_traceback_logged(monkeypatch, rect_image):
    monkeypatch.setenv("FAIL_WITH", "error")
    client = FunctionClient(BrightBoxHandler)
    response = client.call({"image": png_b64(rect_image)})
    assert response.status_code == 500
    assert response_json(response) == {
        "error": "internal error in BrightBoxHandler: ValueError: weights are corrupt"
    }
    errors = [r for r in client.logger.records if r[0] == "error"]
    assert "Traceback" in errors[0][2]["traceback"]
    assert "weights are corrupt" in errors[0][2]["traceback"]
    # the worker is still alive: a bad request still gets its own answer
    assert client.call({"image": "!!"}).status_code == 400


def test_cuda_out_of_memory_is_503(monkeypatch, rect_image):
    monkeypatch.setenv("FAIL_WITH", "oom")
    client = FunctionClient(BrightBoxHandler)
    response = client.call({"image": png_b64(rect_image)})
    assert response.status_code == 503
    assert "out of memory" in response_json(response)["error"]
    assert client.call({"image": png_b64(rect_image)}).status_code == 503


def test_invalid_setting_stops_start_up_naming_the_variable(monkeypatch, rect_image):
    monkeypatch.setenv("LEVEL", "bright")
    context = make_context()
    with pytest.raises(ConfigError, match="LEVEL='bright'"):
        runtime.init_context(BrightBoxHandler, context)
    assert context.logger.messages("error") == ["start-up failed"]


def test_init_context_and_handle_event_with_a_plain_context(rect_image):
    context = make_context(worker_id="3")
    runtime.init_context(BrightBoxHandler, context)
    response = runtime.handle_event(context, make_event({"image": png_b64(rect_image)}))
    assert response_json(response) == RECT_IMAGE_BOXES
    assert context.logger.records[-1][2]["worker"] == "3"


def test_notebook_use_without_nuclio(tmp_path, rect_image):
    handler = BrightBoxHandler(conf_threshold=0.95, level=128)
    path = tmp_path / "frame.png"
    Image.fromarray(rect_image).save(path)
    assert handler.annotate(path) == RECT_IMAGE_BOXES[:1]
    assert handler.annotate(rect_image, threshold=0.5) == RECT_IMAGE_BOXES
    assert handler.annotate([rect_image, path.read_bytes()]) == [
        RECT_IMAGE_BOXES[:1],
        RECT_IMAGE_BOXES[:1],
    ]
    assert handler.predict([rect_image], 0.5) == [
        [(20, 10, 59, 29, 1.0), (100, 50, 149, 99, 230 / 255)]
    ]


def test_notebook_keyword_settings_are_validated():
    with pytest.raises(ConfigError, match="unknown setting"):
        BrightBoxHandler(levle=3)
    with pytest.raises(ConfigError, match="CONF_THRESHOLD"):
        BrightBoxHandler(conf_threshold=2)


def test_the_warning_header_is_one_printable_line_of_bounded_length():
    from quadratseg_handlers.core.runtime import MAX_WARNING_CHARS, warning_header

    assert warning_header(["no skeleton: only 3\nof 4", "second"]) == (
        "no skeleton: only 3 of 4; second"
    )
    assert warning_header(["température ok"]) == "temp?rature ok"
    long = warning_header(["x" * 5000])
    assert len(long) == MAX_WARNING_CHARS and long.endswith("...")

"""The bad-input matrix, per function: every row through the function's real handler and tiny
models, the event decoded as Nuclio (and ``quadratseg serve``) decodes it, for every
Content-Type a client may send. Each answer is a JSON ``{"error": ...}`` with the row's 4xx
status, or the function's 200 for a valid body, whatever the Content-Type."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from functions_for_tests import SLOW, function_env, function_params, valid_body
from handlers_for_tests import huge_png_header

from quadratseg_handlers.core.references import resolve
from quadratseg_handlers.local.harness import FunctionClient
from quadratseg_handlers.local.workers import EventMessage, encode_output, make_event

Body = Callable[[dict[str, Any]], bytes]


def as_json(value: Any) -> Body:
    return lambda valid: json.dumps(value).encode()


def with_fields(**fields: Any) -> Body:
    return lambda valid: json.dumps({**valid, **fields}).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cut_image(valid: dict[str, Any]) -> bytes:
    data = base64.b64decode(valid["image"])
    return json.dumps({**valid, "image": b64(data[: len(data) // 2])}).encode()


def cut_behind_end_marker(valid: dict[str, Any]) -> bytes:
    """The image's first 60 % with an end marker after it: OpenCV and PIL would answer grey."""
    data = base64.b64decode(valid["image"])
    return json.dumps({**valid, "image": b64(data[: len(data) * 6 // 10] + b"\xff\xd9")}).encode()


def with_number(name: str, digits: int) -> Body:
    """The valid body with ``name`` set to a JSON integer of ``digits`` digits."""
    return lambda valid: json.dumps(valid)[:-1].encode() + f', "{name}": {"9" * digits}}}'.encode()


def nested(depth: int, opening: bytes, closing: bytes) -> Body:
    return lambda valid: opening * depth + closing * depth


JSON_TYPES = ["application/json", "text/plain", "application/octet-stream", ""]

# (row id, body, content types, status, words of the error; detector-only rows marked)
ROWS: list[tuple[str, Body, list[str], int, str, bool]] = [
    ("deep-list", nested(1000, b"[", b"]"), JSON_TYPES, 400, "nested too deeply", False),
    ("deep-object", nested(5000, b'{"a":', b"}"), JSON_TYPES, 400, "nested too deeply", False),
    ("json-string", lambda v: json.dumps(json.dumps(v)).encode(), JSON_TYPES, 400, "got", False),
    ("empty", lambda v: b"", JSON_TYPES, 400, "empty request body", False),
    ("whitespace", lambda v: b"  \n", JSON_TYPES, 400, "", False),
    ("not-utf8", lambda v: b"\xff\xfe{}", JSON_TYPES, 400, "", False),
    ("cut-json", lambda v: json.dumps(v).encode()[:50], JSON_TYPES, 400, "malformed JSON", False),
    ("list", as_json([1, 2]), JSON_TYPES, 400, "must be an object", False),
    ("number", as_json(3), JSON_TYPES, 400, "must be an object", False),
    ("null", as_json(None), JSON_TYPES, 400, "", False),
    ("no-image", as_json({"threshold": 0.5}), JSON_TYPES, 400, "'image'", False),
    ("image-number", with_fields(image=12), JSON_TYPES, 400, "'image'", False),
    ("image-list", with_fields(image=["x"]), JSON_TYPES, 400, "'image'", False),
    ("image-object", with_fields(image={"a": 1}), JSON_TYPES, 400, "'image'", False),
    ("bad-base64", with_fields(image="@@@"), JSON_TYPES, 400, "not valid base64", False),
    ("not-an-image", with_fields(image=b64(b"hello")), JSON_TYPES, 400, "not a decodable", False),
    ("cut-image", cut_image, JSON_TYPES, 400, "'image'", False),
    ("cut-behind-end", cut_behind_end_marker, JSON_TYPES, 400, "'image'", False),
    ("digits-5000", with_number("threshold", 5000), JSON_TYPES, 400, "4300 digits", False),
    ("png-bomb", with_fields(image=b64(huge_png_header(20_000, 20_000))), JSON_TYPES, 413,
     "MAX_IMAGE_PIXELS", False),
    ("threshold-text", with_fields(threshold="high"), JSON_TYPES, 400, "'threshold'", True),
    ("threshold-huge", lambda v: json.dumps(v)[:-1].encode() + b', "threshold": 1e400}',
     JSON_TYPES, 400, "'threshold'", True),
    ("threshold-400-digits", with_number("threshold", 400), JSON_TYPES, 400, "'threshold'",
     True),
    ("batch-pixels", lambda v: json.dumps({"images": [b64(huge_png_header(8000, 8000))] * 2})
     .encode(), JSON_TYPES, 413, "MAX_REQUEST_PIXELS", True),
    ("batch-size", lambda v: json.dumps({"images": [v["image"]] * 17}).encode(), JSON_TYPES,
     413, "MAX_BATCH_SIZE", True),
    ("batch-empty", as_json({"images": []}), JSON_TYPES, 400, "'images'", True),
]  # fmt: skip

VALID_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "application/octet-stream",
    "multipart/form-data",
    "",
]


def cases() -> list[Any]:
    return [
        pytest.param(row, content_type, id=f"{row[0]}-{content_type or 'none'}")
        for row in ROWS
        for content_type in row[2]
    ]


@pytest.fixture(scope="module", params=function_params())
def function(request, tmp_path_factory) -> tuple[Any, FunctionClient]:
    spec = request.param
    env = function_env(spec, tmp_path_factory.mktemp(spec.model))
    client = FunctionClient(resolve(spec.handler), env)
    client.start()
    return spec, client


def answer(client: FunctionClient, body: bytes, content_type: str) -> tuple[int, Any]:
    """Send one request as ``quadratseg serve`` hands it over; the status and decoded JSON."""
    message = EventMessage(body, content_type, "POST", "/", "http://localhost/")
    reply = encode_output(client.call(make_event(message, "http")))
    assert reply.content_type == "application/json", reply.body[:300]
    return reply.status, json.loads(reply.body)


@pytest.mark.parametrize(("row", "content_type"), cases())
def test_bad_input_is_a_json_4xx(function, row, content_type):
    spec, client = function
    name, body, _, status, words, detector_only = row
    if detector_only and spec.kind != "detector":
        pytest.skip("a detector's request field")
    got, payload = answer(client, body(valid_body(spec)), content_type)
    assert (got, list(payload)) == (status, ["error"]), payload
    assert words in payload["error"]


@pytest.mark.parametrize("content_type", VALID_TYPES)
def test_a_valid_body_is_answered_whatever_the_content_type(function, content_type):
    spec, client = function
    if spec.name in SLOW and content_type != VALID_TYPES[0]:
        pytest.skip("seconds per request: the content types are the same code for every function")
    status, payload = answer(client, json.dumps(valid_body(spec)).encode(), content_type)
    assert status == 200, payload
    assert isinstance(payload, dict if spec.kind == "inpainter" else list)

"""Nuclio's batch mode through real nuclio_sdk Context/Event objects: a list of events in, one
response per event out (same order, each carrying its event's id), one batched predict."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from handlers_for_tests import RECT_IMAGE_BOXES, BrightBoxHandler

from quadratseg_handlers.core.request import Request, encode_image
from quadratseg_handlers.local.harness import (
    handler_module,
    make_context,
    make_event,
    response_json,
)

POISON_WIDTH = 13
"""An image this wide makes :class:`CountingHandler`'s predict raise."""


class CountingHandler(BrightBoxHandler):
    """BrightBoxHandler that records each predict's image count and fails on a poison image."""

    calls: list[int] = []
    decoded_before: list[int] = []
    """How many requests were decoded when each predict ran."""
    decoded = 0

    def parse_request(self, body: Mapping[str, Any]) -> Request:
        type(self).decoded += 1
        return super().parse_request(body)

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[Any]:
        type(self).calls.append(len(images))
        type(self).decoded_before.append(type(self).decoded)
        if any(image.shape[1] == POISON_WIDTH for image in images):
            raise ValueError("this image breaks the model")
        return super().predict(images, threshold)


@pytest.fixture
def run(monkeypatch):
    """Start a fresh CountingHandler worker with settings; return a batch caller."""

    def start(**settings: Any):
        CountingHandler.calls, CountingHandler.decoded_before = [], []
        CountingHandler.decoded = 0
        for name, value in settings.items():
            monkeypatch.setenv(name, str(value))
        module = handler_module(CountingHandler)
        context = make_context()
        module.init_context(context)

        def call(events: list[Any]) -> list[Any]:
            return module.handler(context, events)

        call.context = context  # type: ignore[attr-defined]
        return call

    return start


def event(body: Any, event_id: str) -> Any:
    made = make_event(body)
    made.id = event_id
    return made


def png(image: np.ndarray) -> str:
    return encode_image(image, fmt="PNG")


def test_one_response_per_event_in_order_with_its_id_and_one_predict(run, rect_image):
    call = run()
    blank = np.zeros((40, 50, 3), dtype=np.uint8)
    events = [
        event({"image": png(rect_image)}, "e0"),
        event({"image": png(blank)}, "e1"),
        event({"image": "not base64!"}, "e2"),
        event(b"{not json", "e3"),
        event({"images": [png(rect_image), png(blank)]}, "e4"),
        event({"image": png(rect_image)}, "e5"),
    ]
    responses = call(events)
    assert [r.event_id for r in responses] == ["e0", "e1", "e2", "e3", "e4", "e5"]
    assert [r.status_code for r in responses] == [200, 200, 400, 400, 200, 200]
    assert all(r.content_type == "application/json" for r in responses)
    assert response_json(responses[0]) == RECT_IMAGE_BOXES
    assert response_json(responses[1]) == []
    assert "base64" in response_json(responses[2])["error"]
    assert "error" in response_json(responses[3])
    assert response_json(responses[4]) == [RECT_IMAGE_BOXES, []]
    assert response_json(responses[5]) == RECT_IMAGE_BOXES
    assert CountingHandler.calls == [5]  # the 5 valid images of 4 events, one predict
    logged = call.context.logger.records
    batch_lines = [fields for _, message, fields in logged if message == "handled batch"]
    assert batch_lines[0]["events"] == 6 and batch_lines[0]["answered"] == 4
    assert batch_lines[0]["predicts"] == 1


def test_a_failing_image_fails_only_its_own_event(run, rect_image):
    call = run()
    poison = np.zeros((20, POISON_WIDTH, 3), dtype=np.uint8)
    events = [
        event({"image": png(rect_image)}, "a"),
        event({"image": png(poison)}, "b"),
        event({"image": png(rect_image)}, "c"),
    ]
    responses = call(events)
    assert [r.status_code for r in responses] == [200, 500, 200]
    assert response_json(responses[0]) == RECT_IMAGE_BOXES == response_json(responses[2])
    assert response_json(responses[1]) == {
        "error": "internal error in CountingHandler: ValueError: this image breaks the model"
    }
    # the shared predict failed, then each request ran alone
    assert CountingHandler.calls == [3, 1, 1, 1]


def test_out_of_memory_answers_503_to_every_decoded_event(run, rect_image):
    call = run(FAIL_WITH="oom")
    events = [
        event({"image": png(rect_image)}, "a"),
        event({"image": ""}, "b"),
        event({"image": png(rect_image)}, "c"),
    ]
    responses = call(events)
    assert [r.status_code for r in responses] == [503, 400, 503]
    assert responses[0].headers == {"Retry-After": "5"}
    assert "out of memory" in response_json(responses[2])["error"]
    assert [r.event_id for r in responses] == ["a", "b", "c"]


def test_predicts_respect_max_batch_size_pixels_and_thresholds(run, rect_image):
    call = run(MAX_BATCH_SIZE=2)
    same = [event({"image": png(rect_image)}, str(i)) for i in range(5)]
    responses = call(same)
    assert [response_json(r) for r in responses] == [RECT_IMAGE_BOXES] * 5
    assert CountingHandler.calls == [2, 2, 1]
    # decoded as they go: a predict runs before the events past the limit are decoded
    assert CountingHandler.decoded_before == [3, 5, 5]

    pixels = rect_image.shape[0] * rect_image.shape[1]
    call = run(MAX_BATCH_SIZE=16, MAX_REQUEST_PIXELS=2 * pixels)
    call([event({"image": png(rect_image)}, str(i)) for i in range(3)])
    assert CountingHandler.calls == [2, 1]

    call = run(MAX_BATCH_SIZE=16, MAX_REQUEST_PIXELS=10**8)
    mixed = [
        event({"image": png(rect_image), "threshold": 0.95}, "high"),
        event({"image": png(rect_image)}, "default"),
        event({"image": png(rect_image), "threshold": 0.95}, "high again"),
    ]
    responses = call(mixed)
    assert [response_json(r) for r in responses] == [
        RECT_IMAGE_BOXES[:1],
        RECT_IMAGE_BOXES,
        RECT_IMAGE_BOXES[:1],
    ]
    assert sorted(CountingHandler.calls) == [1, 2]


def test_a_single_event_still_gets_a_single_response(rect_image):
    module = handler_module(BrightBoxHandler)
    context = make_context()
    module.init_context(context)
    response = module.handler(context, make_event({"image": png(rect_image)}))
    assert not isinstance(response, list)
    assert response.status_code == 200 and json.loads(response.body) == RECT_IMAGE_BOXES
    assert module.handler(context, []) == []

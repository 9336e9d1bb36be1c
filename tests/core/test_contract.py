"""The model contract's families through the runtime: an image-to-image function's request,
answer and notebook entry, each family's batch limits, and a detector's shared predict."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from handlers_for_tests import BrightBoxHandler, MaskFillHandler, mask_fill_files
from PIL import Image

from quadratseg_handlers.core import runtime
from quadratseg_handlers.core.request import Request
from quadratseg_handlers.local.harness import FunctionClient, make_context, make_event


def png_b64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decoded_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


@pytest.fixture
def filler(tmp_path):
    fill = mask_fill_files(tmp_path)["fill"]
    client = FunctionClient(MaskFillHandler, {"FILL_PATH": str(fill)})
    client.start()
    return client


def test_an_image_handler_answers_its_image(filler, rect_image):
    mask = np.zeros_like(rect_image)
    mask[:5, :7] = 255
    response = filler.call({"image": png_b64(rect_image), "mask": png_b64(mask)})
    assert response.status_code == 200
    answer = decoded_png(json.loads(response.body)["image"])
    expected = rect_image.copy()
    expected[:5, :7] = (255, 0, 0)
    np.testing.assert_array_equal(answer, expected)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"images": ["x"]}, "test-mask-fill takes one image per request: send 'image', not"),
        ({"mask": "x"}, "missing 'image'"),
        ({"image": "AAAA", "mask": "x"}, "not a decodable image"),
    ],
)
def test_an_image_handler_refuses_what_it_cannot_answer(filler, body, message):
    response = filler.call(body)
    assert response.status_code == 400
    assert message in json.loads(response.body)["error"]


def test_an_image_handler_missing_its_field_is_a_400_from_the_model(filler, rect_image):
    response = filler.call({"image": png_b64(rect_image)})
    assert (response.status_code, json.loads(response.body)) == (400, {"error": "missing 'mask'"})


def test_an_image_handler_in_a_notebook_returns_the_image(tmp_path, rect_image):
    handler = MaskFillHandler(fill_path=str(mask_fill_files(tmp_path)["fill"]))
    mask = np.zeros_like(rect_image)
    mask[-3:, -4:] = 255
    painted = handler.annotate(rect_image, mask=png_b64(mask))
    assert painted.shape == rect_image.shape and handler.loaded
    np.testing.assert_array_equal(painted[-3:, -4:], np.full((3, 4, 3), (255, 0, 0)))
    np.testing.assert_array_equal(painted[:-3], rect_image[:-3])
    with pytest.raises(TypeError, match="takes the fields as keywords"):
        handler.annotate(rect_image, png_b64(mask))
    assert handler.labels() == []


def test_each_family_says_how_many_requests_share_a_call(filler):
    image_handler = filler.start()
    assert image_handler.batch_limits() == (1, 1)
    detector = BrightBoxHandler(max_batch_size=5, max_request_pixels=1234)
    assert detector.batch_limits() == (5, 1234)


def test_an_image_handlers_batch_of_events_is_answered_event_by_event(filler, rect_image):
    mask = png_b64(np.zeros_like(rect_image))
    events = [make_event({"image": png_b64(rect_image), "mask": mask}) for _ in range(2)]
    events.insert(1, make_event({"image": png_b64(rect_image)}))
    context = make_context()
    responses = runtime.respond_batch(filler.start(), context, events)
    assert [r.status_code for r in responses] == [200, 400, 200]
    batch_line = [r for r in context.logger.records if r[1] == "handled batch"]
    assert batch_line and batch_line[0][2]["predicts"] == 3  # one call per request


def test_a_detectors_requests_of_different_thresholds_are_inferred_alone(rect_image):
    handler = BrightBoxHandler()
    handler.load()
    calls: list[int] = []
    original = handler.predict

    def counting(images, threshold):
        calls.append(len(images))
        return original(images, threshold)

    handler.predict = counting  # type: ignore[method-assign]
    same = [Request([rect_image], 0.5, False), Request([rect_image, rect_image], 0.5, True)]
    outcomes = handler.infer_many(same)
    assert calls == [3] and len(outcomes[1]) == 2
    calls.clear()
    handler.infer_many([Request([rect_image], 0.5, False), Request([rect_image], 0.9, False)])
    assert calls == [1, 1]

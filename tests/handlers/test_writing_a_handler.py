"""docs/writing-a-handler.md's YOLO detect function, run as the module a lab would write.

The page's example block is the whole handler file of a new function. Here it is imported as
a module, served through real ``nuclio_sdk`` objects with a tiny detect model, and its answer
checked box by box against ultralytics' own predict on the same pixels.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quadratseg_handlers.core.request import cvat_request
from quadratseg_handlers.demo.tinymodels.yolo import tiny_yolo
from quadratseg_handlers.local.harness import FunctionClient, response_json

PAGE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-handler.md"
EXAMPLE = re.compile(r"<!-- example:.*?-->\s*```python\n(.*?)^```", re.S | re.M)


def example_source() -> str:
    """The page's example block: the handler file of the new function."""
    found = EXAMPLE.search(PAGE.read_text())
    assert found, "docs/writing-a-handler.md lost its example block"
    return found.group(1)


@pytest.fixture(scope="module")
def example_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("example") / "yolo_detect.py"
    path.write_text(example_source())
    spec = importlib.util.spec_from_file_location("yolo_detect", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["yolo_detect"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("yolo_detect", None)


def test_the_example_is_one_short_file():
    lines = [line for line in example_source().splitlines() if line.strip()]
    assert len(lines) <= 35, f"the example handler grew to {len(lines)} lines"


@pytest.mark.slow
def test_the_example_answers_ultralytics_boxes_as_rectangles(example_module, tmp_path):
    from ultralytics import YOLO

    weights = tiny_yolo(tmp_path / "best.pt", "detect", ["coral", "rubble"], deterministic=False)
    rng = np.random.default_rng(5)
    photo = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "quadrat.png")
    env = {"MODEL_PATH": str(weights), "DEVICE": "cpu", "CONF_THRESHOLD": "0.01", "MAX_DET": "20"}

    client = FunctionClient(example_module.YoloDetectHandler, env)
    response = client.call(cvat_request(str(tmp_path / "quadrat.png")))
    assert response.status_code == 200

    raw = YOLO(str(weights)).predict(
        np.ascontiguousarray(photo[..., ::-1]), conf=0.01, iou=0.5, max_det=20, verbose=False
    )[0]
    expected = []
    for box, score, cls in zip(
        raw.boxes.xyxy.tolist(), raw.boxes.conf.tolist(), raw.boxes.cls.tolist(), strict=True
    ):
        value = str(min(100, max(0, int(score * 100))))
        expected.append(
            {
                "label": raw.names[int(cls)],
                "type": "rectangle",
                "points": box,
                "confidence": value,
                "attributes": [{"name": "confidence", "value": value}],
            }
        )
    answer = response_json(response)
    assert expected, "the tiny model found nothing: the check would prove nothing"
    assert [shape["label"] for shape in answer] == [shape["label"] for shape in expected]
    for shape, want in zip(answer, expected, strict=True):
        assert shape.keys() == want.keys()
        assert shape["confidence"] == want["confidence"]
        np.testing.assert_allclose(shape["points"], want["points"], atol=1e-3)
    handler = client.start()
    assert [spec["name"] for spec in handler.labels()] == ["coral", "rubble"]
    assert {spec["type"] for spec in handler.labels()} == {"rectangle"}


@pytest.mark.slow
def test_the_example_refuses_a_model_of_another_task(example_module, tmp_path):
    from quadratseg_handlers import ConfigError

    weights = tiny_yolo(tmp_path / "best.pt", "segment", ["coral"])
    handler = example_module.YoloDetectHandler(model_path=str(weights), device="cpu")
    with pytest.raises(ConfigError, match="task is 'segment', this function needs 'detect'"):
        handler.load()

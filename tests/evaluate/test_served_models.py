"""``quadratseg evaluate`` on the trained demo models, packaged and served as CVAT calls them,
scored on CVAT exports of held-out drawn photos; every figure checked against a count made
here from the function's own answers (asked at the served threshold, not cut from the sweep's
lowest) with the demo's scoring, and the COCO export against the XML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from quadratseg_handlers.cli.main import main
from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.exports import drawn_images, save_images, write_export
from quadratseg_handlers.demo.pipeline import CORALS, CORNERS, GRID, served_functions
from quadratseg_handlers.demo.training import MODELS, verified_models
from quadratseg_handlers.evaluate import evaluate
from quadratseg_handlers.local.client import HttpFunction, request_body

pytestmark = pytest.mark.slow

IMAGES = 4
SERVED = {
    model.function: float(model.settings.get("CONF_THRESHOLD", 0.25)) for model in MODELS.values()
}
"""The threshold each demo model is served with (its demo settings)."""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("served")
    models = verified_models(Path(__file__).resolve().parents[2] / "demo-models")
    with served_functions(
        work, work / "bundles", models, log=lambda _: None, stages=(CORNERS, GRID, CORALS)
    ) as (urls, _labels):
        yield urls, work / "bundles"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    made = {}
    for function in (CORNERS, GRID, CORALS):
        drawn = drawn_images(function, IMAGES)
        made[function] = (
            drawn,
            write_export(drawn, folder / f"{function}-cvat.zip", "cvat"),
            write_export(drawn, folder / f"{function}-coco.zip", "coco"),
        )
    return made


def _evaluate(url, export, out):
    function = Path(export).name.rsplit("-", 1)[0]
    result = evaluate(
        export, out, function_url=url, served_threshold=SERVED[function], progress=False,
        log=lambda _: None,
    )  # fmt: skip
    return result.report


def _answers(url, drawn, folder, threshold):
    """The function's answers at ``threshold``, asked here (the images as the export holds them)."""
    function = HttpFunction(url, timeout=600)
    save_images(drawn, folder)
    answers = []
    for image in drawn:
        answer = function.post(request_body(folder / image.name, threshold))
        assert answer.status == 200
        answers.append(answer.json())
    return answers


@pytest.mark.parametrize("function", [CORNERS, GRID])
def test_skeleton_figures_agree_with_a_count_from_the_answers(served, exports, function, tmp_path):
    urls, _ = served
    drawn, xml, coco = exports[function]
    report = _evaluate(urls[function], xml, tmp_path / "xml")
    label, points = drawn[0].skeletons[0][0], len(drawn[0].skeletons[0][1])
    answers = _answers(urls[function], drawn, tmp_path, SERVED[function])
    errors, right = [], []
    for image, shapes in zip(drawn, answers, strict=True):
        truth = image.skeletons[0][1]
        side = float(np.sqrt(ConvexHull(truth).volume))  # 2-D: volume is the area
        found = accuracy.skeleton_of(shapes, points)
        assert found is not None, f"{function} answered no skeleton on {image.name}"
        error = accuracy.point_errors(found, truth, side)
        errors += error.tolist()
        right.append(bool((error <= 0.02).all()))
    figures = report["labels"][label]
    for tolerance in ("0.01", "0.02", "0.05"):
        assert figures["pck"][tolerance] == pytest.approx(
            np.mean(np.asarray(errors) <= float(tolerance))
        )
    assert figures["images_within_2pct"] == pytest.approx(np.mean(right))
    assert figures["missing_skeletons"] == 0 and report["errors"] == 0
    # The demo's bars (docs/demo.md) hold here too: corners within 2 %, grid points within 1 %.
    assert figures["pck"]["0.02" if function == CORNERS else "0.01"] >= 0.95
    assert report["recommendation"]["commands"][0].startswith(
        f"quadratseg package {function.removeprefix('pth-yolo-')} WEIGHTS"
    )
    written = {path.name for path in (tmp_path / "xml").iterdir()}
    assert written >= {"report.json", "report.md", "pck.png", "worst-1.png"}
    coco_report = _evaluate(urls[function], coco, tmp_path / "coco")
    assert coco_report["labels"] == report["labels"]


def test_coral_figures_agree_with_a_count_from_the_answers(served, exports, tmp_path):
    urls, _ = served
    drawn, xml, coco = exports[CORALS]
    report = _evaluate(urls[CORALS], xml, tmp_path / "xml")
    answers = _answers(urls[CORALS], drawn, tmp_path, SERVED[CORALS])
    found = shapes = colonies = true_shapes = 0
    for image, answer in zip(drawn, answers, strict=True):
        height, width = image.image.shape[:2]
        score = accuracy.score_corals(
            accuracy.shape_instances(answer, height, width), image.instances, min_area=0
        )
        found, colonies = found + score.found, colonies + score.colonies
        true_shapes, shapes = true_shapes + score.true_shapes, shapes + score.shapes
    overall = report["instances"]
    assert (overall["tp"], overall["tp"] + overall["fn"]) == (found, colonies)
    assert overall["tp"] + overall["fp"] == shapes and true_shapes == found
    assert overall["recall"] >= 0.8 and overall["precision"] >= 0.8
    assert 0.3 < overall["map"] <= overall["ap50"] <= 1.0
    coco_report = _evaluate(urls[CORALS], coco, tmp_path / "coco")
    assert coco_report["labels"] == report["labels"]
    assert coco_report["instances"] == report["instances"]


def test_the_command_serves_a_bundle_itself(served, exports, tmp_path, capsys):
    _, bundles = served
    _, xml, _ = exports[CORALS]
    out = tmp_path / "out"
    code = main(
        ["evaluate", str(xml), "--bundle", str(bundles / f"{CORALS}.zip"), "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["served_threshold"] == SERVED[CORALS]  # read from the bundle's function.yaml
    line = report["recommendation"]["commands"][0]
    assert line.startswith("quadratseg package coralsegv4 WEIGHTS --env CONF_THRESHOLD=")
    assert f"threshold to serve:\n  {line}\n" in printed
    assert {p.name for p in out.iterdir()} >= {"report.md", "precision-recall.png", "worst-1.png"}

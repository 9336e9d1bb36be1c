"""Every detector as a cvat-sdk function, checked by cvat-sdk's own code on drawn quadrats.

Each function is loaded the way ``cvat-cli ... --function-module M -p ...`` loads it (cvat-cli's
``FunctionLoader`` and parameter parser), with the trained demo models (demo-models/) where
there is one. Its spec passes cvat-sdk's ``DetectionFunctionSpec`` checks and the agent's
``create-native`` dump; its answer for a drawn quadrat passes the checks and id mapping
``task auto-annotate`` runs (``_AnnotationMapper``) against a task labelled from ``quadratseg
labels``, and is the Nuclio answer for the same image (a real nuclio_sdk event) shape by shape.
The upload to a live CVAT server is not exercised (sdk_for_tests.py). The demo models' runs
are marked slow: they predict at length (two passes for the corners, twice per test).
"""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from cvat_cli._internal.agent_driver_detection import AgentDetectionFunctionDriver
from cvat_cli._internal.common import FunctionLoader
from cvat_cli._internal.parsers import parse_function_parameter
from cvat_sdk.auto_annotation import BadFunctionError, DetectionFunctionSpec
from PIL import Image
from sdk_for_tests import assert_same_shapes, context, mapped, task_labels

from quadratseg_handlers.core.request import encode_image
from quadratseg_handlers.cvat.spec import project_labels
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import MODELS, verified_models
from quadratseg_handlers.demo.warped import remove_string, warped_view
from quadratseg_handlers.deploy import catalog
from quadratseg_handlers.local.harness import FunctionClient, response_json
from quadratseg_handlers.sdk.function import DetectorFunction

SEED = 4_200_017
"""A drawn quadrat no demo model was trained or validated on."""

DEMO_MODELS = Path(__file__).resolve().parents[2] / "demo-models"


@pytest.fixture(scope="module")
def models():
    return verified_models(DEMO_MODELS)


@pytest.fixture(scope="module")
def scene():
    return quadrat_image((900, 675), SEED)


def demo_parameters(model: str) -> list[str]:
    """The demo model's serving settings as ``-p`` arguments (what the docs tell users)."""
    return [f"{name.lower()}=str:{value}" for name, value in MODELS[model].settings.items()]


def load(module: str, arguments: list[str]) -> DetectorFunction:
    """The function as cvat-cli loads it from ``--function-module`` and ``-p`` arguments."""
    parameters = dict(parse_function_parameter(argument) for argument in arguments)
    function = FunctionLoader(f"quadratseg_handlers.sdk.{module}", None, parameters).load()
    assert isinstance(function, DetectorFunction)
    return function


def nuclio_answer(model: str, parameters: dict[str, str], image: np.ndarray) -> list[dict]:
    """The Nuclio route's answer: the catalogued handler with the same settings as
    environment variables, one request with the image as PNG (decoded to the same pixels)."""
    client = FunctionClient(catalog.handler_class(model), parameters)
    response = client.call({"image": encode_image(image, "PNG")})
    assert response.status_code == 200, response.body
    return response_json(response)


def check_function(
    module: str,
    arguments: list[str],
    image: np.ndarray,
    *,
    conv_mask_to_poly: bool = False,
) -> list:
    """Load, check the spec, detect, compare with the Nuclio answer, map onto a task; returns
    what the task would receive."""
    function = load(module, arguments)
    spec = function.spec
    assert DetectionFunctionSpec(labels=spec.labels) == spec
    dumped = AgentDetectionFunctionDriver.get_remote_function_fields(spec)["labels_v2"]
    printed = project_labels(function.handler.labels())
    assert [label["name"] for label in dumped] == [label["name"] for label in printed]
    # what create-native registers, as the server returns it to run-agent, which checks it
    remote = json.loads(json.dumps(dumped, default=lambda value: value.value))
    driver = AgentDetectionFunctionDriver(None, None, pickle.loads(pickle.dumps(spec)))
    driver.validate_function_compatibility({"labels_v2": remote})
    annotations = function.detect(
        context(conv_mask_to_poly=conv_mask_to_poly), Image.fromarray(image)
    )
    assert annotations, f"{module} found nothing on the drawn quadrat"
    assert pickle.loads(pickle.dumps(annotations)) == annotations  # an agent's worker sends them
    settings = {a.split("=", 1)[0]: a.split(":", 1)[1] for a in arguments}
    nuclio = nuclio_answer(module, settings, image)
    size = (image.shape[1], image.shape[0])
    assert_same_shapes(annotations, spec.labels, nuclio, size, conv_mask_to_poly=conv_mask_to_poly)
    labels = task_labels(printed)
    uploaded = mapped(
        function, labels, copy.deepcopy(annotations), conv_mask_to_poly=conv_mask_to_poly
    )
    assert all(shape.frame == 7 and shape.source == "auto" for shape in uploaded)
    assert_same_shapes(uploaded, labels, nuclio, size, conv_mask_to_poly=conv_mask_to_poly)
    return uploaded


@pytest.mark.slow
def test_gridcorners_skeleton_with_its_confidence(models, scene):
    arguments = [f"model_path=str:{models['gridcorners']}", *demo_parameters("gridcorners")]
    uploaded = check_function("gridcorners", arguments, np.asarray(scene.image))
    assert [shape.type.value for shape in uploaded] == ["skeleton"]
    assert len(uploaded[0].elements) == 4
    assert len(uploaded[0].attributes) == 1  # the skeleton's confidence, by the task's id


@pytest.mark.slow
def test_gridpose_skeleton_on_the_upright_quadrat(models, scene):
    view = warped_view(scene)
    arguments = [f"model_path=str:{models['gridpose']}", *demo_parameters("gridpose")]
    uploaded = check_function("gridpose", arguments, view.image)
    assert len(uploaded) == 1 and len(uploaded[0].elements) == 117


@pytest.mark.slow
def test_gridpose_point_confidence_on_every_element(models, scene):
    view = warped_view(scene)
    arguments = [
        f"model_path=str:{models['gridpose']}",
        *demo_parameters("gridpose"),
        "point_confidence=bool:true",
    ]
    uploaded = check_function("gridpose", arguments, view.image)
    assert all(len(element.attributes) == 1 for element in uploaded[0].elements)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["coralsegv4", "coralsegbanggai"])
def test_coral_segmentation_polygons_with_genus_names_from_the_weights(models, scene, module):
    cleaned = remove_string(warped_view(scene))
    arguments = [f"model_path=str:{models['coralseg']}", *demo_parameters("coralseg")]
    uploaded = check_function(module, arguments, cleaned)
    assert {shape.type.value for shape in uploaded} == {"polygon"}


@pytest.mark.slow
def test_coral_segmentation_masks_as_cvat_run_lengths(models, scene):
    cleaned = remove_string(warped_view(scene))
    arguments = [
        f"model_path=str:{models['coralseg']}",
        *demo_parameters("coralseg"),
        "convert_to_polyline=bool:false",
    ]
    uploaded = check_function("coralsegv4", arguments, cleaned)
    assert {shape.type.value for shape in uploaded} == {"mask"}


@pytest.mark.slow
def test_masks_become_their_outline_polygons_with_conv_mask_to_poly(models, scene):
    """The masks' outlines, as CVAT makes of a Nuclio mask with "Return masks as polygons";
    the task's labels must then accept polygons: cvat-sdk refuses a mask label."""
    cleaned = remove_string(warped_view(scene))
    arguments = [
        f"model_path=str:{models['coralseg']}",
        *demo_parameters("coralseg"),
        "convert_to_polyline=bool:false",
    ]
    with pytest.raises(BadFunctionError, match="'polygon' in the function, but 'mask'"):
        check_function("coralsegv4", arguments, cleaned, conv_mask_to_poly=True)
    function = load("coralsegv4", arguments)
    printed = [{**label, "type": "any"} for label in project_labels(function.handler.labels())]
    annotations = function.detect(context(conv_mask_to_poly=True), Image.fromarray(cleaned))
    uploaded = mapped(function, task_labels(printed), annotations, conv_mask_to_poly=True)
    assert uploaded and {shape.type.value for shape in uploaded} == {"polygon"}


def test_conf_threshold_replaces_the_setting_and_zero_keeps_every_score(rect_image):
    """Blobs score their brightness: 1.0, 0.90 and 0.39 in rect_image."""
    function = load("blobs", ["conf_threshold=float:0.95", "blob_level=int:90"])
    image = Image.fromarray(rect_image)
    scores = [
        [a.attributes[0].value for a in function.detect(context(t), image)]
        for t in (None, 0.5, 0.0)
    ]
    assert scores == [["100"], ["100", "90"], ["100", "90", "39"]]


def test_the_spec_is_what_quadratseg_labels_prints(capsys):
    from quadratseg_handlers.cli.main import main

    assert main(["labels", "gridcorners"]) == 0
    printed = json.loads(capsys.readouterr().out)
    function = load("gridcorners", [f"model_path=str:{DEMO_MODELS / 'gridcorners.pt'}"])
    (label,) = function.spec.labels
    assert (label.name, label.type, label.svg) == tuple(
        printed[0][k] for k in ("name", "type", "svg")
    )
    assert [sub.name for sub in label.sublabels] == ["1", "2", "3", "4"]
    assert [sub.id for sub in label.sublabels] == [0, 1, 2, 3]
    (confidence,) = label.attributes
    assert (confidence.name, confidence.id, confidence.input_type.value, confidence.values) == (
        "confidence",
        0,
        "number",
        ["0", "100", "1"],
    )


@pytest.mark.slow
def test_coralscop_segformer_with_its_review_attributes(tmp_path, scene):
    """Tiny CoralSCoP and SegFormer models (no demo model): the genus names come from the
    SegFormer checkpoint, the answer carries the unsure and source attributes."""
    from quadratseg_handlers.demo.tinymodels.coralscop import coralscop_files

    files = coralscop_files(tmp_path)
    arguments = [
        f"segformer_weights=str:{files['segformer-weights']}",
        f"segformer_config=str:{files['segformer-config']}",
        f"sam_weights=str:{files['sam-weights']}",
        "sam_points_per_side=int:4",
        "sam_crop_n_layers=int:0",
        "sam_pred_iou_thresh=float:0",
        "sam_stability_score_thresh=float:0",
        "conf_threshold=float:0",
        "min_area=int:1",
        "device=str:cpu",
    ]
    small = np.asarray(Image.fromarray(np.asarray(scene.image)).resize((160, 120)))
    uploaded = check_function("coralscopsegformer", arguments, small)
    assert all(len(shape.attributes) == 3 for shape in uploaded)  # confidence, unsure, source


@pytest.mark.slow
def test_grid_removal_writes_cleaned_photos_for_a_new_task(models, scene, tmp_path):
    from quadratseg_handlers import LamaHandler
    from quadratseg_handlers.sdk.lama import clean_images

    view = warped_view(scene)
    photo, blank = tmp_path / "quadrat.png", tmp_path / "blank.png"
    Image.fromarray(view.image).save(photo)
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(blank)
    grid = load("gridpose", [f"model_path=str:{models['gridpose']}", *demo_parameters("gridpose")])
    remover = LamaHandler(inpaint_backend="opencv", device="cpu")
    written = clean_images([photo, blank], tmp_path / "cleaned", grid, remover)
    assert written == {photo: tmp_path / "cleaned" / "quadrat.png", blank: None}
    cleaned = np.asarray(Image.open(tmp_path / "cleaned" / "quadrat.png"))
    (skeleton,) = grid.shapes(view.image)
    assert np.array_equal(cleaned, remover.annotate(view.image, keypoints=skeleton))
    assert not np.array_equal(cleaned, view.image)
    assert sorted(p.name for p in (tmp_path / "cleaned").iterdir()) == ["quadrat.png"]
    with pytest.raises(FileExistsError):
        clean_images([photo], tmp_path / "cleaned", grid, remover)

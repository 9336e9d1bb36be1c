"""pth-mmseg-coralscopsegformer with a tiny SegFormer and a tiny CoralSCoP-style SAM.

Both models are written as real files (config + custom module + checkpoint, SAM state dict
with CoralSCoP's extra decoder heads) and loaded through the environment variables.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from quadratseg_handlers import ConfigError
from quadratseg_handlers.core.instances import Instance
from quadratseg_handlers.core.request import cvat_request
from quadratseg_handlers.cvat.acceptance import spec_problems, validate_response
from quadratseg_handlers.cvat.spec import CONFIDENCE_SPEC
from quadratseg_handlers.demo.tinymodels.sam import tiny_sam
from quadratseg_handlers.demo.tinymodels.segformer import CLASSES, tiny_segformer
from quadratseg_handlers.handlers.coralscop import (
    SOURCE_SPEC,
    UNSURE_SPEC,
    CoralScopSegformerHandler,
)
from quadratseg_handlers.local.bundle import blobs_image
from quadratseg_handlers.local.harness import FunctionClient, response_json
from quadratseg_handlers.ops.fusion import FusedInstance

GENERA = list(CLASSES[1:])
PORITES_PROBABILITY = 0.805
# Logits that give Porites 0.805 and the four other classes 0.04875 each, on every pixel.
BIAS = [0.0, 0.0, 0.0, math.log(4 * PORITES_PROBABILITY / (1 - PORITES_PROBABILITY)), 0.0]
SMALL_SAM = {
    "SAM_MODEL_TYPE": "auto",
    "SAM_POINTS_PER_SIDE": "4",
    "SAM_POINTS_PER_BATCH": "16",
    "SAM_CROP_N_LAYERS": "0",
    "SAM_PRED_IOU_THRESH": "0",
    "SAM_STABILITY_SCORE_THRESH": "0",
    "DEVICE": "cpu",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sam_path(tmp_path_factory) -> Path:
    return tiny_sam(tmp_path_factory.mktemp("sam") / "vit_b_coralscop.pth")


@pytest.fixture(scope="module")
def random_segformer(tmp_path_factory):
    return tiny_segformer(tmp_path_factory.mktemp("segformer-random"))


@pytest.fixture(scope="module")
def porites_segformer(tmp_path_factory):
    return tiny_segformer(tmp_path_factory.mktemp("segformer-porites"), class_bias=BIAS)


def environment(segformer, sam_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SEGFORMER_CONFIG": str(segformer.config),
        "SEGFORMER_WEIGHTS": str(segformer.weights),
        "SAM_WEIGHTS": str(sam_path),
        **SMALL_SAM,
        **extra,
    }


@pytest.fixture(scope="module")
def porites_handler(porites_segformer, sam_path) -> CoralScopSegformerHandler:
    # MIN_AREA=1: the random SAM's masks are a few pixels; keep them all.
    variables = environment(porites_segformer, sam_path, MIN_AREA="1")
    handler = CoralScopSegformerHandler(environ=variables)
    handler.load()
    return handler


@pytest.fixture
def image() -> np.ndarray:
    return blobs_image(96, 72, count=4, seed=3)


def set_environment(monkeypatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def start_failure(monkeypatch, variables: dict[str, str]) -> str:
    set_environment(monkeypatch, variables)
    client = FunctionClient(CoralScopSegformerHandler)
    with pytest.raises(ConfigError) as error:
        client.start()
    return str(error.value)


def test_end_to_end_through_the_environment_gives_valid_cvat_json(
    monkeypatch, random_segformer, sam_path, image
):
    set_environment(monkeypatch, environment(random_segformer, sam_path, CONF_THRESHOLD="0"))
    client = FunctionClient(CoralScopSegformerHandler)
    response = client.call(cvat_request(image))
    assert response.status_code == 200
    shapes = response_json(response)
    handler = client.start()
    assert validate_response(shapes, handler.labels(), (96, 72)) == []
    assert shapes and {shape["label"] for shape in shapes} <= set(GENERA)
    assert {shape["type"] for shape in shapes} == {"polygon"}
    assert [a["name"] for a in shapes[0]["attributes"]] == ["confidence", "unsure", "source"]


def test_exact_json_when_every_pixel_is_porites_and_no_mask_passes_the_threshold(
    porites_handler, image
):
    # Threshold 0.99 is above every predicted IoU of the random SAM: the whole image is one
    # uncovered Porites region, scored by its probability alone.
    shapes = porites_handler.annotate(image, threshold=0.99)
    assert shapes == [
        {
            "label": "Porites",
            "type": "polygon",
            "points": [0.0, 0.0, 0.0, 71.0, 95.0, 71.0, 95.0, 0.0],
            "confidence": "80",
            "attributes": [
                {"name": "confidence", "value": "80"},
                {"name": "unsure", "value": "false"},
                {"name": "source", "value": "semantic"},
            ],
        }
    ]


def test_labels_are_the_classes_minus_background_with_review_attributes(porites_handler):
    spec = porites_handler.labels()
    assert [label["name"] for label in spec] == GENERA
    assert {label["type"] for label in spec} == {"polygon"}
    assert spec[0]["attributes"] == [CONFIDENCE_SPEC, UNSURE_SPEC, SOURCE_SPEC]
    assert spec_problems(spec) == []


def test_class_probabilities_are_a_softmax_at_the_image_resolution(porites_handler, image):
    probabilities = porites_handler.class_probabilities(image)
    assert probabilities.shape == (5, 72, 96) and probabilities.dtype == np.float32
    expected = torch.softmax(torch.tensor(BIAS), 0).numpy()
    assert np.allclose(probabilities, expected[:, None, None], atol=1e-6)


def test_sam_masks_take_the_semantic_class_and_every_pixel_has_one_owner(porites_handler, image):
    probabilities = porites_handler.class_probabilities(image)
    proposals = porites_handler.mask_proposals(image)
    assert proposals, "the tiny SAM with zero thresholds proposes masks"
    instances = porites_handler.fuse(probabilities, proposals, 0.0)
    sam = [i for i in instances if i.extra["source"] == "sam"]
    assert sam
    qualities = sorted(min(1.0, max(0.0, p.quality)) for p in proposals)
    for instance in sam:
        assert instance.label == "Porites"
        assert any(
            instance.score == pytest.approx(PORITES_PROBABILITY * q, abs=1e-5) for q in qualities
        )
    owners = np.zeros((72, 96), dtype=int)
    for instance in instances:
        x, y = instance.origin
        rows, cols = instance.mask.shape
        owners[y : y + rows, x : x + cols] += instance.mask.astype(int)
    assert (owners == 1).all()  # all coral: every pixel in exactly one instance


def test_unsure_instances_carry_the_review_attribute(porites_handler):
    mask = np.ones((3, 4), dtype=bool)
    unsure = FusedInstance(3, mask, (1, 2), 0.15, 0.9, unsure=True)
    semantic = FusedInstance(1, mask, (0, 0), 0.6, None, unsure=False)
    assert porites_handler.instance(unsure) == Instance(
        "Porites", mask, 0.15 * 0.9, origin=(1, 2), extra={"unsure": "true", "source": "sam"}
    )
    assert porites_handler.instance(semantic) == Instance(
        "Acropora", mask, 0.6, origin=(0, 0), extra={"unsure": "false", "source": "semantic"}
    )


def test_the_ndarray_pipeline_is_set_once_at_load(porites_handler):
    pipeline = porites_handler.semantic.model.cfg.test_pipeline
    assert [step["type"] for step in pipeline] == [
        "LoadImageFromNDArray",
        "Resize",
        "PackSegInputs",
    ]


def test_custom_modules_next_to_the_config_are_imported(porites_handler):
    backbone = porites_handler.semantic.model.backbone
    assert (type(backbone).__name__, type(backbone).__module__) == (
        "TinyCoralMiT",
        "tiny_coral_backbone",
    )


def test_a_checkpoint_without_class_names_stops_start_up(monkeypatch, tmp_path, sam_path):
    bare = tiny_segformer(tmp_path, dataset_meta=False)
    message = start_failure(monkeypatch, environment(bare, sam_path))
    assert message.startswith(f"SEGFORMER_WEIGHTS={bare.weights}: the checkpoint has no class")


def test_unknown_background_class_stops_start_up(monkeypatch, random_segformer, sam_path):
    message = start_failure(
        monkeypatch, environment(random_segformer, sam_path, BACKGROUND_CLASSES="sand, rock")
    )
    assert message == (
        "BACKGROUND_CLASSES=sand, rock: sand, rock not among the model's classes "
        "(background, Acropora, Pocillopora, Porites, Montipora); set BACKGROUND_CLASSES to "
        "its non-coral classes, or to `none` when every class is coral"
    )


def test_a_missing_sam_tensor_stops_start_up(monkeypatch, tmp_path, random_segformer, sam_path):
    state = torch.load(sam_path, weights_only=True)
    del state["mask_decoder.iou_prediction_head.layers.2.bias"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    message = start_failure(monkeypatch, environment(random_segformer, broken))
    assert message == (
        f"SAM_WEIGHTS={broken}: 1 tensor(s) the SAM model needs are missing: "
        "mask_decoder.iou_prediction_head.layers.2.bias"
    )


def test_missing_bundle_files_are_named_at_start_up():
    handler = CoralScopSegformerHandler(environ={}, device="cpu")
    with pytest.raises(ConfigError) as error:
        handler.load()
    assert str(error.value) == (
        "SEGFORMER_CONFIG=/opt/nuclio/best_segformer_config.py: file not found"
    )


def test_min_threshold_above_unsure_threshold_is_refused():
    with pytest.raises(ConfigError, match="MIN_THRESHOLD=0.3 is above UNSURE_THRESHOLD=0.2"):
        CoralScopSegformerHandler(environ={}, min_threshold=0.3, device="cpu")


@pytest.mark.parametrize("size", [(64, 48), (1, 1)])
def test_shipped_sam_crop_layer_answers_200_when_no_mask_survives(random_segformer, sam_path, size):
    # The shipped SAM_CROP_N_LAYERS=1, SAM_PRED_IOU_THRESH and SAM_STABILITY_SCORE_THRESH;
    # only the prompt grid is small. No mask of the random SAM passes the shipped thresholds,
    # which made segment-anything's crop de-duplication raise IndexError (answered 500).
    variables = {
        "SEGFORMER_CONFIG": str(random_segformer.config),
        "SEGFORMER_WEIGHTS": str(random_segformer.weights),
        "SAM_WEIGHTS": str(sam_path),
        "SAM_POINTS_PER_SIDE": "2",
        "DEVICE": "cpu",
    }
    client = FunctionClient(CoralScopSegformerHandler, variables)
    handler = client.start()
    assert handler.settings.sam_crop_n_layers == 1
    uniform = np.full((size[1], size[0], 3), 120, dtype=np.uint8)
    assert handler.mask_proposals(uniform) == []
    response = client.call(cvat_request(uniform))
    assert response.status_code == 200
    shapes = response_json(response)
    assert validate_response(shapes, handler.labels(), size) == []
    assert {a["value"] for s in shapes for a in s["attributes"] if a["name"] == "source"} <= {
        "semantic"
    }


CRIOBE_GENERA = (
    "Acanthastrea", "Acropora", "Astreopora", "Atrea", "Fungia", "Goniastrea", "Leptastrea",
    "Merulinidae", "Millepora", "Montastrea", "Montipora", "Other", "Pavona/Leptoseris",
    "Pocillopora", "Porites", "Psammocora",
)  # fmt: skip


def test_the_16_criobe_genera_without_background_need_background_classes_none(
    monkeypatch, tmp_path, sam_path
):
    segformer = tiny_segformer(tmp_path / "criobe", classes=CRIOBE_GENERA)
    variables = environment(segformer, sam_path, CONF_THRESHOLD="0", MIN_AREA="1")
    message = start_failure(monkeypatch, variables)
    assert message.startswith("BACKGROUND_CLASSES=background: background not among")
    assert "or to `none` when every class is coral" in message
    client = FunctionClient(CoralScopSegformerHandler, {**variables, "BACKGROUND_CLASSES": "none"})
    handler = client.start()
    labels = handler.labels()
    assert [label["name"] for label in labels] == list(CRIOBE_GENERA)
    assert spec_problems(labels) == []
    image = blobs_image(96, 72, count=4, seed=3)
    shapes = response_json(client.call(cvat_request(image)))
    assert shapes and {shape["label"] for shape in shapes} <= set(CRIOBE_GENERA)
    from quadratseg_handlers import cvat

    assert cvat.cvat_keeps(shapes, labels, cvat.project_labels(labels)) == shapes

"""The demo models' data sets, seeds and manifest (nothing is trained here: training never runs
in `make test`; the committed weights are checked against their manifest instead)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from quadratseg_handlers.cli.main import build_parser
from quadratseg_handlers.demo.datasets import draw_example, write_dataset
from quadratseg_handlers.demo.reef_photos import HELD_OUT_SOURCES
from quadratseg_handlers.demo.synthetic import GENERA
from quadratseg_handlers.demo.training import (
    MANIFEST,
    MODELS,
    TEST_SEEDS,
    DemoModel,
    DemoModelsError,
    read_manifest,
    verified_models,
)

WEIGHTS_BUDGET = 25 * 1024 * 1024


def test_training_validation_and_test_seeds_are_disjoint():
    """Every run's training photos (a refinement may draw more) included."""
    ranges = []
    for model in MODELS.values():
        drawn = [step.data_model(model) for step in model.refinements]
        training = max((model, *drawn), key=lambda m: m.train_images).train_seeds
        assert all(set(m.train_seeds) <= set(training) for m in drawn)
        validation = max((model, *drawn), key=lambda m: m.val_images).val_seeds
        ranges += [training, validation]
    seen: set[int] = set()
    for seeds in ranges:
        assert not seen & set(seeds)
        seen |= set(seeds)
    assert max(seen) < TEST_SEEDS


@pytest.mark.parametrize("name", list(MODELS))
def test_examples_carry_yolo_labels_of_their_task(name):
    model = MODELS[name]
    image, lines = draw_example(model, model.train_seeds.start)
    assert image.dtype == np.uint8 and image.ndim == 3
    assert lines
    for line in lines:
        fields = line.split()
        assert 0 <= int(fields[0]) < len(model.names)
        values = np.array(fields[1:], dtype=float)
        assert ((values >= 0) & (values <= 1)).all()
        assert len(values) == 4 if model.task == "detect" else len(values) >= 6
    if name == "gridcorners":
        assert len(lines) == 4
    if name == "gridpose":
        assert len(lines) == 117


def test_a_data_set_is_written_in_ultralytics_layout(tmp_path):
    small = DemoModel("gridpose", "detect", ("point",), 320, 2, 1, 1, 1, "pth-yolo-gridpose")
    data = write_dataset(small, tmp_path, log=lambda line: None)
    config = json.loads(data.read_text())
    assert config["names"] == {"0": "point"}
    assert len(list((tmp_path / "images" / "train").iterdir())) == 2
    assert len(list((tmp_path / "labels" / "val").iterdir())) == 1
    lines: list[str] = []
    assert write_dataset(small, tmp_path, log=lines.append) == data
    assert "reusing" in lines[0]


def test_the_committed_models_match_their_manifest_and_budget(committed_models):
    found = verified_models(committed_models)
    assert set(found) == set(MODELS)
    assert sum(path.stat().st_size for path in found.values()) <= WEIGHTS_BUDGET
    manifest = read_manifest(committed_models)
    for name, model in MODELS.items():
        entry = manifest["models"][name]
        assert entry["names"] == list(model.names)
        assert entry["train_seeds"][1] < TEST_SEEDS and entry["validation"]
        assert entry["epochs"] > 0 and entry["train_minutes"] > 0
        runs = entry["refinements"]
        assert [run["epochs"] for run in runs] == [step.epochs for step in model.refinements]
        for run, step in zip(runs, model.refinements, strict=True):
            assert run["args"] == step.args(model.imgsz) and run["minutes"] > 0
            assert run["train_images"] == step.data_model(model).train_images
            assert ("initialised_from" in run) == step.reef
            assert run.get("frames") == (list(step.frames) if step.frames else None)
        if any(step.reef for step in model.refinements):
            real = entry["real_photos"]
            assert real["sources_held_out"] == list(HELD_OUT_SOURCES)
            assert real["sources_seen"] and not set(real["sources_seen"]) & set(HELD_OUT_SOURCES)
    assert manifest["models"]["coralseg"]["names"] == list(GENERA)


def test_missing_or_altered_weights_are_refused(tmp_path, committed_models):
    with pytest.raises(DemoModelsError) as caught:
        verified_models(tmp_path)
    assert str(caught.value).startswith(
        f"{tmp_path / MANIFEST}: no manifest; for a lab's own models write manifest.json next "
        'to them: {"models": {"gridcorners": {"file": "gridcorners.pt", "sha256": '
    )
    copy = tmp_path / "copy"
    shutil.copytree(committed_models, copy)
    (copy / MODELS["gridpose"].file).write_bytes(b"not the trained weights")
    with pytest.raises(DemoModelsError, match="SHA-256 differs"):
        verified_models(copy)
    (copy / MANIFEST).write_text("{")
    with pytest.raises(DemoModelsError, match="not a readable manifest"):
        verified_models(copy)


def test_a_model_that_starts_from_another_needs_it_first(tmp_path):
    from quadratseg_handlers.demo.training import train_model

    with pytest.raises(ValueError, match="train gridpose first"):
        train_model(MODELS["gridcorners"], tmp_path / "work", tmp_path / "out")
    assert not (tmp_path / "work").exists()


def test_train_demo_help_states_the_recorded_training_time(committed_models):
    """The manifest's minutes (first runs and refinements) add up to about 6 hours, as the
    command's help says."""
    manifest = read_manifest(committed_models)
    minutes = sum(
        entry["train_minutes"] + sum(run["minutes"] for run in entry.get("refinements", []))
        for entry in manifest["models"].values()
    )
    assert 5.5 * 60 <= minutes <= 6.5 * 60
    assert "train-demo" in build_parser().format_help()
    help_text = " ".join(build_parser().format_help().split())
    assert "retrain the demo models on drawn quadrats (about 6 hours on 2 CPU cores)" in help_text

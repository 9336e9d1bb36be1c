"""Pickled weights are checked before anything loads them: a crafted checkpoint's code never
runs (in a handler's start-up, ``quadratseg package`` or a served worker) unless
TRUST_WEIGHTS says the file is trusted; real checkpoints pass."""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from bundles_for_tests import write_bundle

from quadratseg_handlers.backends.checkpoints import check_checkpoint, is_allowed, trust_setting
from quadratseg_handlers.backends.mmseg import load_semantic_model
from quadratseg_handlers.cli.main import main
from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.demo.tinymodels.segformer import tiny_segformer
from quadratseg_handlers.demo.tinymodels.yolo import tiny_yolo
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.deploy.rendering import render_main
from quadratseg_handlers.handlers.yolo import CoralSegV4Handler
from quadratseg_handlers.local.server import BackgroundServer, ServeError


class CreateFile:
    """Unpickling this opens ``path`` for writing: the file appears if the pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A torch checkpoint shaped like ultralytics' whose model is the payload."""
    torch.save({"model": CreateFile(marker), "train_args": {"task": "segment"}}, path)
    return path


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "ran.txt"
    return crafted_checkpoint(tmp_path / "best.pt", marker), marker


def test_a_crafted_yolo_checkpoint_is_refused_before_its_code_runs(crafted):
    weights, marker = crafted
    handler = CoralSegV4Handler(environ={"MODEL_PATH": str(weights), "DEVICE": "cpu"})
    with pytest.raises(ConfigError) as refused:
        handler.load()
    message = str(refused.value)
    assert message.startswith(f"MODEL_PATH={weights}: refusing to load: its pickle calls ")
    assert "io.open" in message and "TRUST_WEIGHTS=true" in message
    assert not marker.exists()


def test_trust_weights_loads_the_pickle_unchecked(crafted):
    weights, marker = crafted
    environ = {"MODEL_PATH": str(weights), "DEVICE": "cpu", "TRUST_WEIGHTS": "true"}
    with pytest.raises(ConfigError, match="not a model ultralytics can load"):
        CoralSegV4Handler(environ=environ).load()
    assert marker.exists()  # the payload is live: only the check kept it from running


def test_a_crafted_mmseg_checkpoint_is_refused(tmp_path):
    files = tiny_segformer(tmp_path / "segformer")
    marker = tmp_path / "ran.txt"
    weights = crafted_checkpoint(tmp_path / "best_segformer.pth", marker)
    with pytest.raises(ConfigError, match=r"^SEGFORMER_WEIGHTS=.*refusing to load.*io\.open"):
        load_semantic_model(files.config, weights, "cpu")
    assert not marker.exists()
    check_checkpoint(files.weights, "SEGFORMER_WEIGHTS")  # the real one passes


def test_real_ultralytics_checkpoints_pass(tmp_path):
    for task in ("segment", "detect", "pose"):
        check_checkpoint(tiny_yolo(tmp_path / f"{task}.pt", task, ["a", "b"]), "MODEL_PATH")


def test_a_cut_short_pickle_is_refused(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(OrderedDict(weight=torch.zeros(3)), whole)
    weights = tmp_path / "cut.pt"
    with zipfile.ZipFile(whole) as source, zipfile.ZipFile(weights, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(
                info, data[: len(data) // 2] if info.filename.endswith(".pkl") else data
            )
    with pytest.raises(ConfigError, match=r"^MODEL_PATH=.*cut\.pt: refusing to load: .*malformed"):
        check_checkpoint(weights, "MODEL_PATH")


@pytest.mark.parametrize(
    ("module", "name", "allowed"),
    [
        ("torch._utils", "_rebuild_tensor_v2", True),
        ("torch", "HalfStorage", True),
        ("torch", "float16", True),
        ("ultralytics.nn.modules.conv", "Conv", True),
        ("torch.nn.modules.conv", "Conv2d", True),
        ("numpy._core.multiarray", "_reconstruct", True),
        ("torch", "load", False),
        ("ultralytics.nn.tasks", "torch_safe_load", False),
        ("ultralytics.nn.tasks", "SegmentationModel.load", False),
        ("builtins", "getattr", False),
        ("os", "system", False),
        ("subprocess", "Popen", False),
        ("ultralytics.nn.absent", "Nothing", False),
    ],
)
def test_allowed_globals(module, name, allowed):
    assert is_allowed(module, name) is allowed


def test_package_refuses_a_crafted_checkpoint_in_one_line(crafted, tmp_path, capsys):
    weights, marker = crafted
    output = tmp_path / "nuclio.zip"
    code = main(["package", "coralsegv4", str(weights), "--output", str(output)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not marker.exists() and not output.exists()
    assert len(lines) == 1 and "refusing to load: its pickle calls io.open" in lines[0]
    assert str(weights) in lines[0]


def test_trust_setting_passes_only_a_declared_setting():
    assert trust_setting({"TRUST_WEIGHTS"}, {"TRUST_WEIGHTS": "true"}) == {"TRUST_WEIGHTS": "true"}
    assert trust_setting({"MODEL_PATH"}, {"TRUST_WEIGHTS": "true"}) == {}
    assert trust_setting({"TRUST_WEIGHTS"}, {}) == {}


@pytest.mark.slow
def test_a_served_worker_refuses_a_crafted_checkpoint(crafted, tmp_path):
    weights, marker = crafted
    spec = FUNCTIONS["pth-yolo-coralsegv4"]
    folder = write_bundle(tmp_path / "bundle", render_main(spec), env={"MODEL_PATH": str(weights)})
    with pytest.raises(ServeError, match=r"failed to start: ConfigError: MODEL_PATH=.*refusing"):
        BackgroundServer(read_function_config(folder)).start()
    assert not marker.exists()


def test_a_segformer_of_another_size_loads_through_the_same_checks(tmp_path):
    """The benchmarks' SegFormer-B2 size is the tests' model with other widths and depths."""
    from quadratseg_handlers.demo.tinymodels.segformer import MiT

    files = tiny_segformer(tmp_path / "mid", size=MiT(32, (2, 1, 1, 1), 64))
    check_checkpoint(files.weights, "SEGFORMER_WEIGHTS")
    network = load_semantic_model(files.config, files.weights, "cpu").model
    assert network.backbone.embed_dims == 32 and len(network.backbone.layers[0][1]) == 2
    assert network.decode_head.in_channels == [32, 64, 160, 256]
    assert network.decode_head.channels == 64

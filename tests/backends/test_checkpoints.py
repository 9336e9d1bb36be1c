"""Pickled weights are read by an unpickler that rebuilds and never calls what it should only
rebuild: a hostile checkpoint's code never runs (in a handler's start-up, ``quadratseg
package``, ``validate`` or a served worker) unless TRUST_WEIGHTS says the file is trusted; real
checkpoints load as they did.

Each hostile file is built here and proven live: loaded with TRUST_WEIGHTS its payload creates
the marker file."""

from __future__ import annotations

import contextlib
import copyreg
import io
import pickle
import shutil
import tarfile
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from bundles_for_tests import write_bundle

from quadratseg_handlers.backends.checkpoints import (
    load_checkpoint,
    torchscript_problem,
    trust_setting,
)
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


class Call:
    """Pickles as ``func(*args)``: what a crafted pickle's REDUCE does."""

    def __init__(self, func: Callable, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def yolo_shaped(path: Path, model: object) -> Path:
    """A torch checkpoint shaped like ultralytics' whose model is the payload."""
    torch.save({"model": model, "train_args": {"task": "segment"}}, path)
    return path


def classic(path: Path, marker: Path) -> Path:
    """The model is ``open(marker, "w")``."""
    return yolo_shaped(path, Call(open, str(marker), "w"))


def tar_format(path: Path, marker: Path) -> Path:
    """torch's legacy tar archive; its ``storages`` record unpickles ``os.system``."""
    import os

    payload = pickle.dumps(Call(os.system, f"touch {marker}"), protocol=2)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in (("storages", payload), ("tensors", payload), ("pickle", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def shell_backbone(marker: Path) -> dict[str, object]:
    """An MMEngine model config whose backbone is ``subprocess.run`` (the registry imports it)."""
    return {"type": "subprocess.run", "args": f"touch {marker}", "shell": True}


def encoder_decoder(path: Path, marker: Path) -> Path:
    """mmseg's ``EncoderDecoder`` called (REDUCE) with a shell command for a backbone."""
    from mmseg.models.segmentors import EncoderDecoder

    return yolo_shaped(path, Call(EncoderDecoder, shell_backbone(marker), {"type": "head"}))


def reconstructor(path: Path, marker: Path) -> Path:
    """The same through ``copyreg._reconstructor``, which runs ``base.__init__(obj, state)``:
    mmseg's ``SegTTAModel`` builds the model it wraps from its one argument."""
    from mmseg.models.segmentors import SegTTAModel

    gadget = Call(copyreg._reconstructor, SegTTAModel, SegTTAModel, shell_backbone(marker))
    return yolo_shaped(path, gadget)


def second_file(path: Path, marker: Path) -> Path:
    """ultralytics' ``AutoBackend`` called with a second, classic, checkpoint."""
    from ultralytics.nn.autobackend import AutoBackend

    second = classic(path.with_name("second.pt"), marker)
    return yolo_shaped(path, Call(AutoBackend, str(second)))


HOSTILE = {
    "classic": (classic, "its pickle names io.open"),
    "tar": (tar_format, "a legacy torch tar archive"),
    "encoder_decoder": (encoder_decoder, "its pickle names mmseg.models.segmentors."),
    "reconstructor": (reconstructor, "its pickle names mmseg.models.segmentors."),
    "second_file": (second_file, "its pickle names ultralytics.nn.autobackend.AutoBackend"),
}


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request, tmp_path) -> tuple[Path, Path, str]:
    """(weights, marker, what the refusal says) for each hostile checkpoint."""
    build, reason = HOSTILE[request.param]
    marker = tmp_path / "ran.txt"
    return build(tmp_path / "best.pt", marker), marker, reason


@pytest.mark.slow
def test_every_hostile_checkpoint_runs_its_payload_when_trusted(hostile):
    weights, marker, _ = hostile
    with contextlib.suppress(ConfigError):  # the payload ran; what it built is no checkpoint
        load_checkpoint(weights, "MODEL_PATH", trusted=True)
    assert marker.exists()


def test_a_hostile_yolo_checkpoint_is_refused_before_its_code_runs(hostile):
    weights, marker, reason = hostile
    handler = CoralSegV4Handler(environ={"MODEL_PATH": str(weights), "DEVICE": "cpu"})
    with pytest.raises(ConfigError) as refused:
        handler.load()
    message = str(refused.value)
    assert message.startswith(f"MODEL_PATH={weights}: refusing to load: {reason}")
    assert "TRUST_WEIGHTS=true" in message and "\n" not in message
    assert not marker.exists()


def test_package_refuses_a_hostile_checkpoint_in_one_line(hostile, tmp_path, capsys):
    weights, marker, reason = hostile
    output = tmp_path / "nuclio.zip"
    code = main(["package", "coralsegv4", str(weights), "--output", str(output)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not marker.exists() and not output.exists()
    assert len(lines) == 1 and f"{weights}: refusing to load: {reason}" in lines[0]


def test_trust_weights_loads_the_pickle_unchecked(tmp_path):
    marker = tmp_path / "ran.txt"
    weights = classic(tmp_path / "best.pt", marker)
    environ = {"MODEL_PATH": str(weights), "DEVICE": "cpu", "TRUST_WEIGHTS": "true"}
    with pytest.raises(ConfigError, match="not a model ultralytics can load"):
        CoralSegV4Handler(environ=environ).load()
    assert marker.exists()  # the payload is live: only the check kept it from running


@pytest.mark.parametrize("task", ["segment", "detect", "pose"])
def test_an_allowed_model_class_is_rebuilt_never_called(tmp_path, task):
    """ultralytics' own model classes may be rebuilt; calling one (REDUCE, or through
    copyreg._reconstructor's ``base.__init__``) is refused."""
    from ultralytics.nn import tasks

    model = {"segment": tasks.SegmentationModel, "detect": tasks.DetectionModel}.get(
        task, tasks.PoseModel
    )
    name = f"ultralytics.nn.tasks.{model.__name__}"
    called = yolo_shaped(tmp_path / "called.pt", Call(model, {"backbone": []}))
    with pytest.raises(ConfigError, match=rf"refusing to load: its pickle calls {name} \(a class"):
        load_checkpoint(called, "MODEL_PATH")
    rebuilt = Call(copyreg._reconstructor, model, model, {"backbone": []})
    with pytest.raises(ConfigError, match=r"its pickle calls copyreg._reconstructor"):
        load_checkpoint(yolo_shaped(tmp_path / "init.pt", rebuilt), "MODEL_PATH")
    real = load_checkpoint(tiny_yolo(tmp_path / f"{task}.pt", task, ["a", "b"]), "MODEL_PATH")
    assert type(real["model"]) is model


def test_the_model_is_read_once_and_handed_to_ultralytics(tmp_path, monkeypatch):
    """ultralytics gets the checked checkpoint: its own reader (which unpickles anything) is
    replaced while the YOLO is built, and put back afterwards."""
    from ultralytics.nn import tasks

    original = tasks.torch_safe_load
    reads: list[Path] = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(Path(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    weights = tiny_yolo(tmp_path / "segment.pt", "segment", ["a", "b"])
    handler = CoralSegV4Handler(environ={"MODEL_PATH": str(weights), "DEVICE": "cpu"})
    handler.load()
    assert reads == [weights] and tasks.torch_safe_load is original


def test_a_hostile_mmseg_checkpoint_is_refused(tmp_path):
    files = tiny_segformer(tmp_path / "segformer")
    marker = tmp_path / "ran.txt"
    weights = encoder_decoder(tmp_path / "best_segformer.pth", marker)
    with pytest.raises(ConfigError, match=r"^SEGFORMER_WEIGHTS=.*refusing to load: its pickle"):
        load_semantic_model(files.config, weights, "cpu")
    assert not marker.exists()
    assert set(load_checkpoint(files.weights, "SEGFORMER_WEIGHTS")) == {"state_dict", "meta"}


def test_real_checkpoints_load_as_plain_torch_loads_them(tmp_path):
    """The demo models, the tiny models of every family and an MMEngine runner checkpoint
    (message hub, NumPy history, config dict) come back equal to ``torch.load``'s."""
    from mmengine.config import ConfigDict
    from mmengine.logging import MessageHub

    from quadratseg_handlers.demo.tinymodels.sam import tiny_sam

    hub = MessageHub("test-hub")
    hub.update_scalar("train/loss", 0.5)
    runner = tmp_path / "runner.pth"
    torch.save(
        {
            "meta": {"cfg": ConfigDict(a=1), "epoch": 3},
            "state_dict": OrderedDict(w=torch.ones(2)),
            "message_hub": hub.state_dict(),
        },
        runner,
    )
    files = [
        *sorted(Path("demo-models").glob("*.pt")),
        *(tiny_yolo(tmp_path / f"{t}.pt", t, ["a", "b"]) for t in ("segment", "detect", "pose")),
        tiny_segformer(tmp_path / "segformer").weights,
        tiny_sam(tmp_path / "sam.pth"),
        runner,
    ]
    assert len(files) == 9
    for path in files:
        assert flat(load_checkpoint(path, "WEIGHTS")) == flat(torch.load(path, weights_only=False))


def flat(value: object) -> object:
    """A comparable form of a loaded checkpoint: modules by their state, tensors as bytes."""
    if isinstance(value, torch.nn.Module):
        return (type(value), flat(dict(value.state_dict())), sorted(vars(value)))
    if isinstance(value, torch.Tensor):
        return (value.dtype, tuple(value.shape), value.numpy().tobytes())
    if isinstance(value, dict):
        return {key: flat(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [flat(item) for item in value]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return (type(value), flat(vars(value)))
    if type(value).__module__ == "numpy":
        return repr(value)
    return value


def test_the_legacy_format_is_read_by_the_same_unpickler(tmp_path):
    real = tmp_path / "legacy.pt"
    torch.save(OrderedDict(w=torch.arange(3.0)), real, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(real, "MODEL_PATH")["w"], torch.arange(3.0))
    marker = tmp_path / "ran.txt"
    hostile = tmp_path / "hostile.pt"
    torch.save(Call(open, str(marker), "w"), hostile, _use_new_zipfile_serialization=False)
    with pytest.raises(ConfigError, match=r"refusing to load: its pickle names io.open"):
        load_checkpoint(hostile, "MODEL_PATH")
    assert not marker.exists()


def test_a_torchscript_archive_is_not_a_checkpoint(tmp_path):
    script = tmp_path / "script.pt"
    torch.jit.script(torch.nn.ReLU()).save(str(script))
    with pytest.raises(ConfigError, match=r"^MODEL_PATH=.*: refusing to load: a TorchScript"):
        load_checkpoint(script, "MODEL_PATH")


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
    with pytest.raises(ConfigError, match=r"^MODEL_PATH=.*cut\.pt: cannot read .*cut short"):
        load_checkpoint(weights, "MODEL_PATH")


def test_trust_setting_passes_only_a_declared_setting():
    assert trust_setting({"TRUST_WEIGHTS"}, {"TRUST_WEIGHTS": "true"}) == {"TRUST_WEIGHTS": "true"}
    assert trust_setting({"MODEL_PATH"}, {"TRUST_WEIGHTS": "true"}) == {}
    assert trust_setting({"TRUST_WEIGHTS"}, {}) == {}


@pytest.mark.slow
def test_a_served_worker_refuses_a_hostile_checkpoint(hostile, tmp_path):
    weights, marker, reason = hostile
    spec = FUNCTIONS["pth-yolo-coralsegv4"]
    folder = write_bundle(tmp_path / "bundle", render_main(spec), env={"MODEL_PATH": str(weights)})
    with pytest.raises(ServeError, match=rf"failed to start: ConfigError: MODEL_PATH=.*{reason}"):
        BackgroundServer(read_function_config(folder)).start()
    assert not marker.exists()


def test_an_onnx_export_cannot_read_a_file_outside_its_folder(tmp_path):
    """ONNX keeps large tensors in side files named by the model; one outside the model's
    folder (``../``, absolute, or a link out) is refused by ONNX Runtime at start-up."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (tmp_path / "secret.bin").write_bytes(b"secret")
    weights = numpy_helper.from_array(np.zeros(1, np.float32), "w")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value="../secret.bin")
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph(
        [helper.make_node("Add", ["images", "w"], ["y"])], "g", [image], [out], [weights]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    metadata = {"task": "segment", "imgsz": "[64, 64]", "names": "{0: 'a'}", "stride": "32"}
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / "model" / "best.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path))
    handler = CoralSegV4Handler(environ={"MODEL_PATH": str(path), "DEVICE": "cpu"})
    with pytest.raises(ConfigError, match=rf"^MODEL_PATH={path}: .*escapes model directory"):
        handler.load()


@pytest.fixture(scope="module")
def packaged_yolo(tmp_path_factory) -> Path:
    """A coralsegv4 bundle packaged from a real tiny checkpoint, unpacked."""
    folder = tmp_path_factory.mktemp("packaged")
    weights = tiny_yolo(folder / "real" / "best.pt", "segment", ["a", "b"])
    archive = folder / "nuclio.zip"
    assert main(["package", "coralsegv4", str(weights), "--output", str(archive)]) == 0
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(folder / "unpacked")
    return folder / "unpacked" / "nuclio"


@pytest.mark.slow
def test_validate_refuses_a_bundle_whose_weights_were_swapped(
    packaged_yolo, hostile, tmp_path, capsys
):
    """validate's run of main.py refuses the hostile file: one line, exit 1 as for every
    problem validate finds in a bundle (docs/tools.md)."""
    weights, marker, reason = hostile
    bundle = tmp_path / "bundle"
    shutil.copytree(packaged_yolo, bundle)
    shutil.copyfile(weights, bundle / "best.pt")
    code = main(["validate", str(bundle)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not marker.exists()
    assert len(lines) == 1 and f"{bundle / 'best.pt'}: refusing to load: {reason}" in lines[0]


class WritingInpainter(torch.nn.Module):
    """A TorchScript "big-lama" whose forward writes a file (torch's ``save`` is an operator)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        torch.ops.aten.save(image, self.marker)
        return image


def test_a_torchscript_lama_that_writes_files_is_refused(tmp_path):
    from lama_for_tests import tiny_lama_file

    from quadratseg_handlers.backends.inpainting import LamaBackend

    marker = tmp_path / "written.pt"
    model = tmp_path / "big-lama.pt"
    torch.jit.script(WritingInpainter(str(marker))).save(str(model))
    with pytest.raises(ValueError, match=r"^refusing to load: its TorchScript code .* calls save"):
        LamaBackend(model)
    assert not marker.exists()
    torch.jit.load(str(model))(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 8))
    assert marker.exists()  # the file is live: only the check kept it from running
    assert torchscript_problem(tiny_lama_file(tmp_path)) is None


def test_a_segformer_of_another_size_loads_through_the_same_checks(tmp_path):
    """The benchmarks' SegFormer-B2 size is the tests' model with other widths and depths."""
    from quadratseg_handlers.demo.tinymodels.segformer import MiT

    files = tiny_segformer(tmp_path / "mid", size=MiT(32, (2, 1, 1, 1), 64))
    network = load_semantic_model(files.config, files.weights, "cpu").model
    assert network.backbone.embed_dims == 32 and len(network.backbone.layers[0][1]) == 2
    assert network.decode_head.in_channels == [32, 64, 160, 256]
    assert network.decode_head.channels == 64

"""``-p`` parameters: the settings' names in lower case, the settings' checks, one line each.

cvat-cli loads a function module by calling its ``create(**parameters)`` (``FunctionLoader``),
the values typed by ``-p name=type:value`` (``parse_function_parameter``). cvat-cli prints a
traceback for any exception a module raises, so ``create`` answers a bad parameter with one
line on stderr and exit status 2.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from cvat_cli._internal.common import FunctionLoader
from cvat_cli._internal.parsers import parse_function_parameter

from quadratseg_handlers.sdk.function import (
    REQUEST_LIMITS,
    ParameterError,
    detection_function,
    parameter_names,
)
from quadratseg_handlers.sdk.gridcorners import create

DEMO_MODELS = Path(__file__).resolve().parents[2] / "demo-models"
CORNERS = f"model_path=str:{DEMO_MODELS / 'gridcorners.pt'}"


def load(module: str, *arguments: str):
    parameters = dict(parse_function_parameter(argument) for argument in arguments)
    return FunctionLoader(f"quadratseg_handlers.sdk.{module}", None, parameters).load()


@pytest.mark.parametrize(
    ("module", "arguments", "line"),
    [
        (
            "gridcorners",
            [CORNERS, "conf_threshold=float:1.5"],
            "pth-yolo-gridcorners: parameter conf_threshold=1.5: must be <= 1.0",
        ),
        (
            "gridcorners",
            [CORNERS, "refine_corners=str:maybe"],
            "pth-yolo-gridcorners: parameter refine_corners='maybe': expected true or false",
        ),
        (
            "gridcorners",
            [CORNERS, "use_template_matching=bool:false", "fit_frame_bars=bool:true"],
            "pth-yolo-gridcorners: parameter fit_frame_bars=true needs "
            "use_template_matching=true: it warps the quadrat from its ordered corners",
        ),
        (
            "gridcorners",
            [],
            "pth-yolo-gridcorners: missing parameter model_path (YOLO detection (or pose) "
            "weights): -p model_path=str:PATH",
        ),
        (
            "coralsegv4",
            ["model_path=str:absent.pt"],
            "pth-yolo-coralsegv4: parameter model_path='absent.pt': file not found: absent.pt",
        ),
        ("blobs", ["blob_level=int:0"], "example-blobs: parameter blob_level=0: must be >= 1"),
        (
            "lama",
            [],
            "pth-lama is not a detector (it answers an image, not shapes): cvat-sdk "
            "auto-annotation functions answer shapes; see docs/cvat-sdk.md",
        ),
    ],
)
def test_a_bad_parameter_is_one_line_and_exit_status_2(capsys, module, arguments, line):
    with pytest.raises(SystemExit) as stopped:
        load(module, *arguments)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == line + "\n"


def test_an_unknown_parameter_is_named_with_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        load("blobs", "conf=float:0.3")
    line = capsys.readouterr().err
    assert line.startswith("example-blobs: unknown parameter conf; known: device, conf_threshold,")
    assert line.count("\n") == 1


def test_the_request_limits_are_not_parameters():
    names = parameter_names(type(detection_function("blobs", {}).handler))
    assert names[:2] == ["device", "conf_threshold"]
    assert not set(names) & {limit.lower() for limit in REQUEST_LIMITS}
    with pytest.raises(ParameterError, match="unknown parameter max_batch_size"):
        detection_function("blobs", {"max_batch_size": 4})


def test_typed_values_take_the_settings_parsers():
    blobs = load("blobs", "convert_to_polyline=bool:false", "min_area=int:3", "device=str:cpu")
    settings = blobs.handler.settings
    assert (settings.convert_to_polyline, settings.min_area, settings.device) == (False, 3, "cpu")
    assert load("blobs", "min_area=str:7").handler.settings.min_area == 7
    assert load("blobs", "Blob_Level=int:90").handler.settings.blob_level == 90


def test_the_environment_is_not_read(monkeypatch):
    monkeypatch.setenv("BLOB_LEVEL", "0")
    assert detection_function("blobs", {}).handler.settings.blob_level == 200


def test_create_without_cvat_cli_exits_the_same_way(capsys):
    with pytest.raises(SystemExit):
        create(model_path=str(DEMO_MODELS / "gridcorners.pt"), min_matches=9)
    assert capsys.readouterr().err == (
        "pth-yolo-gridcorners: parameter min_matches=9: more than the 4 points of the template\n"
    )


def test_only_the_sdk_layer_imports_cvat_sdk():
    """The Nuclio path (handlers, core, runtime, bundles) never needs the cvat-sdk extra."""
    package = Path(__file__).resolve().parents[2] / "quadratseg_handlers"
    found = []
    for path in package.rglob("*.py"):
        if path.parent.name == "sdk":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("cvat_")]
            if isinstance(node, ast.Constant) and node.value in ("cvat_sdk", "cvat_cli"):
                found.append(f"{path.name}: {node.value!r}")
    assert found == []


@pytest.mark.parametrize("model", ["coralsegv4", "coralsegbanggai", "gridcorners", "gridpose"])
def test_without_parameters_a_function_has_its_bundles_settings(model):
    """The values a bundle's function.yaml fixes (the catalogue's env) hold on the SDK route."""
    from quadratseg_handlers.deploy import catalog
    from quadratseg_handlers.sdk.function import handler_for

    spec = catalog.find(model)
    handler = handler_for(model, {"model_path": str(DEMO_MODELS / "gridpose.pt")})
    declared = {setting.name: setting for setting in handler.declared_settings()}
    assert spec.env
    for name, value in spec.env:
        assert getattr(handler.settings, name.lower()) == declared[name].read(value)

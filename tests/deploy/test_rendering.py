"""Rendered function.yaml / main.py, and the pinned build commands."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from packaging_for_tests import ROOT

from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import MIN_REQUEST_BODY, config_problems
from quadratseg_handlers.deploy.rendering import (
    BundleLayout,
    SourceTree,
    build_commands,
    folder_files,
    parse_constraints,
    render_function_yaml,
)
from quadratseg_handlers.deploy.torch_builds import PUBLISHED_CUDA, cuda_build

# --- rendering ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_committed_function_folders_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_functions.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("gpu", [False, True])
def test_rendered_yaml_is_complete_but_for_the_spec(source, gpu):
    for spec in FUNCTIONS.values():
        text = render_function_yaml(spec, BundleLayout.default(spec, source), source, gpu=gpu)
        config = yaml.safe_load(text)
        if spec.kind == "detector":
            assert config_problems(config) == ["metadata.annotations.spec: missing (CVAT reads it)"]
            assert config["metadata"]["annotations"]["type"] == "detector"
        else:
            assert config_problems(config, detector=False) == []
            assert "type" not in config["metadata"]["annotations"]
        body = config["spec"]
        assert body["runtime"] == "python:3.11" and body["handler"] == "main:handler"
        trigger = body["triggers"]["myHttpTrigger"]
        assert trigger["numWorkers"] == 1
        assert trigger["attributes"]["maxRequestBodySize"] >= MIN_REQUEST_BODY
        env = {item["name"]: item["value"] for item in body["env"]}
        assert env["DEVICE"] == ("cuda" if gpu else "cpu")
        assert {k: env[k] for k, _ in spec.env} == dict(spec.env)
        limits = body["resources"].get("limits", {})
        assert limits == ({"nvidia.com/gpu": 1} if gpu else {})
        assert body["build"]["baseImage"] == (spec.gpu_base_image if gpu else spec.cpu_base_image)
        assert body["resources"]["requests"]["memory"] == spec.memory
        assert config["metadata"]["annotations"]["quadratseg.function"] == spec.name


def test_build_commands_pin_versions_and_install_the_wheel(source):
    assert source.constraints, "the source tree pins versions in constraints.txt"
    commands = {
        spec.model: build_commands(spec, BundleLayout.default(spec, source), source, gpu=True)
        for spec in FUNCTIONS.values()
    }
    wheel = f"/opt/nuclio/{source.wheel_name}"
    yolo = commands["coralsegv4"]
    assert yolo[0].startswith("apt-get update && apt-get install -y --no-install-recommends libgl1")
    assert "ultralytics==8.4.190" in yolo[1].split()
    assert "'torch==2.13.0,!=2.13.0+cpu'" in yolo[1].split()
    assert yolo[-2:] == [
        "@nuclio.postCopy",
        f"python -m pip install --no-cache-dir -c /opt/nuclio/constraints.txt '{wheel}[yolo]'",
    ]
    mmseg = commands["coralscopsegformer"]
    assert "mmcv" not in mmseg[1]
    assert mmseg[3] == (
        "MMCV_WITH_OPS=1 MAX_JOBS=4 python -m pip install --no-cache-dir --no-build-isolation "
        "mmcv==2.1.0"
    )
    lama = commands["lama"]
    assert lama[0].endswith("'torch==2.13.0,!=2.13.0+cpu' fire==0.7.1")
    assert lama[1] == "python -m pip install --no-cache-dir --no-deps simple-lama-inpainting==0.1.2"
    assert "big-lama.pt', '/opt/nuclio/big-lama.pt')" in lama[2]
    assert lama[3] == "@nuclio.postCopy"
    assert commands["blobs"][-1].endswith(f" {wheel}")


def test_without_constraints_the_pyproject_specifiers_are_used(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    bare = SourceTree.read(tmp_path)
    spec = FUNCTIONS["pth-yolo-coralsegv4"]
    commands = build_commands(spec, BundleLayout.default(spec, bare), bare, gpu=True)
    assert "'ultralytics>=8.4,<8.5'" in commands[1].split()
    assert commands[-1] == (
        f"python -m pip install --no-cache-dir '/opt/nuclio/{bare.wheel_name}[yolo]'"
    )
    assert bare.bundle_constraints() is None


def test_cpu_images_take_torch_from_the_cpu_index(source):
    spec = FUNCTIONS["pth-yolo-coralsegv4"]
    commands = build_commands(spec, BundleLayout.default(spec, source), source, gpu=False)
    assert commands[1] == (
        "python -m pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "
        "torch==2.13.0+cpu torchvision==0.28.0+cpu"
    )
    assert "torch==2.13.0+cpu" in commands[2].split()
    assert not any("!=2.13.0+cpu" in word for word in commands[2].split())
    gpu = build_commands(spec, BundleLayout.default(spec, source), source, gpu=True)
    assert not any("download.pytorch.org" in command for command in gpu)
    cpu_pins = source.bundle_constraints(gpu=False)
    assert cpu_pins is not None and "torch==2.13.0+cpu\n" in cpu_pins
    assert "torchvision==0.28.0+cpu\n" in cpu_pins
    assert "torch==2.13.0,!=2.13.0+cpu\n" in (source.bundle_constraints(gpu=True) or "")
    blobs = FUNCTIONS["example-blobs"]
    blob_commands = build_commands(blobs, BundleLayout.default(blobs, source), source, gpu=False)
    assert not any("download.pytorch.org" in command for command in blob_commands)


def test_constraints_parsing_keeps_only_pins():
    text = (
        "# pins\nnumpy==2.4.6  # why\n-e git+https://x/y#egg=z\nTorch==2.13.0,!=2.13.0+cpu\n"
        "quadratseg-handlers==0.1.0\nfoo @ https://x/foo.whl\nbar>=1\n\n"
    )
    assert parse_constraints(text) == {"numpy": "==2.4.6", "torch": "==2.13.0,!=2.13.0+cpu"}


def test_requirements_expand_the_extras_an_extra_includes(source):
    everything = source.requirements("all")
    assert "aiohttp>=3.9" in everything and "mmsegmentation>=1.2,<1.3" in everything
    assert not any(r.startswith("quadratseg-handlers") for r in everything)
    assert source.requirements(None) == list(source.dependencies)


def test_main_py_imports_the_handler_and_hands_it_to_the_runtime():
    text = folder_files(FUNCTIONS["pth-yolo-gridpose"], SourceTree.of_library())["main.py"]
    assert "from quadratseg_handlers.core import runtime" in text
    assert "from quadratseg_handlers.handlers.grid import GridPoseHandler as Handler" in text
    assert "    runtime.init_context(Handler, context)" in text
    assert "    return runtime.handle_event(context, event)" in text


def test_a_gpu_bundle_of_an_onnx_model_runs_onnxruntime_gpu():
    source = SourceTree.of_library()
    spec = FUNCTIONS["pth-yolo-coralsegv4"]
    onnx = BundleLayout({"weights": "best.onnx"}, (), source.wheel_name, True)
    pinned = source.constraints["onnxruntime"]
    commands = build_commands(spec, onnx, source, gpu=True)
    assert commands[-1] == (
        "python -m pip uninstall -y onnxruntime && python -m pip install --no-cache-dir "
        f"-c /opt/nuclio/constraints.txt onnxruntime-gpu{pinned}"
    )
    assert commands[-2].startswith("python -m pip install --no-cache-dir -c ")
    assert "onnxruntime-gpu" not in " ".join(build_commands(spec, onnx, source, gpu=False))
    weights = BundleLayout({"weights": "best.pt"}, (), source.wheel_name, True)
    assert "onnxruntime-gpu" not in " ".join(build_commands(spec, weights, source, gpu=True))


# --- CUDA builds of torch (`quadratseg package --cuda`) ------------------------------------------


@pytest.mark.parametrize("cuda", ["12.6", "13.0", "13.2"])
def test_each_published_cuda_build_renders_pinned_from_its_index(source, cuda):
    """Each CUDA build recorded for the pinned torch: torch and torchvision at ``+cuXYZ`` from
    PyTorch's index for that build, recorded in function.yaml, PyPI's CUDA pins left out."""
    torch_version = source.torch_version
    assert torch_version == "2.13.0"
    build = cuda_build(torch_version, cuda)
    assert build in PUBLISHED_CUDA[torch_version]
    label = "cu" + cuda.replace(".", "")
    spec = FUNCTIONS["pth-yolo-coralsegv4"]
    layout = BundleLayout.default(spec, source)
    text = render_function_yaml(spec, layout, source, gpu=True, labels_json="[]", cuda=build)
    config = yaml.safe_load(text)
    assert config_problems(config) == []
    assert f"(GPU, CUDA {cuda})" in text.splitlines()[0]
    annotations = config["metadata"]["annotations"]
    assert annotations["quadratseg.cuda"] == cuda
    assert annotations["quadratseg.min-driver"] == build.min_driver
    env = {item["name"]: item["value"] for item in config["spec"]["env"]}
    assert env["DEVICE"] == "cuda"
    assert config["spec"]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    commands = config["spec"]["build"]["commands"]
    assert commands[1] == (
        "python -m pip install --no-cache-dir --index-url "
        f"https://download.pytorch.org/whl/{label} torch==2.13.0+{label} "
        f"torchvision==0.28.0+{label}"
    )
    assert f"torch==2.13.0+{label}" in commands[2].split()
    assert not any("cpu" in word for word in commands[2].split())
    pins = source.bundle_constraints(gpu=True, cuda=build) or ""
    assert f"torch==2.13.0+{label}\n" in pins and f"torchvision==0.28.0+{label}\n" in pins
    lines = [line.split("==")[0] for line in pins.splitlines()]
    assert "numpy" in lines and "nvidia-ml-py" in lines
    assert not [name for name in lines if name.startswith(("cuda-", "nvidia-cu"))]


def test_an_unpublished_cuda_build_is_refused_naming_those_that_exist():
    with pytest.raises(ValueError) as caught:
        cuda_build("2.13.0", "12.8")
    assert str(caught.value) == (
        "--cuda 12.8: torch 2.13.0 has no CUDA 12.8 build on https://download.pytorch.org/whl "
        "(published: 12.6, 13.0, 13.2); a CUDA 12 driver (>= 525.60.13) runs --cuda 12.6"
    )
    with pytest.raises(ValueError, match="no record of the CUDA builds of torch 9.9.0"):
        cuda_build("9.9.0", "12.6")


def test_the_driver_table_of_the_docs_matches_the_record():
    """deployment.md and install.md name each recorded build's minimum driver."""
    for page in ("deployment.md", "install.md"):
        text = (ROOT / "docs" / page).read_text()
        for build in PUBLISHED_CUDA["2.13.0"]:
            assert f"| `--cuda {build.cuda}` | `{build.label}` | {build.min_driver} |" in text, page


def test_a_wheelhouse_build_installs_everything_after_the_copy_from_the_bundle(source):
    spec = FUNCTIONS["pth-yolo-coralsegv4"]
    layout = BundleLayout.default(spec, source)
    commands = build_commands(spec, layout, source, gpu=False, wheelhouse=True)
    normal = build_commands(spec, layout, source, gpu=False)
    offline = "python -m pip install --no-cache-dir --no-index --find-links /opt/nuclio/wheels"
    assert commands[0] == normal[0] and commands[0].startswith("apt-get update")  # system packages
    assert commands[1] == "@nuclio.postCopy"
    assert commands[2] == f"{offline} torch==2.13.0+cpu torchvision==0.28.0+cpu"
    assert commands[3] == normal[2].replace("python -m pip install --no-cache-dir", offline)
    assert commands[4] == normal[-1].replace("python -m pip install --no-cache-dir", offline)
    assert not any("download.pytorch.org" in command for command in commands)
    lama = FUNCTIONS["pth-lama"]
    steps = build_commands(lama, BundleLayout.default(lama, source), source, wheelhouse=True)
    assert f"{offline} --no-deps simple-lama-inpainting==0.1.2" in steps

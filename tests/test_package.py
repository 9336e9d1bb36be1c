"""Function bundles: catalogue, rendered function.yaml/main.py, `quadratseg package`, `validate`.

Two test functions stand in for the model handlers: LevelBoxHandler (a detector whose
'checkpoint' is a .npy of grey levels, with a shipped default file) and MaskFillHandler (an
inpainter whose 'model' is fetched at image-build time unless given). The real functions join
the parametrized end-to-end test as soon as their catalogue entry names a tiny-model builder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from handlers_for_tests import level_box_files
from PIL import Image

from quadratseg_handlers import archive, cvat, functions
from quadratseg_handlers.blobs import BlobHandler
from quadratseg_handlers.cli import main
from quadratseg_handlers.functions import FUNCTIONS, BundleFile, FunctionSpec
from quadratseg_handlers.packager import PackageError, PackageRequest, build_wheel, package
from quadratseg_handlers.rendering import (
    BundleLayout,
    SourceTree,
    build_commands,
    folder_files,
    function_config,
    parse_constraints,
    render_function_yaml,
)
from quadratseg_handlers.validator import MIN_REQUEST_BODY, config_problems, validate

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

LEVELS = FunctionSpec(
    name="test-level-boxes",
    model="levelboxes",
    handler="handlers_for_tests:LevelBoxHandler",
    title="Level boxes (test)",
    description="Regions brighter than grey levels, for the packaging tests",
    framework="numpy",
    extra=None,
    files=(
        BundleFile("levels", "levels.npy", "LEVELS_PATH", (".npy",), "grey levels"),
        BundleFile("names", "names.json", "NAMES_PATH", (".json",), "label names",
                   default="handlers_for_tests:data/level_names.json"),
    ),
    env=(("CONF_THRESHOLD", "0.3"),),
    memory="256Mi",
    tiny_model="handlers_for_tests:level_box_files",
)

FILL = FunctionSpec(
    name="test-mask-fill",
    model="maskfill",
    handler="handlers_for_tests:MaskFillHandler",
    title="Mask fill (test)",
    description="Masked pixels painted one colour, for the packaging tests",
    framework="numpy",
    extra=None,
    kind="inpainter",
    files=(BundleFile("fill", "fill.npy", "FILL_PATH", (".npy",), "RGB fill colour",
                      fetch_url="https://example.invalid/fill.npy"),),
    memory="256Mi",
    tiny_model="handlers_for_tests:mask_fill_files",
)

AGREED_NAMES = {
    "pth-yolo-coralsegv4": {"MODEL_PATH": "best.pt"},
    "pth-yolo-coralsegbanggai": {"MODEL_PATH": "best.pt"},
    "pth-mmseg-coralscopsegformer": {
        "SEGFORMER_WEIGHTS": "best_segformer.pth",
        "SEGFORMER_CONFIG": "best_segformer_config.py",
        "SAM_WEIGHTS": "vit_b_coralscop.pth",
    },
    "pth-yolo-gridcorners": {"MODEL_PATH": "best.pt", "TEMPLATE_PATH": "kp_template_corners.npy"},
    "pth-yolo-gridpose": {"MODEL_PATH": "best.pt", "TEMPLATE_PATH": "kp_template.npy"},
    "pth-lama": {"LAMA_MODEL": "big-lama.pt"},
    "example-blobs": {},
}
"""The standard bundle names every helper relies on (briefing, "Agreed names")."""


@pytest.fixture(autouse=True)
def test_functions(monkeypatch):
    """The test functions in the catalogue; subprocesses import the tests' handlers too."""
    monkeypatch.setitem(FUNCTIONS, LEVELS.name, LEVELS)
    monkeypatch.setitem(FUNCTIONS, FILL.name, FILL)
    paths = [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


@pytest.fixture(scope="session")
def source() -> SourceTree:
    return SourceTree.of_library()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory, source) -> Path:
    return build_wheel(source, tmp_path_factory.mktemp("wheel"))


def rect_png(path: Path) -> Path:
    """A black 200x120 PNG: white 40x20 at (20, 10), 230 50x50 at (100, 50), 100 at (10, 80)."""
    image = np.zeros((120, 200, 3), dtype=np.uint8)
    image[10:30, 20:60] = 255
    image[50:100, 100:150] = 230
    image[80:90, 10:30] = 100
    Image.fromarray(image).save(path)
    return path


def pack(tmp_path: Path, wheel: Path, function: FunctionSpec = LEVELS, files=None, **options):
    """Package through the library API, reusing the session's wheel."""
    if files is None:
        files = function.tiny_model_builder()(tmp_path) if function.tiny_model else {}
    options.setdefault("output", tmp_path / "nuclio.zip")
    return package(PackageRequest(function, files, **options), wheel=wheel)


def unpack(bundle: Path, into: Path) -> Path:
    archive.extract(bundle, into)
    return into / "nuclio"


def run_main(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python main.py ...` in an unpacked bundle, as a user would run it."""
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=folder, capture_output=True, text=True, check=False
    )


def cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


# --- the catalogue ------------------------------------------------------------------------------


def test_standard_bundle_names_are_the_agreed_ones(source):
    for name, expected in AGREED_NAMES.items():
        spec = FUNCTIONS[name]
        assert {f.env: f.bundle_name() for f in spec.files} == expected, name
        config = function_config(spec, BundleLayout.default(spec, source), source, gpu=False)
        env = {item["name"]: item["value"] for item in config["spec"]["env"]}
        assert {k: env[k] for k in expected} == {k: f"/opt/nuclio/{v}" for k, v in expected.items()}


def test_catalogue_entries_are_consistent():
    models = [spec.model for spec in FUNCTIONS.values()]
    assert len(models) == len(set(models))
    for spec in FUNCTIONS.values():
        assert spec.handler.count(":") == 1, spec.name
        arguments = [f.argument for f in spec.files]
        assert len(arguments) == len(set(arguments)), spec.name
        for bundle_file in spec.files:
            assert Path(bundle_file.filename).suffix == bundle_file.suffixes[0], bundle_file
            assert all(s == s.lower() and s.startswith(".") for s in bundle_file.suffixes)
            assert not (bundle_file.default and bundle_file.fetch_url), bundle_file
            if bundle_file.default:
                assert bundle_file.default.startswith("quadratseg_handlers:") or spec is LEVELS
        if spec.kind == "detector":
            assert all(f.fetch_url is None for f in spec.files), "a detector's spec needs its files"


def test_usage_follows_the_guide_argument_order():
    usages = {spec.model: spec.usage() for spec in FUNCTIONS.values()}
    assert usages["coralsegv4"] == "coralsegv4 WEIGHTS"
    assert usages["coralscopsegformer"] == (
        "coralscopsegformer SEGFORMER_WEIGHTS SEGFORMER_CONFIG SAM_WEIGHTS"
    )
    assert usages["gridpose"] == "gridpose WEIGHTS [TEMPLATE]"
    assert usages["lama"] == "lama [LAMA_MODEL]"


def test_find_by_model_or_function_name():
    assert functions.find("gridpose") is functions.find("pth-yolo-gridpose")
    with pytest.raises(KeyError, match="unknown model 'nope'; valid: coralsegv4, "):
        functions.find("nope")


# --- rendering ----------------------------------------------------------------------------------


def test_committed_function_folders_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_functions.py"), "--check"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("gpu", [False, True])
def test_rendered_yaml_is_complete_but_for_the_spec(source, gpu):
    for spec in FUNCTIONS.values():
        text = render_function_yaml(spec, BundleLayout.default(spec, source), source, gpu=gpu)
        config = yaml.safe_load(text)
        assert config_problems(config) == ["metadata.annotations.spec: missing (CVAT reads it)"]
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
        spec.model: build_commands(spec, BundleLayout.default(spec, source), source)
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
    commands = build_commands(spec, BundleLayout.default(spec, bare), bare)
    assert "'ultralytics>=8.4,<8.5'" in commands[1].split()
    assert commands[-1] == (
        f"python -m pip install --no-cache-dir '/opt/nuclio/{bare.wheel_name}[yolo]'"
    )
    assert bare.bundle_constraints() is None


def test_constraints_parsing_keeps_only_pins():
    text = "# pins\nnumpy==2.4.6  # why\n-e git+https://x/y#egg=z\nTorch==2.13.0,!=2.13.0+cpu\n" \
           "quadratseg-handlers==0.1.0\nfoo @ https://x/foo.whl\nbar>=1\n\n"
    assert parse_constraints(text) == {"numpy": "==2.4.6", "torch": "==2.13.0,!=2.13.0+cpu"}


def test_requirements_expand_the_extras_an_extra_includes(source):
    everything = source.requirements("all")
    assert "aiohttp>=3.9" in everything and "mmsegmentation>=1.2,<1.3" in everything
    assert not any(r.startswith("quadratseg-handlers") for r in everything)
    assert source.requirements(None) == list(source.dependencies)


def test_main_py_only_imports_the_handler():
    text = folder_files(FUNCTIONS["pth-yolo-gridpose"], SourceTree.of_library())["main.py"]
    assert "from quadratseg_handlers.grid import GridPoseHandler as Handler" in text
    assert "    Handler.init_context(context)" in text
    assert "    return Handler.handle_event(context, event)" in text


# --- packaging end to end -----------------------------------------------------------------------


def test_cli_packages_blobs_then_validate_passes_and_main_py_runs(tmp_path, capsys):
    out = tmp_path / "blobs.zip"
    code, err = cli(capsys, "package", "blobs", "--output", str(out))
    assert code == 0 and err[0].startswith(f"packaged example-blobs (CPU) -> {out}: 4 entries")
    with zipfile.ZipFile(out) as bundle:
        assert bundle.namelist() == [
            "nuclio/constraints.txt", "nuclio/function.yaml", "nuclio/main.py",
            f"nuclio/{SourceTree.of_library().wheel_name}",
        ]
    code, err = cli(capsys, "validate", str(out))
    assert code == 0
    assert len(err) == 1 and err[0].startswith("valid: example-blobs: 1 label; main.py started in ")
    assert " s and answered a 640x480 JPEG with 6 shapes in " in err[0]
    folder = unpack(out, tmp_path / "bundle")
    image = rect_png(tmp_path / "rect.png")
    result = run_main(folder, str(image))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == BlobHandler().annotate(str(image))


def test_spec_comes_from_the_weights_and_main_py_answers_exactly(tmp_path, wheel):
    result = pack(tmp_path, wheel)
    assert [label["name"] for label in result.labels] == ["dim", "bright"]
    folder = unpack(result.output, tmp_path / "bundle")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["constraints.txt", "function.yaml", "levels.npy", "main.py", "names.json", wheel.name]
    )
    config = yaml.safe_load((folder / "function.yaml").read_text())
    assert json.loads(config["metadata"]["annotations"]["spec"]) == [
        cvat.label_spec("dim", "rectangle"), cvat.label_spec("bright", "rectangle"),
    ]
    env = {item["name"]: item["value"] for item in config["spec"]["env"]}
    assert env["LEVELS_PATH"] == "/opt/nuclio/levels.npy"
    assert env["NAMES_PATH"] == "/opt/nuclio/names.json"
    answer = run_main(folder, str(rect_png(tmp_path / "rect.png")), "--threshold", "0.5")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == [
        cvat.rectangle("dim", [20, 10, 59, 29], 1.0),
        cvat.rectangle("dim", [100, 50, 149, 99], 230 / 255),
        cvat.rectangle("bright", [20, 10, 59, 29], 1.0),
        cvat.rectangle("bright", [100, 50, 149, 99], 230 / 255),
    ]


def test_validate_calls_main_py_through_the_nuclio_platform_with_a_jpeg(tmp_path, wheel):
    report = validate(pack(tmp_path, wheel).output)
    assert report.ok, report.problems
    assert report.summary.startswith("test-level-boxes: 2 labels; main.py started in ")
    assert "answered a 640x480 JPEG with" in report.summary


def test_validate_summary_says_1_shape_not_1_shapes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "blobs.zip"
    assert cli(capsys, "package", "blobs", "--output", str(out))[0] == 0
    probe = {"status": 200, "width": 640, "height": 480, "start_seconds": 0.1, "seconds": 0.1,
             "answer": [cvat.polygon("blob", [10, 10, 50, 10, 50, 40], 0.9)]}
    monkeypatch.setattr("quadratseg_handlers.validator.run_probe", lambda *args: probe)
    report = validate(out)
    assert report.ok, report.problems
    assert "answered a 640x480 JPEG with 1 shape in " in report.summary


@pytest.mark.parametrize(
    "function",
    [
        pytest.param(spec, id=spec.name, marks=[pytest.mark.slow] if spec.extra else [])
        for spec in (*FUNCTIONS.values(), LEVELS, FILL)
        if spec.tiny_model or not spec.files
    ],
)
def test_every_packageable_function_packages_and_validates(tmp_path, wheel, function):
    """Package with the entry's tiny model, then `validate` runs the bundle's main.py through
    nuclio_sdk's Platform in a subprocess (bundle as working directory) on a generated JPEG."""
    result = pack(tmp_path, wheel, function)
    report = validate(result.output)
    assert report.ok, report.problems
    assert report.notes == []


def test_an_inpainter_answers_an_image_and_main_py_saves_it(tmp_path, wheel):
    result = pack(tmp_path, wheel, FILL)
    assert result.labels == []
    report = validate(result.output)
    assert report.ok and "with an inpainted image" in report.summary
    folder = unpack(result.output, tmp_path / "bundle")
    image, mask = rect_png(tmp_path / "image.png"), tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((20, 20), 255, np.uint8), ((50, 50), (90, 90)))).save(mask)
    saved = tmp_path / "out.png"
    answer = run_main(folder, str(image), "--mask", str(mask), "--save", str(saved))
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"image": f"<written to {saved}>"}
    painted = np.asarray(Image.open(saved))
    assert (painted[50:70, 90:110] == [255, 0, 0]).all()
    assert (painted[10:30, 20:60] == 255).all() and painted.shape == (120, 200, 3)


def test_a_model_fetched_at_build_time_is_downloaded_by_the_yaml(tmp_path, wheel):
    result = pack(tmp_path, wheel, FILL, files={})
    folder = unpack(result.output, tmp_path / "bundle")
    assert not (folder / "fill.npy").exists()
    commands = yaml.safe_load((folder / "function.yaml").read_text())["spec"]["build"]["commands"]
    assert commands.index("@nuclio.postCopy") == 2 and "/opt/nuclio/fill.npy" in commands[1]
    report = validate(result.output)
    assert report.ok and report.notes == [
        "not run: fill.npy is downloaded when the image is built; give the file to "
        "`quadratseg package` to run the bundle here"
    ]


def test_gpu_tag_and_source_options(tmp_path, wheel):
    modules = tmp_path / "dinov2"
    (modules / "__pycache__").mkdir(parents=True)
    (modules / "__init__.py").write_text("")
    (modules / "backbone.py").write_text("NAMES = ['low', 'high']\n")
    (modules / "__pycache__" / "backbone.cpython-311.pyc").write_bytes(b"\0")
    (modules / "heads").mkdir()
    (modules / "heads" / "seg.py").write_text("")
    plugged = replace(LEVELS, env=(("NAMES_MODULE", "dinov2.backbone"),))
    result = pack(tmp_path, wheel, plugged, gpu=True, tag="v2", sources=(modules,))
    assert [label["name"] for label in result.labels] == ["low", "high"]
    assert "nuclio/dinov2/backbone.py" in result.entries
    assert "nuclio/dinov2/heads/seg.py" in result.entries
    assert not any(name.endswith(".pyc") for name in result.entries)
    with zipfile.ZipFile(result.output) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    assert config["metadata"]["name"] == "test-level-boxes-v2"
    assert config["metadata"]["annotations"]["name"] == "Level boxes (test) [v2]"
    assert config["spec"]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert validate(result.output).ok


def test_two_runs_give_identical_bytes(tmp_path, capsys):
    levels = level_box_files(tmp_path)["levels"]
    outputs = [tmp_path / "a.zip", tmp_path / "b.zip"]
    for out in outputs:
        assert cli(capsys, "package", "levelboxes", str(levels), "--output", str(out))[0] == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    with zipfile.ZipFile(outputs[0]) as bundle:
        infos = bundle.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {(i.date_time, i.external_attr >> 16) for i in infos} == {
        (archive.FIXED_TIME, 0o100644)
    }


# --- packaging errors: one line each, exit 2, nothing written -----------------------------------


@pytest.fixture
def levels(tmp_path) -> Path:
    return level_box_files(tmp_path)["levels"]


def refused(capsys, tmp_path, *argv: str) -> list[str]:
    out = tmp_path / "refused.zip"
    code, err = cli(capsys, "package", *argv, "--output", str(out))
    assert code == 2 and not out.exists()
    assert all(line.startswith("quadratseg package: error: ") for line in err)
    return [line.removeprefix("quadratseg package: error: ") for line in err]


def test_unknown_model_lists_the_valid_ones(capsys, tmp_path):
    assert refused(capsys, tmp_path, "coralsegv5") == [
        "unknown model 'coralsegv5'; valid: coralsegv4, coralsegbanggai, coralscopsegformer, "
        "gridcorners, gridpose, lama, blobs, levelboxes, maskfill"
    ]


def test_file_problems(capsys, tmp_path):
    missing = tmp_path / "missing.npy"
    assert refused(capsys, tmp_path, "levelboxes", str(missing)) == [
        f"LEVELS: file not found: {missing}"
    ]
    assert refused(capsys, tmp_path, "levelboxes", str(tmp_path)) == [
        f"LEVELS: {tmp_path} is a directory, expected a .npy file"
    ]
    text = tmp_path / "levels.txt"
    text.write_text("90 200")
    assert refused(capsys, tmp_path, "levelboxes", str(text)) == [
        f"LEVELS: {text} has extension '.txt'; expected a .npy file"
    ]
    empty = tmp_path / "empty.npy"
    empty.touch()
    assert refused(capsys, tmp_path, "levelboxes", str(empty)) == [f"LEVELS: {empty} is empty"]


def test_unreadable_file(capsys, tmp_path, levels, monkeypatch):
    levels.chmod(0)
    if os.geteuid() == 0:  # root reads every file: let the access check answer as for a user
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: path != levels and real(path, mode))
    try:
        assert refused(capsys, tmp_path, "levelboxes", str(levels)) == [
            f"LEVELS: {levels} is not readable"
        ]
    finally:
        levels.chmod(0o644)


def test_weights_that_do_not_fit_the_function(capsys, tmp_path):
    square = tmp_path / "square.npy"
    np.save(square, np.zeros((2, 2)))
    assert refused(capsys, tmp_path, "levelboxes", str(square)) == [
        f"levelboxes: LEVELS_PATH={square}: expected 1 to 8 grey levels below 255, got shape (2, 2)"
    ]
    garbage = tmp_path / "garbage.npy"
    garbage.write_text("not a numpy file")
    [line] = refused(capsys, tmp_path, "levelboxes", str(garbage))
    assert line.startswith("levelboxes: the files do not load as LevelBoxHandler: ValueError: ")


def test_argument_problems(capsys, tmp_path, levels):
    assert refused(capsys, tmp_path, "levelboxes") == [
        "missing LEVELS (grey levels, a .npy file); usage: quadratseg package levelboxes LEVELS "
        "[NAMES]"
    ]
    names = TESTS / "data" / "level_names.json"
    assert refused(capsys, tmp_path, "levelboxes", str(levels), str(names), str(levels)) == [
        f"levelboxes takes at most 2 file(s) (usage: quadratseg package levelboxes LEVELS "
        f"[NAMES]), got 3: {levels} {names} {levels}"
    ]
    assert refused(capsys, tmp_path, "levelboxes", str(levels), "--template", str(levels)) == [
        "--template is not a file of levelboxes (its files: --levels, --names)"
    ]
    assert refused(capsys, tmp_path, "levelboxes", str(levels), "--levels", str(levels)) == [
        f"LEVELS given twice: {levels} and --levels {levels}"
    ]


def test_every_problem_is_reported_at_once(capsys, tmp_path, levels):
    missing = tmp_path / "nope.json"
    lines = refused(
        capsys, tmp_path, "levelboxes", "--levels", str(levels), "--names", str(missing),
        "--tag", "V2!", "--source", str(tmp_path / "absent"),
    )
    assert lines == [
        f"NAMES: file not found: {missing}",
        f"--source {tmp_path / 'absent'}: not found",
        "--tag 'V2!': use lower-case letters, digits and '-' (the function name "
        "'test-level-boxes-V2!' must be a DNS label of at most 63 characters)",
    ]


def test_source_problems(capsys, tmp_path, levels):
    clash = tmp_path / "main.py"
    clash.write_text("")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "elsewhere.py").symlink_to(clash)
    assert refused(
        capsys, tmp_path, "levelboxes", str(levels), "--source", str(clash), "--source", str(linked)
    ) == [
        f"--source {clash}: the bundle already holds a 'main.py'",
        f"--source {linked}: {linked / 'elsewhere.py'} is a symbolic link",
    ]


def test_existing_output_needs_force(capsys, tmp_path, levels):
    out = tmp_path / "nuclio.zip"
    out.write_bytes(b"previous")
    code, err = cli(capsys, "package", "levelboxes", str(levels), "--output", str(out))
    assert code == 2 and err == [
        f"quadratseg package: error: --output {out}: exists; use --force to replace it"
    ]
    assert out.read_bytes() == b"previous"
    forced = cli(capsys, "package", "levelboxes", str(levels), "--output", str(out), "--force")
    assert forced[0] == 0
    assert zipfile.is_zipfile(out)


def test_a_failed_write_leaves_no_partial_bundle(capsys, tmp_path, levels, monkeypatch):
    out = tmp_path / "nuclio.zip"
    out.write_bytes(b"previous")

    def fail(path, entries):
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("quadratseg_handlers.packager.write_zip", fail)
    code, err = cli(capsys, "package", "levelboxes", str(levels), "--output", str(out), "--force")
    assert code == 1 and err == [
        f"quadratseg package: error: writing {out} failed: [Errno 28] No space left on device"
    ]
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["levels.npy", "nuclio.zip"]


def test_missing_extra_is_one_line(tmp_path, wheel, monkeypatch):
    absent = replace(LEVELS, handler="quadratseg_handlers_absent:Handler")
    with pytest.raises(PackageError) as caught:
        pack(tmp_path, wheel, absent)
    assert caught.value.problems == [
        "test-level-boxes needs the library installed here to check its files "
        "(No module named 'quadratseg_handlers_absent')"
    ]


def test_catalogue_env_must_name_settings_of_the_handler(tmp_path, wheel):
    typo = replace(LEVELS, env=(("CONF_TRESHOLD", "0.3"),))
    with pytest.raises(PackageError) as caught:
        pack(tmp_path, wheel, typo)
    assert caught.value.code == 1 and caught.value.problems == [
        "catalogue error: CONF_TRESHOLD not a setting of handlers_for_tests:LevelBoxHandler"
    ]


# --- archive safety -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../evil", "nuclio/../../evil", "/etc/passwd", "C:/x", "a\\b", "a//b", "./a", ""]
)
def test_unsafe_entry_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError):
        archive.write_zip(tmp_path / "x.zip", {name: b"x"})
    assert not (tmp_path / "x.zip").exists()


def test_validate_refuses_a_zip_with_escaping_entries(tmp_path, capsys):
    bad = tmp_path / "inner" / "bad.zip"
    bad.parent.mkdir()
    with zipfile.ZipFile(bad, "w") as crafted:
        crafted.writestr("nuclio/function.yaml", "metadata: {}\n")
        crafted.writestr("../evil.txt", "owned")
    code, err = cli(capsys, "validate", str(bad))
    assert code == 1 and err == [
        f"quadratseg validate: error: {bad}: entry name '../evil.txt' has an empty, '.' or '..' "
        "component"
    ]
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(ValueError):
        archive.extract(bad, tmp_path / "out")


# --- validate finds what is wrong ---------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path, wheel) -> Path:
    return unpack(pack(tmp_path, wheel).output, tmp_path / "bundle")


def edit_yaml(folder: Path, change) -> None:
    path = folder / "function.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config))


def test_validate_reports_configuration_problems(bundle):
    def break_it(config):
        del config["spec"]["description"]
        config["spec"]["runtime"] = "python:3.8"
        config["spec"]["eventTimeout"] = "30s"
        del config["spec"]["triggers"]["myHttpTrigger"]["attributes"]["maxRequestBodySize"]
        labels = json.loads(config["metadata"]["annotations"]["spec"])
        config["metadata"]["annotations"]["spec"] = json.dumps(labels + labels[:1])

    edit_yaml(bundle, break_it)
    assert validate(bundle).problems == [
        "spec.description: missing (CVAT fails to list the function without it)",
        "spec.runtime: 'python:3.8', expected one of python:3.9, python:3.10, python:3.11",
        "spec.eventTimeout: '30s', expected a duration of at least 120s",
        f"spec.triggers.myHttpTrigger.attributes.maxRequestBodySize: None, expected at least "
        f"{MIN_REQUEST_BODY} (a 30 MB frame as base64; Nuclio's default is 4 MiB)",
        "spec: label 'dim': declared twice (CVAT refuses non-unique labels)",
    ]


def test_validate_reports_missing_files(bundle, wheel):
    (bundle / "levels.npy").unlink()
    (bundle / wheel.name).unlink()
    assert validate(bundle).problems == [
        "spec.env: LEVELS_PATH=/opt/nuclio/levels.npy but the bundle has no levels.npy",
        f"spec.build.commands: {wheel.name} is not in the bundle",
    ]


def test_validate_checks_the_answer_against_the_spec(bundle, capsys):
    def rename(config):
        labels = [cvat.label_spec("other", "rectangle"), cvat.label_spec("bright", "rectangle")]
        config["metadata"]["annotations"]["spec"] = cvat.spec_json(labels)

    edit_yaml(bundle, rename)
    code, err = cli(capsys, "validate", str(bundle))
    assert code == 1
    assert err[0] == "quadratseg validate: error: answer: shape 0 ('dim'): label 'dim' is not in " \
                     "the spec"


def test_validate_reports_a_broken_main_py(bundle):
    (bundle / "main.py").write_text("raise RuntimeError('broken\\nsecond line')\n")
    assert validate(bundle).problems == ["main.py: RuntimeError: broken"]
    assert validate(bundle, run=False).ok


def test_validate_reports_unparsable_yaml_and_bad_paths(tmp_path, capsys, bundle):
    (bundle / "function.yaml").write_text("metadata: [unclosed\n")
    [line] = validate(bundle).problems
    assert line.startswith("function.yaml does not parse: while parsing a flow sequence")
    assert cli(capsys, "validate", str(tmp_path / "absent.zip")) == (
        2, [f"quadratseg validate: error: {tmp_path / 'absent.zip'}: not found"]
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "validate", str(empty)) == (
        2, [f"quadratseg validate: error: {empty}: holds no function.yaml (nor nuclio/"
            "function.yaml)"]
    )


def test_spec_rules():
    good = [
        cvat.label_spec("coral"),
        cvat.skeleton_spec("grid", ["1", "2"], np.array([[0, 0], [1, 0]]), [(1, 2)]),
    ]
    assert cvat.spec_problems(good) == []
    skeleton = dict(good[1], svg=good[1]["svg"].replace('data-label-name="2"', ""))
    twice = dict(good[0], attributes=[cvat.CONFIDENCE_SPEC, cvat.CONFIDENCE_SPEC])
    number = dict(good[0], name="n", attributes=[dict(cvat.CONFIDENCE_SPEC, values=["0", "1"])])
    assert cvat.spec_problems([twice, skeleton, number, {"name": "x", "type": "skeleton"}]) == [
        "label 'coral': attribute 'confidence' declared twice (CVAT refuses it)",
        "label 'grid': svg draws no node for sublabel(s) 2",
        "label 'n': number attribute 'confidence' needs values [min, max, step] as integer "
        "strings, got ['0', '1']",
        "label 'x': a skeleton needs a non-empty 'sublabels' list",
    ]
    assert cvat.spec_problems({"name": "x"}) == ["the spec must be a JSON list of labels, got dict"]


# --- the guide's wrapper and main.py outside Nuclio ---------------------------------------------


def test_deploy_as_zip_wrapper_keeps_the_guide_interface(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    script = ROOT / "functions" / "deploy_as_zip.sh"
    done = subprocess.run(["bash", str(script), "blobs"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert zipfile.is_zipfile(tmp_path / "nuclio.zip")
    wrong = subprocess.run(["bash", str(script), "coralsegv5"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=False)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1


def test_main_py_reports_a_missing_image(tmp_path, wheel):
    folder = unpack(pack(tmp_path, wheel).output, tmp_path / "bundle")
    result = run_main(folder, "absent.jpg")
    assert result.returncode == 2
    assert result.stderr.strip() == "main.py: error: file not found: absent.jpg"


def test_another_allowed_suffix_keeps_the_standard_stem(tmp_path, wheel):
    either = replace(LEVELS.files[0], suffixes=(".npy", ".lvl"))
    spec = replace(LEVELS, files=(either, LEVELS.files[1]))
    levels = level_box_files(tmp_path)["levels"].rename(tmp_path / "exported.LVL")
    result = pack(tmp_path, wheel, spec, files={"levels": levels})
    assert "nuclio/levels.lvl" in result.entries and "nuclio/levels.npy" not in result.entries
    with zipfile.ZipFile(result.output) as bundle:
        env = yaml.safe_load(bundle.read("nuclio/function.yaml"))["spec"]["env"]
    assert env[0] == {"name": "LEVELS_PATH", "value": "/opt/nuclio/levels.lvl"}
    assert validate(result.output).ok


@pytest.mark.slow
def test_coralscopsegformer_packages_with_its_custom_module_and_validates(
    tmp_path, wheel, monkeypatch
):
    """The mmseg function with tiny models: the config's custom backbone travels by --source,
    class names come from the checkpoint, and the bundle answers through validate."""
    from quadratseg_handlers.tinymodels.coralscop import coralscop_files, source

    for name, value in {"SAM_MODEL_TYPE": "auto", "SAM_POINTS_PER_SIDE": "4",
                        "SAM_CROP_N_LAYERS": "0"}.items():
        monkeypatch.setenv(name, value)
    function = FUNCTIONS["pth-mmseg-coralscopsegformer"]
    files = coralscop_files(tmp_path / "models")
    result = pack(tmp_path, wheel, function, files=files, sources=(source(files),))
    assert "nuclio/tiny_coral_backbone.py" in result.entries
    assert [label["name"] for label in result.labels] == [
        "Acropora", "Pocillopora", "Porites", "Montipora"]
    report = validate(result.output)
    assert report.ok, report.problems


@pytest.mark.slow
def test_real_weights_that_do_not_fit_their_function(capsys, tmp_path):
    """A detect checkpoint for a segmentation function, a 4-point template for gridpose, and
    an mmseg config that does not parse are each refused before anything is written."""
    from quadratseg_handlers.template import corner_template
    from quadratseg_handlers.tinymodels.yolo import tiny_yolo

    detect = tiny_yolo(tmp_path / "detect.pt", "detect", ["grid_point"])
    [line] = refused(capsys, tmp_path, "coralsegv4", str(detect))
    assert line.startswith(f"coralsegv4: MODEL_PATH={detect}") and "'detect'" in line

    corners = tmp_path / "corners.npy"
    np.save(corners, corner_template())
    [line] = refused(capsys, tmp_path, "gridpose", str(detect), str(corners))
    assert line.startswith(f"gridpose: TEMPLATE_PATH={corners}") and "117" in line

    config = tmp_path / "broken_config.py"
    config.write_text("model = dict(type='EncoderDecoder',\n")
    weights = tmp_path / "seg.pth"
    weights.write_bytes(b"not a checkpoint")
    assert refused(capsys, tmp_path, "coralscopsegformer", str(weights), str(config),
                   str(weights)) == [
        f"coralscopsegformer: SEGFORMER_CONFIG={config}: cannot read the config "
        "(SyntaxError: '(' was never closed (<unknown>, line 1))"
    ]

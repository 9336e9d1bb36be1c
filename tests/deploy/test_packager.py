"""`quadratseg package`: bundles end to end, one-line errors, main.py outside Nuclio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from handlers_for_tests import level_box_files
from packaging_for_tests import (
    FILL,
    LEVELS,
    ROOT,
    TESTS,
    cli,
    has_tiny_models,
    pack,
    rect_png,
    refused,
    run_main,
    unpack,
)
from PIL import Image

from quadratseg_handlers import cvat
from quadratseg_handlers.deploy import archive
from quadratseg_handlers.deploy.bundle_checks import validate
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import (
    DEFAULT_BATCH_TIMEOUT_MS,
    MAX_BATCH_TIMEOUT_MS,
    Batching,
    open_bundle,
)
from quadratseg_handlers.deploy.library_wheel import WHEEL_CACHE_ENV
from quadratseg_handlers.deploy.packager import PackageError, PackageRequest, package
from quadratseg_handlers.deploy.rendering import (
    SourceTree,
)
from quadratseg_handlers.handlers.blobs import BlobHandler
from quadratseg_handlers.local.bundle import run_probe

# --- packaging end to end -----------------------------------------------------------------------


@pytest.mark.slow
def test_cli_packages_blobs_then_validate_passes_and_main_py_runs(tmp_path, capsys):
    out = tmp_path / "blobs.zip"
    code, err = cli(capsys, "package", "blobs", "--output", str(out))
    assert code == 0 and err[0].startswith(f"packaged example-blobs (CPU) -> {out}: 4 entries")
    with zipfile.ZipFile(out) as bundle:
        assert bundle.namelist() == [
            "nuclio/constraints.txt",
            "nuclio/function.yaml",
            "nuclio/main.py",
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


@pytest.mark.slow
def test_spec_comes_from_the_weights_and_main_py_answers_exactly(tmp_path, wheel):
    result = pack(tmp_path, wheel)
    assert [label["name"] for label in result.labels] == ["dim", "bright"]
    folder = unpack(result.output, tmp_path / "bundle")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["constraints.txt", "function.yaml", "levels.npy", "main.py", "names.json", wheel.name]
    )
    config = yaml.safe_load((folder / "function.yaml").read_text())
    assert json.loads(config["metadata"]["annotations"]["spec"]) == [
        cvat.label_spec("dim", "rectangle"),
        cvat.label_spec("bright", "rectangle"),
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


@pytest.mark.slow
def test_validate_calls_main_py_through_the_nuclio_platform_with_a_jpeg(tmp_path, wheel):
    report = validate(pack(tmp_path, wheel).output, probe=run_probe)
    assert report.ok, report.problems
    assert report.summary.startswith("test-level-boxes: 2 labels; main.py started in ")
    assert "answered a 640x480 JPEG with" in report.summary


@pytest.mark.slow
def test_validate_summary_says_1_shape_not_1_shapes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "blobs.zip"
    assert cli(capsys, "package", "blobs", "--output", str(out))[0] == 0
    probe = {
        "status": 200,
        "width": 640,
        "height": 480,
        "start_seconds": 0.1,
        "seconds": 0.1,
        "answer": [cvat.polygon("blob", [10, 10, 50, 10, 50, 40], 0.9)],
    }
    report = validate(out, probe=lambda *args: probe)
    assert report.ok, report.problems
    assert "answered a 640x480 JPEG with 1 shape in " in report.summary


@pytest.mark.slow
@pytest.mark.parametrize(
    "function",
    [
        pytest.param(spec, id=spec.name)
        for spec in (*FUNCTIONS.values(), LEVELS, FILL)
        if has_tiny_models(spec) or not spec.files
    ],
)
def test_every_packageable_function_packages_and_validates(tmp_path, wheel, function):
    """Package with the entry's tiny model, then `validate` runs the bundle's main.py through
    nuclio_sdk's Platform in a subprocess (bundle as working directory) on a generated JPEG."""
    result = pack(tmp_path, wheel, function)
    report = validate(result.output, probe=run_probe)
    assert report.ok, report.problems
    assert report.notes == []


@pytest.mark.slow
def test_an_inpainter_answers_an_image_and_main_py_saves_it(tmp_path, wheel):
    result = pack(tmp_path, wheel, FILL)
    assert result.labels == []
    with zipfile.ZipFile(result.output) as bundle:
        annotations = yaml.safe_load(bundle.read("nuclio/function.yaml"))["metadata"]["annotations"]
    # No CVAT type and no spec: CVAT never offers a pipeline-only function as a detector.
    assert "type" not in annotations and "spec" not in annotations
    report = validate(result.output, probe=run_probe)
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


@pytest.mark.slow
def test_a_model_fetched_at_build_time_is_downloaded_by_the_yaml(tmp_path, wheel):
    result = pack(tmp_path, wheel, FILL, files={})
    folder = unpack(result.output, tmp_path / "bundle")
    assert not (folder / "fill.npy").exists()
    commands = yaml.safe_load((folder / "function.yaml").read_text())["spec"]["build"]["commands"]
    assert commands.index("@nuclio.postCopy") == 2 and "/opt/nuclio/fill.npy" in commands[1]
    report = validate(result.output, probe=run_probe)
    assert report.ok and report.notes == [
        "not run: fill.npy is downloaded when the image is built; give the file to "
        "`quadratseg package` to run the bundle here"
    ]


@pytest.mark.slow
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
    assert validate(result.output, probe=run_probe).ok


@pytest.mark.slow
def test_two_runs_give_identical_bytes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(WHEEL_CACHE_ENV)  # each run builds its own wheel
    levels = level_box_files(tmp_path)["levels"]
    outputs = [tmp_path / "a.zip", tmp_path / "b.zip"]
    for out in outputs:
        assert cli(capsys, "package", "levelboxes", str(levels), "--output", str(out))[0] == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    with zipfile.ZipFile(outputs[0]) as bundle:
        infos = bundle.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {(i.date_time, i.external_attr >> 16) for i in infos} == {(archive.FIXED_TIME, 0o100644)}


# --- packaging errors: one line each, exit 2, nothing written -----------------------------------


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
        capsys,
        tmp_path,
        "levelboxes",
        "--levels",
        str(levels),
        "--names",
        str(missing),
        "--tag",
        "V2!",
        "--source",
        str(tmp_path / "absent"),
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_failed_write_leaves_no_partial_bundle(capsys, tmp_path, levels, monkeypatch):
    out = tmp_path / "nuclio.zip"
    out.write_bytes(b"previous")

    def fail(path, entries):
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("quadratseg_handlers.deploy.packager.write_zip", fail)
    code, err = cli(capsys, "package", "levelboxes", str(levels), "--output", str(out), "--force")
    assert code == 2 and err == [
        f"quadratseg package: error: cannot write {out}: no space left on device"
    ]
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["levels.npy", "nuclio.zip"]


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    absent = replace(LEVELS, handler="quadratseg_handlers_absent:Handler")
    with pytest.raises(PackageError) as caught:
        pack(tmp_path, None, absent)  # refused before a wheel is needed
    assert caught.value.problems == [
        "test-level-boxes needs the library installed here to check its files "
        "(No module named 'quadratseg_handlers_absent')"
    ]


def test_catalogue_env_must_name_settings_of_the_handler(tmp_path):
    typo = replace(LEVELS, env=(("CONF_TRESHOLD", "0.3"),))
    with pytest.raises(PackageError) as caught:
        pack(tmp_path, None, typo)  # refused before a wheel is needed
    assert caught.value.code == 1 and caught.value.problems == [
        "catalogue error: CONF_TRESHOLD not a setting of handlers_for_tests:LevelBoxHandler"
    ]


# --- the guide's wrapper and main.py outside Nuclio ---------------------------------------------


@pytest.mark.slow
def test_deploy_as_zip_wrapper_keeps_the_guide_interface(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    script = ROOT / "functions" / "deploy_as_zip.sh"
    done = subprocess.run(
        ["bash", str(script), "blobs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert zipfile.is_zipfile(tmp_path / "nuclio.zip")
    wrong = subprocess.run(
        ["bash", str(script), "coralsegv5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1


@pytest.mark.slow
def test_main_py_reports_a_missing_image(tmp_path, wheel):
    folder = unpack(pack(tmp_path, wheel).output, tmp_path / "bundle")
    result = run_main(folder, "absent.jpg")
    assert result.returncode == 2
    assert result.stderr.strip() == "main.py: error: file not found: absent.jpg"


@pytest.mark.slow
def test_another_allowed_suffix_keeps_the_standard_stem(tmp_path, wheel):
    either = replace(LEVELS.files[0], suffixes=(".npy", ".lvl"))
    spec = replace(LEVELS, files=(either, LEVELS.files[1]))
    levels = level_box_files(tmp_path)["levels"].rename(tmp_path / "exported.LVL")
    result = pack(tmp_path, wheel, spec, files={"levels": levels})
    assert "nuclio/levels.lvl" in result.entries and "nuclio/levels.npy" not in result.entries
    with zipfile.ZipFile(result.output) as bundle:
        env = yaml.safe_load(bundle.read("nuclio/function.yaml"))["spec"]["env"]
    assert env[0] == {"name": "LEVELS_PATH", "value": "/opt/nuclio/levels.lvl"}
    assert validate(result.output, probe=run_probe).ok


@pytest.mark.slow
def test_coralscopsegformer_packages_with_its_custom_module_and_validates(
    tmp_path, wheel, monkeypatch
):
    """The mmseg function with tiny models: the config's custom backbone travels by --source,
    class names come from the checkpoint, and the bundle answers through validate."""
    from quadratseg_handlers.demo.tinymodels.coralscop import coralscop_files, source

    for name, value in {
        "SAM_MODEL_TYPE": "auto",
        "SAM_POINTS_PER_SIDE": "4",
        "SAM_CROP_N_LAYERS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    function = FUNCTIONS["pth-mmseg-coralscopsegformer"]
    files = coralscop_files(tmp_path / "models")
    result = pack(tmp_path, wheel, function, files=files, sources=(source(files),))
    assert "nuclio/tiny_coral_backbone.py" in result.entries
    assert [label["name"] for label in result.labels] == [
        "Acropora",
        "Pocillopora",
        "Porites",
        "Montipora",
    ]
    report = validate(result.output, probe=run_probe)
    assert report.ok, report.problems


@pytest.mark.slow
def test_real_weights_that_do_not_fit_their_function(capsys, tmp_path):
    """A detect checkpoint for a segmentation function, a 4-point template for gridpose, and
    an mmseg config that does not parse are each refused before anything is written."""
    from quadratseg_handlers.demo.tinymodels.yolo import tiny_yolo
    from quadratseg_handlers.ops.template import corner_template

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
    assert refused(
        capsys, tmp_path, "coralscopsegformer", str(weights), str(config), str(weights)
    ) == [
        f"coralscopsegformer: SEGFORMER_CONFIG={config}: cannot read the config "
        "(SyntaxError: '(' was never closed (<unknown>, line 1))"
    ]


# --- a lab's own bundle: --env, --name, --display-name, --description ---------------------------


@pytest.mark.slow
def test_env_name_display_name_and_description_go_into_function_yaml(tmp_path, capsys, levels):
    out = tmp_path / "lab.zip"
    code, err = cli(
        capsys,
        "package",
        "levelboxes",
        str(levels),
        "--env",
        "CONF_THRESHOLD=0.6",
        "--env",
        "MIN_SCORE_NOTE=",
        "--output",
        str(out),
    )
    assert code == 2 and err == [
        "quadratseg package: error: --env MIN_SCORE_NOTE: not a setting of levelboxes "
        "(`quadratseg settings levelboxes` lists them)"
    ]
    code, err = cli(
        capsys,
        "package",
        "levelboxes",
        str(levels),
        "--env",
        "CONF_THRESHOLD=0.6",
        "--env",
        "MAX_BATCH_SIZE=4",
        "--name",
        "lab-boxes",
        "--display-name",
        "Lab boxes (our weights)",
        "--description",
        "Our lab's boxes",
        "--tag",
        "v3",
        "--output",
        str(out),
    )
    assert code == 0, err
    assert err[0].startswith(f"packaged lab-boxes-v3 (CPU) -> {out}: ")
    assert err[1:] == [
        "deploy (docs/deployment.md):",
        f"  mkdir -p bundles && unzip {out} -d bundles/lab-boxes-v3",
        "  nuctl create project cvat --platform local    # once per Nuclio host",
        "  nuctl deploy --project-name cvat --path bundles/lab-boxes-v3/nuclio --platform local",
    ]
    with zipfile.ZipFile(out) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    assert config["metadata"]["name"] == "lab-boxes-v3"
    annotations = config["metadata"]["annotations"]
    assert annotations["name"] == "Lab boxes (our weights) [v3]"
    assert annotations["quadratseg.function"] == "test-level-boxes"
    assert config["spec"]["description"] == "Our lab's boxes"
    assert config["spec"]["env"] == [
        {"name": "LEVELS_PATH", "value": "/opt/nuclio/levels.npy"},
        {"name": "NAMES_PATH", "value": "/opt/nuclio/names.json"},
        {"name": "CONF_THRESHOLD", "value": "0.6"},
        {"name": "MAX_BATCH_SIZE", "value": "4"},
        {"name": "DEVICE", "value": "cpu"},
    ]
    report = validate(out, probe=run_probe)
    assert report.ok and report.summary.startswith("lab-boxes-v3: 2 labels; main.py started")


def test_env_and_name_problems_are_one_line_each(capsys, tmp_path, levels):
    assert refused(
        capsys,
        tmp_path,
        "levelboxes",
        str(levels),
        "--env",
        "CONF_THRESHOLD=1.5",
        "--env",
        "LEVELS_PATH=/tmp/x.npy",
        "--env",
        "DEVICE=cuda",
        "--env",
        "CONF_THRESHOLD=0.2",
        "--env",
        "MAX_BATCH_SIZE",
        "--name",
        "Lab_Boxes",
        "--display-name",
        " ",
    ) == [
        "--name 'Lab_Boxes': use lower-case letters, digits and '-' (the function name "
        "'Lab_Boxes' must be a DNS label of at most 63 characters)",
        "--display-name ' ': give one line of text",
        "--env CONF_THRESHOLD: given twice",
        "--env 'MAX_BATCH_SIZE': expected NAME=VALUE",
        "--env CONF_THRESHOLD='1.5': must be <= 1.0",
        "--env LEVELS_PATH: set by the LEVELS file argument",
        "--env DEVICE: set by --gpu (cuda) or its absence (cpu)",
    ]


@pytest.mark.slow
def test_inpaint_backend_opencv_bundles_lama_without_a_model_and_validate_runs_it(tmp_path, capsys):
    """A CPU-only grid removal: no big-lama.pt fetched at build time, and `validate` runs the
    bundle instead of noting that the model is downloaded later."""
    out = tmp_path / "lama.zip"
    assert (
        cli(capsys, "package", "lama", "--env", "INPAINT_BACKEND=opencv", "--output", str(out))[0]
        == 0
    )
    with zipfile.ZipFile(out) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    env = {item["name"]: item["value"] for item in config["spec"]["env"]}
    assert env["INPAINT_BACKEND"] == "opencv" and "LAMA_MODEL" not in env
    assert not any("big-lama" in command for command in config["spec"]["build"]["commands"])
    report = validate(out, probe=run_probe)
    assert report.ok and report.notes == [], (report.problems, report.notes)
    assert "answered a 640x480 JPEG with an inpainted image" in report.summary


@pytest.mark.slow
def test_validate_without_running_says_what_was_checked(tmp_path, capsys):
    out = tmp_path / "blobs.zip"
    assert cli(capsys, "package", "blobs", "--output", str(out))[0] == 0
    assert cli(capsys, "validate", str(out), "--no-run") == (
        0,
        ["valid: example-blobs: configuration valid (not run)"],
    )


def test_a_tensorrt_engine_is_refused_with_the_reason(capsys, tmp_path):
    engine = tmp_path / "best.engine"
    engine.write_bytes(b"\0engine")
    [line] = refused(capsys, tmp_path, "coralsegv4", str(engine))
    assert line.startswith(f"WEIGHTS: {engine}: a TensorRT engine is not packaged: ")
    assert "--gpu (onnxruntime-gpu)" in line


def test_a_cpu_bundle_of_coralscop_warns_and_a_gpu_one_does_not():
    from quadratseg_handlers.deploy.packager import PackageRequest, warnings

    function = FUNCTIONS["pth-mmseg-coralscopsegformer"]
    [warning] = warnings(function, PackageRequest(function, {}))
    assert "ten minutes per quadrat" in warning and "--gpu" in warning
    assert warnings(function, PackageRequest(function, {}, gpu=True)) == []
    assert warnings(FUNCTIONS["pth-yolo-coralsegv4"], PackageRequest(function, {})) == []


@pytest.mark.slow
def test_a_config_whose_custom_module_is_not_shipped_is_refused(tmp_path):
    """The config's custom module sits next to the user's config but is not given by --source:
    the package step sees only what the bundle will hold, so it stops there (before, the
    staged config resolved to its original folder, found the module, and the bundle then
    failed `validate`). A fresh process: this one may have imported the module already."""
    from quadratseg_handlers.demo.tinymodels.coralscop import MODULE_NAME, coralscop_files

    files = coralscop_files(tmp_path / "models")
    out = tmp_path / "coralscop.zip"
    arguments = [str(files[name]) for name in ("segformer-weights", "segformer-config")]
    result = subprocess.run(
        [sys.executable, "-m", "quadratseg_handlers", "package", "coralscopsegformer"]
        + [*arguments, str(files["sam-weights"]), "--output", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and not out.exists(), result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("quadratseg package:")]
    assert line.startswith(
        f"quadratseg package: error: coralscopsegformer: SEGFORMER_CONFIG={arguments[1]}: "
    )
    assert MODULE_NAME in line


@pytest.mark.slow
def test_use_template_matching_false_is_honoured_and_declares_raw_points(tmp_path, wheel):
    corners = FUNCTIONS["pth-yolo-gridcorners"]
    result = pack(tmp_path, wheel, corners, env=("USE_TEMPLATE_MATCHING=false",))
    with zipfile.ZipFile(result.output) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    env = {item["name"]: item["value"] for item in config["spec"]["env"]}
    assert env["USE_TEMPLATE_MATCHING"] == "false"
    spec = json.loads(config["metadata"]["annotations"]["spec"])
    assert spec == result.labels
    assert {label["type"] for label in spec} == {"points"}
    assert all(label["attributes"] == [cvat.CONFIDENCE_SPEC] for label in spec)
    report = validate(result.output, probe=run_probe)
    assert report.ok, report.problems


@pytest.mark.slow
def test_network_option_sets_the_local_platform_network(tmp_path, capsys):
    out = tmp_path / "nuclio.zip"
    code, _ = cli(capsys, "package", "blobs", "--network", "cvat_cvat", "--output", str(out))
    assert code == 0
    with zipfile.ZipFile(out) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    assert config["spec"]["platform"]["attributes"]["network"] == "cvat_cvat"
    assert refused(capsys, tmp_path, "blobs", "--network", "bad name") == [
        "--network 'bad name': a Docker network name (letters, digits, '_', '.', '-')"
    ]


@pytest.mark.slow
def test_batch_options_turn_on_the_trigger_batch_mode_and_validate(tmp_path, capsys):
    out = tmp_path / "nuclio.zip"
    argv = ["package", "blobs", "--batch-size", "8", "--batch-timeout", "20", "--output", str(out)]
    code, _ = cli(capsys, *argv)
    assert code == 0
    with zipfile.ZipFile(out) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    trigger = config["spec"]["triggers"]["myHttpTrigger"]
    assert trigger["batch"] == {"mode": "enable", "batchSize": 8, "timeout": "20ms"}
    report = validate(out, probe=run_probe)
    assert report.ok, report.problems
    with open_bundle(out) as function:
        assert function.trigger.batch == Batching(8, 20)

    default = tmp_path / "default.zip"
    assert cli(capsys, "package", "blobs", "--batch-size", "4", "--output", str(default))[0] == 0
    with zipfile.ZipFile(default) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    assert config["spec"]["triggers"]["myHttpTrigger"]["batch"]["timeout"] == (
        f"{DEFAULT_BATCH_TIMEOUT_MS}ms"
    )
    assert refused(capsys, tmp_path, "blobs", "--batch-size", "0", "--batch-timeout", "0") == [
        "--batch-size 0: expected a whole number of events >= 1",
        f"--batch-timeout 0: expected milliseconds from 1 to {MAX_BATCH_TIMEOUT_MS} "
        "(how long a batch waits to fill)",
    ]
    assert refused(capsys, tmp_path, "blobs", "--batch-timeout", "30") == [
        "--batch-timeout needs --batch-size (the events per batch)"
    ]


@pytest.mark.slow
def test_the_wheel_carries_no_demo_weights(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.startswith("quadratseg_handlers/local/") for name in names)
    assert not [name for name in names if "demo-models" in name or name.endswith(".pt")]
    assert wheel.stat().st_size < 2_000_000


@pytest.mark.slow
def test_cuda_option_packages_a_gpu_bundle_pinned_at_that_build(tmp_path, capsys, wheel):
    levels = level_box_files(tmp_path)["levels"]
    out = tmp_path / "cu126.zip"
    code, lines = cli(
        capsys, "package", "levelboxes", str(levels), "--cuda", "12.6", "--output", str(out)
    )
    assert code == 0, lines
    assert lines[0].startswith(f"packaged test-level-boxes (GPU, CUDA 12.6) -> {out}: ")
    with zipfile.ZipFile(out) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
        pins = bundle.read("nuclio/constraints.txt").decode().splitlines()
    assert config["metadata"]["annotations"]["quadratseg.cuda"] == "12.6"
    assert config["metadata"]["annotations"]["quadratseg.min-driver"] == "525.60.13"
    assert config["spec"]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    env = {item["name"]: item["value"] for item in config["spec"]["env"]}
    assert env["DEVICE"] == "cuda"
    assert "torch==2.13.0+cu126" in pins and "torchvision==0.28.0+cu126" in pins
    assert not [pin for pin in pins if pin.startswith(("cuda-toolkit", "nvidia-cublas"))]
    assert validate(out, probe=None).ok


def test_an_unpublished_cuda_version_is_refused_with_the_published_ones(capsys, tmp_path, levels):
    assert refused(capsys, tmp_path, "levelboxes", str(levels), "--cuda", "12.8") == [
        "--cuda 12.8: torch 2.13.0 has no CUDA 12.8 build on https://download.pytorch.org/whl "
        "(published: 12.6, 13.0, 13.2); a CUDA 12 driver (>= 525.60.13) runs --cuda 12.6"
    ]


@pytest.mark.slow
def test_a_coral_model_is_named_and_described_from_its_weights(tmp_path, wheel):
    """The catalogue's "CoralSeg v4 (YOLO11-seg, CRIOBE genera)" is the CRIOBE model's name: a
    lab's own weights are named by their architecture and label count, unless given."""
    coral = FUNCTIONS["pth-yolo-coralsegv4"]
    result = pack(tmp_path, wheel, coral)
    names = [label["name"] for label in result.labels]
    with zipfile.ZipFile(result.output) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    family = "YOLO11n-seg"
    assert config["metadata"]["annotations"]["name"] == (
        f"CoralSeg v4 ({family}, {len(names)} labels)"
    )
    assert config["spec"]["description"] == (
        f"Coral instance segmentation with {family}: {len(names)} labels ({', '.join(names)})"
    )
    given = pack(
        tmp_path / "given",
        wheel,
        coral,
        display_name="Moorea corals",
        description="Our 6 genera",
        output=tmp_path / "given.zip",
    )
    with zipfile.ZipFile(given.output) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    assert config["metadata"]["annotations"]["name"] == "Moorea corals"
    assert config["spec"]["description"] == "Our 6 genera"


def test_names_from_the_weights_count_labels_and_shorten_long_lists():
    coral = FUNCTIONS["pth-yolo-coralsegv4"]
    six = coral.described_by(["a", "b", "c", "d", "e", "f"], "YOLO11s-seg")
    assert six.title == "CoralSeg v4 (YOLO11s-seg, 6 labels)"
    assert (
        six.description
        == "Coral instance segmentation with YOLO11s-seg: 6 labels (a, b, c, d, e, f)"
    )
    many = coral.described_by([f"g{i}" for i in range(16)], None)
    assert many.title == "CoralSeg v4 (pytorch, 16 labels)"
    assert many.description.endswith("16 labels (g0, g1, g2, g3, g4, g5, g6, g7, ...)")
    assert coral.described_by([], "YOLO11n-seg") == coral  # weights fetched at build time
    grid = FUNCTIONS["pth-yolo-gridpose"]
    assert grid.described_by(["grid"], "YOLO11n-pose").title == grid.title


def tiny_wheel(folder: Path, name: str = "tinydep", version: str = "1.0") -> Path:
    """A real (pure Python) wheel of a one-module package, written by hand: pip takes it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 1\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{entry},,\n" for entry in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for entry, text in {**files, f"{info}/RECORD": record}.items():
            archive.writestr(entry, text)
    return path


@pytest.mark.slow
def test_a_wheelhouse_bundle_carries_its_wheels_and_installs_offline(tmp_path, wheel, source):
    """`--wheelhouse`: pip downloads the image's requirements (here one tiny package, from a
    local index) into the bundle's wheels/, and every install runs after the copy with
    --no-index; pip resolves the bundle's requirements from those wheels alone."""
    index = tmp_path / "index"
    tiny_wheel(index)
    tiny = replace(source, dependencies=("tinydep",), extras={}, constraints={"tinydep": "==1.0"})
    levels = level_box_files(tmp_path)["levels"]
    request = PackageRequest(
        LEVELS, {"levels": levels}, output=tmp_path / "wh.zip", wheelhouse=True
    )
    local = ("--no-index", "--find-links", str(index))
    result = package(request, source=tiny, wheel=wheel, pip_options=local)
    assert "nuclio/wheels/tinydep-1.0-py3-none-any.whl" in result.entries
    with zipfile.ZipFile(result.output) as bundle:
        config = yaml.safe_load(bundle.read("nuclio/function.yaml"))
    assert config["metadata"]["annotations"]["quadratseg.wheelhouse"] == "wheels"
    offline = "python -m pip install --no-cache-dir --no-index --find-links /opt/nuclio/wheels"
    assert config["spec"]["build"]["commands"] == [
        "@nuclio.postCopy",
        f"{offline} tinydep==1.0",
        f"{offline} -c /opt/nuclio/constraints.txt /opt/nuclio/{wheel.name}",
    ]
    assert validate(result.output, probe=None).ok
    folder = unpack(result.output, tmp_path / "bundle")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links",
         str(folder / "wheels"), "--target", str(tmp_path / "target"), "tinydep==1.0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "Would install tinydep-1.0" in done.stdout, done.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    missing = replace(request, output=tmp_path / "missing.zip")
    with pytest.raises(PackageError) as caught:
        package(
            missing,
            source=tiny,
            wheel=wheel,
            pip_options=("--no-index", "--find-links", str(empty)),
        )
    assert caught.value.code == 1 and not missing.output.exists()
    [problem] = caught.value.problems
    assert problem.startswith(
        "--wheelhouse: no wheel set for tinydep==1.0 on Linux x86_64 CPython 3.11: "
    )


def test_a_wheelhouse_bundle_needs_every_file_given(capsys, tmp_path):
    assert refused(capsys, tmp_path, "maskfill", "--wheelhouse") == [
        "--wheelhouse: give every file (one would be downloaded at build time)"
    ]

"""`quadratseg validate` finds what is wrong with a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from bundles_for_tests import as_packaged_by_0_1
from packaging_for_tests import cli

from quadratseg_handlers import cvat
from quadratseg_handlers.deploy.bundle_checks import validate
from quadratseg_handlers.deploy.function_yaml import MIN_REQUEST_BODY, BundleError
from quadratseg_handlers.local.bundle import run_probe

# --- validate finds what is wrong ---------------------------------------------------------------


def edit_yaml(folder: Path, change) -> None:
    path = folder / "function.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config))


@pytest.mark.slow
def test_validate_reports_configuration_problems(bundle):
    def break_it(config):
        del config["spec"]["description"]
        config["spec"]["runtime"] = "python:3.8"
        config["spec"]["eventTimeout"] = "30s"
        del config["spec"]["triggers"]["myHttpTrigger"]["attributes"]["maxRequestBodySize"]
        labels = json.loads(config["metadata"]["annotations"]["spec"])
        config["metadata"]["annotations"]["spec"] = json.dumps(labels + labels[:1])

    edit_yaml(bundle, break_it)
    assert validate(bundle, probe=run_probe).problems == [
        "spec.description: missing (CVAT fails to list the function without it)",
        "spec.runtime: 'python:3.8', expected one of python:3.9, python:3.10, python:3.11",
        "spec.eventTimeout: '30s', expected a duration of at least 120s",
        f"spec.triggers.myHttpTrigger.attributes.maxRequestBodySize: None, expected at least "
        f"{MIN_REQUEST_BODY} (a 30 MB frame as base64; Nuclio's default is 4 MiB)",
        "spec: label 'dim': declared twice (CVAT refuses non-unique labels)",
    ]


@pytest.mark.slow
def test_validate_accepts_the_trigger_batch_mode_and_rejects_a_bad_one(bundle):
    def batch(config, **values):
        config["spec"]["triggers"]["myHttpTrigger"]["batch"] = {"mode": "enable", **values}

    edit_yaml(bundle, lambda config: batch(config, batchSize=4, timeout="25ms"))
    assert validate(bundle, probe=run_probe).ok
    edit_yaml(bundle, lambda config: batch(config, batchSize=0, timeout="25"))
    assert validate(bundle, probe=run_probe).problems == [
        "spec.triggers.myHttpTrigger.batch.batchSize: 0, expected a whole number >= 1",
        "spec.triggers.myHttpTrigger.batch.timeout: '25', expected a duration from 1ms to "
        "10000ms (e.g. 50ms)",
    ]


@pytest.mark.slow
def test_validate_reports_missing_files(bundle, wheel):
    (bundle / "levels.npy").unlink()
    (bundle / wheel.name).unlink()
    assert validate(bundle, probe=run_probe).problems == [
        "spec.env: LEVELS_PATH=/opt/nuclio/levels.npy but the bundle has no levels.npy",
        f"spec.build.commands: {wheel.name} is not in the bundle",
    ]


@pytest.mark.slow
def test_validate_checks_the_answer_against_the_spec(bundle, capsys):
    def rename(config):
        labels = [cvat.label_spec("other", "rectangle"), cvat.label_spec("bright", "rectangle")]
        config["metadata"]["annotations"]["spec"] = cvat.spec_json(labels)

    edit_yaml(bundle, rename)
    code, err = cli(capsys, "validate", str(bundle))
    assert code == 1
    assert (
        err[0] == "quadratseg validate: error: answer: shape 0 ('dim'): label 'dim' is not in "
        "the spec"
    )


@pytest.mark.slow
def test_validate_reports_a_broken_main_py(bundle):
    (bundle / "main.py").write_text("raise RuntimeError('broken\\nsecond line')\n")
    assert validate(bundle, probe=run_probe).problems == ["main.py: RuntimeError: broken"]
    assert validate(bundle).ok


def packaged_by_0_1(importer: str, usage: str) -> str:
    """The line validate ends with for the test bundle made a 0.1 bundle (exit 2)."""
    return (
        "quadratseg validate: error: test-level-boxes: packaged with quadratseg-handlers 0.1.0 "
        f"({importer} imports quadratseg_handlers.blobs, which this version does not have); "
        f"package it again with `quadratseg package {usage}`"
    )


@pytest.mark.slow
def test_validate_asks_to_package_a_0_1_bundle_again_before_running_it(bundle, capsys):
    as_packaged_by_0_1(bundle)
    expected = packaged_by_0_1("main.py", "levelboxes LEVELS [NAMES]")
    assert cli(capsys, "validate", str(bundle)) == (2, [expected])
    assert cli(capsys, "validate", "--no-run", str(bundle)) == (2, [expected])


@pytest.mark.slow
def test_validate_finds_a_0_1_import_when_it_runs_the_bundle(bundle, capsys):
    # the probe's process knows the real catalogue only: the bundle says it is example-blobs
    as_packaged_by_0_1(bundle, through="handler_of_0_1.py", function="example-blobs")
    expected = packaged_by_0_1("handler_of_0_1.py", "blobs")
    assert cli(capsys, "validate", str(bundle)) == (2, [expected])


@pytest.mark.slow
def test_validate_reports_unparsable_yaml_and_bad_paths(tmp_path, capsys, bundle):
    (bundle / "function.yaml").write_text("metadata: [unclosed\n")
    with pytest.raises(
        BundleError, match=r"^function\.yaml: not a YAML file \(while parsing a flow"
    ):
        validate(bundle, probe=run_probe)
    (bundle / "function.yaml").write_bytes(b"metadata: \xff\xfe\n")
    with pytest.raises(BundleError, match=r"^function\.yaml: not a YAML file \(not UTF-8 text\)$"):
        validate(bundle)
    (bundle / "function.yaml").write_text("- a list\n")
    assert cli(capsys, "validate", str(bundle)) == (
        2, ["quadratseg validate: error: function.yaml: expected a mapping with metadata and spec"]
    )  # fmt: skip
    assert cli(capsys, "validate", str(tmp_path / "absent.zip")) == (
        2,
        [f"quadratseg validate: error: {tmp_path / 'absent.zip'}: not found"],
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "validate", str(empty)) == (
        2,
        [f"quadratseg validate: error: {empty}: holds no function.yaml (nor nuclio/function.yaml)"],
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

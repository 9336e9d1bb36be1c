"""Reading function.yaml and bundles: labels, trigger limits, /opt/nuclio paths, zips, errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml
from bundles_for_tests import BLOB_LABELS, BLOB_MAIN, write_bundle

from quadratseg_handlers.deploy.function_yaml import (
    Batching,
    BundleError,
    HttpTrigger,
    batch_problems,
    config_problems,
    open_bundle,
    read_function_config,
)


def test_reads_name_labels_env_and_trigger(tmp_path):
    folder = write_bundle(
        tmp_path / "b", BLOB_MAIN, name="pth-x", env={"BLOB_LEVEL": "150"},
        workers=3, availability_ms=250, max_body=1000,
    )  # fmt: skip
    config = read_function_config(folder)
    assert config.name == "pth-x"
    assert config.labels == BLOB_LABELS
    assert config.env == {"BLOB_LEVEL": "150"}
    assert config.trigger == HttpTrigger("myHttpTrigger", 3, 250, 1000)
    assert config.module_path == folder.resolve() / "main.py"
    assert (config.handler_module, config.handler_function) == ("main", "handler")
    assert read_function_config(folder / "function.yaml") == config


def test_nuclio_defaults_without_a_trigger(tmp_path):
    folder = write_bundle(tmp_path / "b", BLOB_MAIN)
    document = yaml.safe_load((folder / "function.yaml").read_text())
    del document["spec"]["triggers"]
    (folder / "function.yaml").write_text(yaml.safe_dump(document))
    assert read_function_config(folder).trigger == HttpTrigger("http", 1, 10_000, 4 * 1024 * 1024)


def test_opt_nuclio_paths_map_to_the_bundle_only_when_the_bundle_has_the_file(tmp_path):
    folder = write_bundle(
        tmp_path / "b",
        BLOB_MAIN,
        env={
            "MODEL_PATH": "/opt/nuclio/best.pt",
            "TEMPLATE_PATH": "/opt/nuclio/missing.npy",
            "OTHER": "/data/x.pt",
        },
    )
    (folder / "best.pt").write_bytes(b"weights")
    env = read_function_config(folder).env
    assert env == {
        "MODEL_PATH": str(folder.resolve() / "best.pt"),
        "TEMPLATE_PATH": "/opt/nuclio/missing.npy",
        "OTHER": "/data/x.pt",
    }


def test_zip_bundle_is_unpacked_for_the_block_and_removed_after(tmp_path):
    folder = write_bundle(tmp_path / "src", BLOB_MAIN, name="zipped")
    archive = tmp_path / "nuclio.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in folder.iterdir():
            zipped.write(path, f"nuclio/{path.name}")
    with open_bundle(archive) as config:
        assert config.name == "zipped"
        assert config.module_path.is_file()
        unpacked = config.folder
    assert not unpacked.exists()


def test_unzipped_layout_with_nuclio_folder(tmp_path):
    write_bundle(tmp_path / "unzipped" / "nuclio", BLOB_MAIN, name="inner")
    assert read_function_config(tmp_path / "unzipped").name == "inner"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["metadata"]["annotations"].pop("spec"),
            "metadata.annotations.spec is missing",
        ),
        (
            lambda d: d["metadata"]["annotations"].update(spec="[{"),
            "metadata.annotations.spec is not valid JSON",
        ),
        (
            lambda d: d["spec"]["triggers"]["myHttpTrigger"].update(numWorkers=0),
            "spec.triggers.myHttpTrigger.numWorkers must be a positive integer, got 0",
        ),
        (
            lambda d: d["spec"]["triggers"]["myHttpTrigger"]["attributes"].update(
                maxRequestBodySize="big"
            ),
            "maxRequestBodySize must be a positive integer, got 'big'",
        ),
        (lambda d: d["spec"].update(handler="main"), "spec.handler must read module:function"),
        (
            lambda d: d["spec"]["triggers"]["myHttpTrigger"].update(
                batch={"mode": "enable", "batchSize": 4, "timeout": "soon"}
            ),
            "spec.triggers.myHttpTrigger.batch.timeout: 'soon', expected a duration from 1ms",
        ),
    ],
)
def test_bad_function_yaml_is_one_clear_line(tmp_path, edit, message):
    folder = write_bundle(tmp_path / "b", BLOB_MAIN)
    document = yaml.safe_load((folder / "function.yaml").read_text())
    edit(document)
    (folder / "function.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(BundleError, match=message.replace("[", r"\[").replace("(", r"\(")) as info:
        read_function_config(folder)
    assert "\n" not in str(info.value)


def test_a_pipeline_only_function_without_type_or_spec_reads_with_no_labels(tmp_path):
    folder = write_bundle(tmp_path / "b", BLOB_MAIN)
    document = yaml.safe_load((folder / "function.yaml").read_text())
    document["metadata"]["annotations"].pop("spec")
    document["metadata"]["annotations"].pop("type", None)
    (folder / "function.yaml").write_text(yaml.safe_dump(document))
    assert read_function_config(folder).labels == []


def test_missing_and_unreadable_bundles(tmp_path):
    with pytest.raises(BundleError, match="no such file or folder"):
        read_function_config(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no function.yaml in this folder"):
        read_function_config(tmp_path / "empty")
    bad = tmp_path / "function.yaml"
    bad.write_text("metadata: [unclosed")
    with pytest.raises(BundleError, match="not a YAML file"):
        read_function_config(bad)
    Path(tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(BundleError, match="expected a mapping"):
        read_function_config(tmp_path / "list.yaml")


def test_zip_bundle_with_an_unsafe_entry_name_is_refused(tmp_path):
    folder = write_bundle(tmp_path / "src", BLOB_MAIN, name="zipped")
    archive = tmp_path / "nuclio.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(folder / "function.yaml", "function.yaml")
        zipped.writestr("../escape.txt", b"x")
    with pytest.raises(BundleError, match="'..' component"), open_bundle(archive):
        pass


def batch_document(tmp_path: Path, batch: object) -> tuple[Path, dict]:
    folder = write_bundle(tmp_path / "b", BLOB_MAIN)
    document = yaml.safe_load((folder / "function.yaml").read_text())
    document["spec"]["triggers"]["myHttpTrigger"]["batch"] = batch
    (folder / "function.yaml").write_text(yaml.safe_dump(document))
    return folder, document


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        ({"mode": "enable", "batchSize": 8, "timeout": "100ms"}, Batching(8, 100)),
        ({"mode": "enable", "batchSize": 2, "timeout": "1.5s"}, Batching(2, 1500)),
        ({"mode": "disable"}, None),
        (None, None),
    ],
)
def test_the_trigger_batch_mode_is_read(tmp_path, batch, expected):
    folder, _ = batch_document(tmp_path, batch)
    assert read_function_config(folder).trigger.batch == expected


@pytest.mark.parametrize(
    ("batch", "problems"),
    [
        ("on", ["T.batch: must be a mapping with mode, batchSize and timeout"]),
        ({"mode": "yes"}, ["T.batch.mode: 'yes', expected 'enable' or 'disable'"]),
        (
            {"mode": "enable", "batchSize": 0, "timeout": "0s"},
            [
                "T.batch.batchSize: 0, expected a whole number >= 1",
                "T.batch.timeout: '0s', expected a duration from 1ms to 10000ms (e.g. 50ms)",
            ],
        ),
        (
            {"mode": "enable", "batchSize": True, "timeout": "11s"},
            [
                "T.batch.batchSize: True, expected a whole number >= 1",
                "T.batch.timeout: '11s', expected a duration from 1ms to 10000ms (e.g. 50ms)",
            ],
        ),
        ({"mode": "enable", "batchSize": 16, "timeout": "10s"}, []),
    ],
)
def test_batch_problems_name_the_key(batch, problems):
    assert batch_problems(batch, "T") == problems


def test_config_problems_check_the_trigger_batch(tmp_path):
    _, document = batch_document(tmp_path, {"mode": "enable", "batchSize": "8", "timeout": "1s"})
    wrong = "spec.triggers.myHttpTrigger.batch.batchSize: '8', expected a whole number >= 1"
    assert wrong in config_problems(document)
    document["spec"]["triggers"]["myHttpTrigger"]["batch"]["batchSize"] = 8
    assert not [p for p in config_problems(document) if ".batch" in p]

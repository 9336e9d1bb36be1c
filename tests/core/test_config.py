"""Settings: parsing, validation naming the variable, overrides, defaults, the docs table."""

from __future__ import annotations

import pytest

from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import ConfigError, Setting, load_config
from quadratseg_handlers.handlers.blobs import BlobHandler

SETTINGS = [
    Setting("RATIO", cfg.number(0.0, 1.0), 0.25, "a ratio", "number"),
    Setting("COUNT", cfg.number(1, integer=True), 3, "a count", "integer"),
    Setting("FLAG", cfg.boolean, True, "a flag", "boolean"),
    Setting("MODE", cfg.choice("fast", "slow"), "fast", "a mode"),
]


def test_defaults_and_environment():
    values = load_config(
        SETTINGS, environ={"RATIO": "0.5", "COUNT": "7", "FLAG": "off", "MODE": "SLOW"}
    )
    assert dict(values) == {"RATIO": 0.5, "COUNT": 7, "FLAG": False, "MODE": "slow"}
    assert dict(load_config(SETTINGS, environ={"RATIO": " "})) == {
        "RATIO": 0.25,
        "COUNT": 3,
        "FLAG": True,
        "MODE": "fast",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RATIO": "1.5"}, "RATIO='1.5': must be <= 1.0"),
        ({"RATIO": "abc"}, "RATIO='abc': expected number"),
        ({"RATIO": "nan"}, "RATIO='nan': expected a finite number"),
        ({"COUNT": "2.5"}, "COUNT='2.5': expected integer"),
        ({"COUNT": "0"}, "COUNT='0': must be >= 1"),
        ({"FLAG": "maybe"}, "FLAG='maybe': expected true or false"),
        ({"MODE": "warp"}, "MODE='warp': expected one of fast, slow"),
    ],
)
def test_invalid_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as info:
        load_config(SETTINGS, environ=env)
    assert str(info.value).startswith(message)


def test_keyword_overrides_any_case_and_typed_values():
    values = load_config(SETTINGS, {"ratio": 0.75, "Count": 2, "flag": False}, environ={})
    assert values["RATIO"] == 0.75 and values["COUNT"] == 2 and values["FLAG"] is False
    with pytest.raises(ConfigError, match="COUNT=2.5"):
        load_config(SETTINGS, {"count": 2.5}, environ={})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(SETTINGS, {"ratoi": 1}, environ={})
    with pytest.raises(KeyError, match="not a setting"):
        values["NOPE"]


def test_files_and_devices(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    assert cfg.existing_file(str(weights)) == weights
    with pytest.raises(ConfigError, match="file not found"):
        cfg.existing_file(str(tmp_path / "missing.pt"))
    assert cfg.device("CUDA:1") == "cuda:1"
    with pytest.raises(ConfigError):
        cfg.device("gpu")
    assert cfg.resolve_device("cpu") == "cpu"
    assert cfg.resolve_device("auto") in {"cpu", "cuda:0"}


def test_subclass_settings_and_defaults_are_merged():
    names = [s.name for s in BlobHandler.declared_settings()]
    assert names[:4] == ["DEVICE", "CONF_THRESHOLD", "MAX_IMAGE_PIXELS", "MAX_BATCH_SIZE"]
    assert {"CONVERT_TO_POLYLINE", "MIN_AREA", "BLOB_LEVEL"} <= set(names)
    handler = BlobHandler(environ={"BLOB_LEVEL": "180"})
    assert handler.config["BLOB_LEVEL"] == 180 and handler.device == "cpu"


def test_combined_table_lists_each_variable_once():
    table = cfg.combined_table(
        {
            "a": [SETTINGS[0], SETTINGS[1]],
            "b": [SETTINGS[0].with_default(0.5)],
        }
    )
    lines = table.splitlines()
    assert lines[2] == "| `RATIO` | `0.25` (b: `0.5`) | all | a ratio |"
    assert lines[3] == "| `COUNT` | `3` | a | a count |"


def test_a_required_file_names_the_variable_and_the_hint(tmp_path):
    present = tmp_path / "weights.pt"
    present.write_bytes(b"x")
    assert cfg.required_file("MODEL_PATH", str(present)) == present
    missing = tmp_path / "absent.pt"
    with pytest.raises(ConfigError) as caught:
        cfg.required_file("MODEL_PATH", missing, "package the weights")
    assert str(caught.value) == f"MODEL_PATH={missing}: file not found; package the weights"
    with pytest.raises(ConfigError, match=f"^SAM_WEIGHTS={tmp_path}: file not found$"):
        cfg.required_file("SAM_WEIGHTS", tmp_path)


def test_a_file_path_setting_is_checked_at_load_not_at_parse(tmp_path):
    setting = Setting("TEMPLATE_PATH", cfg.file_path, "/opt/nuclio/t.npy", "template")
    assert setting.read(f"~/{tmp_path.name}/absent.npy").name == "absent.npy"
    with pytest.raises(ConfigError, match="TEMPLATE_PATH=' ': must not be empty"):
        setting.read(" ")

"""Settings: parsing, validation naming the variable, overrides, defaults, the docs table."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path
from typing import Literal

import pytest

from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import ConfigError, Setting, Settings, retuned, setting
from quadratseg_handlers.handlers.blobs import BlobHandler


@dataclass(frozen=True)
class ExampleSettings(Settings):
    ratio: float = setting(0.25, "a ratio", low=0.0, high=1.0)
    count: int = setting(3, "a count", low=1)
    flag: bool = setting(True, "a flag")
    mode: Literal["fast", "slow"] = setting("fast", "a mode")
    limit: int | None = setting(None, "an optional limit", low=1)


@dataclass(frozen=True)
class TunedSettings(ExampleSettings):
    count: int = retuned(ExampleSettings, "count", 5)
    path: Path = setting(Path("/opt/nuclio/t.npy"), "a file")


SETTINGS = ExampleSettings.declared()


def test_the_kind_and_parser_come_from_the_type():
    assert [(s.name, s.kind, s.default) for s in SETTINGS] == [
        ("RATIO", "number", 0.25),
        ("COUNT", "integer", 3),
        ("FLAG", "boolean", True),
        ("MODE", "choice", "fast"),
        ("LIMIT", "integer", None),
    ]
    tuned = TunedSettings.declared()
    assert [s.name for s in tuned] == ["RATIO", "COUNT", "FLAG", "MODE", "LIMIT", "PATH"]
    assert tuned[1].default == 5 and tuned[1].help == "a count"
    assert (tuned[5].kind, tuned[5].default_text) == ("path", "/opt/nuclio/t.npy")
    with pytest.raises(TypeError, match="no setting nope"):
        retuned(ExampleSettings, "nope", 1)


def test_defaults_and_environment():
    values = ExampleSettings.load(
        environ={"RATIO": "0.5", "COUNT": "7", "FLAG": "off", "MODE": "SLOW", "LIMIT": "9"}
    )
    assert values == ExampleSettings(ratio=0.5, count=7, flag=False, mode="slow", limit=9)
    assert isinstance(values.count, int) and isinstance(values.ratio, float)
    assert ExampleSettings.load(environ={"RATIO": " "}) == ExampleSettings()


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
        ({"LIMIT": "0"}, "LIMIT='0': must be >= 1"),
    ],
)
def test_invalid_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as info:
        ExampleSettings.load(environ=env)
    assert str(info.value).startswith(message)


def test_keyword_overrides_any_case_and_typed_values():
    values = ExampleSettings.load({"ratio": 0.75, "Count": 2, "flag": False}, environ={})
    assert values.ratio == 0.75 and values.count == 2 and values.flag is False
    with pytest.raises(ConfigError, match="COUNT=2.5"):
        ExampleSettings.load({"count": 2.5}, environ={})
    with pytest.raises(ConfigError, match="unknown setting"):
        ExampleSettings.load({"ratoi": 1}, environ={})
    with pytest.raises(FrozenInstanceError):
        values.ratio = 0.5  # type: ignore[misc]


def test_settings_are_read_without_casts():
    """No handler, backend or demo module reads a setting by name or through a cast: each
    is a typed attribute of its settings dataclass."""
    package = Path(__file__).resolve().parents[2] / "quadratseg_handlers"
    offending = []
    for path in sorted(package.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if (
                "config[" in line
                and ".config[" in line
                or re.search(r"\b(int|float|bool|str)\(self\.settings\.", line)
            ):
                offending.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert offending == []


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
    assert names[:5] == [
        "DEVICE", "CONF_THRESHOLD", "MAX_IMAGE_PIXELS", "MAX_DECODE_MB", "MAX_BATCH_SIZE"
    ]  # fmt: skip
    assert {"CONVERT_TO_POLYLINE", "MIN_AREA", "BLOB_LEVEL"} <= set(names)
    handler = BlobHandler(environ={"BLOB_LEVEL": "180"})
    assert handler.settings.blob_level == 180 and handler.device == "cpu"


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

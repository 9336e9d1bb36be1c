"""The command line: demo, settings, and one-line errors with exit codes."""

from __future__ import annotations

import json

import pytest

from quadratseg_handlers.cli.main import main


def test_demo_prints_valid_cvat_json(capsys):
    args = ["--example", "--compact", "--blobs", "3", "--width", "200", "--height", "160"]
    assert main(["demo", *args]) == 0
    out, err = capsys.readouterr()
    shapes = json.loads(out.strip().splitlines()[-1])
    assert shapes and all(s["label"] == "blob" and s["type"] == "polygon" for s in shapes)
    assert "valid CVAT JSON" in err


@pytest.mark.parametrize("name", ["example-blobs", "blobs"])
def test_settings_table_by_function_or_short_name(capsys, name):
    assert main(["settings", name]) == 0
    assert "| `BLOB_LEVEL` | `200` |" in capsys.readouterr().out


def test_unknown_function_is_one_line_and_exit_2(capsys):
    assert main(["settings", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'nope'; valid: coralsegv4, " in err

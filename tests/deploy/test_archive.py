"""Zip safety: entry names that would escape the bundle folder."""

from __future__ import annotations

import zipfile

import pytest
from packaging_for_tests import cli

from quadratseg_handlers.deploy import archive, extraction

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
    assert code == 2 and err == [
        f"quadratseg validate: error: {bad}: entry name '../evil.txt' has an empty, '.' or '..' "
        "component"
    ]
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(ValueError):
        extraction.extract(bad, tmp_path / "out")

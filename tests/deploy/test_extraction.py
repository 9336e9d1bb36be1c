"""Hostile or damaged bundle zips: refused in one line (exit 2) by validate and serve, before
anything is unpacked; a full disk is one line too."""

from __future__ import annotations

import errno
import re
import zipfile
from pathlib import Path

import pytest
from packaging_for_tests import cli

from quadratseg_handlers.deploy import extraction
from quadratseg_handlers.deploy.extraction import ArchiveError, size_problems
from quadratseg_handlers.deploy.function_yaml import BundleError, open_bundle

YAML = "metadata: {name: x}\nspec: {handler: 'main:handler'}\n"


def bomb(path: Path, size: int = 64 * 1024 * 1024) -> Path:
    """A zip whose one entry of zeros deflates about a thousand times."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("nuclio/function.yaml", YAML)
        with archive.open("nuclio/zeros.bin", "w", force_zip64=True) as entry:
            for _ in range(size // (1024 * 1024)):
                entry.write(bytes(1024 * 1024))
    return path


def damaged(path: Path) -> Path:
    """A zip whose stored entry has one byte changed: its CRC no longer matches."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("nuclio/function.yaml", YAML)
        archive.writestr("nuclio/weights.bin", b"w" * 4096)
    data = bytearray(path.read_bytes())
    data[data.index(b"w" * 64) + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def cut_short(path: Path) -> Path:
    damaged(path)
    path.write_bytes(path.read_bytes()[:1000])
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (bomb, r"entry 'nuclio/zeros\.bin' expands 10\d\d times \(6\d\.\d KiB to 64\.0 MiB\), "
               r"over the limit of 100: a zip bomb\?"),
        (damaged, r"entry 'nuclio/weights\.bin' is damaged \(Bad CRC-32 for file "
                  r"'nuclio/weights\.bin'\)"),
        (cut_short, r"not a complete zip archive \(cut short or damaged\)"),
    ],
)  # fmt: skip
def test_validate_and_serve_refuse_in_one_line(tmp_path, capsys, make, expected):
    bundle = make(tmp_path / "nuclio.zip")
    for command in ("validate", "serve"):
        code, err = cli(capsys, command, str(bundle))
        assert code == 2 and len(err) == 1
        assert re.fullmatch(
            f"quadratseg {command}: error: {re.escape(str(bundle))}: {expected}", err[0]
        )


def test_a_bomb_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match="zip bomb"):
        extraction.extract(bomb(tmp_path / "b.zip"), out)
    assert list(out.iterdir()) == []


def test_totals_over_the_limit_or_the_free_space_are_refused(tmp_path, monkeypatch):
    infos = [zipfile.ZipInfo("a"), zipfile.ZipInfo("b")]
    for info in infos:
        info.file_size = info.compress_size = 3 * 1024**3
    assert size_problems(infos, free=10 * 1024**3) == []
    assert size_problems(infos, free=1024**3) == [
        "expands to 6.0 GiB, but only 1.0 GiB is free to unpack it and 256.0 MiB must stay free"
    ]
    monkeypatch.setattr(extraction, "MAX_UNPACKED_BYTES", 4 * 1024**3)
    assert size_problems(infos) == ["expands to 6.0 GiB, over the limit of 4.0 GiB"]


def test_a_full_disk_while_unpacking_is_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(extraction.shutil, "copyfileobj", full)
    bundle = damaged(tmp_path / "nuclio.zip")
    with (
        pytest.raises(BundleError, match=r"cannot unpack into .*: no space left$"),
        open_bundle(bundle),
    ):
        pass


def test_a_full_temporary_folder_is_one_line(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/quadratseg-validate-x")

    monkeypatch.setattr("tempfile.mkdtemp", full)
    code, err = cli(capsys, "validate", str(damaged(tmp_path / "nuclio.zip")))
    assert (code, err) == (
        2, ["quadratseg validate: error: No space left on device: /tmp/quadratseg-validate-x"]
    )  # fmt: skip

"""Hostile bundles and a full disk (issue 29): a zip of many small entries of zeros, a bundle
that fits only by filling the disk, a function.yaml nested 50,000 levels deep, and `package`
writing onto a full disk. Each is one line and exit 2 in every command, nothing left behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from packaging_for_tests import ROOT, TESTS, cli

from quadratseg_handlers.deploy import archive, extraction
from quadratseg_handlers.deploy.extraction import FREE_MARGIN, ArchiveError, size_problems

YAML = "metadata: {name: x}\nspec: {handler: 'main:handler'}\n"


def small_entry_bomb(path: Path, entries: int = 600) -> Path:
    """``entries`` entries of 1 MiB of zeros each, none over the per-entry ratio floor: some
    2 MB of zip that unpack to 600 MiB, the 2,000-entry bomb of the issue (7 MB to 2 GB)
    made smaller, with its ratio."""
    zeros = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bomb:
        bomb.writestr("nuclio/function.yaml", YAML)
        for index in range(entries):
            bomb.writestr(f"nuclio/zeros/{index:04d}.bin", zeros)
    return path


def test_many_small_entries_of_zeros_are_a_zip_bomb_too(tmp_path, capsys):
    bomb = small_entry_bomb(tmp_path / "nuclio.zip")
    assert bomb.stat().st_size < 3 * 1024**2
    for command in ("validate", "serve"):
        started = time.perf_counter()
        code, err = cli(capsys, command, str(bomb))
        assert time.perf_counter() - started < 5.0  # unpacking the 2 GB took a minute
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith(f"quadratseg {command}: error: {bomb}: expands ")
        assert "times, all 601 entries together" in err[0] and err[0].endswith("a zip bomb?")
    out = tmp_path / "out"
    with pytest.raises(ArchiveError, match="all 601 entries together"):
        extraction.extract(bomb, out)
    assert list(out.iterdir()) == []


def test_a_bundle_must_leave_a_margin_of_the_disk_free():
    info = zipfile.ZipInfo("nuclio/weights.pt")
    info.file_size = info.compress_size = 3 * 1024**3
    assert size_problems([info], free=info.file_size + FREE_MARGIN) == []
    assert size_problems([info], free=info.file_size + 1) == [
        "expands to 3.0 GiB, but only 3.0 GiB is free to unpack it and 256.0 MiB must stay free"
    ]


def test_too_many_entries_are_refused():
    infos = [zipfile.ZipInfo(f"nuclio/{index}") for index in range(extraction.MAX_ENTRIES + 1)]
    assert size_problems(infos) == ["holds 10001 entries, over the limit of 10000"]


@pytest.mark.parametrize("zipped", [False, True])
def test_a_function_yaml_nested_50000_deep_is_one_line_and_exit_2(tmp_path, capsys, zipped):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "function.yaml").write_text("metadata: " + "[" * 50_000 + "]" * 50_000 + "\n")
    target = folder
    if zipped:
        target = tmp_path / "nuclio.zip"
        archive.write_zip(target, {"nuclio/function.yaml": folder / "function.yaml"})
    for command in ("validate", "serve"):
        code, err = cli(capsys, command, str(target))
        assert code == 2 and len(err) == 1, err[:3]
        assert err[0].startswith(f"quadratseg {command}: error: ")
        assert err[0].endswith("function.yaml: not a YAML file (nested deeper than 100 levels)")


def test_validate_refuses_an_escaping_entry_with_exit_2_as_serve_does(tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as crafted:
        crafted.writestr("nuclio/function.yaml", YAML)
        crafted.writestr("nuclio/../../evil.txt", "owned")
    lines = []
    for command in ("validate", "serve"):
        code, err = cli(capsys, command, str(bad))
        assert code == 2 and len(err) == 1
        lines.append(err[0].removeprefix(f"quadratseg {command}: error: "))
    assert (
        lines[0]
        == lines[1]
        == (f"{bad}: entry name 'nuclio/../../evil.txt' has an empty, '.' or '..' component")
    )


def _can_mount_a_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = "mkdir -p /tmp && mount -t tmpfs -o size=64k none /tmp"
    result = subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True, check=False)
    return result.returncode == 0


PACKAGE_ONTO = """
import sys
sys.path[:0] = {paths!r}
from packaging_for_tests import LEVELS
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.cli.main import main
FUNCTIONS[LEVELS.name] = LEVELS
sys.exit(main(["package", "levelboxes", {levels!r}, "--output", {output!r}, "--source", {big!r}]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_a_tmpfs(), reason="no user namespaces to mount a tmpfs in")
def test_package_onto_a_real_full_disk(tmp_path, levels, monkeypatch):
    """A 2 MiB tmpfs in a private mount namespace, and a 4 MiB module to ship onto it."""
    big = tmp_path / "big_module.py"
    big.write_bytes(bytes(range(256)) * 16 * 1024)
    disk = tmp_path / "disk"
    disk.mkdir()
    output = disk / "nuclio.zip"
    script = PACKAGE_ONTO.format(
        paths=[str(TESTS / "deploy"), str(TESTS), str(ROOT)],
        levels=str(levels),
        output=str(output),
        big=str(big),
    )
    shell = (
        f'mount -t tmpfs -o size=2m none "{disk}" && "{sys.executable}" -c "$0"; '
        f'echo "exit $?"; ls -A "{disk}"'
    )
    monkeypatch.setenv("QUADRATSEG_WHEEL_CACHE", str(tmp_path / "wheels"))
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", shell, script], capture_output=True, text=True, check=False
    )
    assert result.stderr.strip().splitlines() == [
        f"quadratseg package: error: cannot write {output}: no space left on device"
    ]
    assert result.stdout.strip().splitlines() == ["exit 2"]  # and nothing left on the disk

"""SIGTERM during ``quadratseg package`` cleans up as Ctrl-C does: no hidden partial zip, no
staging folder, exit 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

PACKAGE_SLOWLY = textwrap.dedent(
    """
    import sys
    import time

    from quadratseg_handlers.cli.main import main
    from quadratseg_handlers.deploy import packager


    def wheel(source, folder):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "quadratseg_handlers-0-py3-none-any.whl"
        path.write_bytes(b"wheel")
        return path


    def write_zip(path, entries):
        path.write_bytes(b"partial" * 100_000)
        print("writing", flush=True)
        time.sleep(60)


    packager.build_wheel = wheel
    packager.write_zip = write_zip
    sys.exit(main(["package", "blobs", "--output", sys.argv[1]]))
    """
)


def test_sigterm_while_writing_leaves_nothing_behind(tmp_path):
    output, temporary = tmp_path / "out" / "nuclio.zip", tmp_path / "tmp"
    output.parent.mkdir()
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", PACKAGE_SLOWLY, str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None and process.stdout.readline() == "writing\n"
    assert [p.name for p in output.parent.iterdir()][0].startswith(".nuclio.zip.")
    assert [p.name for p in temporary.iterdir()][0].startswith("quadratseg-package-")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.strip().splitlines()[-1] == "quadratseg package: terminated"
    assert list(output.parent.iterdir()) == [] and list(temporary.iterdir()) == []

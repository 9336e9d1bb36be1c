"""``quadratseg package --wheelhouse``: the wheels a bundle's image installs, carried in it.

A Nuclio host without access to the package registries cannot build a bundle whose
``build.commands`` install from them. With a wheelhouse, the package step downloads every
wheel the image's pip installs need (:func:`~quadratseg_handlers.deploy.rendering.pip_installs`,
their dependencies included, pinned by the bundle's ``constraints.txt``) for the image's
platform (Linux x86_64, CPython 3.11) into the bundle's ``wheels/``, and the image installs
from there with ``--no-index``. Packaging then needs the registries (PyPI, and PyTorch's
index for a CPU or ``--cuda`` bundle); the build does not.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from quadratseg_handlers.core.messages import last_line
from quadratseg_handlers.deploy.catalog import PipStep

TARGET_PLATFORM = (
    "--only-binary=:all:",
    "--platform", "manylinux_2_28_x86_64",
    "--platform", "manylinux2014_x86_64",
    "--python-version", "3.11",
    "--implementation", "cp",
    "--abi", "cp311",
)  # fmt: skip
"""The images' platform (python:3.11-bookworm, glibc 2.36; the CUDA image's Python 3.11)."""
DOWNLOAD_TIMEOUT_S = 3600


class WheelhouseError(Exception):
    """A wheel could not be downloaded (no wheel for the platform, no registry): one line."""


def download_wheels(
    steps: Sequence[PipStep],
    destination: Path,
    constraints: Path | None,
    pip_options: Sequence[str] = (),
) -> list[Path]:
    """Download each step's packages and their dependencies as wheels for the image's platform
    into ``destination``; return the wheels, sorted. ``pip_options`` go to every ``pip
    download`` (tests: a local ``--find-links``)."""
    destination.mkdir(parents=True, exist_ok=True)
    for step in steps:
        options = [option for option in step.options if option != "--no-build-isolation"]
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(destination),
            *TARGET_PLATFORM, *options, *pip_options,
            *(["-c", str(constraints)] if constraints is not None else []),
            *step.packages,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise WheelhouseError(
                f"--wheelhouse: downloading {' '.join(step.packages)} took over "
                f"{DOWNLOAD_TIMEOUT_S} s"
            ) from None
        if done.returncode != 0:
            reason = last_line(done.stderr or done.stdout, 300, "pip download failed")
            raise WheelhouseError(
                f"--wheelhouse: no wheel set for {' '.join(step.packages)} on Linux x86_64 "
                f"CPython 3.11: {reason}"
            )
    return sorted(path for path in destination.iterdir() if path.suffix == ".whl")


def bundle_wheels(
    steps: Sequence[PipStep], constraints: str | None, folder: Path, pip_options: Sequence[str]
) -> dict[str, Path]:
    """The wheelhouse's entries of a bundle (``wheels/NAME.whl`` -> the file), downloaded
    into ``folder`` with the bundle's ``constraints`` (its text) pinning every version."""
    pins = None
    if constraints is not None:
        pins = folder / "constraints.txt"
        pins.parent.mkdir(parents=True, exist_ok=True)
        pins.write_text(constraints)
    wheels = download_wheels(steps, folder / "wheels", pins, pip_options)
    return {f"wheels/{wheel.name}": wheel for wheel in wheels}

"""The library's wheel that every bundle carries: built from a clean copy of its source,
reproducibly, and reused across package runs when a wheel cache is set.

``QUADRATSEG_WHEEL_CACHE=DIR`` (:data:`WHEEL_CACHE_ENV`) keeps each wheel built under the
digest of what went into it (the package's files, ``pyproject.toml``, the README, the
setuptools version) and takes it from there while those stay the same: CI, a lab packaging
every function in a row, and the test suite (one build per run) save the build. Unset, every
package run builds the wheel afresh. Either way the bytes are the same.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from quadratseg_handlers.core.messages import last_line
from quadratseg_handlers.deploy.rendering import SourceTree

SOURCE_DATE_EPOCH = "315532800"
"""1980-01-01, the earliest zip time: the wheel's entries get it, so the wheel is reproducible."""

WHEEL_CACHE_ENV = "QUADRATSEG_WHEEL_CACHE"
"""Environment variable naming a folder of wheels built before, by source digest."""

SKIPPED = ("__pycache__", "*.pyc", "*.pyo")
"""Compiled Python, never copied into the wheel's source or a bundle."""


class WheelError(Exception):
    """The wheel could not be built: one line that says why."""


def wheel_sources(source: SourceTree) -> Iterator[tuple[str, Path]]:
    """(name in the build tree, file) for everything the wheel is built from, sorted:
    ``pyproject.toml``, the README, and the imported package without compiled Python."""
    yield "pyproject.toml", source.root / "pyproject.toml"
    for readme in sorted(source.root.glob("README*")):
        yield readme.name, readme
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        if path.is_file() and not any(
            part == "__pycache__" or part.endswith((".pyc", ".pyo")) for part in relative.parts
        ):
            yield f"{package.name}/{relative.as_posix()}", path


def source_digest(source: SourceTree) -> str:
    """SHA-256 of the wheel's sources (names and bytes) and the setuptools that builds it: a
    cached wheel is reused only for the very same inputs."""
    digest = hashlib.sha256(f"setuptools {metadata.version('setuptools')}\0".encode())
    for name, path in wheel_sources(source):
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def wheel_cache() -> Path | None:
    """The wheel cache folder :data:`WHEEL_CACHE_ENV` names, or None when it is unset."""
    folder = os.environ.get(WHEEL_CACHE_ENV, "")
    return Path(folder) if folder else None


def build_wheel(source: SourceTree, destination: Path) -> Path:
    """The library's wheel in ``destination``: copied from the wheel cache when it holds one
    built from the same sources, else built (and then kept there, when a cache is set)."""
    destination = destination.resolve()
    destination.mkdir(parents=True, exist_ok=True)
    cache = wheel_cache()
    if cache is None:
        return _build(source, destination)
    cached = cache / source_digest(source) / source.wheel_name
    if not cached.is_file():
        built = _build(source, destination)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}")
        shutil.copyfile(built, partial)
        os.replace(partial, cached)  # atomic: a parallel run sees no half-written wheel
        return built
    wheel = destination / source.wheel_name
    shutil.copyfile(cached, wheel)
    return wheel


def _build(source: SourceTree, destination: Path) -> Path:
    """Build the wheel with setuptools in a subprocess, from a clean copy of the sources."""
    with tempfile.TemporaryDirectory(prefix="quadratseg-wheel-") as temporary:
        tree = Path(temporary) / "src"
        for name, path in wheel_sources(source):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tree / name)
        for path in tree.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        tree.chmod(0o755)
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONDONTWRITEBYTECODE": "1"}
        built = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))",
                str(destination),
            ],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if built.returncode != 0:
        raise WheelError(f"building the library wheel failed: {last_line(built.stderr)}")
    wheel = destination / built.stdout.strip().splitlines()[-1]
    if wheel.name != source.wheel_name:
        raise WheelError(f"the wheel is {wheel.name}, expected {source.wheel_name}")
    return wheel

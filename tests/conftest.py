"""Shared fixtures: offline model libraries, drawn images, one library wheel per run; and the
rule that keeps `make test-fast` fast: a test not marked ``slow`` starts no process."""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quadratseg_handlers.backends.offline import configure_ultralytics
from quadratseg_handlers.deploy.library_wheel import WHEEL_CACHE_ENV

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
"""This process's name in a parallel run (pytest-xdist's gw0, gw1...): ultralytics' settings
file is its own."""
configure_ultralytics(
    Path(tempfile.gettempdir()) / f"quadratseg-test-ultralytics-{os.getuid()}-{_WORKER}"
)


@pytest.fixture(scope="session", autouse=True)
def wheel_cache(tmp_path_factory) -> Iterator[Path]:
    """The run's wheel cache: every package step (in this process, the command line, the docs'
    shell snippets) builds the library wheel once and then takes it from here."""
    folder = tmp_path_factory.mktemp("wheel-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WHEEL_CACHE_ENV, str(folder))
        yield folder


@pytest.fixture
def rect_image() -> np.ndarray:
    """A black 200x120 image with two white rectangles and one grey (level 100) rectangle."""
    image = np.zeros((120, 200, 3), dtype=np.uint8)
    image[10:30, 20:60] = 255  # 40 x 20 at (20, 10)
    image[50:100, 100:150] = 230  # 50 x 50 at (100, 50)
    image[80:90, 10:30] = 100
    return image


# --- a test that starts a process (a server's workers, a subprocess, a wheel build) is slow -----

_fast_test: list[str] = []
"""The node id of the running test while it is not marked slow (empty otherwise)."""


def _importing() -> bool:
    """Whether a module is being imported: torch runs a tool while it loads, once per process,
    in whichever test imports it first; that is not the test's process."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _refuse_in_a_fast_test(what: str) -> None:
    if _fast_test and not _importing():
        raise RuntimeError(
            f"{_fast_test[0]} starts {what}: mark it @pytest.mark.slow (make test-fast runs none)"
        )


def _guarded(original: Any, what: str) -> Any:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _refuse_in_a_fast_test(what)
        return original(*args, **kwargs)

    return guarded


subprocess.Popen.__init__ = _guarded(  # type: ignore[method-assign]
    subprocess.Popen.__init__, "a subprocess"
)
multiprocessing.process.BaseProcess.start = _guarded(  # type: ignore[method-assign]
    multiprocessing.process.BaseProcess.start, "a process"
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Set-up, call and teardown of a test not marked slow run under the rule above."""
    if item.get_closest_marker("slow") is None:
        _fast_test.append(item.nodeid)
    try:
        return (yield)
    finally:
        _fast_test.clear()

"""Fixtures of the deploy tests: the test functions in the catalogue, one wheel per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from handlers_for_tests import level_box_files
from packaging_for_tests import FILL, LEVELS, ROOT, TESTS, pack, unpack

from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.packager import build_wheel
from quadratseg_handlers.deploy.rendering import SourceTree


@pytest.fixture(autouse=True)
def test_functions(monkeypatch):
    """The test functions in the catalogue; subprocesses import the tests' handlers too."""
    monkeypatch.setitem(FUNCTIONS, LEVELS.name, LEVELS)
    monkeypatch.setitem(FUNCTIONS, FILL.name, FILL)
    paths = [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


@pytest.fixture(scope="session")
def source() -> SourceTree:
    return SourceTree.of_library()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory, source) -> Path:
    return build_wheel(source, tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def levels(tmp_path) -> Path:
    return level_box_files(tmp_path)["levels"]


@pytest.fixture
def bundle(tmp_path, wheel) -> Path:
    return unpack(pack(tmp_path, wheel).output, tmp_path / "bundle")

"""The library wheel: reused from the wheel cache only for the very same sources, built
afresh without one, and a failed build is one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from quadratseg_handlers.deploy import library_wheel
from quadratseg_handlers.deploy.library_wheel import WHEEL_CACHE_ENV, source_digest, wheel_cache
from quadratseg_handlers.deploy.packager import PackageError, build_wheel
from quadratseg_handlers.deploy.rendering import SourceTree


def copied_root(tmp_path: Path, name: str) -> Path:
    """pyproject.toml and README.md of the library in a folder of their own."""
    root = tmp_path / name
    root.mkdir()
    library = SourceTree.of_library().root
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(library / file, root)
    return root


def test_the_digest_changes_with_any_input_and_only_then(tmp_path):
    same = copied_root(tmp_path, "same")
    readme = copied_root(tmp_path, "readme")
    (readme / "README.md").write_text((readme / "README.md").read_text() + "\none more line\n")
    project = copied_root(tmp_path, "project")
    (project / "pyproject.toml").write_text((project / "pyproject.toml").read_text() + "\n")
    digests = [source_digest(SourceTree.read(root)) for root in (same, readme, project)]
    assert source_digest(SourceTree.of_library()) == digests[0]
    assert len(set(digests)) == 3


def test_the_cache_is_the_folder_the_variable_names(monkeypatch, tmp_path):
    monkeypatch.setenv(WHEEL_CACHE_ENV, str(tmp_path))
    assert wheel_cache() == tmp_path
    monkeypatch.setenv(WHEEL_CACHE_ENV, "")
    assert wheel_cache() is None
    monkeypatch.delenv(WHEEL_CACHE_ENV)
    assert wheel_cache() is None


@pytest.mark.slow
def test_a_cached_wheel_is_taken_for_the_same_sources_without_a_build(monkeypatch, tmp_path):
    monkeypatch.setenv(WHEEL_CACHE_ENV, str(tmp_path / "cache"))
    source = SourceTree.of_library()
    built = build_wheel(source, tmp_path / "first")
    [cached] = (tmp_path / "cache").glob("*/*.whl")
    assert cached.parent.name == source_digest(source) and cached.name == source.wheel_name

    def no_second_build(*args):
        raise AssertionError("the cached wheel was not taken")

    monkeypatch.setattr(library_wheel, "_build", no_second_build)
    again = build_wheel(source, tmp_path / "second")
    assert again == tmp_path / "second" / source.wheel_name
    assert again.read_bytes() == built.read_bytes() == cached.read_bytes()
    assert [p.name for p in cached.parent.iterdir()] == [source.wheel_name]  # no partial left


@pytest.mark.slow
def test_a_failed_build_is_one_line_and_caches_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(WHEEL_CACHE_ENV, str(tmp_path / "cache"))
    root = copied_root(tmp_path, "broken")
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "', 'version = "not pep 440 ', 1))
    with pytest.raises(PackageError) as caught:
        build_wheel(SourceTree.read(root), tmp_path / "wheel")
    assert caught.value.code == 1
    assert caught.value.problems == [
        "building the library wheel failed: configuration error: `project.version` must be pep440"
    ]
    assert not (tmp_path / "cache").exists()

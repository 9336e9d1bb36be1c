"""The top-level package: handler classes by name, its version, no 0.1 module names."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import quadratseg_handlers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_handler_class_is_exported_from_the_package():
    from quadratseg_handlers.handlers.grid import GridPoseHandler

    assert quadratseg_handlers.GridPoseHandler is GridPoseHandler
    for name in quadratseg_handlers.HANDLER_CLASSES:
        handler = getattr(quadratseg_handlers, name)
        assert issubclass(handler, quadratseg_handlers.ModelHandler), name
        assert name in quadratseg_handlers.__all__


@pytest.mark.slow
def test_importing_the_package_loads_no_model_library():
    script = (
        "import sys, quadratseg_handlers\n"
        "print(sorted(m for m in ('torch', 'ultralytics', 'mmseg', 'segment_anything') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchHandler'"):
        quadratseg_handlers.NoSuchHandler  # noqa: B018


def test_the_version_is_the_project_s():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert quadratseg_handlers.__version__ == project["version"] == "0.2.0"


@pytest.mark.parametrize("old", ["yolo", "grid", "coralscop", "lama", "blobs", "bundle", "testing"])
def test_the_module_names_of_the_0_1_layout_are_gone(old):
    """0.2 dropped them: a bundle packaged by 0.1 is asked to be packaged again (deployment.md)."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"quadratseg_handlers.{old}")


def test_grid_removal_works_in_a_notebook_on_a_png_and_points(tmp_path):
    """``from quadratseg_handlers import LamaHandler``: a PNG path and the 117 grid points in,
    the photo with the string painted out back; only pixels near the string change."""
    import numpy as np
    from PIL import Image

    from quadratseg_handlers import LamaHandler
    from quadratseg_handlers.ops.gridmask import draw_grid_mask
    from quadratseg_handlers.ops.template import grid_template

    side = 220
    photo = np.full((side, side, 3), (40, 120, 90), dtype=np.uint8)
    points = 10 + grid_template() * (side - 20)
    string = draw_grid_mask(points, (side, side), 3)
    photo[string] = (250, 250, 250)
    Image.fromarray(photo).save(tmp_path / "quadrat.png")

    remover = LamaHandler(inpaint_backend="opencv")
    clean = remover.annotate(str(tmp_path / "quadrat.png"), points.tolist())
    assert clean.shape == photo.shape and clean.dtype == np.uint8
    changed = (clean != photo).any(axis=2)
    assert changed[string].mean() > 0.95
    assert not changed[~draw_grid_mask(points, (side, side), 8)].any()
    assert np.abs(clean[string].astype(int) - (40, 120, 90)).max() < 40
    assert remover.labels() == []

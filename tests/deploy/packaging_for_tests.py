"""What the deploy tests share: two test functions for the catalogue, and helpers to package,
unpack and run bundles.

LevelBoxHandler (a detector whose 'checkpoint' is a .npy of grey levels, with a shipped
default file) and MaskFillHandler (an inpainter whose 'model' is fetched at image-build time
unless given) stand in for the model handlers; their file builders are held here
(TEST_TINY_MODELS). The real functions join the end-to-end tests as soon as TINY_MODELS
(demo/tinymodels) holds a builder of their files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from handlers_for_tests import level_box_files, mask_fill_files
from PIL import Image

from quadratseg_handlers.cli.main import main
from quadratseg_handlers.demo.tinymodels import TINY_MODELS, TinyModel, tiny_model_files
from quadratseg_handlers.deploy import extraction
from quadratseg_handlers.deploy.catalog import BundleFile, FunctionSpec
from quadratseg_handlers.deploy.packager import PackageRequest, package

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]

LEVELS = FunctionSpec(
    name="test-level-boxes",
    model="levelboxes",
    handler="handlers_for_tests:LevelBoxHandler",
    title="Level boxes (test)",
    description="Regions brighter than grey levels, for the packaging tests",
    framework="numpy",
    extra=None,
    files=(
        BundleFile("levels", "levels.npy", "LEVELS_PATH", (".npy",), "grey levels"),
        BundleFile(
            "names",
            "names.json",
            "NAMES_PATH",
            (".json",),
            "label names",
            default="handlers_for_tests:data/level_names.json",
        ),
    ),
    env=(("CONF_THRESHOLD", "0.3"),),
    memory="256Mi",
)

FILL = FunctionSpec(
    name="test-mask-fill",
    model="maskfill",
    handler="handlers_for_tests:MaskFillHandler",
    title="Mask fill (test)",
    description="Masked pixels painted one colour, for the packaging tests",
    framework="numpy",
    extra=None,
    kind="inpainter",
    files=(
        BundleFile(
            "fill",
            "fill.npy",
            "FILL_PATH",
            (".npy",),
            "RGB fill colour",
            fetch_url="https://example.invalid/fill.npy",
        ),
    ),
    memory="256Mi",
)

TEST_TINY_MODELS: dict[str, TinyModel] = {LEVELS.name: level_box_files, FILL.name: mask_fill_files}
"""The test functions' file builders (the catalogue's are in TINY_MODELS)."""

AGREED_NAMES = {
    "pth-yolo-coralsegv4": {"MODEL_PATH": "best.pt"},
    "pth-yolo-coralsegbanggai": {"MODEL_PATH": "best.pt"},
    "pth-mmseg-coralscopsegformer": {
        "SEGFORMER_WEIGHTS": "best_segformer.pth",
        "SEGFORMER_CONFIG": "best_segformer_config.py",
        "SAM_WEIGHTS": "vit_b_coralscop.pth",
    },
    "pth-yolo-gridcorners": {"MODEL_PATH": "best.pt", "TEMPLATE_PATH": "kp_template_corners.npy"},
    "pth-yolo-gridpose": {"MODEL_PATH": "best.pt", "TEMPLATE_PATH": "kp_template.npy"},
    "pth-lama": {"LAMA_MODEL": "big-lama.pt"},
    "example-blobs": {},
}
"""The standard bundle names every helper relies on (briefing, "Agreed names")."""


def rect_png(path: Path) -> Path:
    """A black 200x120 PNG: white 40x20 at (20, 10), 230 50x50 at (100, 50), 100 at (10, 80)."""
    image = np.zeros((120, 200, 3), dtype=np.uint8)
    image[10:30, 20:60] = 255
    image[50:100, 100:150] = 230
    image[80:90, 10:30] = 100
    Image.fromarray(image).save(path)
    return path


def has_tiny_models(function: FunctionSpec) -> bool:
    return function.name in TEST_TINY_MODELS or function.name in TINY_MODELS


def tiny_files(function: FunctionSpec, folder: Path) -> dict[str, Path]:
    """The function's files with tiny models (none for a function without a builder)."""
    if function.name in TEST_TINY_MODELS:
        return dict(TEST_TINY_MODELS[function.name](folder))
    return tiny_model_files(function.name, folder) if function.name in TINY_MODELS else {}


def pack(
    tmp_path: Path, wheel: Path | None, function: FunctionSpec = LEVELS, files=None, **options
):
    """Package through the library API, reusing the session's wheel (None: build one)."""
    if files is None:
        files = tiny_files(function, tmp_path)
    options.setdefault("output", tmp_path / "nuclio.zip")
    return package(PackageRequest(function, files, **options), wheel=wheel)


def unpack(bundle: Path, into: Path) -> Path:
    extraction.extract(bundle, into)
    return into / "nuclio"


def run_main(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python main.py ...` in an unpacked bundle, as a user would run it."""
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=folder, capture_output=True, text=True, check=False
    )


def cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def refused(capsys, tmp_path, *argv: str) -> list[str]:
    out = tmp_path / "refused.zip"
    code, err = cli(capsys, "package", *argv, "--output", str(out))
    assert code == 2 and not out.exists()
    assert all(line.startswith("quadratseg package: error: ") for line in err)
    return [line.removeprefix("quadratseg package: error: ") for line in err]

"""`quadratseg pipeline`: drawn survey photos through the demo models' bundles, served."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reef_for_tests import TEXTURES

from quadratseg_handlers.cli.main import main
from quadratseg_handlers.demo.datasets import random_photo_size_wh
from quadratseg_handlers.demo.pipeline import CORALS, CORNERS, GRID, LAMA, served_functions
from quadratseg_handlers.demo.reef import reef_quadrat
from quadratseg_handlers.demo.reef_photos import ReefTextures
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import (
    DEFAULT_FOLDER,
    TEST_SEEDS,
    read_manifest,
    verified_models,
)
from quadratseg_handlers.local.pipeline import DEFAULT_WARP_MARGIN, DEFAULT_WARP_SIDE
from quadratseg_handlers.ops.quadrat import quadrat_side, warp_quadrat

PHOTOS = [
    "moorea_2024_site03_transect12_quadrat_0001",
    "moorea_2024_site03_transect12_quadrat_0002",
]
BLANK = "moorea_2024_site03_transect12_lens_cap"


@pytest.mark.slow
def test_pipeline_writes_every_stage_and_skips_a_photo_without_a_quadrat(tmp_path, capsys):
    survey = tmp_path / "survey"
    survey.mkdir()
    for name, seed in zip(PHOTOS, (TEST_SEEDS + 1, TEST_SEEDS + 2), strict=True):
        photo = np.asarray(quadrat_image((1200, 900), seed).image)
        Image.fromarray(photo).save(survey / f"{name}.jpg", quality=92)
    Image.fromarray(np.full((600, 800, 3), 90, np.uint8)).save(survey / f"{BLANK}.jpg")
    (tmp_path / "work").mkdir()
    out = tmp_path / "out"
    models = verified_models(DEFAULT_FOLDER)
    genera = set(read_manifest(DEFAULT_FOLDER)["models"]["coralseg"]["names"])
    with served_functions(tmp_path / "work", tmp_path / "bundles", models, log=lambda _: None) as (
        urls,
        _,
    ):
        argv = [
            "pipeline", str(survey), "--corners", urls[CORNERS], "--grid", urls[GRID],
            "--removal", urls[LAMA], "--corals", urls[CORALS], "--out", str(out),
        ]  # fmt: skip
        assert main(argv) == 1  # one photo failed
    err = capsys.readouterr().err
    assert (
        f"pipeline: {survey / BLANK}.jpg: skipped: corners: no 4-point skeleton in 0 shape(s) "
        "(the function says: no skeleton: no detections)"
    ) in err.splitlines()
    assert f"pipeline: 2/3 photos through every stage -> {out} " in err
    assert "pipeline: 3/3 (" in err  # the progress bar's last line (stderr is not a terminal)

    expected = {
        "1-corners": ([*PHOTOS, BLANK], ".jpg", "quadrat_corner", 4),
        "2-grid": (PHOTOS, ".png", "grid", 117),
        "3-corals": (PHOTOS, ".png", None, None),
    }
    for folder, (names, suffix, skeleton, points) in expected.items():
        files = sorted(path.name for path in (out / folder / "images").iterdir())
        assert files == sorted(f"{name}{suffix}" for name in names)
        root = ElementTree.parse(out / folder / "annotations.xml").getroot()
        assert root.findtext("version") == "1.1"
        images = {image.get("name"): image for image in root.findall("image")}
        assert sorted(images) == files
        for name in PHOTOS:
            image = images[f"{name}{suffix}"]
            with Image.open(out / folder / "images" / f"{name}{suffix}") as picture:
                assert (int(image.get("width")), int(image.get("height"))) == picture.size
            if skeleton is not None:
                [found] = image.findall("skeleton")
                assert found.get("label") == skeleton and len(found.findall("points")) == points
            else:
                polygons = image.findall("polygon")
                assert len(polygons) >= 5  # the drawn colonies, segmented
                labels = {polygon.get("label") for polygon in polygons}
                assert labels <= genera
    assert list(image_element(out, "1-corners", BLANK)) == []  # its photo, without shapes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos"] == 3 and summary["completed"] == 2
    assert summary["corners_moved_by_the_grid"] == []  # drawn frames: the corners agree
    assert list(summary["failed"]) == [str(survey / f"{BLANK}.jpg")]
    overlays = sorted(path.name for path in (out / "overlays").iterdir())
    assert f"{PHOTOS[0]}-3-corals.png" in overlays and f"{BLANK}-1-corners.png" in overlays


def image_element(out: Path, folder: str, name: str) -> ElementTree.Element:
    root = ElementTree.parse(out / folder / "annotations.xml").getroot()
    [image] = [image for image in root.findall("image") if image.get("name", "").startswith(name)]
    return image


def test_pipeline_input_errors_are_one_line(tmp_path, capsys):
    urls = ["--corners", "http://127.0.0.1:9", "--grid", "http://127.0.0.1:9"]
    urls += ["--removal", "http://127.0.0.1:9", "--corals", "http://127.0.0.1:9"]
    argv = ["pipeline", str(tmp_path / "missing.jpg"), *urls, "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err == f"quadratseg pipeline: error: {tmp_path / 'missing.jpg'}: no such photo or folder\n"
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / folder / "q.png")
    argv[1:2] = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert main(argv) == 2
    assert "two photos named q" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_grid_puts_back_corners_the_detector_placed_off(tmp_path):
    """A frame over real reef whose corners the detector puts over 2 % off: the pipeline
    writes the corners where the grid puts them, and the warp from there; --keep-corners
    keeps them."""
    seed = 900_009_141
    size = random_photo_size_wh(np.random.default_rng(seed), (1024, 1600))
    scene = reef_quadrat(size, seed, ReefTextures.from_folder(TEXTURES), string=True)
    survey = tmp_path / "survey"
    survey.mkdir()
    Image.fromarray(scene.image).save(survey / "reef.png")
    (tmp_path / "work").mkdir()
    models = verified_models(DEFAULT_FOLDER)
    side = quadrat_side(scene.corners)
    worst = {}
    with served_functions(tmp_path / "work", tmp_path / "bundles", models, log=lambda _: None) as (
        urls,
        _,
    ):
        for keep in (False, True):
            out = tmp_path / f"out-{keep}"
            argv = [
                "pipeline", str(survey), "--corners", urls[CORNERS], "--grid", urls[GRID],
                "--removal", urls[LAMA], "--corals", urls[CORALS], "--out", str(out),
            ]  # fmt: skip
            assert main([*argv, *(["--keep-corners"] if keep else [])]) == 0
            [skeleton] = image_element(out, "1-corners", "reef").findall("skeleton")
            found = sorted(skeleton.findall("points"), key=lambda p: int(p.get("label", "0")))
            corners = np.array([[float(v) for v in p.get("points", "").split(",")] for p in found])
            worst[keep] = float(np.linalg.norm(corners - scene.corners, axis=1).max() / side)
            margin = int(round(DEFAULT_WARP_MARGIN * DEFAULT_WARP_SIDE))
            warped = np.asarray(Image.open(out / "2-grid" / "images" / "reef.png"))
            expected = warp_quadrat(scene.image, corners, DEFAULT_WARP_SIDE, margin=margin)
            assert np.array_equal(warped, expected)
            summary = json.loads((out / "summary.json").read_text())
            moved = [] if keep else [str(survey / "reef.png")]
            assert summary["corners_moved_by_the_grid"] == moved
    assert worst[True] > 0.02 and worst[False] < 0.01, worst

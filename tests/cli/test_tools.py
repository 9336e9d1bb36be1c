"""quadratseg check, bench and annotate against functions served in-process."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from bundles_for_tests import (
    BLOB_MAIN,
    EMPTY_WITH_REASON_MAIN,
    FLOAT_CONFIDENCE_MAIN,
    write_bundle,
)
from PIL import Image

from quadratseg_handlers.cli.main import main
from quadratseg_handlers.core.request import load_image
from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.local.bundle import blobs_image
from quadratseg_handlers.local.check import ImageCheck, summary
from quadratseg_handlers.local.server import BackgroundServer


@pytest.fixture(scope="module")
def test_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for seed in range(3):
        Image.fromarray(blobs_image(200, 150, count=3, seed=seed)).save(folder / f"img{seed}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def blob_bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("blob"), BLOB_MAIN, name="example-blobs")


@pytest.fixture(scope="module")
def blob_url(blob_bundle):
    with BackgroundServer(read_function_config(blob_bundle), workers=2) as url:
        yield url


@pytest.fixture(scope="module")
def float_url(tmp_path_factory):
    folder = write_bundle(tmp_path_factory.mktemp("float"), FLOAT_CONFIDENCE_MAIN)
    with BackgroundServer(read_function_config(folder)) as url:
        yield url


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.slow
def test_check_passes_on_a_good_function(blob_url, test_images, capsys):
    assert main(["check", "--function-url", blob_url, "--test-images", str(test_images)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("img")]
    assert len(rows) == 3
    assert all("200x150  200" in row and row.endswith("ok") and "blob x" in row for row in rows)
    assert "PASS: 3/3 images passed" in out


@pytest.mark.slow
def test_check_fails_on_float_confidences(float_url, blob_bundle, test_images, capsys):
    args = ["check", "--function-url", float_url, "--test-images", str(test_images)]
    assert main([*args, "--spec", str(blob_bundle / "function.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL: 0/3 images passed" in out
    assert "'confidence' must be a string, got 0.87" in out
    assert "number attribute 'confidence' value '0.87' is not an integer string" in out


@pytest.mark.slow
def test_check_takes_the_spec_from_a_bundle_folder(blob_url, blob_bundle, test_images, capsys):
    args = ["check", "--function-url", blob_url, "--test-images", str(test_images)]
    assert main([*args, "--spec", str(blob_bundle)]) == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--function-url", "localhost:8010"], "--function-url must be an http(s) URL"),
        (["--function-url", "CLOSED"], "cannot reach http://127.0.0.1:"),
        (["--test-images", "EMPTY"], "no images (looked for jpg"),
        (["--test-images", "MISSING"], "not a folder"),
        (["--spec", "MISSING"], "no such file or folder"),
    ],
)
def test_check_errors_are_one_line(blob_url, test_images, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    values = {
        "--function-url": blob_url, "--test-images": str(test_images),
    }  # fmt: skip
    for flag, value in zip(args[::2], args[1::2], strict=True):
        values[flag] = {
            "CLOSED": closed_port_url(),
            "EMPTY": str(tmp_path / "empty"),
            "MISSING": str(tmp_path / "missing"),
        }.get(value, value)
    argv = ["check"] + [item for pair in values.items() for item in pair]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("quadratseg check: error:")


@pytest.mark.slow
def test_check_without_a_spec_on_another_server_asks_for_one(tmp_path, test_images, capsys):
    # Behind a path prefix, GET .../spec reaches the function itself, which answers 400.
    folder = write_bundle(tmp_path / "f", FLOAT_CONFIDENCE_MAIN)
    with BackgroundServer(read_function_config(folder)) as url:
        assert main(["check", "--function-url", url + "/x", "--test-images", str(test_images)]) == 2
    assert "no label spec: give --spec" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_prints_the_table_and_writes_json(blob_url, test_images, tmp_path, capsys):
    figures = tmp_path / "out" / "bench.json"
    argv = [
        "bench", "--function-url", blob_url, "--test-images", str(test_images),
        "--num-runs", "8", "--concurrency", "2", "--json", str(figures),
    ]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0] == "| Model | Image Size | Avg Time | p50 | p95 | Throughput |"
    assert lines[2].startswith("| example-blobs | 200x150 | ") and lines[2].endswith(" img/min |")
    assert "bench: 8/8" in err and "2 warm-up + 8 counted requests" in err
    data = json.loads(figures.read_text())
    assert (data["model"], data["num_runs"], data["succeeded"], data["errors"]) == (
        "example-blobs", 8, 8, {},
    )  # fmt: skip
    assert len(data["times_s"]) == 8 and data["warmup"] == 2 and data["concurrency"] == 2
    assert data["p50_s"] <= data["p95_s"] <= data["max_s"]
    assert data["throughput_img_per_min"] > 0


@pytest.mark.slow
def test_bench_counts_failures_and_exits_1(blob_url, test_images, capsys):
    argv = [
        "bench", "--function-url", blob_url, "--test-images", str(test_images),
        "--num-runs", "3", "--threshold", "5",
    ]  # fmt: skip
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "| - | - | - | 0 img/min |" in out
    assert "failed x3: HTTP 400: 'threshold' must be a number in [0, 1], got 5.0" in err


def test_check_summary_counts_one_shape_in_the_singular():
    one = ImageCheck("a.jpg", (640, 480), 200, 0.01, shapes=1)
    assert summary([one]).startswith("PASS: 1/1 images passed, 1 shape, median ")
    assert ", 2 shapes, " in summary([one, one])


def _shape_pixels(image: np.ndarray) -> np.ndarray:
    gray = image.mean(axis=2)
    return gray >= 200


@pytest.mark.slow
@pytest.mark.parametrize("source", ["url", "bundle"])
def test_annotate_draws_shapes_on_an_image_of_the_input_size(
    blob_url, blob_bundle, test_images, tmp_path, capsys, source
):
    image_path = test_images / "img1.png"
    out = tmp_path / "overlay.png"
    where = ["--function-url", blob_url] if source == "url" else ["--bundle", str(blob_bundle)]
    assert main(["annotate", str(image_path), *where, "--out", str(out)]) == 0
    assert "annotate: 3 shapes (blob x3) on 200x150" in capsys.readouterr().err
    original = load_image(image_path)
    drawn = np.asarray(Image.open(out))
    assert drawn.shape == original.shape
    changed = np.abs(drawn.astype(int) - original.astype(int)).sum(axis=2) > 0
    blobs = _shape_pixels(original)
    assert changed[blobs].mean() > 0.95  # every blob is filled in its label colour
    assert changed.mean() < 0.5  # the rest of the photograph shows through
    assert not list(tmp_path.glob(".overlay.png.*"))  # the temporary file was renamed


@pytest.mark.slow
def test_annotate_errors(blob_url, tmp_path, capsys):
    assert main(["annotate", str(tmp_path / "no.png"), "--function-url", blob_url,
                 "--out", str(tmp_path / "o.png")]) == 2  # fmt: skip
    assert "no such image" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    assert main(["annotate", str(broken), "--function-url", blob_url,
                 "--out", str(tmp_path / "o.png")]) == 2  # fmt: skip
    assert "not a readable image" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


REASON = "no skeleton: 2 distinct detection(s), at least 4 needed"
SURVEY_NAMES = [
    f"moorea_2024-05-14_site03_transect12_quadrat_{index:04d}_cam2_left.jpg" for index in (1, 2)
]


@pytest.mark.slow
def test_check_shows_why_answers_are_empty_and_strict_fails_them(tmp_path, capsys):
    """Every answer empty: the rows and a loud warning give the function's own reason; with
    --strict each empty answer fails (exit 1). Long survey names are printed whole."""
    images = tmp_path / "survey"
    images.mkdir()
    for seed, name in enumerate(SURVEY_NAMES):
        Image.fromarray(blobs_image(200, 150, count=3, seed=seed)).save(images / name)
    folder = write_bundle(tmp_path / "empty", EMPTY_WITH_REASON_MAIN, name="example-blobs")
    with BackgroundServer(read_function_config(folder)) as url:
        argv = ["check", "--function-url", url, "--test-images", str(images)]
        assert main(argv) == 0
        out, err = capsys.readouterr()
        rows = [line for line in out.splitlines() if line.startswith("moorea")]
        assert [row.split()[0] for row in rows] == SURVEY_NAMES
        assert all(row.endswith(f"ok (empty: {REASON})") for row in rows)
        assert "PASS: 2/2 images passed, 0 shapes" in out
        assert err == (
            "quadratseg check: warning: 2/2 answers hold no shapes (the function says: "
            f"{REASON}); --strict fails on empty answers\n"
        )
        assert main([*argv, "--strict"]) == 1
        out, _ = capsys.readouterr()
        assert "FAIL: 0/2 images passed, 0 shapes" in out
        assert f"  - empty: {REASON}" in out.splitlines()
        assert main(["annotate", str(images / SURVEY_NAMES[0]), "--function-url", url,
                     "--out", str(tmp_path / "o.png")]) == 0  # fmt: skip
        err = capsys.readouterr().err
    assert "annotate: 0 shapes (none) on 200x150" in err
    assert f"annotate: the function says: {REASON}" in err.splitlines()

"""``quadratseg evaluate`` end to end against a function on a thread (no process): requests as
CVAT sends them, a 500 counted and the run going on, the report's files and keys, the
threshold line; and the one-line errors (exit 2) for an export it cannot use."""

from __future__ import annotations

import json

import pytest
from answers_for_tests import answering, coral_shapes, digest
from PIL import Image

from quadratseg_handlers.cli.main import main
from quadratseg_handlers.demo.exports import drawn_images, save_images, write_export
from quadratseg_handlers.evaluate import evaluate


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drawn")
    corals = drawn_images("pth-yolo-coralsegv4", 3, warp=256)
    export = write_export(corals, folder / "export.zip", "cvat", with_images=False)
    images = save_images(corals, folder / "photos")
    answers = {
        digest((images / d.name).read_bytes()): coral_shapes(d) if n != 1 else 500
        for n, d in enumerate(corals)
    }
    return corals, export, images, answers


def test_a_failed_request_is_counted_and_the_run_goes_on(drawn, tmp_path):
    corals, export, images, answers = drawn
    with answering(answers) as (url, thresholds):
        result = evaluate(
            export, tmp_path / "out", function_url=url, images=images, served_threshold=0.4,
            progress=False, log=lambda _: None,
        )  # fmt: skip
    assert thresholds == [0.05, 0.05, 0.05]  # sent once each, the sweep's lowest threshold
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report == json.loads(json.dumps(result.report))
    assert report["images"] == 3 and report["errors"] == 1
    assert report["error_messages"] == {"HTTP 500: drawn failure": 1}
    answered = len(corals[0].instances) + len(corals[2].instances)
    drawn_count = answered + len(corals[1].instances)
    assert report["instances"]["recall"] == pytest.approx(answered / drawn_count)
    assert report["instances"]["precision"] == 1.0
    assert report["rows"][0]["image"] == corals[1].name
    assert report["rows"][0]["error"] == "HTTP 500: drawn failure"
    for figures in report["labels"].values():
        assert {"precision", "recall", "map", "ap50", "sweep"} <= set(figures)
    names = sorted(path.name for path in result.files)
    assert names == sorted(
        ["report.json", "report.md", "precision-recall.png", "per-label.png"]
        + [f"worst-{n}.png" for n in (1, 2, 3)]
    )
    assert "served threshold 0.4" in (tmp_path / "out" / "report.md").read_text()


def test_the_command_prints_the_figures_and_the_threshold_line(drawn, tmp_path, capsys):
    corals, _, _, answers = drawn
    save_images(corals[:1], tmp_path / "one")
    write_export(corals[:1], tmp_path / "one.zip", "coco")
    with answering(answers) as (url, _):
        code = main(
            [
                "evaluate",
                str(tmp_path / "one.zip"),
                "--function-url",
                url,
                "--out",
                str(tmp_path / "out"),
            ]
        )
    out = capsys.readouterr().out
    assert code == 0
    # A function that does not say its name (not quadratseg serve): the catalogue's default
    # threshold, and the line names no model.
    assert (
        "threshold to serve:\n  quadratseg package MODEL FILES... --env CONF_THRESHOLD=0.25" in out
    )
    assert all(
        f"{label}: precision 100.0%, recall 100.0%" in out for label, _ in corals[0].instances
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: folder / "absent.zip", "absent.zip: no such export"),
        (lambda folder: (folder / "x.zip").write_bytes(b"PK\x03\x04 cut") and folder / "x.zip",
         "not a complete zip archive"),
        (lambda folder: write_export(drawn_images("pth-yolo-gridcorners", 1), folder / "e.zip",
                                     with_images=False), "image 'photo_000.jpg' is not in the"),
    ],
    ids=["absent", "damaged", "image-missing"],
)  # fmt: skip
def test_an_export_it_cannot_use_is_one_line_and_exit_2(tmp_path, capsys, make, message):
    path = make(tmp_path)
    code = main(
        [
            "evaluate",
            str(path),
            "--function-url",
            "http://127.0.0.1:9",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("quadratseg evaluate: error: ") and message in err[0]
    assert not (tmp_path / "o").exists()


def test_a_function_it_cannot_reach_is_one_line_and_exit_2(drawn, tmp_path, capsys):
    _, export, images, _ = drawn
    code = main(
        ["evaluate", str(export), "--images", str(images), "--function-url",
         "http://127.0.0.1:9", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("quadratseg evaluate: error: cannot reach http://127.0.0.1:9")
    assert not (tmp_path / "o").exists()


def test_an_image_of_another_size_than_the_export_says_is_one_line(drawn, tmp_path, capsys):
    corals, export, _, _ = drawn
    save_images(corals, tmp_path / "photos")
    first = tmp_path / "photos" / corals[0].name
    Image.open(first).resize((100, 80)).save(first)
    code = main(
        ["evaluate", str(export), "--images", str(tmp_path / "photos"), "--function-url",
         "http://127.0.0.1:9", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert f"image '{corals[0].name}' is 100x80, the export says 256x256" in err[0]

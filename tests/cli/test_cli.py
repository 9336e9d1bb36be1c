"""The command line: demo, settings, and one-line errors with exit codes."""

from __future__ import annotations

import json

import pytest

from quadratseg_handlers.cli.main import main


def test_demo_prints_valid_cvat_json(capsys):
    args = ["--example", "--compact", "--blobs", "3", "--width", "200", "--height", "160"]
    assert main(["demo", *args]) == 0
    out, err = capsys.readouterr()
    shapes = json.loads(out.strip().splitlines()[-1])
    assert shapes and all(s["label"] == "blob" and s["type"] == "polygon" for s in shapes)
    assert "valid CVAT JSON" in err


@pytest.mark.parametrize("name", ["example-blobs", "blobs"])
def test_settings_table_by_function_or_short_name(capsys, name):
    assert main(["settings", name]) == 0
    assert "| `BLOB_LEVEL` | `200` |" in capsys.readouterr().out


def test_unknown_function_is_one_line_and_exit_2(capsys):
    assert main(["settings", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'nope'; valid: coralsegv4, " in err


def test_labels_of_a_grid_function_fit_the_quadratseg_corner_project(capsys):
    from quadratseg_handlers import cvat

    assert main(["labels", "gridcorners"]) == 0
    printed = json.loads(capsys.readouterr().out)
    (corner,) = printed
    assert corner["name"] == "quadrat_corner" and corner["type"] == "skeleton"
    assert corner["attributes"] == [cvat.CONFIDENCE_SPEC]
    assert [s["name"] for s in corner["sublabels"]] == ["1", "2", "3", "4"]
    assert all(set(s) == {"name", "type", "attributes"} for s in corner["sublabels"])
    assert corner["svg"].count("<circle") == 4
    answer = [
        cvat.skeleton(
            "quadrat_corner", [cvat.skeleton_element(str(i), (i, i)) for i in range(1, 5)], 0.5
        )
    ]
    assert cvat.cvat_keeps(answer, printed, printed) == answer


@pytest.mark.slow
def test_labels_of_a_bundle_keep_every_attribute(capsys, tmp_path):
    from quadratseg_handlers import cvat

    bundle = tmp_path / "nuclio.zip"
    assert main(["package", "blobs", "--output", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["labels", str(bundle)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == [
        {
            "name": "blob",
            "type": "polygon",
            "attributes": [cvat.CONFIDENCE_SPEC],
        }
    ]


def test_labels_from_weights_need_the_bundle(capsys):
    assert main(["labels", "coralsegv4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "come from its weights: give its bundle" in err


def test_demo_without_trained_models_is_one_line_and_exit_2(capsys, tmp_path):
    assert main(["demo", "--models", str(tmp_path / "none"), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "make demo-models" in err


@pytest.mark.parametrize(
    "args",
    [["demo", "--size", "12x9"], ["demo", "--size", "big"], ["train-demo", "--only", "lama"]],
)
def test_demo_options_are_checked(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_the_demo_on_a_missing_or_broken_photo_is_one_line_and_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    for path, reason in [
        (tmp_path / "absent.jpg", "no such file"),
        (tmp_path, "not a file"),
        (broken, "not a readable image"),
    ]:
        assert main(["demo", "--photo", str(path), "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"quadratseg demo: error: {path}: {reason}")
    assert not (tmp_path / "out").exists()

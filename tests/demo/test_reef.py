"""The drawn world over real reef: textures, held-out sources, truth and training labels.

The textures here are drawn noise saved under the real folder's file names, so the tests run on
a clean clone that has no ../shared.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from quadratseg_handlers.demo.datasets import (
    REEF_DRAWN_SHARE,
    draw_example,
    random_photo_size_wh,
    run_frame,
)
from quadratseg_handlers.demo.reef import REEF_FRAMES, reef_quadrat
from quadratseg_handlers.demo.reef_photos import (
    DEFAULT_REEF_TEXTURES,
    HELD_OUT_SOURCES,
    REEF_TEXTURES_ENV,
    ReefTextures,
    reef_textures_folder,
)
from quadratseg_handlers.demo.training import HARD_FRAMES, MODELS
from quadratseg_handlers.ops.template import GRID_POINTS


@pytest.fixture(scope="module")
def textures(tmp_path_factory) -> ReefTextures:
    folder = tmp_path_factory.mktemp("reef")
    rng = np.random.default_rng(0)
    for source in ("0001", "0002", "0017", "0020"):
        for patch in (1, 2):
            noise = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            image = cv2.resize(noise, (96, 96), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(folder / f"20230412_{source}_{patch}.jpg"), image)
    (folder / "README.md").write_text("not a patch")
    return ReefTextures.from_folder(folder)


def test_held_out_sources_never_reach_training(textures):
    assert textures.sources == ("0001", "0002", "0017", "0020")
    assert textures.training().sources == ("0001", "0002")
    assert textures.held_out().sources == ("0017", "0020")
    assert not set(textures.training().sources) & set(HELD_OUT_SOURCES)
    assert all("_0017_" not in path.name for path in textures.training().patches)


def test_a_folder_without_patches_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no reef patches"):
        ReefTextures.from_folder(tmp_path)
    with pytest.raises(ValueError, match="no reef textures folder"):
        ReefTextures.from_folder(tmp_path / "missing")


def test_the_folder_comes_from_the_option_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(REEF_TEXTURES_ENV, str(tmp_path))
    assert reef_textures_folder() == tmp_path
    with pytest.raises(ValueError, match="--reef-textures"):
        reef_textures_folder(tmp_path / "missing")
    monkeypatch.delenv(REEF_TEXTURES_ENV)
    monkeypatch.chdir(tmp_path)
    assert reef_textures_folder() is None
    (tmp_path / DEFAULT_REEF_TEXTURES).mkdir(parents=True)
    assert reef_textures_folder() == DEFAULT_REEF_TEXTURES


@pytest.mark.parametrize("frame", REEF_FRAMES)
def test_a_reef_quadrat_carries_its_truth(textures, frame):
    scene = reef_quadrat((320, 240), 3, textures, frame=frame, string=True)
    again = reef_quadrat((320, 240), 3, textures, frame=frame, string=True)
    assert np.array_equal(scene.image, again.image)
    assert scene.image.shape == (240, 320, 3) and scene.image.dtype == np.uint8
    assert scene.grid_points.shape == (GRID_POINTS, 2) and scene.corners.shape == (4, 2)
    assert scene.look["frame"] == frame and scene.look["string"] is True
    assert scene.string_mask.any()
    for coral in scene.corals:
        assert coral.mask.shape == (240, 320) and coral.mask.sum() >= 50
    unit = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    mapped = unit @ scene.homography.T
    assert np.allclose(mapped[:, :2] / mapped[:, 2:], scene.corners[[0, 2]])


def test_a_frame_it_does_not_draw_is_refused(textures):
    with pytest.raises(ValueError, match="'gold': not one of criobe, metal, pvc, painted, taped"):
        reef_quadrat(64, 1, textures, frame="gold")


def test_without_string_nothing_is_left_to_repaint(textures):
    scene = reef_quadrat(256, 5, textures, string=False)
    assert scene.look["string"] is False and not scene.string_mask.any()


def test_gridpose_learns_no_points_where_there_is_no_string(textures):
    model = MODELS["gridpose"]
    counts = set()
    for seed in range(model.train_seeds.start + 1, model.train_seeds.start + 12):
        if seed % 4 == 0:
            continue
        _, lines = draw_example(model, seed, textures)
        counts.add(len(lines))
    assert counts == {0, GRID_POINTS}


def test_a_run_with_frames_draws_its_photos_with_them(textures):
    model = MODELS["gridcorners"]
    seed = model.train_seeds.start + 1
    image, lines = draw_example(model, seed, textures, ("taped",))
    size = random_photo_size_wh(np.random.default_rng(seed + 7), (512, 832))
    assert reef_quadrat(size, seed, textures).look["frame"] != "taped"  # the mix draws another
    taped = reef_quadrat(size, seed, textures, frame="taped")
    assert np.array_equal(image, taped.image) and len(lines) == 4
    drawn_world = model.train_seeds.start
    assert drawn_world % REEF_DRAWN_SHARE == 0
    assert np.array_equal(
        draw_example(model, drawn_world, textures, ("taped",))[0],
        draw_example(model, drawn_world)[0],
    )


def test_a_run_draws_its_frames_as_often_as_it_names_them():
    assert run_frame(5, None) is None
    picks = [run_frame(seed, HARD_FRAMES) for seed in range(5000)]
    assert set(picks) == set(REEF_FRAMES)
    for frame in REEF_FRAMES:
        named = HARD_FRAMES.count(frame) / len(HARD_FRAMES)
        assert picks.count(frame) / len(picks) == pytest.approx(named, abs=0.025), frame
    for frame in ("painted", "taped"):  # more than reef_quadrat's own mix, an eighth each
        assert HARD_FRAMES.count(frame) / len(HARD_FRAMES) > 1 / 8
    assert MODELS["gridcorners"].refinements[-1].frames == HARD_FRAMES


def test_train_demo_refuses_a_missing_textures_folder(tmp_path, capsys):
    from quadratseg_handlers.cli.main import main

    code = main(
        ["train-demo", "--reef-textures", str(tmp_path / "none"), "--output", str(tmp_path)]
    )
    assert code == 2
    assert "no reef textures folder" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()

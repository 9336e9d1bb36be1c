"""The trained demo models through packaged bundles, served like Nuclio, on held-out photos.

Every stage runs on the previous stage's answer (corners -> warp -> grid points -> grid
removal -> corals), as `make demo` does, and is scored against the drawn truth. The photos come
from seeds never drawn for training.

The tests assert the bars of docs/demo.md: corners, grid points, grid removal, corals, and
the 4000 x 3000 photo's mappings. The functions run with each model's demo settings
(`serve_env`): the corners with their second pass (REFINE_CORNERS) and checked against the
frame's bars (FIT_FRAME_BARS).
"""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg_handlers.demo import accuracy
from quadratseg_handlers.demo.datasets import random_photo_size_wh
from quadratseg_handlers.demo.pipeline import (
    VISIBLE_BAR,
    Pipeline,
    PipelineRun,
    served_functions,
)
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import TEST_SEEDS, verified_models
from quadratseg_handlers.ops.matching import project
from quadratseg_handlers.ops.quadrat import quadrat_side

pytestmark = pytest.mark.slow

PHOTOS = 16
"""Held-out photos scored (long side 1024 to 1600 px, the generator's aspect ratios)."""


@pytest.fixture(scope="module")
def served(tmp_path_factory, committed_models):
    work = tmp_path_factory.mktemp("pipeline")
    with served_functions(
        work, work / "bundles", verified_models(committed_models), log=lambda _: None
    ) as (
        urls,
        _labels,
    ):
        yield urls


@pytest.fixture(scope="module")
def runs(served) -> list[PipelineRun]:
    pipeline = Pipeline(served)
    results = []
    for offset in range(PHOTOS):
        seed = TEST_SEEDS + 1000 + offset
        size = random_photo_size_wh(np.random.default_rng(seed), (1024, 1600))
        results.append(pipeline.run(quadrat_image(size, seed)))
    return results


def test_corners_found_on_every_photo_within_2_percent_on_95_percent(runs):
    assert not [run.failure for run in runs if run.failure]
    errors = [run.corner_error for run in runs]
    assert sum(e <= accuracy.CORNER_TOLERANCE for e in errors) >= 0.95 * len(runs), errors
    # Measured 0.63 % with the demo's settings (0.78 % with one pass).
    assert np.median(errors) <= 0.01, errors


def test_grid_points_at_their_index_within_1_percent(runs):
    hits = [run.grid_hits if run.grid is not None else 0.0 for run in runs]
    assert np.mean(hits) >= 0.98, [round(h, 3) for h in hits]


def test_grid_removal_repaints_the_string_and_nothing_else(runs):
    scores = [run.repaint for run in runs if run.repaint is not None]
    assert len(scores) >= 0.95 * len(runs)
    assert all(score.outside_untouched for score in scores)
    assert np.mean([score.string_repainted for score in scores]) >= 0.98
    # What stays visible: measured 1.9 % of the string's contrast on average, 0 % on 13 of the
    # 16, at most 1.3 % on 15 (29 % on the other, whose grid has 108 of 117 points right).
    visible = [score.string_visible for score in scores]
    assert np.mean(visible) <= 0.05, [round(v, 3) for v in visible]
    assert sum(v <= VISIBLE_BAR for v in visible) >= 0.85 * len(scores), visible


def test_corals_found_with_their_genus(runs):
    scores = [run.corals for run in runs if run.corals is not None]
    found = sum(score.found for score in scores)
    colonies = sum(score.colonies for score in scores)
    true_shapes = sum(score.true_shapes for score in scores)
    shapes = sum(score.shapes for score in scores)
    assert found / colonies >= 0.85, (found, colonies)
    assert true_shapes / shapes >= 0.85, (true_shapes, shapes)


BIG_PHOTOS = 6
"""4000 x 3000 photos run through the pipeline (seeds TEST_SEEDS + 7 on)."""


def test_4000_by_3000_photos_in_their_own_pixels(served):
    """Shapes carried back to the photo's pixels score as they do in the warped image: the
    letterbox, the scaled decode and the warp map them right; pooled over the photos, both
    coral bars hold."""
    pipeline = Pipeline(served)
    found = colonies = true_shapes = shapes = 0
    for offset in range(BIG_PHOTOS):
        scene = quadrat_image((4000, 3000), TEST_SEEDS + 7 + offset)
        run = pipeline.run(scene)
        assert not run.failure, run.failure
        side = quadrat_side(scene.corners)
        assert run.corner_error <= accuracy.CORNER_TOLERANCE
        assert run.grid is not None and run.transform is not None
        in_photo = project(np.linalg.inv(run.transform), run.grid)
        errors = accuracy.point_errors(in_photo, scene.grid_points, side)
        assert (errors <= accuracy.GRID_TOLERANCE).mean() >= 0.98
        assert run.photo_corals is not None and run.corals is not None
        # A colony whose IoU sits on the 0.5 bar may match in one pixel grid and not the other.
        assert abs(run.photo_corals.found - run.corals.found) <= 1
        assert run.photo_corals.shapes == run.corals.shapes
        found += run.photo_corals.found
        colonies += run.photo_corals.colonies
        true_shapes += run.photo_corals.true_shapes
        shapes += run.photo_corals.shapes
    # Six photos only: 48 of 53 colonies found (91 %) and 48 of 56 shapes right (86 %) here;
    # the 85 % bars of the drawn world hold on the 16 held-out seeds above (89 % / 93 %).
    assert found / colonies >= 0.83, (found, colonies)
    assert true_shapes / shapes >= 0.83, (true_shapes, shapes)

"""The figures of ``quadratseg evaluate`` against counts made here: a perfect answer, one
colony left out, one given the wrong genus, a spurious answer, skeletons moved by a known
share of the side; the COCO export gives the XML's figures."""

from __future__ import annotations

import numpy as np
import pytest
from answers_for_tests import coral_shapes, skeleton_shape

from quadratseg_handlers.demo.exports import drawn_images, write_export
from quadratseg_handlers.evaluate import scores
from quadratseg_handlers.evaluate.exports import Export, ExportImage, TruthSkeleton, open_export
from quadratseg_handlers.evaluate.summary import ImageAnswer, build


@pytest.fixture(scope="module")
def corals():
    return drawn_images("pth-yolo-coralsegv4", 3, warp=256)


@pytest.fixture(scope="module")
def exports(corals, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    return {
        "cvat": write_export(corals, folder / "cvat.zip", "cvat"),
        "coco": write_export(corals, folder / "coco.zip", "coco"),
    }


def _report(export_path, answers, served=0.25):
    with open_export(export_path) as export:
        return build(export, export.label_kinds(), {0.05: answers}, served, "pth-yolo-coralsegv4")


def test_a_perfect_answer_scores_1_everywhere(exports, corals):
    report = _report(exports["cvat"], [ImageAnswer(coral_shapes(d), 0.1) for d in corals])
    assert report["images"] == 3
    for figures in report["labels"].values():
        assert (figures["precision"], figures["recall"], figures["map"], figures["ap50"]) == (
            1.0, 1.0, 1.0, 1.0,
        )  # fmt: skip
    drawn = sum(len(d.instances) for d in corals)
    assert report["instances"]["tp"] == drawn
    diagonal = {
        k: v
        for k, row in report["instances"]["confusion"].items()
        for k2, v in row.items()
        if k == k2
    }
    assert sum(diagonal.values()) == drawn


@pytest.mark.parametrize("export_format", ["cvat", "coco"])
def test_one_colony_left_out_costs_one_in_recall(exports, corals, export_format):
    answers = [
        ImageAnswer(coral_shapes(d, skip=0 if n == 1 else None), 0.1) for n, d in enumerate(corals)
    ]
    report = _report(exports[export_format], answers)
    drawn = sum(len(d.instances) for d in corals)
    label = corals[1].instances[0][0]
    of_label = sum(1 for d in corals for name, _ in d.instances if name == label)
    assert report["instances"]["recall"] == pytest.approx((drawn - 1) / drawn)
    assert report["instances"]["precision"] == 1.0
    assert report["labels"][label]["recall"] == pytest.approx((of_label - 1) / of_label)
    assert report["labels"][label]["fn"] == 1
    assert report["rows"][0]["image"] == corals[1].name  # the worst image first


def test_the_coco_export_gives_the_xml_figures(exports, corals):
    answers = [ImageAnswer(coral_shapes(d, skip=n), 0.1) for n, d in enumerate(corals)]
    xml, coco = _report(exports["cvat"], answers), _report(exports["coco"], answers)
    for key in ("labels", "instances", "rows", "recommendation"):
        assert xml[key] == coco[key]


def test_a_wrong_genus_is_a_miss_a_spurious_answer_and_a_confusion(exports, corals):
    answers = [ImageAnswer(coral_shapes(d), 0.1) for d in corals]
    shape = answers[0].shapes[0]
    drawn_label = shape["label"]
    wrong = next(label for label, _ in corals[1].instances if label != drawn_label)
    for part in answers[0].shapes:
        if part.get("group_id") == shape.get("group_id"):
            part["label"] = wrong
    report = _report(exports["cvat"], answers)
    assert report["instances"]["confusion"][drawn_label][wrong] == 1
    assert report["labels"][drawn_label]["fn"] == 1
    assert report["labels"][wrong]["fp"] == 1


def test_the_threshold_that_drops_a_spurious_answer_is_recommended(exports, corals):
    """A spurious colony at 0.3 (a drawn one's mask on an image without it): F1 is best above
    0.3; of the best thresholds the one closest to the served 0.25 is chosen."""
    answers = [ImageAnswer(coral_shapes(d), 0.1) for d in corals]
    label, mask = corals[0].instances[0]
    spurious = coral_shapes(type(corals[0])("x", corals[0].image, [(label, mask)]), score=0.3)
    taken = {tuple(np.flatnonzero(m.ravel())[:1]) for _, m in corals[2].instances}
    assert tuple(np.flatnonzero(mask.ravel())[:1]) not in taken
    answers[2].shapes.extend(spurious)
    report = _report(exports["cvat"], answers)
    drawn = sum(len(d.instances) for d in corals)
    assert report["instances"]["precision"] == pytest.approx(drawn / (drawn + 1))
    assert report["recommendation"]["instances_threshold"] == 0.35
    assert report["recommendation"]["commands"] == [
        "quadratseg package coralsegv4 WEIGHTS --env CONF_THRESHOLD=0.35"
    ]
    at_035 = next(r for r in report["instances"]["sweep"] if r["threshold"] == 0.35)
    assert (at_035["precision"], at_035["recall"]) == (1.0, 1.0)


# --- skeletons ---------------------------------------------------------------------------------

SQUARE = np.array([[100.0, 50.0], [500.0, 50.0], [500.0, 450.0], [100.0, 450.0]])
"""A quadrat of side 400 px: 1 % of the side is 4 px."""


def _skeleton_report(answers, served=0.1, extra=None):
    images = [
        ExportImage(f"q{n}.jpg", 600, 500, skeletons=[TruthSkeleton("quadrat_corner", {
            str(i + 1): (float(x), float(y)) for i, (x, y) in enumerate(SQUARE)})])
        for n in range(len(answers))
    ]  # fmt: skip
    export = Export("drawn", "CVAT for images 1.1", images)
    calls = {served: [ImageAnswer(shapes, 0.5) for shapes in answers], **(extra or {})}
    return build(export, {"quadrat_corner": "skeleton"}, calls, served, "pth-yolo-gridcorners")


def test_the_side_is_the_drawn_quadrats():
    assert scores.skeleton_side(SQUARE) == pytest.approx(400.0)


@pytest.mark.parametrize(
    ("shift", "pck", "right"),
    [(0.0, (1, 1, 1), 1.0), (6.0, (0, 1, 1), 1.0), (10.0, (0, 0, 1), 0.0), (24.0, (0, 0, 0), 0.0)],
)
def test_a_known_shift_gives_known_pck(shift, pck, right):
    """Every corner moved by ``shift`` px of a 400 px side: 1.5 % is within 2 % not 1 %."""
    report = _skeleton_report([[skeleton_shape("quadrat_corner", SQUARE + [shift, 0])]] * 2)
    figures = report["labels"]["quadrat_corner"]
    assert tuple(figures["pck"].values()) == pck
    assert list(figures["pck"]) == ["0.01", "0.02", "0.05"]
    assert figures["images_within_2pct"] == right
    assert (figures["precision"], figures["recall"]) == (right, right)
    assert figures["mean_error"] == pytest.approx(shift / 400)


def test_a_node_outside_and_a_missing_skeleton_count_as_wrong():
    answers = [[skeleton_shape("quadrat_corner", SQUARE, outside=(2,))], []]
    figures = _skeleton_report(answers)["labels"]["quadrat_corner"]
    assert figures["pck"]["0.05"] == pytest.approx(3 / 8)
    assert figures["missing_skeletons"] == 1
    assert figures["images_within_2pct"] == 0.0
    assert figures["node_errors"]["2"] == 1.0


def test_the_skeleton_sweeps():
    """Confidence 0.3: right until the cut passes 0.3. The request threshold with the most
    images right is recommended (0.4 here: 0.1 answers a wrong skeleton)."""
    right = skeleton_shape("quadrat_corner", SQUARE, score=0.3)
    wrong = skeleton_shape("quadrat_corner", SQUARE + 20, score=0.3)
    extra = {0.4: [ImageAnswer([right], 0.5)], 0.55: [ImageAnswer([], 0.5)]}
    report = _skeleton_report([[right]], extra=extra)
    cuts = {
        r["confidence"]: r["images_right"]
        for r in report["labels"]["quadrat_corner"]["confidence_sweep"]
    }
    assert (cuts[0.3], cuts[0.35]) == (1.0, 0.0)
    report = _skeleton_report([[wrong]], extra=extra)
    assert report["recommendation"]["skeletons_threshold"] == 0.4
    sweep = {
        r["threshold"]: r["images_right"]
        for r in report["labels"]["quadrat_corner"]["threshold_sweep"]
    }
    assert sweep == {0.1: 0.0, 0.4: 1.0, 0.55: 0.0}

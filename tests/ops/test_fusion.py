"""Fusion of semantic probabilities with instance masks: exact labels, overlaps, gaps, review."""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg_handlers.ops.fusion import FusedInstance, FusionRules, MaskProposal, fuse

BACKGROUND, ACROPORA, PORITES = 0, 1, 2
RULES = FusionRules(background=frozenset({BACKGROUND}), min_probability=0.3, unsure_below=0.5)


def probability_map(height: int, width: int, classes: int = 3) -> np.ndarray:
    """A (classes, H, W) map where every pixel is background with probability 0.8."""
    probabilities = np.full((classes, height, width), 0.2 / (classes - 1), dtype=np.float32)
    probabilities[BACKGROUND] = 0.8
    return probabilities


def paint(probabilities: np.ndarray, rows: slice, cols: slice, values: dict[int, float]) -> None:
    """Set the class probabilities of a block of pixels (the others share what is left)."""
    classes = probabilities.shape[0]
    rest = (1.0 - sum(values.values())) / (classes - len(values))
    probabilities[:, rows, cols] = rest
    for index, value in values.items():
        probabilities[index, rows, cols] = value


def proposal(height: int, width: int, rows: slice, cols: slice, quality: float) -> MaskProposal:
    """A full-image mask proposal covering a block of pixels."""
    mask = np.zeros((height, width), dtype=bool)
    mask[rows, cols] = True
    return MaskProposal(mask, (0, 0), quality)


def full_mask(instance: FusedInstance, height: int, width: int) -> np.ndarray:
    """The instance's crop placed back into an image-sized mask."""
    canvas = np.zeros((height, width), dtype=bool)
    x, y = instance.origin
    rows, cols = instance.mask.shape
    canvas[y : y + rows, x : x + cols] = instance.mask
    return canvas


def block(height: int, width: int, rows: slice, cols: slice) -> np.ndarray:
    canvas = np.zeros((height, width), dtype=bool)
    canvas[rows, cols] = True
    return canvas


def summary(instances: list[FusedInstance]) -> list[tuple[int, str, float, bool]]:
    return [(i.class_index, i.source, round(i.score, 4), i.unsure) for i in instances]


def test_each_instance_gets_the_class_with_the_highest_mean_probability():
    probabilities = probability_map(10, 12)
    paint(probabilities, slice(0, 10), slice(0, 6), {ACROPORA: 0.9, PORITES: 0.05})
    paint(probabilities, slice(0, 10), slice(6, 12), {ACROPORA: 0.3, PORITES: 0.6})
    # 4 columns of Acropora (0.9) + 2 of the right half (0.3): mean 0.7 beats Porites'
    # (4 * 0.05 + 2 * 0.6) / 6 = 0.2333.
    left = proposal(10, 12, slice(2, 5), slice(2, 8), 0.9)
    right = proposal(10, 12, slice(6, 9), slice(8, 12), 0.8)
    instances = fuse(probabilities, [left, right], RULES)
    # What the masks leave of each half comes back as one semantic part per class.
    assert summary(instances) == [
        (ACROPORA, "semantic", 0.9, False),
        (ACROPORA, "sam", round(0.7 * 0.9, 4), False),
        (PORITES, "semantic", 0.6, False),
        (PORITES, "sam", round(0.6 * 0.8, 4), False),
    ]
    assert instances[1].probability == pytest.approx(0.7, abs=1e-6)
    assert (full_mask(instances[1], 10, 12) == left.mask).all()
    assert (full_mask(instances[3], 10, 12) == right.mask).all()
    left_half = block(10, 12, slice(0, 10), slice(0, 6))
    assert (full_mask(instances[0], 10, 12) == left_half & ~left.mask).all()


def test_background_and_improbable_instances_are_dropped_unsure_ones_kept():
    probabilities = probability_map(8, 30)
    paint(probabilities, slice(0, 8), slice(10, 20), {ACROPORA: 0.45, PORITES: 0.25})
    paint(probabilities, slice(0, 8), slice(20, 30), {PORITES: 0.34, ACROPORA: 0.33})
    background = proposal(8, 30, slice(0, 8), slice(0, 10), 0.99)
    unsure = proposal(8, 30, slice(0, 8), slice(10, 20), 0.9)
    improbable = proposal(8, 30, slice(0, 8), slice(20, 30), 0.95)
    rules = FusionRules(frozenset({BACKGROUND}), min_probability=0.35, unsure_below=0.5)
    instances = fuse(probabilities, [background, unsure, improbable], rules)
    # Background's proposal is dropped; Porites at 0.34 < 0.35 is dropped, and so is the
    # semantic part under it (same probabilities); Acropora at 0.45 < 0.5 is kept, unsure.
    assert summary(instances) == [(ACROPORA, "sam", round(0.45 * 0.9, 4), True)]
    assert (full_mask(instances[0], 8, 30) == unsure.mask).all()


def test_probability_at_the_thresholds_is_kept_and_sure():
    probabilities = probability_map(4, 4)
    paint(probabilities, slice(0, 4), slice(0, 4), {ACROPORA: 0.5, PORITES: 0.25})
    rules = FusionRules(frozenset({BACKGROUND}), min_probability=0.5, unsure_below=0.5)
    instances = fuse(probabilities, [proposal(4, 4, slice(0, 4), slice(0, 4), 1.0)], rules)
    assert summary(instances) == [(ACROPORA, "sam", 0.5, False)]


def test_overlap_goes_to_the_higher_predicted_iou():
    probabilities = probability_map(10, 10)
    paint(probabilities, slice(0, 10), slice(0, 10), {ACROPORA: 0.9, PORITES: 0.05})
    low = proposal(10, 10, slice(0, 6), slice(0, 6), 0.75)
    high = proposal(10, 10, slice(3, 9), slice(3, 9), 0.95)
    instances = fuse(probabilities, [low, high], FusionRules(frozenset({BACKGROUND})))
    sam = [i for i in instances if i.source == "sam"]
    assert [i.quality for i in sam] == [0.95, 0.75]
    assert (full_mask(sam[0], 10, 10) == high.mask).all()
    assert (full_mask(sam[1], 10, 10) == low.mask & ~high.mask).all()
    owned = sum(full_mask(i, 10, 10).astype(int) for i in instances)
    assert owned.max() == 1  # every pixel belongs to one instance at most


def test_equal_iou_overlap_goes_to_the_smaller_mask_then_the_earlier_one():
    probabilities = probability_map(10, 10)
    paint(probabilities, slice(0, 10), slice(0, 10), {ACROPORA: 0.9, PORITES: 0.05})
    big = proposal(10, 10, slice(0, 8), slice(0, 8), 0.9)
    small = proposal(10, 10, slice(2, 5), slice(2, 5), 0.9)
    twin = proposal(10, 10, slice(2, 5), slice(2, 5), 0.9)
    instances = fuse(probabilities, [big, small, twin], FusionRules(frozenset({BACKGROUND})))
    sam = [i for i in instances if i.source == "sam"]
    assert len(sam) == 2  # the twin lost every pixel to the earlier identical mask
    by_area = sorted(sam, key=lambda i: int(i.mask.sum()))
    assert (full_mask(by_area[0], 10, 10) == small.mask).all()
    assert (full_mask(by_area[1], 10, 10) == big.mask & ~small.mask).all()


def test_an_instance_left_below_min_area_is_dropped_and_its_pixels_return_as_semantic():
    probabilities = probability_map(10, 10)
    paint(probabilities, slice(0, 10), slice(0, 10), {PORITES: 0.7, ACROPORA: 0.1})
    winner = proposal(10, 10, slice(0, 5), slice(0, 10), 0.9)
    loser = proposal(10, 10, slice(0, 6), slice(0, 10), 0.8)  # one free row of 10 pixels
    rules = FusionRules(frozenset({BACKGROUND}), min_area=11)
    instances = fuse(probabilities, [winner, loser], rules)
    assert [(i.source, i.quality) for i in instances] == [("semantic", None), ("sam", 0.9)]
    semantic = instances[0]
    assert semantic.class_index == PORITES
    assert semantic.origin == (0, 5)
    assert semantic.mask.shape == (5, 10) and semantic.mask.all()
    assert semantic.score == pytest.approx(0.7, abs=1e-6)


def test_uncovered_coral_becomes_one_instance_per_connected_part_and_class():
    probabilities = probability_map(12, 20)
    paint(probabilities, slice(1, 4), slice(1, 5), {ACROPORA: 0.6, PORITES: 0.1})
    paint(probabilities, slice(6, 11), slice(1, 4), {ACROPORA: 0.8, PORITES: 0.1})
    paint(probabilities, slice(1, 11), slice(10, 14), {PORITES: 0.9, ACROPORA: 0.05})
    paint(probabilities, slice(1, 11), slice(14, 18), {ACROPORA: 0.7, PORITES: 0.2})
    paint(probabilities, slice(11, 12), slice(19, 20), {ACROPORA: 0.9, PORITES: 0.05})
    rules = FusionRules(frozenset({BACKGROUND}), min_area=2)
    instances = fuse(probabilities, [], rules)
    found = sorted(
        (i.class_index, i.origin, i.mask.shape, round(i.score, 4), i.source) for i in instances
    )
    assert found == [
        (ACROPORA, (1, 1), (3, 4), 0.6, "semantic"),
        (ACROPORA, (1, 6), (5, 3), 0.8, "semantic"),
        (ACROPORA, (14, 1), (10, 4), 0.7, "semantic"),  # touches Porites: split by class
        (PORITES, (10, 1), (10, 4), 0.9, "semantic"),
    ]  # the single Acropora pixel at (19, 11) is below min_area
    assert all(i.mask.all() for i in instances)


def test_semantic_parts_fill_only_what_instances_leave_uncovered():
    probabilities = probability_map(10, 10)
    paint(probabilities, slice(0, 10), slice(0, 10), {ACROPORA: 0.9, PORITES: 0.05})
    inside = proposal(10, 10, slice(0, 10), slice(0, 4), 0.8)
    instances = fuse(probabilities, [inside], FusionRules(frozenset({BACKGROUND})))
    assert summary(instances) == [
        (ACROPORA, "semantic", 0.9, False),
        (ACROPORA, "sam", 0.72, False),
    ]
    assert (full_mask(instances[0], 10, 10) == block(10, 10, slice(0, 10), slice(4, 10))).all()


def test_a_dropped_background_mask_claims_no_pixels():
    probabilities = probability_map(10, 10)
    paint(probabilities, slice(2, 4), slice(2, 4), {ACROPORA: 0.9, PORITES: 0.05})
    sand = proposal(10, 10, slice(0, 10), slice(0, 10), 0.99)  # mostly background
    coral = proposal(10, 10, slice(1, 5), slice(1, 5), 0.8)  # 4 coral pixels of 16
    instances = fuse(probabilities, [sand, coral], FusionRules(frozenset({BACKGROUND})))
    # The coral mask's mean is background too (12 of 16 pixels): both dropped; the 2x2
    # coral block is still found from the semantic map.
    assert summary(instances) == [(ACROPORA, "semantic", 0.9, False)]
    assert instances[0].origin == (2, 2) and instances[0].mask.shape == (2, 2)


def test_score_clamps_predicted_iou_and_orders_instances():
    probabilities = probability_map(4, 12)
    paint(probabilities, slice(0, 4), slice(0, 12), {ACROPORA: 0.8, PORITES: 0.1})
    masks = [
        proposal(4, 12, slice(0, 4), slice(0, 4), -0.2),
        proposal(4, 12, slice(0, 4), slice(4, 8), 1.3),
        proposal(4, 12, slice(0, 4), slice(8, 12), 0.5),
    ]
    instances = fuse(probabilities, masks, FusionRules(frozenset({BACKGROUND})))
    assert [(i.quality, round(i.score, 4)) for i in instances] == [
        (1.3, 0.8),
        (0.5, 0.4),
        (-0.2, 0.0),
    ]


def test_crops_at_an_origin_are_read_in_image_coordinates():
    probabilities = probability_map(10, 10)
    paint(probabilities, slice(5, 10), slice(5, 10), {PORITES: 0.9, ACROPORA: 0.05})
    crop = MaskProposal(np.ones((5, 5), dtype=bool), (5, 5), 0.9)
    (instance,) = fuse(probabilities, [crop], FusionRules(frozenset({BACKGROUND})))
    assert (instance.class_index, instance.origin, instance.source) == (PORITES, (5, 5), "sam")
    assert instance.mask.shape == (5, 5) and instance.mask.all()


def test_invalid_input_is_refused():
    probabilities = probability_map(4, 4)
    outside = MaskProposal(np.ones((3, 3), dtype=bool), (2, 0), 0.9)
    with pytest.raises(ValueError, match="does not fit the 4x4 image"):
        fuse(probabilities, [outside], RULES)
    with pytest.raises(ValueError, match=r"\(classes, H, W\)"):
        fuse(probabilities[0], [], RULES)
    with pytest.raises(ValueError, match="min_probability <= unsure_below"):
        FusionRules(frozenset(), min_probability=0.5, unsure_below=0.2)

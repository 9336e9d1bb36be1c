"""Fusion of a semantic probability map with class-agnostic instance masks.

The semantic model says *what* each pixel is (per-class probabilities); the instance model
(SAM / CoralSCoP) says *which pixels belong together* (masks with a predicted IoU) but not
what they are. :func:`fuse` combines them, with these rules:

1. **Class**: each mask gets the class with the highest mean probability over the mask's
   pixels. Masks whose best class is a background class, or whose best mean probability is
   below ``min_probability``, are dropped. Those below ``unsure_below`` are kept with
   ``unsure=True`` so a reviewer can check the genus.
2. **One owner per pixel**: kept masks claim pixels in priority order: higher predicted IoU
   first, then the smaller mask, then the earlier one. A mask keeps only the pixels no
   earlier mask claimed; a mask left with fewer than ``min_area`` pixels is dropped and claims
   nothing. The class stays the one decided on the whole mask (step 1): trimming an overlap
   changes the outline, not what the object is.
3. **Nothing the semantic model saw is lost**: pixels whose argmax class is not background
   and that no kept mask owns are split into connected parts (8-connectivity) per class; each
   part of at least ``min_area`` pixels becomes an instance of that class, with the same
   ``min_probability`` / ``unsure_below`` rules on its mean probability.
4. **Score** = class probability x predicted IoU (clamped to [0, 1]) for masks; the class
   probability alone for semantic-only parts, which have no IoU.

NumPy plus OpenCV's connected components; no model library. Work on a mask happens on its
crop, so the cost follows the instances' sizes; the per-class passes over the whole image
(argmax, connected parts) are the only full-image work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

SAM = "sam"
SEMANTIC = "semantic"
SOURCES = (SAM, SEMANTIC)
"""Where a fused instance's outline comes from: an instance mask, or the semantic map alone."""


@dataclass(frozen=True)
class MaskProposal:
    """A class-agnostic instance mask: a boolean crop whose top-left pixel sits at ``origin``."""

    mask: np.ndarray
    origin: tuple[int, int]
    """(x, y) of the crop's top-left pixel in the image."""
    quality: float
    """The instance model's predicted IoU of the mask."""

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.mask))


@dataclass(frozen=True)
class FusedInstance:
    """One labelled instance: its class, mask crop, class probability and mask quality."""

    class_index: int
    mask: np.ndarray
    origin: tuple[int, int]
    probability: float
    """Mean probability of ``class_index`` over the pixels that decided the class."""
    quality: float | None
    """Predicted IoU of the instance mask; None for an instance from the semantic map alone."""
    unsure: bool
    """True when ``probability`` is below the fusion's ``unsure_below``: the class needs review."""

    @property
    def source(self) -> str:
        """``"sam"`` for an instance mask, ``"semantic"`` for a part of the semantic map."""
        return SEMANTIC if self.quality is None else SAM

    @property
    def score(self) -> float:
        """Class probability x predicted IoU (clamped to [0, 1]); the probability alone when
        there is no IoU."""
        if self.quality is None:
            return self.probability
        return self.probability * min(1.0, max(0.0, self.quality))


@dataclass(frozen=True)
class FusionRules:
    """Which classes are background and the thresholds of :func:`fuse`."""

    background: frozenset[int]
    """Class indices that are not coral: never an instance's class."""
    min_probability: float = 0.05
    """Instances whose class probability is below this are dropped."""
    unsure_below: float = 0.2
    """Instances whose class probability is below this are kept with ``unsure=True``."""
    min_area: int = 1
    """Instances (and uncovered parts) with fewer pixels than this are dropped."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_probability <= self.unsure_below <= 1.0:
            raise ValueError(
                "need 0 <= min_probability <= unsure_below <= 1, got "
                f"{self.min_probability} and {self.unsure_below}"
            )


def _crop(origin: tuple[int, int], mask: np.ndarray) -> tuple[slice, slice]:
    x, y = origin
    height, width = mask.shape
    return slice(y, y + height), slice(x, x + width)


def _check(probabilities: np.ndarray, proposals: Sequence[MaskProposal]) -> None:
    if probabilities.ndim != 3 or probabilities.shape[0] < 1:
        raise ValueError(f"probabilities must be (classes, H, W), got {probabilities.shape}")
    _, height, width = probabilities.shape
    for index, proposal in enumerate(proposals):
        x, y = proposal.origin
        rows, cols = proposal.mask.shape
        if proposal.mask.ndim != 2 or x < 0 or y < 0 or x + cols > width or y + rows > height:
            raise ValueError(
                f"proposal {index}: a {cols}x{rows} crop at ({x}, {y}) does not fit the "
                f"{width}x{height} image"
            )


def mean_probabilities(probabilities: np.ndarray, proposal: MaskProposal) -> np.ndarray:
    """Each class's mean probability over the proposal's pixels (zeros for an empty mask)."""
    rows, cols = _crop(proposal.origin, proposal.mask)
    inside = probabilities[:, rows, cols][:, proposal.mask.astype(bool)]
    if inside.shape[1] == 0:
        return np.zeros(probabilities.shape[0], dtype=np.float64)
    result: np.ndarray = inside.mean(axis=1, dtype=np.float64)
    return result


def _tier(probability: float, rules: FusionRules) -> bool | None:
    """None when dropped, else whether the class is unsure."""
    if probability < rules.min_probability:
        return None
    return probability < rules.unsure_below


def _labelled_proposals(
    probabilities: np.ndarray, proposals: Sequence[MaskProposal], rules: FusionRules
) -> list[tuple[int, MaskProposal, int, float, bool]]:
    """(index, proposal, class, probability, unsure) of the proposals that keep a class."""
    kept = []
    for index, proposal in enumerate(proposals):
        means = mean_probabilities(probabilities, proposal)
        best = int(np.argmax(means))
        probability = float(means[best])
        unsure = _tier(probability, rules)
        if proposal.area == 0 or best in rules.background or unsure is None:
            continue
        kept.append((index, proposal, best, probability, unsure))
    return kept


def _claim(
    owner: np.ndarray,
    labelled: list[tuple[int, MaskProposal, int, float, bool]],
    rules: FusionRules,
) -> list[FusedInstance]:
    """Give each pixel to the first proposal in priority order that covers it."""
    order = sorted(labelled, key=lambda item: (-item[1].quality, item[1].area, item[0]))
    instances = []
    for index, proposal, best, probability, unsure in order:
        rows, cols = _crop(proposal.origin, proposal.mask)
        region = owner[rows, cols]
        free = proposal.mask.astype(bool) & (region < 0)
        if np.count_nonzero(free) < max(rules.min_area, 1):
            continue
        region[free] = index
        instances.append(
            FusedInstance(best, free, proposal.origin, probability, proposal.quality, unsure)
        )
    return instances


def _uncovered(
    probabilities: np.ndarray, owner: np.ndarray, rules: FusionRules
) -> list[FusedInstance]:
    """Connected parts of each non-background argmax class that no instance owns."""
    classes = probabilities.shape[0]
    free_labels = np.where(owner < 0, np.argmax(probabilities, axis=0), -1)
    counts = np.bincount(free_labels.reshape(-1) + 1, minlength=classes + 1)[1:]
    instances = []
    for label in np.flatnonzero(counts >= max(rules.min_area, 1)):
        if int(label) in rules.background:
            continue
        binary = (free_labels == label).astype(np.uint8)
        count, parts, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for part in range(1, count):
            x, y, width, height, area = (int(v) for v in stats[part])
            if area < rules.min_area:
                continue
            crop = parts[y : y + height, x : x + width] == part
            probability = float(
                probabilities[label, y : y + height, x : x + width][crop].mean(dtype=np.float64)
            )
            unsure = _tier(probability, rules)
            if unsure is not None:
                instances.append(FusedInstance(int(label), crop, (x, y), probability, None, unsure))
    return instances


def fuse(
    probabilities: np.ndarray, proposals: Iterable[MaskProposal], rules: FusionRules
) -> list[FusedInstance]:
    """Label instance masks with the semantic classes; see the module docstring for the rules.

    ``probabilities`` is (classes, H, W), each pixel's class probabilities. Returns the
    instances ordered by score, highest first (mask instances before semantic-only parts on
    equal scores).
    """
    proposals = list(proposals)
    _check(probabilities, proposals)
    owner = np.full(probabilities.shape[1:], -1, dtype=np.int32)
    instances = _claim(owner, _labelled_proposals(probabilities, proposals, rules), rules)
    instances += _uncovered(probabilities, owner, rules)
    return sorted(instances, key=lambda instance: -instance.score)

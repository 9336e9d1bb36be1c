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
crop, so the cost follows the instances' sizes; the argmax, the ownership map and one
connected-components pass are the only full-image work.
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
        if proposal.mask.ndim != 2:
            raise ValueError(f"proposal {index}: the mask must be 2-D, got {proposal.mask.shape}")
        x, y = proposal.origin
        rows, cols = proposal.mask.shape
        if x < 0 or y < 0 or x + cols > width or y + rows > height:
            raise ValueError(
                f"proposal {index}: a {cols}x{rows} crop at ({x}, {y}) does not fit the "
                f"{width}x{height} image"
            )


def mean_probabilities(probabilities: np.ndarray, proposal: MaskProposal) -> np.ndarray:
    """Each class's mean probability over the proposal's pixels (zeros for an empty mask)."""
    rows, cols = _crop(proposal.origin, proposal.mask)
    weights = proposal.mask.astype(probabilities.dtype)
    count = float(weights.sum())
    if count == 0:
        return np.zeros(probabilities.shape[0], dtype=np.float64)
    # A weighted sum over the crop: several times faster than gathering the masked pixels.
    sums = np.einsum("chw,hw->c", probabilities[:, rows, cols], weights)
    result: np.ndarray = sums.astype(np.float64) / count
    return result


def _tier(probability: float, rules: FusionRules) -> bool | None:
    """None when dropped, else whether the class is unsure."""
    if probability < rules.min_probability:
        return None
    return probability < rules.unsure_below


@dataclass(frozen=True)
class _Labelled:
    """A proposal that kept a class: its position in the input, the class and probability."""

    index: int
    proposal: MaskProposal
    class_index: int
    probability: float
    unsure: bool

    @property
    def priority(self) -> tuple[float, int, int]:
        """Sort key: higher predicted IoU, then smaller area, then earlier in the input."""
        return -self.proposal.quality, self.proposal.area, self.index


def _labelled_proposals(
    probabilities: np.ndarray, proposals: Sequence[MaskProposal], rules: FusionRules
) -> list[_Labelled]:
    """The proposals whose best class is coral and probable enough, with that class."""
    kept = []
    for index, proposal in enumerate(proposals):
        means = mean_probabilities(probabilities, proposal)
        best = int(np.argmax(means))
        probability = float(means[best])
        unsure = _tier(probability, rules)
        if proposal.area == 0 or best in rules.background or unsure is None:
            continue
        kept.append(_Labelled(index, proposal, best, probability, unsure))
    return kept


def _claim(owner: np.ndarray, labelled: list[_Labelled], rules: FusionRules) -> list[FusedInstance]:
    """Give each pixel to the first proposal in priority order that covers it."""
    instances = []
    for item in sorted(labelled, key=lambda item: item.priority):
        proposal = item.proposal
        rows, cols = _crop(proposal.origin, proposal.mask)
        region = owner[rows, cols]
        free = proposal.mask.astype(bool) & (region < 0)
        if np.count_nonzero(free) < max(rules.min_area, 1):
            continue
        region[free] = item.index
        instances.append(
            FusedInstance(
                item.class_index,
                free,
                proposal.origin,
                item.probability,
                proposal.quality,
                item.unsure,
            )
        )
    return instances


def _parts(binary: np.ndarray, min_area: int) -> list[tuple[np.ndarray, int, int]]:
    """Connected parts (8-connectivity) of at least ``min_area`` pixels: (crop, x, y)."""
    count, parts, stats, _ = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=8
    )
    found = []
    for part in range(1, count):
        x, y, width, height, area = (int(v) for v in stats[part])
        if area >= min_area:
            found.append((parts[y : y + height, x : x + width] == part, x, y))
    return found


def _uncovered(
    probabilities: np.ndarray, owner: np.ndarray, rules: FusionRules
) -> list[FusedInstance]:
    """Connected parts of each non-background argmax class that no instance owns.

    One connected-components pass over all uncovered coral, then a split by class only of
    the parts that hold several classes: the same parts as one pass per class, at the cost
    of one full-image pass.
    """
    labels = np.argmax(probabilities, axis=0)
    coral = np.ones(probabilities.shape[0], dtype=bool)
    coral[sorted(rules.background)] = False
    min_area = max(rules.min_area, 1)
    instances = []
    for region, x, y in _parts(coral[labels] & (owner < 0), min_area):
        classes = labels[y : y + region.shape[0], x : x + region.shape[1]]
        present = np.unique(classes[region])
        if present.size == 1:
            pieces = [(int(present[0]), region, x, y)]
        else:
            pieces = [
                (int(label), piece, x + dx, y + dy)
                for label in present
                for piece, dx, dy in _parts(region & (classes == label), min_area)
            ]
        for label, piece, px, py in pieces:
            rows, cols = slice(py, py + piece.shape[0]), slice(px, px + piece.shape[1])
            probability = float(probabilities[label, rows, cols][piece].mean(dtype=np.float64))
            unsure = _tier(probability, rules)
            if unsure is not None:
                instances.append(FusedInstance(label, piece, (px, py), probability, None, unsure))
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

"""The answer of a matching: detections in template order, or why there are none."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Match:
    """Detections in template order, or an empty result with the ``reason`` there is none."""

    points: np.ndarray
    """(N, 2) image pixels in template order: the detection, or the homography's fill."""
    scores: np.ndarray
    """(N,) the matched detection's score; 0 for filled points."""
    detection: np.ndarray
    """(N,) index of the matched detection in the input, -1 for filled points."""
    residuals: np.ndarray
    """(N,) distance from the detection to its fitted template point (normalised units);
    NaN for filled points."""
    homography: np.ndarray | None
    """3 x 3 map from template (normalised) coordinates to image pixels."""
    dropped: np.ndarray
    """Indices of the input detections left out: spurious, duplicate or not finite."""
    reason: str = ""
    """Why there is no result; empty when there is one."""

    @property
    def ok(self) -> bool:
        """Whether every template point has a position."""
        return not self.reason

    @property
    def detected(self) -> np.ndarray:
        """(N,) True where a detection was matched (the point was seen, not filled)."""
        return self.detection >= 0

    @property
    def filled(self) -> np.ndarray:
        """(N,) True where the point was placed by the homography, with no detection."""
        return self.detection < 0

    @property
    def detected_count(self) -> int:
        """How many template points got a detection."""
        return int(np.count_nonzero(self.detection >= 0))


def failed_match(reason: str, detections: int) -> Match:
    """An empty result: no points, every detection dropped, and why."""
    return Match(
        points=np.zeros((0, 2)),
        scores=np.zeros(0),
        detection=np.zeros(0, dtype=np.int64),
        residuals=np.zeros(0),
        homography=None,
        dropped=np.arange(detections),
        reason=reason,
    )

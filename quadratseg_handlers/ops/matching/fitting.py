"""Maps from template points to detections: fitting them (OpenCV, seeded RANSAC) and
checking them, and the fill of missing points a map gives."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from quadratseg_handlers.ops.matching.geometry import project


def valid_map(matrix: np.ndarray | None, points: np.ndarray) -> bool:
    """Finite, orientation-preserving, and not folding the points over the horizon."""
    if matrix is None or not np.isfinite(matrix).all():
        return False
    w = points @ matrix[2, :2] + matrix[2, 2]
    if not ((w > 1e-9).all() or (w < -1e-9).all()):
        return False
    return bool(np.linalg.det(matrix if w[0] > 0 else -matrix) > 1e-12)


def fit_map(
    source: np.ndarray, target: np.ndarray, homography: bool, threshold: float
) -> tuple[np.ndarray | None, np.ndarray]:
    """A map from matched template points to detections, and which pairs are its inliers.

    A homography (RANSAC with ``threshold`` pixels) when asked for and there are 4 pairs or
    more, else an affine map (3 pairs or more) or a similarity (2 pairs).
    """
    count = len(source)
    everything = np.ones(count, dtype=bool)
    if homography and count == 4:
        matrix, _ = cv2.findHomography(source, target, 0)
        return matrix, everything
    if homography and count > 4:
        matrix, mask = cv2.findHomography(
            source, target, cv2.RANSAC, threshold, maxIters=2000, confidence=0.999
        )
        if matrix is not None:
            return matrix, mask.ravel().astype(bool)
    if count >= 3:
        affine, mask = cv2.estimateAffine2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=500
        )
        if affine is None:
            return None, everything
        return np.vstack([affine, [0.0, 0.0, 1.0]]), mask.ravel().astype(bool)
    if count == 2:
        partial, _ = cv2.estimateAffinePartial2D(source, target)
        if partial is not None:
            return np.vstack([partial, [0.0, 0.0, 1.0]]), everything
    return None, everything


@dataclass
class Fit:
    """One refitted placement: the map and its pairs with their costs."""

    matrix: np.ndarray
    template_index: np.ndarray
    detection_index: np.ndarray
    costs: np.ndarray

    def rank(self, scores: np.ndarray) -> tuple[int, float, float]:
        """Sort key, larger is better: more pairs, then surer detections, then lower cost.

        Surer detections decide between fits that are as good geometrically, e.g. the four
        corners, which an exact homography fits whichever four detections they are.
        """
        return (
            len(self.costs),
            round(float(scores[self.detection_index].sum()), 9),
            -float(self.costs.sum()),
        )


def fill_from_template(points: np.ndarray, given: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) with the rows not ``given`` placed by the least-squares homography
    from the template's given points to them (ValueError when no usable map fits: fewer than
    4 points, or all on one line)."""
    source = np.asarray(template, dtype=np.float64)[given]
    target = np.asarray(points, dtype=np.float64)[given]
    matrix = None
    if len(source) >= 4:
        matrix, _ = cv2.findHomography(source, target, 0)
    if not valid_map(matrix, source):
        raise ValueError(
            f"the {len(source)} given points fit no homography (on one line, or folded)"
        )
    assert matrix is not None
    filled = np.array(points, dtype=np.float64)
    filled[~given] = project(matrix, np.asarray(template, dtype=np.float64)[~given])
    return filled

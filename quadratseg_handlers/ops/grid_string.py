"""Where the grid string puts a side of the frame that the photo's edge cut off.

A frame cut by the photo's edge has a bar outside the photo: its two corners have no bars'
crossing to move to (:mod:`quadratseg_handlers.ops.frame_bars`), and the detector, which
sees no corner there, finds them at the edge, a string's width to a tenth of the side short,
or not at all. The string is still in the photo. Its lines run parallel to the bars, a
tenth of the side apart, the outermost tied to the bars, so in the upright warp of the
corners the lines parallel to the cut side form a comb of nine lines from the opposite bar,
and the cut bar lies ten spacings from that bar. :func:`cut_sides` fits that comb in each
half of the side (the warp of corners a little wrong tilts the lines) and moves the side's
two corners along their bars to the line through the two halves' estimates.

A side is looked at when a corner of it lies within a string's spacing of the photo's edge
(or beyond it): its bar may be out of the photo, and the string's first line, a spacing
inside, taken for it. It moves only when the opposite side's two corners are on their bars
(:func:`~quadratseg_handlers.ops.frame_bars.corners_on_bars`), the comb stands out of the
string-less background, and the new corners lie at the edge, one at least beyond it: the
comb explains why no bar was seen there. Lengths are in pixels of the upright warp of
:mod:`~quadratseg_handlers.ops.frame_bars` (side WARP_SIDE).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.ops.frame_bars import (
    AGREE,
    MARGIN,
    WARP_SIDE,
    UprightFrame,
    away_from_edge,
    band_response,
    side_strip,
    upright_frame,
)
from quadratseg_handlers.ops.quadrat import is_convex, outside_by, quadrat_side
from quadratseg_handlers.ops.template import GRID_SIZE

LINES = GRID_SIZE - 1
"""Spacings of the string from bar to bar: a tenth of the side on the 11 x 11 lattice of
QUADRATSEG's frames. A string of another count of cells would put a cut side wrong: leave
FIT_FRAME_BARS off for such a frame."""

SPACINGS = np.linspace(0.8, 1.25, 46) * WARP_SIDE / LINES
"""Spacings the comb tries: the warp of corners a side's width off stretches the string."""

SHIFTS = np.arange(-8, 9)
"""Offsets of the comb from the opposite bar's line that it tries (2.5 % of the side)."""

HALVES = ((0.1, 0.5), (0.5, 0.9))
"""Stretches of the side (fractions) whose string profiles are combed apart."""

STRING_WIDTHS = (3, 5)
"""Widths of the thin-line filter that scores the string."""

CONTRAST = 4.0
"""The comb counts when its score is at least this many times the profile's median, ..."""

FLOOR = 2.0
"""... plus this (the filter's units: a sum of channel differences)."""

MAX_MOVE = 0.15
"""Farthest a cut side moves, per look, as a fraction of the side."""

LOOKS = 2
"""Times the comb is fitted: the second time in the warp of the corners the first placed."""


def cut_sides(image: np.ndarray, corners: Any) -> tuple[np.ndarray, np.ndarray]:
    """The corners (TL, TR, BR, BL in ``image``'s pixels) with any side the photo's edge cut
    off placed where the grid string puts it, and which corners were so placed ((4,) bools).

    ``image``: RGB or BGR (H, W, 3) uint8. Costs nothing unless a corner lies within a
    string's spacing of the photo's edge (about half the photos of the reef world); then
    one warp and fit of the bars, two when a side moves.
    """
    given = np.asarray(corners, dtype=np.float64)
    placed = np.zeros(4, dtype=bool)
    frame = upright_frame(image, given) if _sides_near_edge(image, given) else None
    if frame is None:
        return given, placed
    anchored = frame.on_bars(image.shape[1], image.shape[0])
    current = given
    for look in range(1, LOOKS + 1):
        moved, now = _placed_once(image, frame, anchored)
        if not now.any():
            break
        current, placed = moved, placed | now
        next_frame = upright_frame(image, current) if look < LOOKS else None
        if next_frame is None:
            break
        frame = next_frame
    return current, placed


def corners_on_string(
    image: np.ndarray, corners: Any, anchored: np.ndarray | None = None
) -> np.ndarray:
    """Which corners (TL, TR, BR, BL in ``image``'s pixels) lie on a side cut off by the
    photo's edge within AGREE of the side where the grid string puts it: (4,) bools. With
    :func:`~quadratseg_handlers.ops.frame_bars.corners_on_bars` for the others (``anchored``,
    computed when not given), what confirms a frame the photo cuts (RETRY_THRESHOLD)."""
    given = np.asarray(corners, dtype=np.float64)
    frame = upright_frame(image, given) if _sides_near_edge(image, given) else None
    if frame is None:
        return np.zeros(4, dtype=bool)
    if anchored is None:
        anchored = frame.on_bars(image.shape[1], image.shape[0])
    moved, placed = _placed_once(image, frame, anchored)
    near = np.linalg.norm(moved - given, axis=1) <= AGREE * quadrat_side(given)
    return placed & near


def _sides_near_edge(image: np.ndarray, corners: np.ndarray) -> list[int]:
    """The sides (0 top, 1 right, 2 bottom, 3 left) with a corner within a string's spacing
    (a tenth of the side) of the photo's edge, or beyond it."""
    height, width = image.shape[:2]
    near = ~away_from_edge(corners, width, height, quadrat_side(corners) / LINES)
    return [side for side in range(4) if near[side] or near[(side + 1) % 4]]


def _placed_once(
    image: np.ndarray, frame: UprightFrame, anchored: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One look: each side near the edge whose opposite corners are ``anchored`` (on their
    bars) moved to the string's comb in ``frame``'s warp, when the rules of the module allow
    it; the corners and which were moved (none when the result is no convex quadrilateral)."""
    height, width = image.shape[:2]
    corners = frame.corners
    border = AGREE * quadrat_side(corners)
    moved, placed = corners.copy(), np.zeros(4, dtype=bool)
    for side in _sides_near_edge(image, corners):
        if not (anchored[(side + 2) % 4] and anchored[(side + 3) % 4]):
            continue
        line = _string_side(frame.warp, side)
        if line is None:
            continue
        ends = [
            np.cross(frame.bars[(side - 1) % 4].line, line),
            np.cross(line, frame.bars[(side + 1) % 4].line),
        ]
        if any(abs(end[2]) < 1e-12 for end in ends):
            continue
        in_warp = np.array([end[:2] / end[2] for end in ends]).reshape(-1, 1, 2)
        new = cv2.perspectiveTransform(in_warp, frame.to_image).reshape(-1, 2)
        at_edge = ~away_from_edge(new, width, height, border)
        if at_edge.all() and (outside_by(new, width, height) > 0).any():
            pair = [side, (side + 1) % 4]
            moved[pair], placed[pair] = new, True
    if not placed.any() or not is_convex(moved):
        return corners, np.zeros(4, dtype=bool)
    return moved, placed


def _string_side(warp: np.ndarray, side: int) -> np.ndarray | None:
    """The side's line (a, b, c) in the warp where the string's comb from the opposite bar
    puts it, through the two halves' estimates; None when a comb does not stand out or
    the side would move more than MAX_MOVE."""
    horizontal = side in (0, 2)
    opposite, outward = (MARGIN + WARP_SIDE, -1) if side in (0, 3) else (MARGIN, 1)
    current = opposite + outward * WARP_SIDE
    ends = []
    for low, high in HALVES:
        profile = _profile(warp, horizontal, low, high)
        score, place = _comb(profile, opposite, outward)
        background = float(np.median(profile[MARGIN : MARGIN + WARP_SIDE]))
        if score < CONTRAST * background + FLOOR or abs(place - current) > MAX_MOVE * WARP_SIDE:
            return None
        ends.append(place)
    along = [MARGIN + WARP_SIDE * (low + high) / 2 for low, high in HALVES]
    if horizontal:
        points = [(along[0], ends[0], 1.0), (along[1], ends[1], 1.0)]
    else:
        points = [(ends[0], along[0], 1.0), (ends[1], along[1], 1.0)]
    return np.cross(points[0], points[1])


def _profile(warp: np.ndarray, horizontal: bool, low: float, high: float) -> np.ndarray:
    """How string-like each row (horizontal lines; else each column) of the warp is over the
    stretch ``low`` to ``high`` of the side: the median thin-line response along it."""
    image = side_strip(
        warp, horizontal, int(MARGIN + low * WARP_SIDE), int(MARGIN + high * WARP_SIDE)
    )
    response = np.maximum.reduce([band_response(image, width) for width in STRING_WIDTHS])
    profile = np.median(response, axis=1).astype(np.float32).reshape(-1, 1)
    return cv2.GaussianBlur(profile, (1, 5), 1.0).ravel()


def _comb(profile: np.ndarray, opposite: float, outward: int) -> tuple[float, float]:
    """The best comb of lines 1..9 from the opposite bar's line (``outward``: the sign of the
    way to the cut side): its score (the median of the profile at its lines) and where it
    puts the cut bar (line 10)."""
    lines = np.arange(1, LINES)
    spacing, shift = np.meshgrid(SPACINGS, SHIFTS, indexing="ij")
    positions = opposite + shift[..., None] + outward * lines * spacing[..., None]
    valid = (positions.min(axis=-1) >= 0) & (positions.max(axis=-1) <= len(profile) - 1)
    values = np.interp(positions, np.arange(len(profile)), profile)
    scores = np.where(valid, np.median(values, axis=-1), -1.0)
    best = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[best]), float(opposite + shift[best] + outward * LINES * spacing[best])

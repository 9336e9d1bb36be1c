"""The quadrat frame's four bars as straight lines, and the corners where they cross.

A corner detector sees a corner; a colony lying over it hides it, and the detector then takes
a point on the colony's edge for it (docs/grid.md). The bars leading to that corner are still
visible over most of their length, and a homography keeps them straight, so
:func:`corners_from_bars` fits each bar as a line over its whole visible length, in an upright
warp of the quadrat made from the given corners, and moves a corner to its two bars' crossing
when they disagree and both bars are well supported.

How a bar is found, per side of the warp:

1. **Bar maps.** A band filter scores how much a band a few pixels wide differs in colour from
   both of its flanks (a step edge, such as a colony's outline, scores about 0), at the widths
   a frame's bar has (BAR_WIDTHS); the same filter at the grid string's width is subtracted,
   so the strings running parallel inside the frame score less than a bar.
2. **Search.** Every line whose two ends lie within BAR_REACH of the given side is scored by
   the median of the map along it, so a hidden stretch does not count against it. Of the
   strong candidates, the outermost wins (the strings lie inside the frame).
3. **Fit.** Least squares through each column's sub-pixel peak near the searched line,
   dropping columns off the line; the share of columns kept is the bar's coverage.

Every length below is in pixels of the upright warp, where the quadrat's side is WARP_SIDE.
The crossing is that of the bars' centre lines: the frame is drawn, and annotated, through
its corners along the bars' middles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.ops.quadrat import (
    is_convex,
    outside_by,
    quadrat_side,
    quadrat_transform,
    warp_quadrat,
)

WARP_SIDE = 320
"""Side of the quadrat in the upright warp the bars are fitted in."""

BAR_REACH = 0.55
"""Each end of a bar is searched within this fraction of the side from the given corners'."""

BAR_WIDTHS = (5, 7, 10, 13)
"""Bar widths the band filter tries (1.5 to 4 % of the side)."""

STRING_WIDTH = 3
"""Width of the thin-line filter whose response (the grid string's) is subtracted."""

PRE_SMOOTH = 3
"""Smoothing of the colours along the bar before filtering (small: a taped bar's bands)."""

ALONG_SMOOTH = 9
"""Smoothing of the filter's response along the bar."""

SPAN = (0.1, 0.9)
"""Stretch of each side that is sampled: the fixtures at the corners are left out."""

SAMPLES = 40
"""Points sampled along a candidate line."""

STEP = 5
"""Step of the search over the two ends' offsets."""

STRONG = 0.5
"""Candidate lines: local maxima of the score at least this fraction of the best."""

OUTWARD = 0.04
"""A candidate replaces the current line when it lies outside it, at both ends, by this
fraction of the side."""

PEAK_WINDOW = 4
"""The fit looks for each column's peak this many pixels either side of the searched line."""

INLIER = 1.5
"""Columns within this many pixels of the fitted line support it."""

MIN_FIT = 0.3
"""Below this share of supporting columns the searched line is kept, unfitted."""

AGREE = 0.02
"""A corner moves only when its bars cross farther than this fraction of the side from it."""

MIN_COVERAGE = 0.4
"""Both bars of a moved corner: at least this share of the sampled side supports the line."""

MIN_RELATIVE = 0.4
"""Both bars of a moved corner: a score at least this fraction of the 4 bars' median (a bar
cut lengthwise by the photo's edge scores 40 to 50 % of it)."""

WEAK_SCORE = 0.3
"""A corner the detector scored below this (or did not detect: filled) is weak evidence."""

CONFIRMING = 2
"""The bars are confirmed when at least this many corners agree with their crossings: only
then do agreeing corners snap to their crossing and weak corners move whatever their
neighbours."""

PAIR_MOVE = 0.05
"""Two neighbouring corners off their crossings move together when all four bars are seen,
the other two corners agree, and each moves at most this fraction of the side: half the
grid string's spacing (a tenth of the side), so a string taken for a bar, which would move
both by about a tenth, moves neither."""

BEYOND_MOVE = 0.1
"""A corner at the photo's edge moves out to its crossing beyond the edge at most this
fraction of the side."""

DECISIONS = 2
"""Looks at the same crossings: a corner whose neighbours agree with their bars only once
one of them moved (a weak corner moved in the first look) moves in the second."""

MARGIN = round(BAR_REACH * WARP_SIDE) + 24
"""Border of the upright warp around the quadrat: the whole search and the filters fit."""

_SUM_CHANNELS = np.ones((1, 3), np.float32)


@dataclass(frozen=True)
class Bar:
    """One side's bar: its line in the warp, how strongly and how much of it is seen."""

    line: np.ndarray
    """Homogeneous line (a, b, c) in the warp's pixels: a x + b y + c = 0."""
    score: float
    """Median band response along the line."""
    coverage: float
    """Share of the sampled side whose columns support the fitted line."""


@dataclass(frozen=True)
class UprightFrame:
    """The quadrat warped upright from given corners, and its 4 bars found in that warp:
    what the crossings (:meth:`crossings`) and the grid string's comb
    (:mod:`quadratseg_handlers.ops.grid_string`) both read, fitted once."""

    corners: np.ndarray
    """The given corners TL, TR, BR, BL, image pixels."""
    warp: np.ndarray
    """The upright warp: the quadrat's side WARP_SIDE, MARGIN pixels inside."""
    to_image: np.ndarray
    """3 x 3 map from the warp's pixels to the image's."""
    bars: list[Bar]
    """Top, right, bottom, left (:func:`frame_bars`)."""

    def crossings(
        self, *, min_coverage: float = MIN_COVERAGE, min_relative: float = MIN_RELATIVE
    ) -> tuple[np.ndarray, np.ndarray]:
        """Where each corner's two bars cross ((4, 2) image pixels, NaN where they are
        parallel), and whether both are well supported (coverage, and score against the 4
        bars' median)."""
        median = max(float(np.median([bar.score for bar in self.bars])), 1e-6)
        crossings = np.full((4, 2), np.nan)
        supported = np.zeros(4, dtype=bool)
        for corner in range(4):
            before, after = self.bars[(corner - 1) % 4], self.bars[corner]
            crossing = self.to_image @ np.cross(before.line, after.line)
            if abs(crossing[2]) < 1e-12:
                continue
            crossings[corner] = crossing[:2] / crossing[2]
            supported[corner] = (
                min(before.score, after.score) >= min_relative * median
                and min(before.coverage, after.coverage) >= min_coverage
            )
        return crossings, supported

    def on_bars(self, width: int, height: int, agree: float = AGREE) -> np.ndarray:
        """Which corners lie within ``agree`` of the side of a well-supported crossing of
        their bars inside a ``width`` x ``height`` image: (4,) bools."""
        crossings, supported = self.crossings()
        _, inside, near = _placed(crossings, self.corners, width, height)
        return supported & inside & (near <= agree * quadrat_side(self.corners))


def corners_from_bars(
    image: np.ndarray,
    corners: Any,
    *,
    weak: Any = None,
    agree: float = AGREE,
    min_coverage: float = MIN_COVERAGE,
    min_relative: float = MIN_RELATIVE,
) -> np.ndarray:
    """The quadrat's corners (TL, TR, BR, BL, in ``image``'s pixels) checked against its bars.

    Only a crossing inside the image whose two bars are well supported (``min_coverage`` and
    ``min_relative`` of the bars' median score) counts. A corner more than ``agree`` of the
    side from its crossing moves there when both its neighbours agree with their own
    crossings (a colony hides one corner, and its bars still pass through the neighbours; a
    bar mistaken for the string next to it would move two neighbours at once, so neither
    moves, unless both moves are under :data:`PAIR_MOVE`, less than a string would make),
    or when it is ``weak`` (the detector scored it low or did not detect it), lies more
    than ``agree`` of the side inside the image (at its edge the frame may be cut, its bar
    out of the photo and a string taken for it), and :data:`CONFIRMING` corners agree.
    When that many agree, the agreeing corners snap to their crossing: the corner is where
    the bars' centre lines cross, and the crossing is sharper than a detector's box; and a
    corner at the image's edge whose well-supported crossing lies farther out than it,
    beyond the edge (at most :data:`BEYOND_MOVE`, whether or not it agrees), moves out
    there: the detector cannot see past the edge, so it finds a cut corner short of where
    the bars cross. These rules look
    at the corners :data:`DECISIONS` times, against the same crossings: a corner whose
    neighbour moved onto its crossing then has both neighbours agreeing. Corners that are
    not a convex quadrilateral in that order, or moves that would make them one no longer,
    are left as they were before that look.
    ``image``: RGB or BGR (H, W, 3) uint8; ``weak``: (4,) bools, None for none. About 80 ms
    on 2 CPU cores, about the same whatever the image's size (a fixed-size warp).
    """
    given = np.asarray(corners, dtype=np.float64)
    found = bar_crossings(image, given, min_coverage=min_coverage, min_relative=min_relative)
    if found is None:
        return given
    crossings, supported = found
    height, width = image.shape[:2]
    weak_ones = np.zeros(4, dtype=bool) if weak is None else np.asarray(weak, dtype=bool)
    moved = given
    for _ in range(DECISIONS):
        moved = _decided(crossings, supported, moved, weak_ones, width, height, agree)
    return moved


def _decided(
    crossings: np.ndarray,
    supported: np.ndarray,
    given: np.ndarray,
    weak_ones: np.ndarray,
    width: int,
    height: int,
    agree: float,
) -> np.ndarray:
    """One look at the corners against their bars' crossings (the rules of
    :func:`corners_from_bars`): the corners after the moves it allows, or ``given``
    unchanged when those would be no convex quadrilateral."""
    seen, inside, near = _placed(crossings, given, width, height)
    usable = supported & inside
    side = quadrat_side(given)
    agrees = seen & (near <= agree * side)
    confirmed = int((usable & agrees).sum()) >= CONFIRMING
    interior = away_from_edge(given, width, height, agree * side)
    off = usable & ~agrees
    moves = off & np.roll(agrees, 1) & np.roll(agrees, -1)
    if usable.all():
        small = off & (near <= PAIR_MOVE * side)
        pairs = small & np.roll(small, -1) & np.roll(agrees, -2) & np.roll(agrees, -3)
        moves |= pairs | np.roll(pairs, 1)
    if confirmed:
        moves |= (off & weak_ones & interior) | (usable & agrees)
        beyond = supported & seen & ~inside & ~interior & (near <= BEYOND_MOVE * side)
        moves |= beyond & (outside_by(crossings, width, height) > outside_by(given, width, height))
    moved = np.where(moves[:, None], crossings, given)
    return moved if is_convex(moved) else given


def corners_on_bars(image: np.ndarray, corners: Any, *, agree: float = AGREE) -> np.ndarray:
    """Which corners (TL, TR, BR, BL, in ``image``'s pixels) lie within ``agree`` of the side
    of a well-supported crossing of their bars inside the image: (4,) bools, all False when
    the corners are no convex quadrilateral. All four on their bars is strong evidence that
    the corners are a frame's, whatever the detector's scores (a low-threshold answer is
    checked so, RETRY_THRESHOLD)."""
    frame = upright_frame(image, corners)
    if frame is None:
        return np.zeros(4, dtype=bool)
    height, width = image.shape[:2]
    return frame.on_bars(width, height, agree=agree)


def _placed(
    crossings: np.ndarray, given: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per corner: whether its bars cross (not parallel), whether the crossing lies inside
    the image, and how far it is from the corner (0 where the bars do not cross)."""
    seen = np.isfinite(crossings).all(axis=1)
    inside = seen & (outside_by(crossings, width, height) == 0)
    near = np.linalg.norm(np.where(seen[:, None], crossings, given) - given, axis=1)
    return seen, inside, near


def away_from_edge(points: np.ndarray, width: int, height: int, border: float) -> np.ndarray:
    """Which points lie inside the image at least ``border`` pixels from its edge: the others
    may be a frame's corners cut by it."""
    x, y = points[:, 0], points[:, 1]
    return (x >= border) & (x <= width - border) & (y >= border) & (y <= height - border)


def bar_crossings(
    image: np.ndarray,
    corners: Any,
    *,
    min_coverage: float = MIN_COVERAGE,
    min_relative: float = MIN_RELATIVE,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each corner's two bars cross ((4, 2) ``image`` pixels, NaN where they are
    parallel), and whether both are well supported (coverage and score, as in
    :func:`corners_from_bars`); None when the corners are no convex TL, TR, BR, BL."""
    frame = upright_frame(image, corners)
    if frame is None:
        return None
    return frame.crossings(min_coverage=min_coverage, min_relative=min_relative)


def upright_frame(image: np.ndarray, corners: Any) -> UprightFrame | None:
    """The quadrat warped upright from ``corners`` (TL, TR, BR, BL, ``image``'s pixels) and
    its bars; None when the corners are no convex quadrilateral."""
    given = np.asarray(corners, dtype=np.float64)
    if not is_convex(given):
        return None
    size = WARP_SIDE + 2 * MARGIN
    to_image = np.linalg.inv(quadrat_transform(given, size, MARGIN))
    warp = warp_quadrat(image, given, size, margin=MARGIN)
    return UprightFrame(given, warp, to_image, frame_bars(warp))


def frame_bars(warp: np.ndarray) -> list[Bar]:
    """The 4 bars (top, right, bottom, left) of a quadrat warped upright with its side
    WARP_SIDE pixels, MARGIN pixels inside a square ``warp``."""
    low, high = MARGIN, MARGIN + WARP_SIDE
    horizontal = _bar_maps(warp, horizontal=True)
    vertical = _bar_maps(warp, horizontal=False)
    sides = ((horizontal, low, -1), (vertical, high, 1), (horizontal, high, 1), (vertical, low, -1))
    bars = []
    for index, ((raw, suppressed), base, outward) in enumerate(sides):
        start, stop, score = _searched_line(suppressed, base, outward)
        start, stop, coverage = _fitted_line(raw, base, start, stop)
        first, second = (float(base + start), float(base + stop))
        if index % 2 == 0:
            ends = np.array([[low, first, 1.0], [high, second, 1.0]])
        else:
            ends = np.array([[first, low, 1.0], [second, high, 1.0]])
        bars.append(Bar(np.cross(ends[0], ends[1]), score, coverage))
    return bars


def _odd(value: float) -> int:
    """The odd kernel size nearest ``value`` (at least 1)."""
    size = max(1, round(value))
    return size + 1 - size % 2


def _colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel sum of absolute channel differences of two (H, W, 3) float32 images."""
    return cv2.transform(cv2.absdiff(a, b), _SUM_CHANNELS).reshape(a.shape[:2])


def band_response(image: np.ndarray, width: int) -> np.ndarray:
    """How much a horizontal band about ``width`` rows tall, centred on each pixel, differs
    from both its flanks: max(0, min(|c - up|, |c - down|) - |up - down| / 2), with c the mean
    over 0.6 ``width`` rows and up, down the means over 0.4 ``width`` rows just outside."""
    rows = image.shape[0]
    centre = cv2.blur(image, (1, _odd(0.6 * width)))
    flank = _odd(0.4 * width)
    flanks = cv2.blur(image, (1, flank))
    shift = round(0.5 * width + 0.5 * flank + 1)
    middle, up, down = centre[shift : rows - shift], flanks[: rows - 2 * shift], flanks[2 * shift :]
    either = cv2.min(_colour_distance(middle, up), _colour_distance(middle, down))
    response = np.zeros(image.shape[:2], np.float32)
    response[shift : rows - shift] = np.maximum(
        cv2.subtract(either, 0.5 * _colour_distance(up, down)), 0
    )
    return response


def side_strip(warp: np.ndarray, horizontal: bool, start: int, stop: int) -> np.ndarray:
    """The warp's columns ``start`` to ``stop`` for lines running horizontally (else its
    rows, transposed: rows always run across the lines), as float32 smoothed a little along
    the lines (PRE_SMOOTH): what the bars' and the string's filters read."""
    strip = warp[:, start:stop] if horizontal else warp[start:stop].transpose(1, 0, 2)
    return np.asarray(cv2.blur(np.ascontiguousarray(strip).astype(np.float32), (PRE_SMOOTH, 1)))


def _bar_maps(warp: np.ndarray, horizontal: bool) -> tuple[np.ndarray, np.ndarray]:
    """How bar-like each pixel is for bars running horizontally (else vertically), over the
    sampled stretch of the sides: the band response at the bars' widths (raw), and the same
    less the string's (suppressed), both smoothed along the bar. Vertical bars' maps come
    transposed: rows always run across the bar."""
    low = int(MARGIN + SPAN[0] * WARP_SIDE) - ALONG_SMOOTH
    high = int(MARGIN + SPAN[1] * WARP_SIDE) + ALONG_SMOOTH + 1
    image = side_strip(warp, horizontal, low, high)
    raw = np.zeros(image.shape[:2], np.float32)
    for width in BAR_WIDTHS:
        np.maximum(raw, band_response(image, width), out=raw)
    suppressed = np.maximum(raw - band_response(image, STRING_WIDTH), 0)
    maps = []
    for response in (raw, suppressed):
        full = np.zeros(warp.shape[:2], np.float32)
        full[:, low:high] = cv2.blur(response, (ALONG_SMOOTH, 1))
        maps.append(full)
    return maps[0], maps[1]


def _sampled_columns() -> tuple[np.ndarray, np.ndarray]:
    """Where along a side the search samples: fractions of the side, and warp columns."""
    along = np.linspace(SPAN[0], SPAN[1], SAMPLES)
    return along, np.round(MARGIN + along * WARP_SIDE).astype(int)


def _median_along(bars: np.ndarray, base: int, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """The median of ``bars`` along each line from offset ``start`` to ``stop`` off ``base``
    (arrays of the same shape): an occluded stretch does not pull a line's score down."""
    along, columns = _sampled_columns()
    offsets = start[..., None] + np.rint((stop - start)[..., None] * along)
    rows = np.clip(base + offsets, 0, bars.shape[0] - 1).astype(np.int32)
    middle = (SAMPLES - 1) // 2
    return np.partition(bars[rows, columns], middle, axis=-1)[..., middle].astype(np.float32)


def _searched_line(bars: np.ndarray, base: int, outward: int) -> tuple[float, float, float]:
    """The bar's line in a (suppressed) map, as the offsets of its two ends from row ``base``,
    and its score. Among the strong local maxima of the score over the ends' offsets, the
    search starts from the best and moves outwards (``outward``: -1 up, 1 down) while a
    candidate lies wholly outside the current one; then it settles to the pixel."""
    reach = round(BAR_REACH * WARP_SIDE)
    offsets = np.arange(-reach, reach + 1, STEP)
    start, stop = np.meshgrid(offsets, offsets, indexing="ij")
    tolerant = cv2.dilate(bars, np.ones((STEP + 1, 1), np.uint8))
    score = _median_along(tolerant, base, start, stop)
    peaks = (score >= cv2.dilate(score, np.ones((3, 3), np.uint8))) & (score > 0)
    peaks &= score >= STRONG * score.max()
    rows, cols = np.nonzero(peaks)
    if len(rows) == 0:
        return 0.0, 0.0, 0.0
    first, last, scores = outward * start[rows, cols], outward * stop[rows, cols], score[rows, cols]
    current = int(np.argmax(scores))
    clearance = OUTWARD * WARP_SIDE
    while True:
        outside = (first >= first[current] + clearance) & (last >= last[current] + clearance)
        if not outside.any():
            break
        current = int(np.flatnonzero(outside)[np.argmax(scores[outside])])
    fine = np.arange(-STEP, STEP + 1)
    near_start, near_stop = np.meshgrid(
        start[rows[current], cols[current]] + fine,
        stop[rows[current], cols[current]] + fine,
        indexing="ij",
    )
    fine_score = _median_along(bars, base, near_start, near_stop)
    best = np.unravel_index(int(np.argmax(fine_score)), fine_score.shape)
    return float(near_start[best]), float(near_stop[best]), float(fine_score[best])


def _fitted_line(
    bars: np.ndarray, base: int, start: float, stop: float
) -> tuple[float, float, float]:
    """The line through each column's sub-pixel peak within PEAK_WINDOW of the searched one,
    by least squares in three rounds that drop columns farther than INLIER; its ends' offsets
    and its coverage (the searched line itself when under MIN_FIT of the columns hold)."""
    columns = np.arange(int(MARGIN + SPAN[0] * WARP_SIDE), int(MARGIN + SPAN[1] * WARP_SIDE))
    along = (columns - MARGIN) / WARP_SIDE
    window = np.arange(-PEAK_WINDOW, PEAK_WINDOW + 1)
    centre = np.round(base + start + (stop - start) * along).astype(int)
    rows = np.clip(centre[:, None] + window, 0, bars.shape[0] - 1)
    values = bars[rows, columns[:, None]]
    at = values.argmax(axis=1)
    every = np.arange(len(columns))
    peak = values[every, at]
    inner = (at > 0) & (at < len(window) - 1)
    left, middle, right = (values[inner, at[inner] + step] for step in (-1, 0, 1))
    curve = left - 2 * middle + right
    shift = np.zeros(len(columns))
    curved = np.abs(curve) > 1e-6
    shift[inner] = np.where(curved, 0.5 * (left - right) / np.where(curved, curve, 1.0), 0.0)
    found = rows[every, at] + shift - base
    keep = inner & (peak >= 0.5 * np.median(peak))
    if keep.sum() < MIN_FIT * len(columns):
        return start, stop, float(keep.mean())
    ends = np.array([start, stop], dtype=np.float64)
    for _ in range(3):
        design = np.stack([1 - along[keep], along[keep]], axis=1)
        ends = np.linalg.lstsq(design, found[keep], rcond=None)[0]
        keep &= np.abs(found - (ends[0] * (1 - along) + ends[1] * along)) < INLIER
        if keep.sum() < MIN_FIT * len(columns):
            break
    return float(ends[0]), float(ends[1]), float(keep.mean())

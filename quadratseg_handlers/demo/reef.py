"""The drawn world over real reef: drawn frames, string and colonies laid on real reef photos.

:func:`reef_quadrat` draws what :func:`~quadratseg_handlers.demo.synthetic.quadrat_image`
draws (frame corners, the 117 grid points, drawn colonies with exact masks) over a mosaic of
real underwater reef photos (:class:`ReefTextures`: 512 x 512 patches cut from survey photos,
MIT licence), with frames as labs build them: metal tubes with tape sleeves and ruler tape, legs
leaving each corner diagonally outward to the photo's edge, a camera bar across one side (CRIOBE's
frame), PVC, painted or taped bars; with or without a grid string. Reef cut from the same photos
grows over parts of the bars and the string; the bars cast shadows. The corner is where the bars'
centre lines cross. Deterministic for a seed and a set of textures.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from quadratseg_handlers.demo.reef_photos import ReefTextures
from quadratseg_handlers.demo.synthetic import (
    _GENUS_STYLES,
    GENERA,
    STRING_COLOURS,
    CoralInstance,
    SyntheticQuadrat,
    _colony_outline,
    _colony_surface,
    _jpeg,
    _quadrat_corners,
    _smooth_noise,
    _water,
)
from quadratseg_handlers.ops.template import GRID_SIZE, grid_template

REEF_FRAMES: tuple[str, ...] = ("criobe", "metal", "pvc", "painted", "taped")
"""Frames the reef world draws (criobe: tubes with tape sleeves, legs and a camera bar)."""


def reef_mosaic(
    rng: np.random.Generator, textures: ReefTextures, height: int, width: int
) -> np.ndarray:
    """Reef filling a height x width photo: patches scaled, flipped, tinted and cross-faded."""
    longest = max(height, width)
    tile = float(rng.uniform(0.08, 0.32)) * longest
    base = cv2.resize(textures.read(rng), (width, height), interpolation=cv2.INTER_AREA)
    canvas = base * np.float32(rng.uniform(0.8, 1.1))
    step = 0.72 * tile
    rows, cols = int(np.ceil(height / step)) + 1, int(np.ceil(width / step)) + 1
    for row in range(rows):
        for col in range(cols):
            side = max(8, int(tile * rng.uniform(0.85, 1.35)))
            patch = cv2.resize(textures.read(rng), (side, side), interpolation=cv2.INTER_AREA)
            patch *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
            cx = (col + rng.uniform(-0.3, 0.3)) * step
            cy = (row + rng.uniform(-0.3, 0.3)) * step
            left, top = int(cx - side / 2), int(cy - side / 2)
            ramp = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
            edge = np.clip(ramp / (0.22 * side), 0, 1)
            alpha = np.minimum(edge[:, None], edge[None, :])
            y0, y1 = max(top, 0), min(top + side, height)
            x0, x1 = max(left, 0), min(left + side, width)
            if y1 <= y0 or x1 <= x0:
                continue
            part = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
            a = alpha[part][..., None]
            canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - a) + patch[part] * a
    return np.asarray(canvas, dtype=np.float32)


def _criobe_corners(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Corners of a frame filling most of the photo: each about 6-17 % of the short side in
    from the photo's edges, turned a little; sometimes shifted so that an edge cuts the frame."""
    short = min(width, height)
    inset = rng.uniform(0.06, 0.17)
    side = (1 - 2 * inset) * short
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) * side
    angle = np.radians(rng.uniform(-5, 5))
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = (square + rng.normal(0, 0.012, (4, 2)) * side) @ turn.T
    shift = rng.normal(0, 0.025, 2) * short
    if rng.random() < 0.2:
        shift += rng.choice([-1, 1], 2) * rng.uniform(0.05, 0.16, 2) * short * (rng.random(2) < 0.6)
    return np.asarray(corners + np.array([width / 2, height / 2]) + shift, dtype=np.float64)


def _tube_shading(mask: np.ndarray, width: float, shiny: float) -> np.ndarray:
    """Light across a tube: bright along its middle, dark at its edges (H x W float)."""
    across = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3) / max(width / 2, 1.0)
    across = np.clip(across, 0, 1)
    return np.asarray(0.55 + 0.45 * across**0.6 + shiny * (np.abs(across - 0.75) < 0.12))


def _paint_tube(
    plane: np.ndarray,
    mask: np.ndarray,
    start: tuple[int, int],
    end: tuple[int, int],
    thickness: int,
    colour: np.ndarray,
    shading: tuple[float, float],
    square: bool = False,
) -> None:
    """Paint a tube from ``start`` to ``end`` (``shading``: its width and shine; ``square``:
    cut square at its ends, as tape is), in a window around it only (the whole canvas would
    cost seconds a band)."""
    reach = thickness // 2 + 3
    x0, y0 = max(min(start[0], end[0]) - reach, 0), max(min(start[1], end[1]) - reach, 0)
    x1 = min(max(start[0], end[0]) + reach + 1, mask.shape[1])
    y1 = min(max(start[1], end[1]) + reach + 1, mask.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    local = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    if square:
        along = np.subtract(end, start).astype(np.float64)
        normal = np.array([-along[1], along[0]]) / max(float(np.linalg.norm(along)), 1e-6)
        ends = np.array([start, end], dtype=np.float64) - (x0, y0)
        half = normal * thickness / 2
        outline = np.array([ends[0] + half, ends[1] + half, ends[1] - half, ends[0] - half])
        cv2.fillPoly(local, [np.round(outline).astype(np.int32)], 1)
    else:
        cv2.line(local, (start[0] - x0, start[1] - y0), (end[0] - x0, end[1] - y0), 1, thickness)
    where = local.astype(bool)
    shade = _tube_shading(local, *shading)
    window = plane[y0:y1, x0:x1]
    window[where] = (shade[..., None] * colour)[where]
    mask[y0:y1, x0:x1] |= where


def _band(
    plane: np.ndarray,
    mask: np.ndarray,
    px: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    t: tuple[float, float],
    thickness: int,
    colour: np.ndarray,
) -> None:
    """Paint the stretch t[0]..t[1] of the bar a->b, ``thickness`` px wide, in ``colour``."""
    start = tuple(int(v) for v in np.round(px @ np.r_[a + (b - a) * t[0], 1.0]))
    end = tuple(int(v) for v in np.round(px @ np.r_[a + (b - a) * t[1], 1.0]))
    width = max(1, thickness)
    ends = ((start[0], start[1]), (end[0], end[1]))
    _paint_tube(plane, mask, *ends, width, colour, (width, 0.15), square=True)


def _draw_frame(
    rng: np.random.Generator, style: str, canvas: int, px: np.ndarray, scale: float, camera: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """The frame on the quadrat plane (canvas pixels): mask, colour, and bar width in px."""
    mask = np.zeros((canvas, canvas), dtype=bool)
    colour = np.zeros((canvas, canvas, 3), dtype=np.float32)
    width = rng.uniform(0.026, 0.045 if style == "criobe" else 0.036) * scale
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    if style == "pvc":
        base = np.array([225.0, 225.0, 215.0]) * rng.uniform(0.8, 1.0)
    elif style == "painted":
        base = np.array(STRING_COLOURS[int(rng.integers(len(STRING_COLOURS)))], dtype=np.float64)
    else:
        base = np.array([175.0, 180.0, 186.0]) * rng.uniform(0.8, 1.3)
    overrun = rng.uniform(0.0, 0.025)
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        ext = (b - a) * overrun
        p0 = [int(v) for v in np.round(px @ np.r_[a - ext, 1.0])]
        p1 = [int(v) for v in np.round(px @ np.r_[b + ext, 1.0])]
        shiny = 0.25 if style in ("metal", "criobe") else 0.1
        thickness = max(2, int(round(width)))
        _paint_tube(colour, mask, (p0[0], p0[1]), (p1[0], p1[1]), thickness, base, (width, shiny))
    thick = int(round(width))
    if style == "criobe":
        tape = np.array([215.0, 218.0, 222.0]) * rng.uniform(0.85, 1.15)
        orange = np.array([225.0, 130.0, 45.0]) * rng.uniform(0.85, 1.1)
        ruler = np.array([205.0, 185.0, 120.0]) * rng.uniform(0.8, 1.05)
        for k in range(4):
            a, b = corners[k], corners[(k + 1) % 4]
            if k != camera and rng.random() < 0.7:
                _band(colour, mask, px, a, b, (0.12, 0.88), max(1, thick // 2), ruler)
            if k == camera:
                blue = np.array([40.0, 75.0, 200.0]) * rng.uniform(0.8, 1.1)
                length = rng.uniform(0.14, 0.2)
                for t0 in (rng.uniform(0.02, 0.07), 1 - rng.uniform(0.02, 0.07) - length):
                    sleeve = int(thick * rng.uniform(2.6, 3.4))
                    _band(colour, mask, px, a, b, (t0, t0 + length), sleeve, blue)
                _band(colour, mask, px, a, b, (0.45, 0.55), int(thick * 1.8), tape * 0.8)
                continue
            length = rng.uniform(0.07, 0.12)
            ends = (rng.uniform(0.015, 0.06), 1 - rng.uniform(0.015, 0.06) - length)
            for t0 in (*ends, *rng.uniform(0.2, 0.7, int(rng.integers(0, 3)))):
                sleeve = int(thick * rng.uniform(2.6, 3.4))
                _band(colour, mask, px, a, b, (t0, t0 + length), sleeve, tape)
                mid, half = t0 + length * rng.uniform(0.3, 0.7), rng.uniform(0.003, 0.008)
                _band(colour, mask, px, a, b, (mid - half, mid + half), sleeve + 1, orange)
        a, b = corners[camera], corners[(camera + 1) % 4]
        middle = px @ np.r_[(a + b) / 2, 1.0]
        half = int(0.035 * scale)
        cv2.rectangle(
            colour,
            (int(middle[0]) - half, int(middle[1]) - half),
            (int(middle[0]) + half, int(middle[1]) + half),
            (25.0, 25.0, 28.0),
            -1,
        )
        mask[
            max(0, int(middle[1]) - half) : int(middle[1]) + half + 1,
            max(0, int(middle[0]) - half) : int(middle[0]) + half + 1,
        ] = True
        screen = int(half * 0.6)
        cv2.rectangle(
            colour,
            (int(middle[0]) - screen, int(middle[1]) - screen),
            (int(middle[0]) + screen, int(middle[1]) + screen // 2),
            (70.0, 85.0, 95.0),
            -1,
        )
    elif style == "taped":
        tape = np.array(STRING_COLOURS[int(rng.integers(len(STRING_COLOURS)))], dtype=np.float64)
        period = rng.uniform(0.05, 0.12)
        for k in range(4):
            a, b = corners[k], corners[(k + 1) % 4]
            for t0 in np.arange(rng.uniform(0, period), 1.0, period):
                _band(colour, mask, px, a, b, (t0, t0 + period / 2), int(thick * 1.15), tape)
    elif style in ("metal", "pvc") and rng.random() < 0.5:
        half = int(round(width * rng.uniform(1.1, 1.7)))
        for point in corners:
            x, y = (int(v) for v in np.round(px @ np.r_[point, 1.0]))
            cv2.rectangle(
                colour,
                (x - half, y - half),
                (x + half, y + half),
                tuple(float(v) for v in base * 0.9),
                -1,
            )
            mask[max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1] = True
    noise = 0.85 + 0.3 * _smooth_noise(rng, canvas, canvas, max(4, canvas // 40))
    return mask, np.asarray(colour * noise[..., None], dtype=np.float32), float(width)


def _leg_piece(
    mask: np.ndarray,
    axis: tuple[np.ndarray, np.ndarray],
    span: tuple[float, float],
    half_widths: tuple[float, float],
) -> None:
    """Fill the stretch ``span`` (pixels along the leg's ``axis``: start, unit direction) of a
    leg, ``half_widths`` wide at its two ends."""
    start, direction = axis
    normal = np.array([-direction[1], direction[0]])
    a, b = start + direction * span[0], start + direction * span[1]
    w0, w1 = half_widths
    polygon = np.array([a + normal * w0, b + normal * w1, b - normal * w1, a - normal * w0])
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)


def _legs(
    rng: np.random.Generator,
    corners: np.ndarray,
    bar: float,
    size: tuple[int, int],
    camera: int,
    joints: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Legs leaving each corner diagonally outward past the photo's edge (photo pixels):
    tubes widening towards the camera; with ``joints`` (CRIOBE's frame) wide legs with a white
    label band near the corner, and a dark foam joint over each of the camera side's corners
    capped by a white disc. Masks of the legs, the joints and the white parts."""
    width, height = size
    masks = [np.zeros((height, width), dtype=np.uint8) for _ in range(3)]
    centre = corners.mean(axis=0)
    reach = 2.0 * max(width, height)
    for k, corner in enumerate(corners):
        direction = corner - centre
        angle = np.radians(rng.uniform(-12, 12))
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        direction = turn @ (direction / max(np.linalg.norm(direction), 1e-6))
        if joints:
            near, far = bar * rng.uniform(1.5, 2.2) / 2, bar * rng.uniform(3.0, 5.0) / 2
        else:
            near, far = bar * rng.uniform(1.0, 1.4) / 2, bar * rng.uniform(2.0, 4.0) / 2
        start = corner + direction * rng.uniform(0.0, 0.6) * bar
        axis = (start, direction)
        _leg_piece(masks[0], axis, (0.0, reach), (near, far))
        if not joints:
            continue
        growth = (far - near) / reach
        if k in (camera, (camera + 1) % 4):
            back, front = rng.uniform(0.5, 1.5) * bar, rng.uniform(3.0, 5.0) * bar
            thick = bar * rng.uniform(2.6, 3.4) / 2
            _leg_piece(masks[1], axis, (-back, front), (thick, thick))
            disc = start + direction * (front + 0.3 * bar)
            radius = int(round(near * rng.uniform(1.0, 1.4)))
            cv2.circle(masks[2], (int(round(disc[0])), int(round(disc[1]))), radius, 1, -1)
        elif rng.random() < 0.8:
            t0, t1 = rng.uniform(0.3, 1.0) * bar, rng.uniform(2.0, 3.5) * bar
            _leg_piece(masks[2], axis, (t0, t1), (near + growth * t0, near + growth * t1))
    leg, joint, white = (mask.astype(bool) for mask in masks)
    return leg, joint, white


def _overgrowth(
    rng: np.random.Generator,
    textures: ReefTextures,
    frame: np.ndarray,
    size: tuple[int, int],
    bar: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Reef cut from the same photos lying over parts of the frame: texture and alpha."""
    width, height = size
    alpha = np.zeros((height, width), dtype=np.float32)
    ys, xs = np.nonzero(frame)
    count = int(rng.integers(0, 7))
    if not len(xs) or count == 0:
        return np.zeros((height, width, 3), dtype=np.float32), alpha
    texture = reef_mosaic(rng, textures, height, width)
    for _ in range(count):
        pick = int(rng.integers(len(xs)))
        radius = rng.uniform(1.0, 3.5) * bar
        axes = (max(2, int(radius)), max(2, int(radius * rng.uniform(0.4, 1.0))))
        cv2.ellipse(
            alpha, (int(xs[pick]), int(ys[pick])), axes, rng.uniform(0, 180), 0, 360, 1.0, -1
        )
    soft = cv2.GaussianBlur(alpha, (0, 0), max(1.0, bar / 4))
    return texture, np.asarray(np.clip(soft * 1.3, 0, 1), dtype=np.float32)


def _levels(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The camera's or the diver's exposure and colour correction: levels stretched from the
    photo's own percentiles, saturation raised (a bright, contrasty, cyan survey photo)."""
    pixels = image.astype(np.float32)
    low = np.percentile(pixels, rng.uniform(0.5, 3), axis=(0, 1))
    high = np.percentile(pixels, rng.uniform(97, 99.7), axis=(0, 1))
    stretched = (pixels - low) / np.maximum(high - low, 1.0) * 255.0
    grey = stretched.mean(axis=2, keepdims=True)
    vivid = grey + (stretched - grey) * rng.uniform(1.0, 1.5)
    return np.asarray(np.clip(vivid, 0, 255), dtype=np.uint8)


def reef_quadrat(
    size: int | tuple[int, int],
    seed: int,
    textures: ReefTextures,
    *,
    genera: Sequence[str] = GENERA,
    string: bool | None = None,
    frame: str | None = None,
) -> SyntheticQuadrat:
    """A quadrat photograph drawn over real reef, with its truth.

    ``string``: with a grid string (None: three photos in four); ``frame``: one of
    :data:`REEF_FRAMES` (None: at random, the CRIOBE frame one time in two; ValueError for
    another name, which would otherwise be drawn as a plain grey bar). The corners are where
    the bars' centre lines cross; without a string the grid points are where the string would
    be (``look["string"]`` says which). Deterministic for a seed and textures.
    """
    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    short = min(width, height)
    if frame is not None and frame not in REEF_FRAMES:
        raise ValueError(f"frame {frame!r}: not one of {', '.join(REEF_FRAMES)}")
    style = frame or (
        "criobe" if rng.random() < 0.5 else str(rng.choice(np.array(REEF_FRAMES[1:])))
    )
    strung = bool(rng.random() < 0.75) if string is None else string
    if style == "criobe":
        corners = _criobe_corners(rng, width, height)
    else:
        corners = _quadrat_corners(rng, width, height, (0.45, 1.0), 25.0, 0.08)
        if rng.random() < 0.2:
            corners += rng.uniform(-0.08, 0.08, 2) * short
    camera = int(rng.integers(4)) if rng.random() < 0.4 else 0
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    homography = cv2.getPerspectiveTransform(unit, corners.astype(np.float32))
    scale = float(max(np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)))
    border = 0.1
    canvas = int(np.ceil(scale * (1 + 2 * border)))
    px = np.array([[scale, 0, border * scale], [0, scale, border * scale]])
    to_plane = np.array([[1 / scale, 0, -border], [0, 1 / scale, -border], [0, 0, 1]])
    warp = homography @ to_plane

    reef = reef_mosaic(rng, textures, height, width)
    colour = np.zeros((canvas, canvas, 3), dtype=np.float32)
    alpha = np.zeros((canvas, canvas), dtype=np.float32)
    instances = np.zeros((canvas, canvas), dtype=np.uint16)
    drawn: list[tuple[str, np.ndarray, np.ndarray, tuple[int, int], bool]] = []
    for _ in range(int(rng.integers(4, 13))):
        name = str(genera[int(rng.integers(len(genera)))])
        genus = _GENUS_STYLES[name]
        centre = (rng.uniform(0.02, 0.98, 2) + border) * scale
        radius = rng.uniform(*genus.size) * scale
        outline = np.round(_colony_outline(rng, genus, centre, radius)).astype(np.int32)
        left, top = np.clip(outline.min(axis=0), 0, canvas - 1)
        right, bottom = np.clip(outline.max(axis=0) + 1, 1, canvas)
        if right - left < 2 or bottom - top < 2:
            continue
        colony = np.zeros((bottom - top, right - left), dtype=np.uint8)
        cv2.fillPoly(colony, [outline - (left, top)], 1)
        surface = _colony_surface(rng, genus, colony, centre - (left, top), radius)
        drawn.append((name, colony, surface, (int(left), int(top)), rng.random() < 0.3))

    def lay(index: int) -> None:
        _, colony, surface, (left, top), _ = drawn[index - 1]
        window = (slice(top, top + colony.shape[0]), slice(left, left + colony.shape[1]))
        where = colony.astype(bool)
        colour[window][where] = surface[where]
        alpha[window][where] = 1.0
        instances[window][where] = index

    for index, entry in enumerate(drawn, start=1):
        if not entry[4]:
            lay(index)

    string_colour = STRING_COLOURS[int(rng.integers(len(STRING_COLOURS)))]
    thickness = max(1, int(round(rng.uniform(0.002, 0.007) * scale)))
    string_layer = np.zeros_like(alpha)
    if strung:
        shift = rng.uniform(0.002, 0.008) * np.array([np.cos(a := rng.uniform(0, 6.3)), np.sin(a)])
        steps = np.linspace(0.0, 1.0, GRID_SIZE)[1:-1]
        for layer, offset, shade, opacity in (
            ("shadow", shift, (30.0, 40.0, 45.0), rng.uniform(0.2, 0.5)),
            ("string", np.zeros(2), string_colour, rng.uniform(0.8, 1.0)),
        ):
            strokes = np.zeros_like(alpha)
            width_px = thickness + (1 if layer == "shadow" else 0)
            for step in steps:
                for a0, a1 in (((step, 0), (step, 1)), ((0, step), (1, step))):
                    p0 = px @ np.r_[np.add(a0, offset), 1.0]
                    p1 = px @ np.r_[np.add(a1, offset), 1.0]
                    cv2.line(
                        strokes,
                        (int(round(p0[0])), int(round(p0[1]))),
                        (int(round(p1[0])), int(round(p1[1]))),
                        1.0,
                        width_px,
                        cv2.LINE_AA,
                    )
            strokes *= opacity
            colour = colour * (1 - strokes[..., None]) + strokes[..., None] * np.array(shade)
            alpha = np.maximum(alpha, strokes)
            if layer == "string":
                string_layer = strokes
    on_frame, frame_colour, bar = _draw_frame(rng, style, canvas, px, scale, camera)
    colour[on_frame] = frame_colour[on_frame]
    alpha[on_frame] = 1.0
    instances[on_frame] = 0
    string_layer[on_frame] = 0.0
    over = [i for i, entry in enumerate(drawn, start=1) if entry[4]]
    for index in over:
        lay(index)
    string_layer[np.isin(instances, over) & (instances > 0)] = 0.0

    # Into the photo: shadow of the frame, the plane, legs, overgrowth, water and camera.
    size_wh = (width, height)
    warped = cv2.warpPerspective(colour, warp, size_wh, flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(alpha, warp, size_wh, flags=cv2.INTER_LINEAR)
    owners = cv2.warpPerspective(instances, warp, size_wh, flags=cv2.INTER_NEAREST)
    strung_px = cv2.warpPerspective(string_layer, warp, size_wh, flags=cv2.INTER_LINEAR)
    frame_px = cv2.warpPerspective(on_frame.astype(np.uint8), warp, size_wh) > 0
    bar_px = bar * float(np.linalg.norm(corners[1] - corners[0])) / scale
    legs = style == "criobe" or rng.random() < 0.3
    nothing = np.zeros((height, width), dtype=bool)
    leg_mask, joint_mask, white_mask = (
        _legs(rng, corners, bar_px, size_wh, camera, style == "criobe")
        if legs
        else (nothing, nothing, nothing)
    )
    solid = frame_px | leg_mask | joint_mask | white_mask
    offset = (
        rng.uniform(0.3, 1.5) * bar_px * np.array([np.cos(t := rng.uniform(0, 6.3)), np.sin(t)])
    )
    moved = cv2.warpAffine(
        solid.astype(np.float32),
        np.array([[1, 0, offset[0]], [0, 1, offset[1]]], dtype=np.float32),
        size_wh,
    )
    shadow = cv2.GaussianBlur(moved, (0, 0), max(1.0, bar_px / 2)) * rng.uniform(0.2, 0.5)
    photo = reef * (1 - shadow[..., None])
    photo = photo * (1 - cover[..., None]) + warped * cover[..., None]
    if legs:
        leg_base = (
            np.array([170.0, 176.0, 182.0])
            if style in ("criobe", "metal")
            else warped[frame_px].mean(0)
        ) * rng.uniform(0.55 if style == "criobe" else 0.7, 1.1)
        leg_colour = _tube_shading(leg_mask, 3 * bar_px, 0.25)[..., None] * leg_base
        photo[leg_mask] = leg_colour[leg_mask]
        for part, shade in ((joint_mask, (28.0, 28.0, 30.0)), (white_mask, (228.0, 228.0, 222.0))):
            tube = _tube_shading(part, 3 * bar_px, 0.1)[..., None] * np.array(shade)
            photo[part] = tube[part]
        owners[leg_mask | joint_mask | white_mask] = 0
        strung_px[leg_mask | joint_mask | white_mask] = 0.0
    growth, grown = _overgrowth(rng, textures, frame_px, size_wh, bar_px)
    photo = photo * (1 - grown[..., None]) + growth * grown[..., None]
    strung_px[grown > 0.5] = 0.0
    owners[grown > 0.5] = 0
    image, look = _water(rng, np.clip(photo, 0, 255), short)
    if rng.random() < 0.6:
        image, look["levels"] = _levels(rng, image), True
    quality = int(rng.integers(45, 96))
    image = _jpeg(image, quality)

    colonies = []
    for index, entry in enumerate(drawn, start=1):
        mask = owners == index
        if int(mask.sum()) >= 50:
            colonies.append(CoralInstance(entry[0], mask))
    points = cv2.perspectiveTransform(grid_template()[None].astype(np.float64), homography)[0]
    look.update(
        frame=style,
        string=strung,
        string_colour=list(string_colour),
        string_width_plane=thickness,
        jpeg_quality=quality,
        legs=legs,
        reef=True,
    )
    return SyntheticQuadrat(
        image=image,
        corners=corners,
        grid_points=points,
        corals=colonies,
        homography=homography,
        string_mask=strung_px > 0.25,
        string_width=float(thickness),
        side=scale,
        look=look,
    )

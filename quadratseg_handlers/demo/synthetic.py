"""The drawn world of the demo, the tests and the benchmarks, deterministic from a seed.

:func:`quadrat_image` draws a photograph-like quadrat (seabed, coral colonies of a few
genera, the frame in perspective, its taut grid string) with its ground truth: frame corners,
the 117 grid points and the coral masks. On a machine with no trained weights and no real
photographs, these are what the demo and the demo models work on.
:func:`synthetic_detections` simulates a point detector's output on a template (missed,
spurious, noisy points) with the truth, for the template-matching tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from quadratseg_handlers.ops.template import GRID_SIZE, grid_template

# --- synthetic quadrat photographs ---------------------------------------------------------------


GENERA: tuple[str, ...] = (
    "Acropora",
    "Pocillopora",
    "Porites",
    "Montipora",
    "Fungia",
    "Millepora",
)
"""The coral 'genera' the generator draws, each with its own outline, texture and colour."""


@dataclass(frozen=True)
class _Genus:
    colour: tuple[float, float, float]
    harmonics: tuple[tuple[int, int, float], ...]  # (lowest k, highest k, amplitude) of the edge
    elongation: tuple[float, float]  # range of the outline's long/short axis ratio
    size: tuple[float, float]  # range of the radius, as a fraction of the quadrat side
    texture: str  # "stipple", "verrucae", "polyps", "whorls", "septa" or "blades"


_GENUS_STYLES: dict[str, _Genus] = {
    # Branching/tabular: tan, digitate edge, bright stippled branch tips and radial branches.
    "Acropora": _Genus(
        (190, 150, 105), ((2, 3, 0.15), (7, 11, 0.10)), (1.0, 1.3), (0.06, 0.13), "stipple"
    ),  # fmt: skip
    # Cauliflower: pink-brown, lumpy edge, dark verrucae.
    "Pocillopora": _Genus(
        (205, 110, 140), ((2, 5, 0.10),), (1.0, 1.2), (0.05, 0.10), "verrucae"
    ),  # fmt: skip
    # Massive: ochre-green, smooth rounded edge, fine polyp bumps and dome shading.
    "Porites": _Genus((165, 180, 85), ((2, 3, 0.14),), (1.0, 1.25), (0.06, 0.14), "polyps"),
    # Encrusting plates: purple-brown, elongated wavy sheet with concentric growth whorls.
    "Montipora": _Genus(
        (150, 95, 80), ((2, 4, 0.12), (5, 8, 0.04)), (1.6, 2.4), (0.07, 0.13), "whorls"
    ),  # fmt: skip
    # Mushroom coral: small pale oval disc with radial septa and a dark central mouth.
    "Fungia": _Genus((205, 195, 165), ((2, 2, 0.03),), (1.2, 1.5), (0.035, 0.055), "septa"),
    # Fire coral: mustard blades, very elongated, pale growing edges.
    "Millepora": _Genus((215, 185, 60), ((2, 3, 0.08),), (2.5, 3.5), (0.05, 0.10), "blades"),
}

STRING_COLOURS: tuple[tuple[float, float, float], ...] = (
    (235, 232, 215),  # white
    (230, 210, 70),  # yellow
    (235, 140, 50),  # orange
    (200, 55, 45),  # red
    (70, 110, 190),  # blue
    (35, 35, 35),  # black
)
"""Colours the grid string comes in."""

FRAME_STYLES: tuple[str, ...] = ("pvc", "metal", "taped")
"""Frames the generator draws: white PVC tube, bare metal bar, bar wrapped in tape bands."""


@dataclass
class CoralInstance:
    """One coral colony: its genus and its visible pixels (a full-image boolean mask)."""

    label: str
    mask: np.ndarray


@dataclass
class SyntheticQuadrat:
    """A drawn quadrat photograph and what is in it, in image pixels."""

    image: np.ndarray
    """H x W x 3 uint8 RGB."""
    corners: np.ndarray
    """(4, 2) frame corners: top-left, top-right, bottom-right, bottom-left."""
    grid_points: np.ndarray
    """(117, 2) string intersections, row-major over the 11 x 11 lattice without its corners."""
    corals: list[CoralInstance]
    """Visible colonies (what lies over them hides them; the thin string does not count)."""
    homography: np.ndarray
    """3 x 3 map from quadrat coordinates ((0, 0) top-left .. (1, 1) bottom-right) to pixels."""
    string_mask: np.ndarray
    """H x W bool: the visible grid string (what grid removal must repaint)."""
    string_width: float
    """The string's width in image pixels (about; it varies with the perspective)."""
    side: float
    """The quadrat's longest side in image pixels: the scale the plane was drawn at."""
    look: dict[str, object]
    """How this photo was drawn (frame style, string colour, colour cast, blur, JPEG quality...)."""


def _smooth_noise(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
    """Value noise in [0, 1] with features about ``scale`` pixels wide."""
    scale = max(float(scale), 1.0)
    small = rng.random((int(height / scale) + 2, int(width / scale) + 2)).astype(np.float32)
    field = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-6)


def _seabed(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Sand and rubble: a sandy base with patches, pebbles and grain (float RGB 0..255)."""
    base = np.array([165.0, 155.0, 125.0], dtype=np.float32) * rng.uniform(0.7, 1.1, 3)
    patches = _smooth_noise(rng, height, width, max(8, min(height, width) // 6))
    pebbles = _smooth_noise(rng, height, width, max(3, min(height, width) // 80))
    grain = rng.normal(0.0, 1.0, (height, width)).astype(np.float32)
    light = 0.7 + 0.4 * patches - 0.15 * (pebbles > 0.8) + 0.05 * grain
    return np.asarray(light[..., None] * base, dtype=np.float32)


def _colony_outline(
    rng: np.random.Generator, style: _Genus, center: np.ndarray, radius: float
) -> np.ndarray:
    """An outline whose harmonics and elongation give the genus its shape (N x 2 canvas px)."""
    angles = np.linspace(0.0, 2 * np.pi, 180, endpoint=False)
    profile = np.ones_like(angles)
    for low, high, amplitude in style.harmonics:
        for k in range(low, high + 1):
            profile += (
                amplitude * rng.uniform(0.3, 1.0) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
            )
    radii = radius * np.clip(profile, 0.35, None)
    stretch = rng.uniform(*style.elongation)
    unit = np.stack([np.cos(angles) * stretch**0.5, np.sin(angles) / stretch**0.5], axis=1)
    turn = rng.uniform(0, np.pi)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return np.asarray(center + (unit * radii[:, None]) @ rotation.T)


def _colony_surface(
    rng: np.random.Generator, style: _Genus, colony: np.ndarray, center: np.ndarray, radius: float
) -> np.ndarray:
    """The colony's surface inside its bounding box (float RGB), textured by genus."""
    height, width = colony.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xx - float(center[0]), yy - float(center[1])
    distance = np.hypot(dx, dy) / max(radius, 1.0)
    angle = np.arctan2(dy, dx)
    depth = cv2.distanceTransform(colony, cv2.DIST_L2, 3)
    dome = np.clip(depth / max(float(depth.max()) * 0.6, 1.0), 0, 1)
    unit = max(radius / 12.0, 1.0)
    light = 0.75 + 0.25 * dome + 0.1 * (_smooth_noise(rng, height, width, 4 * unit) - 0.5)
    if style.texture == "stipple":
        tips = _smooth_noise(rng, height, width, 0.6 * unit) > 0.7
        branches = 0.5 + 0.5 * np.cos(9 * angle + 4 * _smooth_noise(rng, height, width, 3 * unit))
        light = light + 0.35 * tips - 0.12 * branches
    elif style.texture == "verrucae":
        light = light - 0.32 * (_smooth_noise(rng, height, width, 1.2 * unit) > 0.62)
    elif style.texture == "polyps":
        light = light + 0.08 * (_smooth_noise(rng, height, width, 0.35 * unit) - 0.5)
    elif style.texture == "whorls":
        wobble = 0.6 * _smooth_noise(rng, height, width, 4 * unit)
        light = light - 0.18 * (np.sin(2 * np.pi * (3.5 * distance + wobble)) > 0.4)
    elif style.texture == "septa":
        light = light - 0.25 * (np.cos(40 * angle) > 0.6) * (distance > 0.12)
        light = light - 0.45 * (distance < 0.1)
    elif style.texture == "blades":
        edge = np.clip(1.0 - depth / max(2.5 * unit, 1.0), 0, 1)
        light = light + 0.35 * edge + 0.06 * (_smooth_noise(rng, height, width, unit) - 0.5)
    colour = np.array(style.colour, dtype=np.float32) * rng.uniform(0.88, 1.12, 3)
    return np.asarray(np.clip(light, 0.2, 1.6)[..., None] * colour, dtype=np.float32)


def _quadrat_corners(
    rng: np.random.Generator,
    width: int,
    height: int,
    extent: tuple[float, float],
    rotation: float,
    perspective: float,
) -> np.ndarray:
    """Where the quadrat's corners land: a square seen from above, turned and tilted a little,
    spanning a random fraction (``extent``) of the image's short side, placed at random."""
    short = min(width, height)
    angle = np.radians(rng.uniform(-rotation, rotation))
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    shape = (square + rng.uniform(-perspective, perspective, (4, 2))) @ turn.T
    span = shape.max(axis=0) - shape.min(axis=0)
    side = rng.uniform(*extent) * short / float(span.max())
    corners = shape * side
    low, high = corners.min(axis=0), corners.max(axis=0)
    room = np.array([width, height]) - (high - low)
    offset = np.array([rng.uniform(0, max(r, 0.0)) for r in room]) - low
    return np.asarray(corners + offset, dtype=np.float64)


def _frame_layer(
    rng: np.random.Generator,
    px: Callable[[Sequence[float]], tuple[int, int]],
    side: int,
    scale: float,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The frame drawn on the quadrat plane: its mask and colour, and the style drawn."""
    style = FRAME_STYLES[int(rng.integers(len(FRAME_STYLES)))]
    frame = np.zeros((side, side), dtype=np.uint8)
    width = max(2, int(round(rng.uniform(0.016, 0.032) * scale)))
    ring = np.array([px(point) for point in ((0, 0), (1, 0), (1, 1), (0, 1))], dtype=np.int32)
    cv2.polylines(frame, [ring], True, 1, width)
    fixtures = style == "metal" or rng.random() < 0.4
    if fixtures:
        half = int(round(width * rng.uniform(1.2, 1.8)))
        for x, y in ring:
            cv2.rectangle(
                frame, (int(x) - half, int(y) - half), (int(x) + half, int(y) + half), 1, -1
            )
    across = cv2.distanceTransform(frame, cv2.DIST_L2, 3) / max(width / 2.0, 1.0)
    highlight = 0.75 + 0.35 * np.clip(across, 0, 1) ** 0.5
    if style == "pvc":
        base = np.array([228.0, 228.0, 218.0]) * rng.uniform(0.85, 1.0)
    elif style == "metal":
        base = np.array([150.0, 152.0, 158.0]) * rng.uniform(0.7, 1.15)
        highlight = highlight + 0.35 * (np.abs(across - 0.7) < 0.12)
    else:
        base = np.array([210.0, 210.0, 205.0]) * rng.uniform(0.7, 1.0)
    colour = highlight[..., None] * base
    if style == "taped":
        tape = np.array(STRING_COLOURS[int(rng.integers(1, len(STRING_COLOURS)))])
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        period = rng.uniform(0.04, 0.1) * scale
        bands = ((xx + yy) / period) % 1.0 < 0.5
        colour[bands] = highlight[bands, None] * tape
    lit = 0.85 + 0.15 * _smooth_noise(rng, side, side, 25)
    return frame.astype(bool), np.asarray(colour * lit[..., None], dtype=np.float32), style


def _water(
    rng: np.random.Generator, photo: np.ndarray, short: int
) -> tuple[np.ndarray, dict[str, object]]:
    """The camera under water: colour cast, haze, lighting gradient, vignette, blur, noise."""
    height, width = photo.shape[:2]
    cast = np.array([rng.uniform(0.55, 1.0), rng.uniform(0.85, 1.05), rng.uniform(0.9, 1.2)])
    haze = rng.uniform(0.0, 0.25)
    water = np.array([40.0, 110.0, 130.0], dtype=np.float32) * rng.uniform(0.7, 1.3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - width / 2) * np.cos(direction) + (yy - height / 2) * np.sin(direction)) / max(
        width, height
    )
    gradient = rng.uniform(0.0, 0.7)
    vignette = rng.uniform(0.2, 0.7)
    radius2 = ((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2
    light = (1.0 + gradient * ramp) * (1.0 - vignette * radius2) * rng.uniform(0.8, 1.15)
    lit = photo * light[..., None] * cast.astype(np.float32)
    lit = lit * (1 - haze) + haze * water
    blur = rng.uniform(0.3, 1.8) * short / 1024
    noise = rng.uniform(1.0, 7.0)
    blurred = cv2.GaussianBlur(lit.astype(np.float32), (0, 0), blur)
    noisy = blurred + rng.normal(0.0, noise, (height, width, 3)).astype(np.float32)
    look = {
        "colour_cast": [round(float(c), 3) for c in cast],
        "haze": round(haze, 3),
        "light_gradient": round(gradient, 3),
        "blur_sigma": round(blur, 2),
        "noise_sigma": round(noise, 2),
    }
    return np.clip(noisy, 0, 255).astype(np.uint8), look


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG round trip at ``quality`` (what a camera and an upload leave)."""
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return np.ascontiguousarray(decoded[..., ::-1])


def quadrat_image(
    size: int | tuple[int, int] = 640,
    seed: int = 0,
    *,
    genera: Sequence[str] = GENERA,
    corals: int | None = None,
    extent: tuple[float, float] = (0.4, 0.95),
    rotation: float = 25.0,
    perspective: float = 0.08,
    occlusion: float = 0.3,
) -> SyntheticQuadrat:
    """A photograph-like quadrat: seabed, coral colonies, the frame and its taut grid string.

    Everything varies with the seed: the quadrat spans ``extent`` of the image's short side,
    turned by up to +-``rotation`` degrees with each corner moved by up to ``perspective`` of
    the side; the frame (PVC, metal with corner fixtures, tape bands), the string's colour and
    width, ``corals`` colonies (6 to 14 when None) of the ``genera``, a share ``occlusion`` of
    them lying over the string and the frame; then the water (colour cast, haze, lighting
    gradient, vignette), blur, sensor noise and a JPEG round trip (quality 45 to 95).
    ``size`` is a side or (width, height). Deterministic for a seed.
    """
    unknown = [name for name in genera if name not in _GENUS_STYLES]
    if unknown or not genera:
        raise ValueError(f"genera must be among {sorted(_GENUS_STYLES)}, got {list(genera)}")
    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    short = min(width, height)
    corners = _quadrat_corners(rng, width, height, extent, rotation, perspective)
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    homography = cv2.getPerspectiveTransform(unit, corners.astype(np.float32))

    # The quadrat plane is drawn flat on a canvas, then warped into the photograph.
    scale = float(max(np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)))
    border = 0.06
    canvas_side = int(np.ceil(scale * (1 + 2 * border)))
    to_plane = np.array([[1 / scale, 0, -border], [0, 1 / scale, -border], [0, 0, 1]])

    def px(point: Sequence[float]) -> tuple[int, int]:
        return (int(round((point[0] + border) * scale)), int(round((point[1] + border) * scale)))

    colour = np.zeros((canvas_side, canvas_side, 3), dtype=np.float32)
    alpha = np.zeros((canvas_side, canvas_side), dtype=np.float32)
    instances = np.zeros((canvas_side, canvas_side), dtype=np.uint16)
    count = int(rng.integers(6, 15)) if corals is None else corals
    colonies_drawn: list[tuple[str, np.ndarray, np.ndarray, tuple[int, int], bool]] = []
    for _ in range(count):
        name = str(genera[int(rng.integers(len(genera)))])
        style = _GENUS_STYLES[name]
        center = (rng.uniform(0.02, 0.98, 2) + border) * scale
        radius = rng.uniform(*style.size) * scale
        outline = np.round(_colony_outline(rng, style, center, radius)).astype(np.int32)
        left, top = np.clip(outline.min(axis=0), 0, canvas_side - 1)
        right, bottom = np.clip(outline.max(axis=0) + 1, 1, canvas_side)
        if right - left < 2 or bottom - top < 2:
            continue
        colony = np.zeros((bottom - top, right - left), dtype=np.uint8)
        cv2.fillPoly(colony, [outline - (left, top)], 1)
        surface = _colony_surface(rng, style, colony, center - (left, top), radius)
        colonies_drawn.append(
            (name, colony, surface, (int(left), int(top)), rng.random() < occlusion)
        )

    def lay(index: int) -> None:
        _, colony, surface, (left, top), _ = colonies_drawn[index - 1]
        window = (slice(top, top + colony.shape[0]), slice(left, left + colony.shape[1]))
        where = colony.astype(bool)
        colour[window][where] = surface[where]
        alpha[window][where] = 1.0
        instances[window][where] = index

    for index, drawn in enumerate(colonies_drawn, start=1):
        if not drawn[4]:
            lay(index)

    # The string's shadow and the string, the frame, then the colonies that lie over them.
    string_colour = STRING_COLOURS[int(rng.integers(len(STRING_COLOURS)))]
    string = max(1, int(round(rng.uniform(0.002, 0.006) * scale)))
    shadow_shift = rng.uniform(0.002, 0.006) * np.array(
        [np.cos(a := rng.uniform(0, 6.3)), np.sin(a)]
    )
    steps = np.linspace(0.0, 1.0, GRID_SIZE)
    string_layer = np.zeros_like(alpha)
    for layer, shift, shade_colour, opacity in (
        ("shadow", shadow_shift, (40.0, 45.0, 45.0), rng.uniform(0.2, 0.5)),
        ("string", np.zeros(2), string_colour, 1.0),
    ):
        strokes = np.zeros_like(alpha)
        thickness = string + (1 if layer == "shadow" else 0)
        sx, sy = float(shift[0]), float(shift[1])
        for step in steps[1:-1]:
            cv2.line(
                strokes, px((step + sx, sy)), px((step + sx, 1 + sy)), 1.0, thickness, cv2.LINE_AA
            )
            cv2.line(
                strokes, px((sx, step + sy)), px((1 + sx, step + sy)), 1.0, thickness, cv2.LINE_AA
            )
        strokes *= opacity
        colour = colour * (1 - strokes[..., None]) + strokes[..., None] * np.array(shade_colour)
        alpha = np.maximum(alpha, strokes)
        if layer == "string":
            string_layer = strokes
    on_frame, frame_colour, frame_style = _frame_layer(rng, px, canvas_side, scale)
    colour[on_frame] = frame_colour[on_frame]
    alpha[on_frame] = 1.0
    instances[on_frame] = 0
    string_layer[on_frame] = 0.0
    for index, drawn in enumerate(colonies_drawn, start=1):
        if drawn[4]:
            lay(index)
    string_layer[instances > 0] = np.where(
        np.isin(instances[instances > 0], [i for i, d in enumerate(colonies_drawn, 1) if d[4]]),
        0.0,
        string_layer[instances > 0],
    )

    # Into the photograph: warp the plane, lay it on the seabed, then the water and the camera.
    warp = homography @ to_plane
    warped = cv2.warpPerspective(colour, warp, (width, height), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(alpha, warp, (width, height), flags=cv2.INTER_LINEAR)
    owners = cv2.warpPerspective(instances, warp, (width, height), flags=cv2.INTER_NEAREST)
    strung = cv2.warpPerspective(string_layer, warp, (width, height), flags=cv2.INTER_LINEAR)
    photo = _seabed(rng, height, width) * (1 - cover[..., None]) + warped * cover[..., None]
    image, look = _water(rng, photo, short)
    quality = int(rng.integers(45, 96))
    image = _jpeg(image, quality)

    colonies = []
    for index, drawn in enumerate(colonies_drawn, start=1):
        mask = owners == index
        if int(mask.sum()) >= 50:
            colonies.append(CoralInstance(drawn[0], mask))
    points = cv2.perspectiveTransform(grid_template()[None].astype(np.float64), homography)[0]
    look.update(
        frame=frame_style,
        string_colour=list(string_colour),
        string_width_plane=string,
        jpeg_quality=quality,
    )
    return SyntheticQuadrat(
        image=image,
        corners=corners,
        grid_points=points,
        corals=colonies,
        homography=homography,
        string_mask=strung > 0.25,
        string_width=float(string),
        side=scale,
        look=look,
    )


# --- synthetic point detections ------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticPoints:
    """A detector's output simulated from a template: what it found and what is true."""

    detections: np.ndarray
    """(M, 2) detected points in image pixels, shuffled."""
    scores: np.ndarray
    """(M,) detection scores (true points score higher than spurious ones on average)."""
    truth: np.ndarray
    """(M,) the template index each detection belongs to; -1 for spurious ones."""
    true_points: np.ndarray
    """(N, 2) where every template point really is in the image (noise-free)."""
    homography: np.ndarray
    """3 x 3 map from template (normalised) coordinates to image pixels."""


def quadrat_homography(
    template: np.ndarray,
    image_size: tuple[int, int],
    rng: np.random.Generator,
    *,
    rotation: float = 25.0,
    perspective: float = 0.08,
    scale: tuple[float, float] = (0.55, 0.9),
) -> np.ndarray:
    """A random view of a template: rotated by up to +-``rotation`` degrees, its side a random
    fraction (``scale``) of the image, placed at random inside the image, each corner of its
    bounding square moved by up to ``perspective`` times the side (a perspective view)."""
    width, height = image_size
    low, high = template.min(axis=0), template.max(axis=0)
    source = np.array([low, [high[0], low[1]], high, [low[0], high[1]]], dtype=np.float64)
    side = float(rng.uniform(*scale)) * min(width, height)
    angle = np.radians(rng.uniform(-rotation, rotation))
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) * side
    jitter = rng.uniform(-perspective, perspective, size=(4, 2)) * side
    corners = (square + jitter) @ turn.T
    reach = np.abs(corners).max(axis=0)
    centre = np.array(
        [
            rng.uniform(reach[0], width - reach[0]) if 2 * reach[0] < width else width / 2,
            rng.uniform(reach[1], height - reach[1]) if 2 * reach[1] < height else height / 2,
        ]
    )
    return cv2.getPerspectiveTransform(
        source.astype(np.float32), (corners + centre).astype(np.float32)
    ).astype(np.float64)


def synthetic_detections(
    template: np.ndarray,
    image_size: tuple[int, int] = (1920, 1920),
    *,
    seed: int = 0,
    rotation: float = 25.0,
    perspective: float = 0.08,
    scale: tuple[float, float] = (0.55, 0.9),
    noise: float = 2.0,
    missing: float = 0.2,
    spurious: float = 0.1,
    duplicates: float = 0.0,
) -> SyntheticPoints:
    """Detections of a template's points seen through :func:`quadrat_homography`.

    ``noise``: Gaussian sigma in pixels; ``missing``: fraction of template points not
    detected; ``spurious``: false detections (as a fraction of the template size) anywhere in
    the quadrat's bounding box but at least a quarter of the point spacing from every true
    point; ``duplicates``: fraction of detections reported twice, within 2 noise sigmas.
    """
    rng = np.random.default_rng(seed)
    points = np.asarray(template, dtype=np.float64)
    count = len(points)
    homography = quadrat_homography(
        points, image_size, rng, rotation=rotation, perspective=perspective, scale=scale
    )
    mapped = points @ homography[:, :2].T + homography[:, 2]
    true_points = mapped[:, :2] / mapped[:, 2:3]
    found = np.sort(rng.permutation(count)[: count - int(round(missing * count))])
    detections = [true_points[found] + rng.normal(0.0, noise, size=(len(found), 2))]
    truth = [found]
    scores = [rng.uniform(0.5, 0.95, size=len(found))]
    gaps = np.linalg.norm(true_points[:, None] - true_points[None], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    spacing = float(np.median(gaps.min(axis=1)))
    low, high = true_points.min(axis=0), true_points.max(axis=0)
    margin = 0.05 * (high - low)
    false_points: list[np.ndarray] = []
    while len(false_points) < int(round(spurious * count)):
        candidate = rng.uniform(low - margin, high + margin)
        if np.linalg.norm(true_points - candidate, axis=1).min() >= 0.25 * spacing:
            false_points.append(candidate)
    if false_points:
        detections.append(np.array(false_points))
        truth.append(np.full(len(false_points), -1))
        scores.append(rng.uniform(0.25, 0.6, size=len(false_points)))
    all_points, all_truth = np.concatenate(detections), np.concatenate(truth)
    all_scores = np.concatenate(scores)
    twice = rng.permutation(len(all_points))[: int(round(duplicates * len(all_points)))]
    if twice.size:
        copies = all_points[twice] + rng.normal(0.0, 2 * noise, size=(len(twice), 2))
        all_points = np.concatenate([all_points, copies])
        all_truth = np.concatenate([all_truth, all_truth[twice]])
        all_scores = np.concatenate([all_scores, all_scores[twice] * 0.9])
    order = rng.permutation(len(all_points))
    return SyntheticPoints(
        detections=all_points[order],
        scores=all_scores[order],
        truth=all_truth[order],
        true_points=true_points,
        homography=homography,
    )

"""Synthetic images for demos, tests and benchmarks, drawn deterministically from a seed.

:func:`blobs_image` feeds the example handler; :func:`quadrat_image` draws a photograph-like
quadrat (seabed, coral colonies of a few genera, the frame in perspective, its taut grid
string) with its ground truth: frame corners, the 117 grid points and the coral masks. On a
machine with no trained weights and no real photographs, these are what the demo and the
demo models work on. :func:`synthetic_detections` simulates a point detector's output on a
template (missed, spurious, noisy points) with the truth, for the template-matching tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from quadratseg_handlers.ops.template import GRID_SIZE, grid_template


def blobs_image(width: int = 640, height: int = 480, count: int = 6, seed: int = 0) -> np.ndarray:
    """A dark textured RGB image with ``count`` bright elliptic blobs of varied brightness."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(20, 90, size=(height, width, 3), dtype=np.uint8)
    image: np.ndarray = cv2.GaussianBlur(noise, (0, 0), 3)
    radius = max(4, min(width, height) // 12)
    for _ in range(count):
        center = (
            int(rng.integers(radius, width - radius)),
            int(rng.integers(radius, height - radius)),
        )
        axes = (int(rng.integers(radius // 2, radius)), int(rng.integers(radius // 2, radius)))
        level = int(rng.integers(215, 256))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(image, center, axes, angle, 0, 360, (level, level, level), -1)
    return image


# --- synthetic quadrat photographs ---------------------------------------------------------------


GENERA: tuple[str, ...] = ("Acropora", "Pocillopora", "Porites")
"""The coral 'genera' the generator draws, each with its own colour, outline and texture."""


@dataclass(frozen=True)
class _Genus:
    colour: tuple[float, float, float]
    harmonics: tuple[tuple[int, int, float], ...]  # (lowest k, highest k, amplitude)
    spots: tuple[int, float, float]  # (noise scale in px, threshold, brightness change)
    grain: int  # scale in px of the colour variation


_GENUS_STYLES: dict[str, _Genus] = {
    # Branching/tabular: tan, digitate edge, bright stippled branch tips.
    "Acropora": _Genus((190, 150, 105), ((2, 3, 0.15), (7, 11, 0.10)), (3, 0.72, 0.35), 30),
    # Cauliflower: pink-brown, lumpy edge, dark verrucae.
    "Pocillopora": _Genus((205, 110, 140), ((2, 5, 0.10),), (7, 0.65, -0.30), 20),
    # Massive: ochre-green, smooth rounded edge, smooth shading.
    "Porites": _Genus((165, 180, 85), ((2, 3, 0.18),), (2, 0.92, 0.10), 80),
}


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
    """Visible colonies (the frame hides what lies under it; the thin string does not count)."""
    homography: np.ndarray
    """3 x 3 map from quadrat coordinates ((0, 0) top-left .. (1, 1) bottom-right) to pixels."""


def _smooth_noise(rng: np.random.Generator, height: int, width: int, scale: int) -> np.ndarray:
    """Value noise in [0, 1] with features about ``scale`` pixels wide."""
    small = rng.random((height // scale + 2, width // scale + 2)).astype(np.float32)
    field = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    low, high = float(field.min()), float(field.max())
    return (field - low) / max(high - low, 1e-6)


def _seabed(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Sand and rubble: a sandy base with patches, pebbles and grain (float RGB 0..255)."""
    base = np.array([165.0, 155.0, 125.0], dtype=np.float32)
    patches = _smooth_noise(rng, height, width, max(8, min(height, width) // 6))
    pebbles = _smooth_noise(rng, height, width, max(3, min(height, width) // 80))
    grain = rng.normal(0.0, 1.0, (height, width)).astype(np.float32)
    light = 0.7 + 0.4 * patches - 0.15 * (pebbles > 0.8) + 0.05 * grain
    return light[..., None] * base


def _genus_texture(rng: np.random.Generator, style: _Genus, height: int, width: int) -> np.ndarray:
    """A genus's surface over the whole canvas: its colour, variation and spots (float RGB)."""
    variation = _smooth_noise(rng, height, width, style.grain)
    scale, threshold, change = style.spots
    spots = (_smooth_noise(rng, height, width, scale) > threshold).astype(np.float32)
    light = 0.8 + 0.35 * variation + change * spots
    return light[..., None] * np.array(style.colour, dtype=np.float32)


def _colony_outline(
    rng: np.random.Generator, style: _Genus, center: np.ndarray, radius: float
) -> np.ndarray:
    """A star-shaped outline whose harmonics give the genus its edge (N x 2 canvas pixels)."""
    angles = np.linspace(0.0, 2 * np.pi, 120, endpoint=False)
    profile = np.ones_like(angles)
    for low, high, amplitude in style.harmonics:
        for k in range(low, high + 1):
            profile += (
                amplitude * rng.uniform(0.3, 1.0) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
            )
    radii = radius * np.clip(profile, 0.35, None)
    return center + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]


def quadrat_image(
    size: int | tuple[int, int] = 640,
    seed: int = 0,
    *,
    genera: Sequence[str] = GENERA,
    corals: int = 10,
    perspective: float = 0.06,
    margin: float = 0.12,
) -> SyntheticQuadrat:
    """A photograph-like quadrat: seabed, coral colonies, the frame and its taut grid string.

    The quadrat is a unit square seen in perspective (each corner moved by up to
    ``perspective`` x the image's short side, plus a small rotation) inside ``margin`` of
    the image. ``size`` is a side or (width, height). Deterministic for a seed.
    """
    unknown = [name for name in genera if name not in _GENUS_STYLES]
    if unknown or not genera:
        raise ValueError(f"genera must be among {sorted(_GENUS_STYLES)}, got {list(genera)}")
    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    short = min(width, height)

    # Where the quadrat's corners land: a centred square, rotated a little, corners jittered.
    side = (1.0 - 2.0 * margin) * short
    angle = rng.uniform(-0.08, 0.08)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    square = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) * side
    jitter = rng.uniform(-perspective, perspective, (4, 2)) * short
    corners = square @ rotation.T + jitter + (width / 2.0, height / 2.0)
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
    textures = {
        name: _genus_texture(rng, _GENUS_STYLES[name], canvas_side, canvas_side)
        for name in dict.fromkeys(genera)
    }
    inside = np.zeros((canvas_side, canvas_side), dtype=np.uint8)
    cv2.rectangle(inside, px((0, 0)), px((1, 1)), 1, -1)
    labels: list[str] = []
    for index in range(1, corals + 1):
        name = str(genera[int(rng.integers(len(genera)))])
        style = _GENUS_STYLES[name]
        center = (rng.uniform(0.1, 0.9, 2) + border) * scale
        outline = _colony_outline(rng, style, center, rng.uniform(0.05, 0.13) * scale)
        colony = np.zeros_like(inside)
        cv2.fillPoly(colony, [np.round(outline).astype(np.int32)], 1)
        colony &= inside
        depth = cv2.distanceTransform(colony, cv2.DIST_L2, 3)
        shade = 0.6 + 0.4 * np.clip(depth / max(float(depth.max()) * 0.5, 1.0), 0, 1)
        where = colony.astype(bool)
        colour[where] = textures[name][where] * shade[where, None]
        alpha[where] = 1.0
        instances[where] = index
        labels.append(name)

    # The string's shadow, the string, then the frame over everything.
    string = max(1, int(round(0.0035 * scale)))
    offset = 0.004
    steps = np.linspace(0.0, 1.0, GRID_SIZE)
    for layer, shift, shade_colour, opacity in (
        ("shadow", offset, (40.0, 45.0, 45.0), 0.45),
        ("string", 0.0, (235.0, 232.0, 215.0), 1.0),
    ):
        strokes = np.zeros_like(alpha)
        for step in steps[1:-1]:
            cv2.line(strokes, px((step + shift, shift)), px((step + shift, 1 + shift)), 1.0,
                     string + (1 if layer == "shadow" else 0), cv2.LINE_AA)  # fmt: skip
            cv2.line(strokes, px((shift, step + shift)), px((1 + shift, step + shift)), 1.0,
                     string + (1 if layer == "shadow" else 0), cv2.LINE_AA)  # fmt: skip
        strokes *= opacity
        colour = colour * (1 - strokes[..., None]) + strokes[..., None] * np.array(shade_colour)
        alpha = np.maximum(alpha, strokes)
    frame = np.zeros_like(inside)
    frame_width = max(2, int(round(0.022 * scale)))
    ring = [px(point) for point in ((0, 0), (1, 0), (1, 1), (0, 1))]
    cv2.polylines(frame, [np.array(ring, dtype=np.int32)], True, 1, frame_width)
    lit = 0.85 + 0.15 * _smooth_noise(rng, canvas_side, canvas_side, 25)
    on_frame = frame.astype(bool)
    colour[on_frame] = (np.array([225.0, 225.0, 215.0]) * lit[..., None])[on_frame]
    alpha[on_frame] = 1.0
    instances[on_frame] = 0

    # Into the photograph: warp the plane, lay it on the seabed, add water, blur and noise.
    warp = homography @ to_plane
    warped = cv2.warpPerspective(colour, warp, (width, height), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(alpha, warp, (width, height), flags=cv2.INTER_LINEAR)
    owners = cv2.warpPerspective(instances, warp, (width, height), flags=cv2.INTER_NEAREST)
    photo: np.ndarray = (
        _seabed(rng, height, width) * (1 - cover[..., None]) + warped * cover[..., None]
    )
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius2 = ((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2
    photo *= (1.0 - 0.5 * radius2)[..., None] * np.array([0.88, 0.98, 1.05], dtype=np.float32)
    blurred = cv2.GaussianBlur(photo.astype(np.float32), (0, 0), 0.7)
    noisy = blurred + rng.normal(0.0, 3.0, (height, width, 3)).astype(np.float32)
    image = np.clip(noisy, 0, 255).astype(np.uint8)

    colonies = []
    for index, name in enumerate(labels, start=1):
        mask = owners == index
        if int(mask.sum()) >= 50:
            colonies.append(CoralInstance(name, mask))
    points = cv2.perspectiveTransform(grid_template()[None].astype(np.float64), homography)[0]
    return SyntheticQuadrat(image, corners, points, colonies, homography)


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

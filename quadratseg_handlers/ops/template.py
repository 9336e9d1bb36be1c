"""The quadrat's point layout: the 11 x 11 string lattice, its 117 grid points and 4 corners.

A QUADRATSEG quadrat is a square frame with a string grid of 10 x 10 cells. The strings meet
the frame and each other on an 11 x 11 lattice; its 4 corners are the frame's corners (found
by ``pth-yolo-gridcorners``), the other 117 points are the grid points (found by
``pth-yolo-gridpose``), numbered row-major from the top-left: 9 + 9 x 11 + 9 = 117. Corners
are ordered top-left, top-right, bottom-right, bottom-left.

A template is an (N, 2) array of (x, y) in normalised image coordinates ([0, 1] across the
image's width and height, YOLO's convention): where each point sits in a typical image. The
two default templates are generated here and shipped as ``data/kp_template.npy`` and
``data/kp_template_corners.npy``. This module is the one definition of the layout: the grid
functions, their CVAT skeletons and the LaMa grid-mask drawer all read it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from quadratseg_handlers.core.config import ConfigError

GRID_SIZE = 11
"""Rows (and columns) of the lattice, frame sides included: 10 x 10 cells of string grid."""

GRID_CORNERS: frozenset[tuple[int, int]] = frozenset(
    {(0, 0), (0, GRID_SIZE - 1), (GRID_SIZE - 1, 0), (GRID_SIZE - 1, GRID_SIZE - 1)}
)
"""The (row, col) lattice positions that are the frame's corners, not grid points."""

GRID_POINTS = GRID_SIZE * GRID_SIZE - len(GRID_CORNERS)
"""Grid points: the lattice without its 4 corners (117)."""

CORNER_POINTS = 4
"""Quadrat corners: top-left, top-right, bottom-right, bottom-left."""

CORNER_NAMES = ("top-left", "top-right", "bottom-right", "bottom-left")

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""Where the packaged default templates live."""

log = logging.getLogger(__name__)

GRID_TEMPLATE_FILE = "kp_template.npy"
CORNER_TEMPLATE_FILE = "kp_template_corners.npy"

CORNER_MARGIN = 0.1
"""Margin of the default corner template: the frame fills the middle 80 % of a photo."""

NORMALISED_RANGE = (-0.5, 1.5)
"""Template coordinates must lie in this range (normalised, with room for a quadrat that
extends past the image)."""


def grid_positions() -> list[tuple[int, int]]:
    """The (row, col) lattice position of every grid point, in skeleton order (117 of them)."""
    return [
        (row, col)
        for row in range(GRID_SIZE)
        for col in range(GRID_SIZE)
        if (row, col) not in GRID_CORNERS
    ]


def grid_lattice() -> np.ndarray:
    """(11, 11) int array: the 0-based skeleton index at each lattice position, -1 at corners."""
    lattice = np.full((GRID_SIZE, GRID_SIZE), -1, dtype=np.int64)
    for index, (row, col) in enumerate(grid_positions()):
        lattice[row, col] = index
    return lattice


def sublabels(points: int) -> list[str]:
    """The CVAT skeleton sublabel names of a layout of ``points`` points: "1".."N"."""
    return [str(index) for index in range(1, points + 1)]


def grid_sublabels() -> list[str]:
    """The sublabel names of the grid points, in order: "1".."117"."""
    return sublabels(GRID_POINTS)


def corner_positions() -> list[tuple[int, int]]:
    """The (row, col) lattice position of each corner: TL, TR, BR, BL."""
    last = GRID_SIZE - 1
    return [(0, 0), (0, last), (last, last), (last, 0)]


def _positions_to_xy(positions: list[tuple[int, int]], margin: float) -> np.ndarray:
    """Lattice positions to (x, y) in [margin, 1 - margin]: column -> x, row -> y."""
    unit = np.array(positions, dtype=np.float64)[:, ::-1] / (GRID_SIZE - 1)
    return margin + unit * (1.0 - 2.0 * margin)


def grid_template(margin: float = 0.0) -> np.ndarray:
    """The default grid template: the 117 lattice points of a quadrat filling the image.

    ``margin`` (a fraction of the image) leaves a border, e.g. for a quadrat warped with one.
    """
    return _positions_to_xy(grid_positions(), margin)


def corner_template(margin: float = CORNER_MARGIN) -> np.ndarray:
    """The default corner template: a square frame centred in the photo, TL, TR, BR, BL."""
    return _positions_to_xy(corner_positions(), margin)


def grid_edges() -> list[tuple[int, int]]:
    """1-based pairs of lattice neighbours (same row or column, one cell apart): 212 edges."""
    lattice = grid_lattice()
    edges = []
    for row, col in grid_positions():
        for next_row, next_col in ((row, col + 1), (row + 1, col)):
            if next_row < GRID_SIZE and next_col < GRID_SIZE and lattice[next_row, next_col] >= 0:
                edges.append((int(lattice[row, col]) + 1, int(lattice[next_row, next_col]) + 1))
    return edges


def corner_edges() -> list[tuple[int, int]]:
    """1-based edges of the frame: the 4 corners as a closed quadrilateral."""
    return [(1, 2), (2, 3), (3, 4), (4, 1)]


def skeleton_edges(points: int) -> list[tuple[int, int]]:
    """The skeleton edges of a template of ``points`` points (117: lattice, 4: frame)."""
    if points == GRID_POINTS:
        return grid_edges()
    if points == CORNER_POINTS:
        return corner_edges()
    raise ValueError(f"no layout has {points} points; expected {GRID_POINTS} or {CORNER_POINTS}")


def packaged_template_path(points: int) -> Path:
    """The default template file shipped in the package for a layout of ``points`` points."""
    if points == GRID_POINTS:
        return DATA_DIR / GRID_TEMPLATE_FILE
    if points == CORNER_POINTS:
        return DATA_DIR / CORNER_TEMPLATE_FILE
    raise ValueError(f"no layout has {points} points; expected {GRID_POINTS} or {CORNER_POINTS}")


def template_file(path: Path, default: Path, points: int, function: str = "") -> Path:
    """The template file a TEMPLATE_PATH setting names: ``path``, or the template shipped in the
    package for ``points`` points when ``path`` is the setting's ``default`` and absent (a
    bundle that ships none); the substitution is logged."""
    if path.exists() or path != default:
        return path
    packaged = packaged_template_path(points)
    log.warning(
        "%s: template file %s absent, using the packaged default %s", function, path, packaged
    )
    return packaged


def write_default_templates(directory: str | Path = DATA_DIR) -> list[Path]:
    """Write the two default templates (float64 .npy) into ``directory``; return their paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    defaults = ((GRID_TEMPLATE_FILE, grid_template()), (CORNER_TEMPLATE_FILE, corner_template()))
    for name, array in defaults:
        path = folder / name
        np.save(path, array)
        written.append(path)
    return written


def validate_template(array: object, points: int, source: str = "template") -> np.ndarray:
    """Check a template: (``points``, 2) finite normalised coordinates, no two points alike.

    Returns it as float64; raises ValueError starting with ``source`` and saying what is wrong.
    """
    data = np.asarray(array)
    if data.dtype == object or not (
        np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)
    ):
        raise ValueError(f"{source}: expected numbers, got dtype {data.dtype}")
    if data.ndim != 2 or data.shape[1] != 2:
        raise ValueError(f"{source}: expected an (N, 2) array of (x, y), got shape {data.shape}")
    if data.shape[0] != points:
        raise ValueError(
            f"{source}: holds {data.shape[0]} points, this function's skeleton has {points}"
        )
    result = data.astype(np.float64)
    if not np.all(np.isfinite(result)):
        raise ValueError(f"{source}: holds NaN or infinite coordinates")
    if result.min() < NORMALISED_RANGE[0] or result.max() > NORMALISED_RANGE[1]:
        raise ValueError(
            f"{source}: coordinates span {result.min():g}..{result.max():g}; a template holds "
            "normalised coordinates (fractions of the image width and height, about 0..1), "
            "not pixels"
        )
    gaps = np.linalg.norm(result[:, None, :] - result[None, :, :], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    if gaps.min() <= 1e-9:
        first, second = np.unravel_index(int(np.argmin(gaps)), gaps.shape)
        raise ValueError(f"{source}: points {first + 1} and {second + 1} are at the same place")
    return result


def load_template(path: str | Path, points: int, setting: str = "TEMPLATE_PATH") -> np.ndarray:
    """Read and validate a template .npy file; every problem is a ConfigError naming ``setting``."""
    where = f"{setting}={path}"
    try:
        data = np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"{where}: not a NumPy .npy array file ({exc})") from None
    if not isinstance(data, np.ndarray):
        data.close()
        raise ConfigError(f"{where}: a .npz archive; expected one (N, 2) array saved with np.save")
    try:
        return validate_template(data, points, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

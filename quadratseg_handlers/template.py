"""The quadrat grid layout: one definition shared by the grid detectors and grid removal.

A QUADRATSEG quadrat is a square frame with 9 strings in each direction. Seen as an
11 x 11 lattice (rows and columns 0..10), the points are the 81 string crossings (rows and
columns 1..9) plus the 36 places where a string meets the frame (row 0 and 10, column 0 and
10); the 4 frame corners are not grid points. That leaves 9 + 9 x 11 + 9 = 117 points,
numbered row-major from the top-left: the CVAT skeleton sublabels "1".."117".
"""

from __future__ import annotations

import numpy as np

GRID_SIZE = 11
"""Lattice rows (and columns), frame sides included."""

GRID_CORNERS: frozenset[tuple[int, int]] = frozenset(
    {(0, 0), (0, GRID_SIZE - 1), (GRID_SIZE - 1, 0), (GRID_SIZE - 1, GRID_SIZE - 1)}
)
"""The (row, col) lattice positions that are frame corners, not grid points."""


def grid_positions() -> list[tuple[int, int]]:
    """The (row, col) lattice position of every grid point, in skeleton order (117 of them)."""
    return [
        (row, col)
        for row in range(GRID_SIZE)
        for col in range(GRID_SIZE)
        if (row, col) not in GRID_CORNERS
    ]


GRID_POINTS = len(grid_positions())
"""Number of grid points: 117."""


def grid_lattice() -> np.ndarray:
    """An 11 x 11 int array: the 0-based skeleton index of each lattice position, -1 at corners."""
    lattice = np.full((GRID_SIZE, GRID_SIZE), -1, dtype=np.int64)
    for index, (row, col) in enumerate(grid_positions()):
        lattice[row, col] = index
    return lattice


def grid_sublabels() -> list[str]:
    """The CVAT skeleton sublabel names of the grid points, in order: "1".."117"."""
    return [str(index) for index in range(1, GRID_POINTS + 1)]


def grid_template() -> np.ndarray:
    """The 117 points of an ideal square grid as (x, y) in [0, 1], in skeleton order."""
    scale = 1.0 / (GRID_SIZE - 1)
    return np.array([(col * scale, row * scale) for row, col in grid_positions()])

"""The real reef photos the drawn world lies on: where they are, their sources, which are held out.

The folder holds 512 x 512 patches named ``YYYYMMDD_SSSS_K.jpg`` (survey photo SSSS, patch K),
MIT licence (XL-SHAO/CoralConditionDataset). Without it (a clean clone) the drawn seabed is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REEF_TEXTURES_ENV = "QUADRATSEG_REEF_TEXTURES"
"""The environment variable naming the reef textures folder."""

DEFAULT_REEF_TEXTURES = Path("../shared/data/reef-textures")
"""Where the textures are looked for when the variable is unset (relative to the working folder)."""

HELD_OUT_SOURCES: tuple[str, ...] = ("0017", "0018", "0019", "0020")
"""Source photos no demo model trains on: the held-out measurements draw over these only."""

_PATCH = re.compile(r"^(?P<day>\d{8})_(?P<source>\d{4})_(?P<patch>\d+)\.jpe?g$", re.IGNORECASE)


@dataclass(frozen=True)
class ReefTextures:
    """Real reef photo patches, grouped by the survey photo they were cut from."""

    folder: Path
    patches: tuple[Path, ...]
    sources: tuple[str, ...]
    """The source photo ids (``NN`` of ``YYYYMMDD_00NN_K.jpg``) the patches come from."""

    @classmethod
    def from_folder(
        cls,
        folder: Path | str,
        *,
        only: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
    ) -> ReefTextures:
        """The folder's patches from the sources ``only`` (all when None), less ``exclude``."""
        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"{root}: no reef textures folder")
        chosen = []
        for path in sorted(root.iterdir()):
            match = _PATCH.match(path.name)
            if not match:
                continue
            source = match["source"]
            if (only is None or source in only) and source not in exclude:
                chosen.append((source, path))
        if not chosen:
            raise ValueError(f"{root}: no reef patches (YYYYMMDD_NNNN_K.jpg) from those sources")
        return cls(
            root, tuple(p for _, p in chosen), tuple(sorted({s for s, _ in chosen}))
        )  # fmt: skip

    def training(self) -> ReefTextures:
        """These textures without the held-out source photos."""
        return ReefTextures.from_folder(self.folder, only=self.sources, exclude=HELD_OUT_SOURCES)

    def held_out(self) -> ReefTextures:
        """Only the held-out source photos."""
        return ReefTextures.from_folder(self.folder, only=HELD_OUT_SOURCES)

    def read(self, rng: np.random.Generator) -> np.ndarray:
        """A random patch, randomly flipped and turned (float32 RGB 0..255)."""
        path = self.patches[int(rng.integers(len(self.patches)))]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        image = np.rot90(image[..., ::-1], int(rng.integers(4)))
        if rng.random() < 0.5:
            image = image[:, ::-1]
        return np.ascontiguousarray(image, dtype=np.float32)


def reef_textures_folder(explicit: str | Path | None = None) -> Path | None:
    """The reef textures folder: ``explicit``, else $QUADRATSEG_REEF_TEXTURES, else
    DEFAULT_REEF_TEXTURES when it exists; None when there is none (the drawn seabed then)."""
    chosen = explicit or os.environ.get(REEF_TEXTURES_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_dir():
            raise ValueError(
                f"{path}: no reef textures folder (--reef-textures/{REEF_TEXTURES_ENV})"
            )
        return path
    return DEFAULT_REEF_TEXTURES if DEFAULT_REEF_TEXTURES.is_dir() else None

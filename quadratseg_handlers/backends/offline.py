"""Keep model libraries off the network: ultralytics' offline switches and its font.

Deployed functions and tests have no internet. ultralytics otherwise does DNS look-ups at
import, writes settings under the home directory, auto-installs packages and downloads
Arial.ttf for its annotator. Call :func:`configure_ultralytics` before importing it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def _bundled_font() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return font if font.is_file() else None


def configure_ultralytics(config_dir: str | Path | None = None) -> Path:
    """Set YOLO_OFFLINE, YOLO_AUTOINSTALL and a private YOLO_CONFIG_DIR (with fonts); idempotent.

    Values already set in the environment are kept. Returns the config directory used.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    default = Path(tempfile.gettempdir()) / f"quadratseg-ultralytics-{os.getuid()}"
    directory = Path(config_dir or os.environ.get("YOLO_CONFIG_DIR") or default)
    os.environ["YOLO_CONFIG_DIR"] = str(directory)
    fonts = directory / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    source = _bundled_font()
    for name in FONTS:
        target = fonts / name
        if source is not None and not target.exists():
            shutil.copyfile(source, target)
    return directory

"""Write the functions/<name>/ folders (function.yaml, function-gpu.yaml, main.py) from the
catalogue in quadratseg_handlers/functions.py.

``--check`` writes nothing and exits 1 (naming the stale files) when a committed file differs
from what the catalogue renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.rendering import SourceTree, folder_files

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "functions"


def rendered() -> dict[Path, str]:
    """Every file of every function folder, by path."""
    source = SourceTree.read(ROOT)
    return {
        FOLDER / spec.name / name: text
        for spec in FUNCTIONS.values()
        for name, text in folder_files(spec, source).items()
    }


def main(argv: list[str]) -> int:
    """Write the folders, or with --check only compare them."""
    files = rendered()
    if "--check" in argv:
        stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
        extra = sorted(p for p in FOLDER.iterdir() if p.is_dir() and p.name not in FUNCTIONS)
        for path in [*stale, *extra]:
            print(f"{path.relative_to(ROOT)} is out of date: run `make docs`", file=sys.stderr)
        return 1 if stale or extra else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

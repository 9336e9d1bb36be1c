"""Regenerate the environment-variable table in docs/configuration.md from the handlers.

``--check`` exits 1 (and says so) when the committed table differs from the generated one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from quadratseg_handlers.core.config import combined_table
from quadratseg_handlers.deploy import catalog

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
START, END = "<!-- settings-table -->", "<!-- /settings-table -->"


def render(text: str) -> str:
    """The document with its table region replaced by the generated table."""
    table = combined_table(catalog.declared_settings())
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", text)


def main(argv: list[str]) -> int:
    """Rewrite the table, or only compare it with --check."""
    text = DOC.read_text()
    new = render(text)
    if "--check" in argv:
        if new != text:
            print("docs/configuration.md is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

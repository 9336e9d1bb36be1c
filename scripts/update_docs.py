"""Regenerate the environment-variable tables in docs/configuration.md: the functions' from
the handlers, and ``quadratseg serve``'s own from its ServeSettings.

``--check`` exits 1 (and says so) when the committed table differs from the generated one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from quadratseg_handlers.core.config import combined_table, markdown_table
from quadratseg_handlers.deploy import catalog
from quadratseg_handlers.local.limits import ServeSettings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
START, END = "<!-- settings-table -->", "<!-- /settings-table -->"
SERVE_START, SERVE_END = "<!-- serve-settings-table -->", "<!-- /serve-settings-table -->"


def _replaced(text: str, start: str, end: str, table: str) -> str:
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    return pattern.sub(lambda _: f"{start}\n{table}\n{end}", text)


def render(text: str) -> str:
    """The document with its table regions replaced by the generated tables."""
    text = _replaced(text, START, END, combined_table(catalog.declared_settings()))
    return _replaced(text, SERVE_START, SERVE_END, markdown_table(ServeSettings.declared()))


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

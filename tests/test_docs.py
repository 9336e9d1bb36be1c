"""The docs stay true to the code: the settings table is generated from the handlers, and
every module a page names exists."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

from quadratseg_handlers._legacy import LEGACY_MODULES

ROOT = Path(__file__).resolve().parent.parent


def test_settings_table_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_docs.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_readme_has_exactly_the_two_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_module_the_docs_name_exists():
    """After a move, no page points at a module that is gone (dotted names or file paths)."""
    import re

    pages = [ROOT / "README.md", ROOT / "functions" / "README.md", *(ROOT / "docs").glob("*.md")]
    missing = []
    for page in pages:
        text = page.read_text()
        for dotted in re.findall(r"quadratseg_handlers(?:\.[a-z_]+)+", text):
            if any(dotted == old or dotted.startswith(old + ".") for old in LEGACY_MODULES):
                missing.append(f"{page.name}: {dotted} (a 0.1 module name)")
                continue
            parts = dotted.split(".")
            # the longest prefix that is a module; the rest must be its attributes
            while len(parts) > 1 and not _is_module(".".join(parts)):
                parts.pop()
            module = importlib.import_module(".".join(parts))
            rest = dotted.split(".")[len(parts) :]
            target = module
            for name in rest:
                if not hasattr(target, name):
                    missing.append(f"{page.name}: {dotted}")
                    break
                target = getattr(target, name)
        for path in re.findall(r"quadratseg_handlers/[\w/]+\.py", text):
            if not (ROOT / path).is_file():
                missing.append(f"{page.name}: {path}")
    assert missing == []


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is a module, not a package
        return False

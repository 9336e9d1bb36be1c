"""``module:attribute`` references: how the catalogue names handlers and files.

The catalogue names classes and functions by import path so that listing it imports no model
library; :func:`resolve` imports one when it is needed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any


def split_reference(reference: str) -> tuple[str, str]:
    """``("package.module", "attribute")`` of ``"package.module:attribute"``."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'module:attribute', got {reference!r}")
    return module_name, attribute


def resolve(reference: str) -> Any:
    """Import ``module`` and return its ``attribute`` (dots walk into nested attributes)."""
    module_name, attribute = split_reference(reference)
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def module_file(reference: str) -> Path:
    """``module:relative/path`` as a path next to the module's file (shipped package data)."""
    module_name, relative = split_reference(reference)
    location = importlib.import_module(module_name).__file__
    if location is None:
        raise ValueError(f"{module_name} has no file to resolve {relative} against")
    return Path(location).resolve().parent / relative

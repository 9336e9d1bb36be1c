"""Module names of the flat layout (0.1), kept importable for bundles packaged with it.

A bundle's generated ``main.py`` imports its handler by module path. Bundles packaged before
the package was split into layers say ``from quadratseg_handlers.yolo import ...``; this
finder answers those names with the modules that hold the classes now, so such a bundle still
runs (``quadratseg serve``, ``validate``, ``python main.py``) with this version installed.
New code imports the new paths; nothing in the library uses these names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

LEGACY_MODULES: dict[str, str] = {
    "quadratseg_handlers.yolo": "quadratseg_handlers.handlers.yolo",
    "quadratseg_handlers.grid": "quadratseg_handlers.handlers.grid",
    "quadratseg_handlers.coralscop": "quadratseg_handlers.handlers.coralscop",
    "quadratseg_handlers.lama": "quadratseg_handlers.handlers.lama",
    "quadratseg_handlers.blobs": "quadratseg_handlers.handlers.blobs",
    "quadratseg_handlers.bundle": "quadratseg_handlers.local.bundle",
    "quadratseg_handlers.testing": "quadratseg_handlers.local.harness",
}
"""Old module name -> the module that holds its public names now."""


class LegacyModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name as the new module object itself (one module, two names)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec for the old names only; every other import is left to the usual finders."""
        if fullname not in LEGACY_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        """The new module, imported under its own name first."""
        return importlib.import_module(LEGACY_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module is already executed."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, LegacyModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(LegacyModuleFinder())

"""Whether a bundle's code runs with the library installed here, and what to say when not.

A bundle's generated ``main.py`` imports its handler by module path. Deployed, it runs on the
wheel inside the bundle; run here (``quadratseg validate``, ``quadratseg serve``), it imports
the library installed here, whose modules may have moved since the bundle was packaged: a
bundle of 0.1 imports its handler from a module of the flat layout (``yolo`` directly under
the package), which 0.2 no longer has.
Such a bundle gets one line telling the user to package it again, found before anything runs
(:func:`outdated_bundle`, reading ``main.py``) or, where an import only fails at run time,
from the exception (:func:`outdated_import`).
"""

from __future__ import annotations

import ast
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import BundleError, get, load_function_yaml

PACKAGE = "quadratseg_handlers"
PACKAGE_DIR = Path(__file__).resolve().parents[1]


class OutdatedBundle(BundleError):
    """A bundle packaged by a version of the library whose modules this one lacks."""


def is_module(name: str) -> bool:
    """Whether the dotted ``quadratseg_handlers...`` name is a module or package of the library
    installed here (looked up as files: nothing is imported)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return False
    path = PACKAGE_DIR.joinpath(*parts[1:])
    return (path / "__init__.py").is_file() or path.with_suffix(".py").is_file()


def imported_modules(source: str) -> list[str]:
    """The ``quadratseg_handlers`` modules a Python source imports anywhere, in source order
    (none when it does not parse: running it reports that)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    names = [name for _, name in sorted(found)]
    return [n for n in dict.fromkeys(names) if n == PACKAGE or n.startswith(PACKAGE + ".")]


RUNTIME_ENTRY_POINTS = ("init_context", "handle_event")
"""Class methods of a 0.1 handler that 0.2's ``quadratseg_handlers.core.runtime`` holds."""


def handler_entry_calls(source: str) -> list[str]:
    """``Class.init_context`` / ``Class.handle_event`` uses of a class imported from the
    library, in source order: how 0.1's ``main.py`` started its handler (0.2 hands the class to
    the runtime instead)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE)
        for alias in node.names
        if not is_module(f"{node.module}.{alias.name}")
    }
    found = [
        (node.lineno, f"{node.value.id}.{node.attr}")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in RUNTIME_ENTRY_POINTS
        and isinstance(node.value, ast.Name)
        and node.value.id in imported
    ]
    return list(dict.fromkeys(name for _, name in sorted(found)))


def repackage_message(config: Any, importer: str, missing: str, uses: str = "imports") -> str:
    """One line: which bundle, the version that packaged it, what ``importer`` imports that
    this version lacks, and the ``quadratseg package`` command that makes it again.

    ``config`` is the bundle's function.yaml as data (its name and ``quadratseg.*``
    annotations); ``missing`` is a module, or ``Name from module``.
    """
    name = get(config, "metadata", "name") or "the bundle"
    version = get(config, "metadata", "annotations", "quadratseg.version")
    function = FUNCTIONS.get(str(get(config, "metadata", "annotations", "quadratseg.function")))
    packaged = (
        f"quadratseg-handlers {version}" if version else "another version of quadratseg-handlers"
    )
    usage = function.usage() if function is not None else "MODEL FILES..."
    return (
        f"{name}: packaged with {packaged} ({importer} {uses} {missing}, which this version "
        f"does not have); package it again with `quadratseg package {usage}`"
    )


def _handler_file(folder: Path, config: Any) -> Path:
    """The file of function.yaml's ``spec.handler`` module (``main.py`` for ``main:handler``)."""
    handler = get(config, "spec", "handler")
    module = handler.split(":")[0] if isinstance(handler, str) and ":" in handler else "main"
    return folder / (module.replace(".", "/") + ".py")


def outdated_bundle(folder: Path, config: Mapping[str, Any] | None = None) -> str | None:
    """The one-line message when the bundle's handler module (``main.py``) imports a
    ``quadratseg_handlers`` module the library installed here does not have, or starts its
    handler through class methods 0.2 moved to the runtime (:func:`handler_entry_calls`);
    None when neither, or when the file is missing or unreadable (other checks report that).

    ``config`` is the bundle's function.yaml as data, read from ``folder`` when not given.
    """
    if config is None:
        try:
            config = load_function_yaml(folder / "function.yaml")
        except (BundleError, OSError):
            return None
    main = _handler_file(folder, config)
    try:
        source = main.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    importer = main.relative_to(folder).as_posix()
    missing = [name for name in imported_modules(source) if not is_module(name)]
    if missing:
        return repackage_message(config, importer, missing[0])
    calls = handler_entry_calls(source)
    if calls:
        return repackage_message(config, importer, calls[0], uses="calls")
    return None


def outdated_import(error: BaseException, folder: Path) -> str | None:
    """The one-line message when ``error`` is a bundle file in ``folder`` failing to import a
    ``quadratseg_handlers`` module or name this version does not have; None for any other
    error (an import failing inside the library itself is the library's own)."""
    if not isinstance(error, ImportError):
        return None
    name = error.name or ""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    if isinstance(error, ModuleNotFoundError) and is_module(name):
        return None
    frames = [
        Path(frame.f_code.co_filename)
        for frame, _ in traceback.walk_tb(error.__traceback__)
        if not frame.f_code.co_filename.startswith("<")
    ]
    if not frames or not frames[-1].resolve().is_relative_to(folder.resolve()):
        return None
    importer = frames[-1].resolve().relative_to(folder.resolve()).as_posix()
    missing = name
    if not isinstance(error, ModuleNotFoundError):
        if "partially initialized" in str(error):  # a circular import: the library's own
            return None
        attribute = getattr(error, "name_from", None) or _imported_name(str(error))
        if attribute is None:
            return None
        missing = f"{attribute} from {missing}"
    try:
        config: Any = load_function_yaml(folder / "function.yaml")
    except (BundleError, OSError):
        config = None
    return repackage_message(config, importer, missing)


def _imported_name(message: str) -> str | None:
    """``X`` of Python's ``cannot import name 'X' from 'module'`` (before 3.12's ``name_from``)."""
    prefix = "cannot import name '"
    if not message.startswith(prefix):
        return None
    return message[len(prefix) :].split("'", 1)[0] or None

"""The catalogue of handlers: which class serves which function, found by name.

Classes are named by import path so that listing the catalogue imports no model library.
How each function is deployed (files, environment, image) is in :mod:`.functions`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import Setting
from .functions import FUNCTIONS
from .handler import BaseHandler

HANDLERS: dict[str, str] = {name: spec.handler for name, spec in FUNCTIONS.items()}
"""Function name -> ``module:Class`` of its handler."""


def handler_class(name: str) -> type[BaseHandler[Any]]:
    """Import and return the handler class of a function name (KeyError lists valid names)."""
    try:
        target = HANDLERS[name]
    except KeyError:
        raise KeyError(
            f"unknown function {name!r}; valid: {', '.join(sorted(HANDLERS))}"
        ) from None
    module_name, class_name = target.split(":")
    handler: type[BaseHandler[Any]] = getattr(importlib.import_module(module_name), class_name)
    return handler


def declared_settings() -> dict[str, list[Setting]]:
    """Every catalogued function's settings, by function name (imports each handler module)."""
    return {name: handler_class(name).declared_settings() for name in HANDLERS}

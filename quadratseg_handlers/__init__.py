"""quadratseg-handlers: coral-reef quadrat models as Nuclio functions for CVAT.

The base handler and every model handler are importable from here:
``from quadratseg_handlers import CoralSegV4Handler``. Handler classes are imported when
first asked for, so ``import quadratseg_handlers`` stays light (no model library). The layers
underneath are described in docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quadratseg_handlers.core.config import ConfigError, Setting, Settings, setting
from quadratseg_handlers.core.contract import BaseHandler, ImageHandler, ModelHandler
from quadratseg_handlers.core.instances import Instance, InstanceHandler
from quadratseg_handlers.core.references import resolve
from quadratseg_handlers.core.request import Request, RequestError

if TYPE_CHECKING:
    from quadratseg_handlers.handlers.blobs import BlobHandler
    from quadratseg_handlers.handlers.coralscop import CoralScopSegformerHandler
    from quadratseg_handlers.handlers.grid import GridCornersHandler, GridHandler, GridPoseHandler
    from quadratseg_handlers.handlers.lama import LamaHandler
    from quadratseg_handlers.handlers.yolo import (
        CoralSegBanggaiHandler,
        CoralSegV4Handler,
        YoloSegHandler,
    )

__version__ = "0.2.0"

HANDLER_CLASSES: dict[str, str] = {
    "YoloSegHandler": "quadratseg_handlers.handlers.yolo",
    "CoralSegV4Handler": "quadratseg_handlers.handlers.yolo",
    "CoralSegBanggaiHandler": "quadratseg_handlers.handlers.yolo",
    "GridHandler": "quadratseg_handlers.handlers.grid",
    "GridCornersHandler": "quadratseg_handlers.handlers.grid",
    "GridPoseHandler": "quadratseg_handlers.handlers.grid",
    "CoralScopSegformerHandler": "quadratseg_handlers.handlers.coralscop",
    "LamaHandler": "quadratseg_handlers.handlers.lama",
    "BlobHandler": "quadratseg_handlers.handlers.blobs",
}
"""Handler class name -> the module of :mod:`quadratseg_handlers.handlers` that defines it."""


def __getattr__(name: str) -> Any:
    """Import a handler class on first use (PEP 562)."""
    module = HANDLER_CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = resolve(f"{module}:{name}")
    globals()[name] = value
    return value


__all__ = [
    "BaseHandler",
    "BlobHandler",
    "ConfigError",
    "CoralScopSegformerHandler",
    "CoralSegBanggaiHandler",
    "CoralSegV4Handler",
    "GridCornersHandler",
    "GridHandler",
    "GridPoseHandler",
    "ImageHandler",
    "Instance",
    "InstanceHandler",
    "LamaHandler",
    "ModelHandler",
    "Request",
    "RequestError",
    "Setting",
    "Settings",
    "YoloSegHandler",
    "__version__",
    "setting",
]

"""quadratseg-handlers: coral-reef quadrat models as Nuclio functions for CVAT."""

from .config import ConfigError, Setting
from .handler import BaseHandler
from .request import Request, RequestError
from .segmentation import Instance, InstanceHandler

__version__ = "0.1.0"

__all__ = [
    "BaseHandler",
    "ConfigError",
    "Instance",
    "InstanceHandler",
    "Request",
    "RequestError",
    "Setting",
    "__version__",
]

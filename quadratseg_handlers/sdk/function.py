"""Any detector handler as a cvat-sdk auto-annotation function (``DetectionFunction``).

``cvat-cli task auto-annotate TASK --function-module quadratseg_handlers.sdk.gridcorners -p
model_path=str:best.pt`` imports a module of this layer and calls its ``create(**parameters)``;
the agent route (``cvat-cli function create-native`` / ``function run-agent``) does the same in
a worker process. ``create`` builds the handler from the parameters (the settings' names in
lower case, parsed and checked by the same :class:`~quadratseg_handlers.core.config.Settings`
as the environment variables), loads it, and wraps it in :class:`DetectorFunction`:

- ``spec``: the handler's own labels (:mod:`.labels`), ids assigned;
- ``detect(context, image)``: the handler's ``infer``, the very call the Nuclio runtime makes
  for a request, on the frame cvat-sdk decoded; ``context.conf_threshold`` replaces
  CONF_THRESHOLD when given (0 keeps every score: the SDK's meaning, where a Nuclio request's
  0 means the default); the answer becomes SDK models (:mod:`.annotations`), masks as polygons
  when ``context.conv_mask_to_poly``.

Nothing of this layer is imported on the Nuclio path (cvat-sdk is the ``cvat-sdk`` extra).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.core.contract import BaseHandler, ModelHandler
from quadratseg_handlers.core.request import Request, load_image
from quadratseg_handlers.cvat.shapes import Shape
from quadratseg_handlers.deploy import catalog
from quadratseg_handlers.sdk.annotations import to_annotations
from quadratseg_handlers.sdk.labels import detection_spec

REQUEST_LIMITS = ("MAX_IMAGE_PIXELS", "MAX_BATCH_SIZE", "MAX_REQUEST_PIXELS")
"""Settings that bound a Nuclio request: cvat-sdk hands over one decoded frame at a time, so
they are not parameters of the SDK route."""


class ParameterError(ConfigError):
    """A ``-p`` parameter that is unknown, missing or invalid; the message is one line that
    names it."""


class DetectorFunction:
    """A loaded detector handler as cvat-sdk's ``DetectionFunction``: ``spec`` and
    ``detect``."""

    def __init__(self, handler: BaseHandler[Any]) -> None:
        """Load the handler (weights give the labels), then build the spec: cvat-sdk's
        ``DetectionFunctionSpec`` checks it as it is made."""
        handler.load()
        self.handler = handler
        self.spec, self.label_ids = detection_spec(handler.labels())

    def shapes(self, image: Any, threshold: float | None = None) -> list[Shape]:
        """The handler's CVAT JSON answer for one image (a PIL image, array, path or bytes),
        through ``infer`` as the Nuclio runtime calls it; ``threshold`` None: CONF_THRESHOLD."""
        if threshold is None:
            threshold = self.handler.settings.conf_threshold
        request = Request([load_image(image)], float(threshold), batch=False)
        answer: list[Shape] = self.handler.infer(request)
        return answer

    def detect(self, context: Any, image: Any) -> list[Any]:
        """cvat-sdk's call for one frame: the answer as ``LabeledShapeRequest`` models."""
        shapes = self.shapes(image, context.conf_threshold)
        return to_annotations(shapes, self.label_ids, conv_mask_to_poly=context.conv_mask_to_poly)


def parameter_names(handler: type[ModelHandler]) -> list[str]:
    """The parameters a function takes: its settings' names in lower case, in order, less
    the Nuclio request limits."""
    return [
        setting.name.lower()
        for setting in handler.declared_settings()
        if setting.name not in REQUEST_LIMITS
    ]


def _as_parameters(message: str, names: Sequence[str]) -> str:
    """A settings message with each ``NAME=`` written as the parameter ``name=``."""
    pattern = "|".join(re.escape(name.upper()) for name in sorted(names, key=len, reverse=True))
    return re.sub(rf"\b({pattern})=", lambda m: f"{m.group(1).lower()}=", message)


def handler_for(model: str, parameters: Mapping[str, Any]) -> BaseHandler[Any]:
    """The catalogued detector ``model`` with ``parameters`` as its settings, over the values
    its bundle's function.yaml fixes (the catalogue's ``env``); the environment is not read.
    Not yet loaded; :class:`ParameterError` names a bad parameter."""
    spec = catalog.find(model)
    handler_class = catalog.handler_class(model)
    if not issubclass(handler_class, BaseHandler):
        raise ParameterError(
            f"{spec.name} is not a detector (it answers an image, not shapes): cvat-sdk "
            "auto-annotation functions answer shapes; see docs/cvat-sdk.md"
        )
    names = parameter_names(handler_class)
    given = {str(key).lower(): value for key, value in parameters.items()}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ParameterError(
            f"{spec.name}: unknown parameter {', '.join(unknown)}; known: {', '.join(names)}"
        )
    for bundle_file in spec.files:
        if bundle_file.required and bundle_file.env.lower() not in given:
            raise ParameterError(
                f"{spec.name}: missing parameter {bundle_file.env.lower()} ({bundle_file.help}): "
                f"-p {bundle_file.env.lower()}=str:PATH"
            )
    bundled = {name.lower(): value for name, value in spec.env}
    try:
        handler: BaseHandler[Any] = handler_class(environ={}, **{**bundled, **given})
    except ConfigError as exc:
        raise ParameterError(f"{spec.name}: parameter {_as_parameters(str(exc), names)}") from None
    return handler


def detection_function(model: str, parameters: Mapping[str, Any]) -> DetectorFunction:
    """The catalogued detector ``model`` loaded with ``parameters``, as a cvat-sdk function;
    :class:`ParameterError` names a bad parameter (one found while loading included)."""
    handler = handler_for(model, parameters)
    try:
        return DetectorFunction(handler)
    except ConfigError as exc:
        names = parameter_names(type(handler))
        message = _as_parameters(str(exc), names)
        raise ParameterError(f"{catalog.find(model).name}: parameter {message}") from None


def create_or_exit(model: str, parameters: Mapping[str, Any]) -> DetectorFunction:
    """:func:`detection_function` for cvat-cli's ``create(**parameters)``: a bad parameter is
    one line on stderr and exit status 2, not a traceback (cvat-cli prints one for any
    exception a function module raises)."""
    try:
        return detection_function(model, parameters)
    except ParameterError as exc:
        _exit(str(exc))


def _exit(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(2)

"""Helpers to drive handlers through real ``nuclio_sdk`` objects, in tests and notebooks.

Build CVAT-style requests from arrays or files, real ``Event``/``Context`` objects with a
logger that records what was logged, and call a handler class or a bundle's generated
``main.py`` through ``nuclio_sdk.test.Platform`` the way Nuclio would.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nuclio_sdk
import nuclio_sdk.test

from quadratseg_handlers.core import runtime
from quadratseg_handlers.core.config import temporary_environment
from quadratseg_handlers.core.contract import ModelHandler
from quadratseg_handlers.core.request import cvat_request as cvat_request
from quadratseg_handlers.core.request import encode_image as encode_image


class RecordingLogger:
    """A Nuclio-compatible logger that keeps every record as (level, message, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, message: str, *args: Any, **fields: Any) -> None:
        text = message % args if args else message
        self.records.append((level, text, fields))

    def debug(self, message: str, *args: Any) -> None:
        self._log("debug", message, *args)

    def info(self, message: str, *args: Any) -> None:
        self._log("info", message, *args)

    def warn(self, message: str, *args: Any) -> None:
        self._log("warn", message, *args)

    def error(self, message: str, *args: Any) -> None:
        self._log("error", message, *args)

    def debug_with(self, message: str, *args: Any, **fields: Any) -> None:
        self._log("debug", message, *args, **fields)

    def info_with(self, message: str, *args: Any, **fields: Any) -> None:
        self._log("info", message, *args, **fields)

    def warn_with(self, message: str, *args: Any, **fields: Any) -> None:
        self._log("warn", message, *args, **fields)

    def error_with(self, message: str, *args: Any, **fields: Any) -> None:
        self._log("error", message, *args, **fields)

    def messages(self, level: str | None = None) -> list[str]:
        """The logged messages, optionally only those of one level."""
        return [msg for lvl, msg, _ in self.records if level is None or lvl == level]


def make_event(
    body: Any,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    path: str = "/",
) -> nuclio_sdk.Event:
    """A real Nuclio event; a dict body is kept as is (as Nuclio does for application/json)."""
    return nuclio_sdk.Event(
        body=body,
        content_type=content_type,
        headers=dict(headers or {"Content-Type": content_type}),
        method=method,
        path=path,
        trigger=nuclio_sdk.TriggerInfo(kind="http", name="myHttpTrigger"),
    )


def make_context(logger: Any = None, worker_id: str = "0") -> nuclio_sdk.Context:
    """A real Nuclio context with a recording logger (``context.logger.records``)."""
    return nuclio_sdk.Context(
        logger=logger if logger is not None else RecordingLogger(),
        platform=nuclio_sdk.test.Platform(),
        worker_id=worker_id,
        trigger=nuclio_sdk.TriggerInfo(kind="http", name="myHttpTrigger"),
    )


_module_ids = itertools.count()


def handler_module(handler_class: type[ModelHandler]) -> types.ModuleType:
    """A module shaped like a generated ``main.py`` (``init_context`` and ``handler``)."""
    module = types.ModuleType(f"quadratseg_main_{next(_module_ids)}")

    def init_context(context: Any) -> None:
        runtime.init_context(handler_class, context)

    def handler(context: Any, event: Any) -> Any:
        return runtime.handle_event(context, event)

    for function in (init_context, handler):
        function.__module__ = module.__name__
        setattr(module, function.__name__, function)
    sys.modules[module.__name__] = module
    return module


def load_main(path: str | Path) -> types.ModuleType:
    """Import a bundle's ``main.py`` by path, with its folder first on ``sys.path``."""
    main_path = Path(path)
    if main_path.is_dir():
        main_path = main_path / "main.py"
    folder = str(main_path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"quadratseg_bundle_main_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, main_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {main_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class FunctionClient:
    """Calls one function through ``nuclio_sdk.test.Platform``: init_context once, then events."""

    def __init__(
        self,
        target: type[ModelHandler] | types.ModuleType | str | Path,
        env: Mapping[str, Any] | None = None,
    ) -> None:
        """A client of a handler class, a ``main.py``-shaped module or a bundle's ``main.py``.

        ``env`` holds settings as function.yaml's ``env`` gives them (names in any case,
        values turned into strings); they are in the environment while the function starts
        and answers, and nowhere else.
        """
        self.env = {name.upper(): str(value) for name, value in (env or {}).items()}
        if isinstance(target, type):
            self.module = handler_module(target)
        elif isinstance(target, types.ModuleType):
            self.module = target
        else:
            self.module = load_main(target)
        self.platform = nuclio_sdk.test.Platform()
        # the mock platform logs init_context to stdout; keep stdout for the function's output
        self.platform._logger.set_handler(
            "default", sys.stderr, nuclio_sdk.logger.HumanReadableFormatter()
        )
        self.logger = RecordingLogger()

    def _with_logger(self, context: nuclio_sdk.Context) -> nuclio_sdk.Context:
        context.logger = self.logger
        return context

    def call(self, event: Any) -> nuclio_sdk.Response:
        """Send an event (or a body, wrapped as a JSON event) and return the Response."""
        if not isinstance(event, nuclio_sdk.Event):
            event = make_event(event)
        with temporary_environment(self.env):
            return self.platform.call_handler_with_context_mutation(
                self.module.handler, event, self._with_logger
            )

    def start(self) -> Any:
        """Run ``init_context`` now (it otherwise runs on the first call); return the handler."""
        with temporary_environment(self.env):
            context = self.platform._get_handler_context(self.module.handler)
        return context.user_data.handler


def response_json(response: nuclio_sdk.Response) -> Any:
    """The decoded JSON body of a handler's Response."""
    body = response.body
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    return json.loads(body)

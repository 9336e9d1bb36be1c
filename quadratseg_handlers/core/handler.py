"""The base handler: the one request lifecycle every QUADRATSEG function shares.

A model handler subclasses :class:`BaseHandler` and overrides only what differs:

- ``settings``: the environment variables it reads (beyond the common ones),
- ``load_model()``: load weights once, at start-up,
- ``predict(images, threshold)``: one raw prediction per RGB image,
- ``to_shapes(prediction, image)``: CVAT shapes in original-image pixels,
- ``labels()``: the label spec CVAT shows,
- ``decode_size()``: the smallest long side its images may be decoded at (default: full size).

Nuclio calls ``init_context`` once per worker and then ``handle_event`` per request; in a
notebook, construct the handler with keyword settings and call ``annotate`` or ``predict``.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from nuclio_sdk import Response

from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import Config, ConfigError, Setting
from quadratseg_handlers.core.memory import LARGE_REQUEST_PIXELS, release_memory
from quadratseg_handlers.core.messages import describe_error, first_line
from quadratseg_handlers.core.request import (
    Request,
    RequestError,
    decode_images,
    load_image,
    parse_body,
    parse_threshold,
)
from quadratseg_handlers.cvat.answer import answer_json
from quadratseg_handlers.cvat.shapes import Shape
from quadratseg_handlers.cvat.spec import LabelSpec

P = TypeVar("P")

log = logging.getLogger("quadratseg_handlers")

COMMON_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DEVICE",
        cfg.device,
        "auto",
        "Torch device: `auto` (cuda:0 when CUDA is available, else cpu), `cpu`, `cuda`, `cuda:N`.",
        "device",
    ),
    Setting(
        "CONF_THRESHOLD",
        cfg.number(0.0, 1.0),
        0.25,
        "Default score threshold in [0, 1]; a request's non-zero `threshold` overrides it.",
        "number",
    ),
    Setting(
        "MAX_IMAGE_PIXELS",
        cfg.number(1, integer=True),
        100_000_000,
        "Largest accepted image in pixels (width x height), checked from the file header "
        "before decoding; larger images are answered 413.",
        "integer",
    ),
    Setting(
        "MAX_BATCH_SIZE",
        cfg.number(1, integer=True),
        16,
        'Most images accepted in one `{"images": [...]}` request; more are answered 413.',
        "integer",
    ),
    Setting(
        "MAX_REQUEST_PIXELS",
        cfg.number(1, integer=True),
        100_000_000,
        "Most pixels one request may decode, all its images together (checked from the file "
        "headers before any is decoded); more are answered 413. Bounds a worker's memory for "
        'an `{"images": [...]}` batch, and the pixels one predict of a Nuclio batch of events '
        "takes.",
        "integer",
    ),
)


RETRY_AFTER_S = 5
"""Seconds a 503 (out of memory) asks the client to wait before retrying (``Retry-After``)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for host or CUDA out-of-memory errors (without importing torch)."""
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def _empty_cuda_cache() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class RawAnswer:
    """An answer sent as it is (an image file), not as JSON: ``infer`` may return one."""

    body: bytes
    content_type: str


def header(event: Any, name: str) -> str:
    """An event's header by case-insensitive name; "" when absent."""
    headers = getattr(event, "headers", None) or {}
    for key, value in headers.items():
        if str(key).lower() == name.lower():
            return str(value)
    return ""


def _count_shapes(payload: Any) -> int:
    if isinstance(payload, RawAnswer):
        return 0
    if isinstance(payload, list):
        return sum(_count_shapes(item) if isinstance(item, list) else 1 for item in payload)
    return 1 if payload else 0


class BaseHandler(Generic[P]):
    """Owns the request lifecycle; subclasses describe a model (load, predict, shapes, labels)."""

    function_name: ClassVar[str] = "quadratseg-handler"
    """The Nuclio function name this handler serves (used in logs and bundles)."""

    settings: ClassVar[tuple[Setting, ...]] = COMMON_SETTINGS
    """Settings this class adds; inherited ones are collected by :meth:`declared_settings`."""

    setting_defaults: ClassVar[Mapping[str, Any]] = {}
    """Defaults this class changes for inherited settings, by variable name."""

    unused_settings: ClassVar[frozenset[str]] = frozenset()
    """Inherited settings this function never reads: not declared, so not documented for it
    and refused by ``quadratseg package --env``."""

    uses_torch: ClassVar[bool] = True
    """Whether the model may run on torch; :meth:`torch_needed` answers per configured instance."""

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        """Parse and validate every setting (keyword overrides, else the environment).

        Raises ConfigError naming the variable when a value is invalid. Nothing heavy happens
        here: the model is loaded by :meth:`load`.
        """
        self.config: Config = cfg.load_config(self.declared_settings(), overrides, environ)
        self.device: str = (
            cfg.resolve_device(self.config["DEVICE"]) if self.torch_needed() else "cpu"
        )
        self.loaded = False
        self.request_logger: Any = None
        """Nuclio's logger while a request is served through :meth:`handle` (see :meth:`warn`)."""

    # --- what a subclass provides ------------------------------------------------------------

    def torch_needed(self) -> bool:
        """Whether this instance, as configured, runs on torch (default: ``uses_torch``).

        Called once the settings are read, so a handler whose backend is a setting can answer
        per instance; when False, DEVICE is not resolved and torch is not imported.
        """
        return self.uses_torch

    def load_model(self) -> None:
        """Load weights and anything else heavy; called once by :meth:`load`."""

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[P]:
        """One raw prediction per RGB uint8 image, keeping those scoring >= ``threshold``."""
        raise NotImplementedError

    def to_shapes(self, prediction: P, image: np.ndarray) -> list[Shape]:
        """The CVAT shapes of one prediction, in the pixels of ``image``."""
        raise NotImplementedError

    def labels(self) -> list[LabelSpec]:
        """The label spec CVAT shows for this function (``metadata.annotations.spec``)."""
        raise NotImplementedError

    def decode_size(self) -> int | None:
        """The smallest long side, in pixels, this function needs its images decoded at.

        None (the default): full resolution. A model that shrinks every image to a fixed
        input anyway says how large that input is: a JPEG request is then decoded directly at
        a reduced scale whose long side is not below it (a
        :class:`~quadratseg_handlers.core.request.ReducedImage`, several times faster), and
        ``predict``/``to_shapes`` answer in the photo's pixels
        (:func:`~quadratseg_handlers.core.request.photo_size_hw`).
        """
        return None

    # --- the template -------------------------------------------------------------------------

    @classmethod
    def declared_settings(cls) -> list[Setting]:
        """All settings of this class and its bases, with this class's defaults applied."""
        merged: dict[str, Setting] = {}
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for setting in vars(klass).get("settings", ()):
                merged[setting.name] = setting
            defaults.update(vars(klass).get("setting_defaults", {}))
        for name, value in defaults.items():
            if name not in merged:
                raise TypeError(f"{cls.__name__}.setting_defaults names unknown setting {name}")
            merged[name] = merged[name].with_default(value)
        return [setting for name, setting in merged.items() if name not in cls.unused_settings]

    def warn(self, message: str, **fields: Any) -> None:
        """Log a warning about the request being served, e.g. why an answer is empty.

        Through Nuclio's logger (as a ``warn_with`` line) when serving, else the
        ``quadratseg_handlers`` Python logger (notebooks).
        """
        if self.request_logger is not None:
            self.request_logger.warn_with(message, function=self.function_name, **fields)
        else:
            log.warning("%s: %s %s", self.function_name, message, fields)

    def load(self) -> None:
        """Load the model once; later calls do nothing."""
        if not self.loaded:
            self.load_model()
            self.loaded = True

    def parse_request(self, body: Mapping[str, Any]) -> Request:
        """Take ``image`` (or ``images`` for a batch) and ``threshold`` from a JSON body."""
        max_pixels = int(self.config["MAX_IMAGE_PIXELS"])
        max_total = int(self.config["MAX_REQUEST_PIXELS"])
        min_side = self.decode_size()
        threshold = parse_threshold(body.get("threshold"), float(self.config["CONF_THRESHOLD"]))
        has_image, has_images = body.get("image") is not None, body.get("images") is not None
        if has_image and has_images:
            raise RequestError("give either 'image' or 'images', not both")
        if has_images:
            batch = body["images"]
            if not isinstance(batch, list) or not batch:
                raise RequestError("'images' must be a non-empty list of base64 strings")
            limit = int(self.config["MAX_BATCH_SIZE"])
            if len(batch) > limit:
                raise RequestError(
                    f"'images' holds {len(batch)} images, over MAX_BATCH_SIZE={limit}", status=413
                )
            fields = [(item, f"images[{i}]") for i, item in enumerate(batch)]
            images = decode_images(fields, max_pixels, max_total, min_side)
            return Request(images, threshold, batch=True, body=dict(body))
        if not has_image:
            raise RequestError('missing \'image\': expected {"image": "<base64 of the frame>"}')
        image = decode_images([(body["image"], "image")], max_pixels, max_total, min_side)
        return Request(image, threshold, False, dict(body))

    def infer(self, request: Request) -> Any:
        """Run the model on a request and return the JSON payload to send back."""
        return self.payload(request, self.checked_predict(request.images, request.threshold))

    def checked_predict(self, images: Sequence[np.ndarray], threshold: float) -> list[P]:
        """:meth:`predict`, failing when it does not answer one result per image."""
        predictions = self.predict(images, threshold)
        if len(predictions) != len(images):
            raise RuntimeError(
                f"predict returned {len(predictions)} results for {len(images)} images"
            )
        return predictions

    def payload(self, request: Request, predictions: Sequence[P]) -> Any:
        """The JSON payload of a request from its images' predictions (a list per image for an
        ``{"images": [...]}`` request)."""
        pairs = zip(predictions, request.images, strict=True)
        shapes = [self.to_shapes(prediction, image) for prediction, image in pairs]
        return shapes if request.batch else shapes[0]

    def annotate(self, image: Any, threshold: float | None = None) -> Any:
        """Notebook entry: CVAT shapes for an image (path, bytes, PIL image or array).

        A list of images gives one list of shapes per image, in one batched predict.
        """
        self.load()
        batch = isinstance(image, list)
        images = [load_image(item) for item in (image if batch else [image])]
        default = float(self.config["CONF_THRESHOLD"])
        request = Request(images, parse_threshold(threshold, default), batch)
        return self.infer(request)

    def handle(self, context: Any, event: Any) -> Response:
        """Answer one Nuclio event: JSON in, JSON out, every failure a JSON error.

        After a large request (LARGE_REQUEST_PIXELS) the memory it took is given back, once
        its images are no longer referenced.
        """
        response, pixels = self._respond(context, event)
        if pixels >= LARGE_REQUEST_PIXELS:
            release_memory()
        return response

    def _respond(self, context: Any, event: Any) -> tuple[Response, int]:
        """The response to one event, and the pixels it decoded."""
        started = time.perf_counter()
        logger = context.logger
        self.request_logger = logger
        pixels = 0
        try:
            request = self.event_request(event)
            pixels = request.pixels
            payload = self.infer(request)
        except Exception as exc:
            return self.failure_response(context, exc), pixels
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info_with(
            "handled request",
            function=self.function_name,
            pixels=pixels,
            ms=round(elapsed_ms, 1),
            shapes=_count_shapes(payload),
            worker=context.worker_id,
        )
        return self.answer_response(context, payload), pixels

    def event_request(self, event: Any) -> Request:
        """The decoded request of one event (RequestError for a bad one)."""
        request = self.parse_request(parse_body(event.body, event.content_type or ""))
        request.accept = header(event, "Accept")
        return request

    @staticmethod
    def answer_response(context: Any, payload: Any) -> Response:
        """The 200 response carrying a payload: JSON, or the file of a :class:`RawAnswer`."""
        if isinstance(payload, RawAnswer):
            return context.Response(
                body=payload.body, headers={}, content_type=payload.content_type, status_code=200
            )
        return context.Response(
            body=answer_json(payload),
            headers={},
            content_type="application/json",
            status_code=200,
        )

    def failure_response(self, context: Any, exc: Exception) -> Response:
        """The response to a request that failed: 4xx for a RequestError, 503 (cache emptied)
        when out of memory, else 500 with the first line (the traceback goes to the log)."""
        logger = context.logger
        if isinstance(exc, RequestError):
            logger.warn_with(
                "rejected request", status=exc.status, error=exc.message, worker=context.worker_id
            )
            return self.error_response(context, exc.status, exc.message)
        if is_out_of_memory(exc):
            _empty_cuda_cache()
            logger.error_with("out of memory", error=first_line(exc, 300))
            return self.error_response(
                context,
                503,
                "out of memory while running the model; cache emptied, retry "
                "later or send a smaller image",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        logger.error_with(
            "model failure",
            error=repr(exc),
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
        message = f"internal error in {type(self).__name__}: {describe_error(exc)}"
        return self.error_response(context, 500, message)

    @staticmethod
    def error_response(
        context: Any, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        """A JSON error body ``{"error": message}`` with the given HTTP status and headers."""
        return context.Response(
            body=json.dumps({"error": message}),
            headers=dict(headers or {}),
            content_type="application/json",
            status_code=status,
        )

    # --- Nuclio's batch mode ------------------------------------------------------------------

    def handle_batch(self, context: Any, events: Sequence[Any]) -> list[Response]:
        """Answer a batch of events (the HTTP trigger's ``batch`` mode): one response per event,
        in the events' order, each carrying its event's id (Nuclio routes it by that id).

        Each event is decoded on its own (a bad one gets its own 4xx). The valid ones are
        predicted together, as few predicts as ``MAX_BATCH_SIZE`` and ``MAX_REQUEST_PIXELS``
        allow: events are decoded in order and the decoded ones predicted whenever the next
        would pass a limit, so a batch holds no more decoded pixels than a request may (plus
        the event being decoded). A failure is answered for the events it belongs to; out of
        memory answers 503 to every event not answered yet.
        """
        started = time.perf_counter()
        self.request_logger = context.logger
        max_images, max_pixels = self.batch_limits()
        outcomes: dict[int, Any] = {}
        waiting: dict[int, Request] = {}
        pixels = predicts = 0
        try:
            for index, event in enumerate(events):
                try:
                    request = self.event_request(event)
                except Exception as exc:
                    outcomes[index] = exc
                    continue
                pixels += request.pixels
                held = [*waiting.values(), request]
                if waiting and (
                    sum(len(r.images) for r in held) > max_images
                    or sum(r.pixels for r in held) > max_pixels
                ):
                    predicts += self.answer_waiting(waiting, outcomes)
                waiting[index] = request
            predicts += self.answer_waiting(waiting, outcomes)
        except Exception as exc:  # out of memory: the rest of the batch would fail alike
            outcomes.update({index: exc for index in range(len(events)) if index not in outcomes})
        responses = []
        for index, event in enumerate(events):
            outcome = outcomes[index]
            response = (
                self.failure_response(context, outcome)
                if isinstance(outcome, Exception)
                else self.answer_response(context, outcome)
            )
            response.event_id = getattr(event, "id", None)
            responses.append(response)
        context.logger.info_with(
            "handled batch",
            function=self.function_name,
            events=len(events),
            answered=sum(response.status_code == 200 for response in responses),
            predicts=predicts,
            pixels=pixels,
            ms=round((time.perf_counter() - started) * 1000, 1),
            worker=context.worker_id,
        )
        if pixels >= LARGE_REQUEST_PIXELS:
            release_memory()
        return responses

    def batch_limits(self) -> tuple[int, int]:
        """Most images and pixels the requests sharing one predict may hold: MAX_BATCH_SIZE and
        MAX_REQUEST_PIXELS; a handler with its own :meth:`infer` answers each request alone."""
        if type(self).infer is not BaseHandler.infer:
            return 1, 1
        return int(self.config["MAX_BATCH_SIZE"]), int(self.config["MAX_REQUEST_PIXELS"])

    def answer_waiting(self, waiting: dict[int, Request], outcomes: dict[int, Any]) -> int:
        """Predict the decoded requests (by event index) into ``outcomes``, one predict per
        threshold, and let their images go; return how many predicts it took."""
        groups: dict[float, dict[int, Request]] = {}
        for index, request in waiting.items():
            groups.setdefault(request.threshold, {})[index] = request
        for group in groups.values():
            outcomes.update(self.group_payloads(group))
        waiting.clear()
        return len(groups)

    def group_payloads(self, requests: Mapping[int, Request]) -> dict[int, Any]:
        """Each request's payload, or the exception that is its answer, from one predict.

        When the shared predict fails, each request is run alone so that the failure is
        answered only for the request that causes it. Out of memory is raised.
        """
        if len(requests) == 1:
            return {index: self.attempt(request) for index, request in requests.items()}
        first = next(iter(requests.values()))
        images = [image for request in requests.values() for image in request.images]
        try:
            predictions = self.checked_predict(images, first.threshold)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            return {index: self.attempt(request) for index, request in requests.items()}
        outcomes: dict[int, Any] = {}
        start = 0
        for index, request in requests.items():
            end = start + len(request.images)
            try:
                outcomes[index] = self.payload(request, predictions[start:end])
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise
                outcomes[index] = exc
            start = end
        return outcomes

    def attempt(self, request: Request) -> Any:
        """:meth:`infer` of one request, or the exception it raised (out of memory is raised)."""
        try:
            return self.infer(request)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            return exc

    # --- Nuclio entry points --------------------------------------------------------------------

    @classmethod
    def init_context(cls, context: Any) -> None:
        """Nuclio ``init_context``: validate settings, load the model, keep it in user_data."""
        started = time.perf_counter()
        try:
            handler = cls()
            handler.load()
        except ConfigError as exc:
            context.logger.error_with("start-up failed", function=cls.function_name, error=str(exc))
            raise
        context.user_data.handler = handler
        context.logger.info_with(
            "model loaded",
            function=cls.function_name,
            handler=cls.__name__,
            device=handler.device,
            seconds=round(time.perf_counter() - started, 2),
        )

    @staticmethod
    def handle_event(context: Any, event: Any) -> Response | list[Response]:
        """Nuclio ``handler``: answer an event with the handler ``init_context`` created; a
        list of events (the trigger's batch mode) gets a list of responses."""
        handler: BaseHandler[Any] = context.user_data.handler
        if isinstance(event, list):
            return handler.handle_batch(context, event)
        return handler.handle(context, event)

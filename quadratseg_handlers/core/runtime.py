"""The Nuclio runtime: the request cycle around any handler of the model contract.

Nuclio calls a bundle's ``init_context`` once per worker and its ``handler`` per event; the
generated ``main.py`` hands both to :func:`init_context` and :func:`handle_event`. A request
runs top to bottom in :func:`respond`:

1. the event's body parsed as JSON (or a raw image),
2. ``handler.parse_request``: its fields checked and its images decoded (limits, EXIF),
3. ``handler.infer``: the model, then the payload (shapes, or an image),
4. the payload as a 200 response; any failure as a JSON error: 4xx for a bad request
   (:class:`RequestError`), 503 when out of memory (the CUDA cache emptied), 500 with the
   error's first line otherwise (the traceback goes to the log).

In the HTTP trigger's batch mode Nuclio hands a list of events: :func:`respond_batch` runs
the same steps, sharing one predict between the requests its handler's limits allow.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from nuclio_sdk import Response

from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.core.contract import ModelHandler, RawAnswer
from quadratseg_handlers.core.memory import (
    LARGE_REQUEST_PIXELS,
    empty_cuda_cache,
    is_out_of_memory,
    release_memory,
)
from quadratseg_handlers.core.messages import describe_error, first_line
from quadratseg_handlers.core.request import Request, RequestError, parse_body
from quadratseg_handlers.cvat.answer import answer_json

RETRY_AFTER_S = 5
"""Seconds a 503 (out of memory) asks the client to wait before retrying (``Retry-After``)."""
WARNING_HEADER = "X-Quadratseg-Warning"
"""The header of a 200 answer that carries the handler's warnings about the request (why an
answer is empty: "no skeleton: ..."), so clients can show them; absent without warnings."""
MAX_WARNING_CHARS = 1000
"""The longest WARNING_HEADER value (a longer one is cut, ending in "...")."""


def init_context(handler_class: type[ModelHandler], context: Any) -> None:
    """Nuclio ``init_context``: validate settings, load the model, keep it in user_data."""
    started = time.perf_counter()
    try:
        handler = handler_class()
        handler.load()
    except ConfigError as exc:
        context.logger.error_with(
            "start-up failed", function=handler_class.function_name, error=str(exc)
        )
        raise
    context.user_data.handler = handler
    context.logger.info_with(
        "model loaded",
        function=handler_class.function_name,
        handler=handler_class.__name__,
        device=handler.device,
        seconds=round(time.perf_counter() - started, 2),
    )


def handle_event(context: Any, event: Any) -> Response | list[Response]:
    """Nuclio ``handler``: answer an event with the handler :func:`init_context` created; a
    list of events (the trigger's batch mode) gets a list of responses."""
    handler: ModelHandler = context.user_data.handler
    if isinstance(event, list):
        return respond_batch(handler, context, event)
    return respond(handler, context, event)


def respond(handler: ModelHandler, context: Any, event: Any) -> Response:
    """Answer one event: JSON in, JSON out, every failure a JSON error.

    After a large request (LARGE_REQUEST_PIXELS) the memory it took is given back, once
    its images are no longer referenced.
    """
    started = time.perf_counter()
    handler.request_logger = context.logger
    handler.request_notes = []
    pixels = 0
    try:
        request = event_request(handler, event)
        pixels = request.pixels
        payload = handler.infer(request)
        response = answer_response(context, payload, handler.request_notes)
    except Exception as exc:
        response = failure_response(handler, context, exc)
    else:
        context.logger.info_with(
            "handled request",
            function=handler.function_name,
            pixels=pixels,
            ms=round((time.perf_counter() - started) * 1000, 1),
            shapes=count_shapes(payload),
            worker=context.worker_id,
        )
    if pixels >= LARGE_REQUEST_PIXELS:
        release_memory()
    return response


def event_request(handler: ModelHandler, event: Any) -> Request:
    """The decoded request of one event (RequestError for a bad one)."""
    request = handler.parse_request(parse_body(event.body, event.content_type or ""))
    request.accept = header(event, "Accept")
    return request


def respond_batch(handler: ModelHandler, context: Any, events: Sequence[Any]) -> list[Response]:
    """Answer a batch of events (the HTTP trigger's ``batch`` mode): one response per event,
    in the events' order, each carrying its event's id (Nuclio routes it by that id).

    Each event is decoded on its own (a bad one gets its own 4xx). The valid ones are
    inferred together, in as few calls as the handler's :meth:`~ModelHandler.batch_limits`
    allow: events are decoded in order and the decoded ones inferred whenever the next would
    pass a limit, so a batch holds no more decoded pixels than a request may (plus the event
    being decoded). A failure is answered for the events it belongs to; out of memory answers
    503 to every event not answered yet.
    """
    started = time.perf_counter()
    handler.request_logger = context.logger
    handler.request_notes = []  # a batch's warnings are logged, not told apart per answer
    max_images, max_pixels = handler.batch_limits()
    outcomes: dict[int, Any] = {}
    waiting: dict[int, Request] = {}
    pixels = calls = 0
    try:
        for index, event in enumerate(events):
            try:
                request = event_request(handler, event)
            except Exception as exc:
                outcomes[index] = exc
                continue
            pixels += request.pixels
            held = [*waiting.values(), request]
            if waiting and (
                sum(len(r.images) for r in held) > max_images
                or sum(r.pixels for r in held) > max_pixels
            ):
                calls += infer_waiting(handler, waiting, outcomes)
            waiting[index] = request
        calls += infer_waiting(handler, waiting, outcomes)
    except Exception as exc:  # out of memory: the rest of the batch would fail alike
        outcomes.update({index: exc for index in range(len(events)) if index not in outcomes})
    responses = []
    for index, event in enumerate(events):
        outcome = outcomes[index]
        response = (
            failure_response(handler, context, outcome)
            if isinstance(outcome, Exception)
            else answer_response(context, outcome)
        )
        response.event_id = getattr(event, "id", None)
        responses.append(response)
    context.logger.info_with(
        "handled batch",
        function=handler.function_name,
        events=len(events),
        answered=sum(response.status_code == 200 for response in responses),
        predicts=calls,
        pixels=pixels,
        ms=round((time.perf_counter() - started) * 1000, 1),
        worker=context.worker_id,
    )
    if pixels >= LARGE_REQUEST_PIXELS:
        release_memory()
    return responses


def infer_waiting(
    handler: ModelHandler, waiting: dict[int, Request], outcomes: dict[int, Any]
) -> int:
    """Infer the decoded requests (by event index) into ``outcomes``, one call per threshold,
    and let their images go; return how many calls it took."""
    groups: dict[float, dict[int, Request]] = {}
    for index, request in waiting.items():
        groups.setdefault(request.threshold, {})[index] = request
    for group in groups.values():
        outcomes.update(zip(group, handler.infer_many(list(group.values())), strict=True))
    waiting.clear()
    return len(groups)


def header(event: Any, name: str) -> str:
    """An event's header by case-insensitive name; "" when absent."""
    headers = getattr(event, "headers", None) or {}
    for key, value in headers.items():
        if str(key).lower() == name.lower():
            return str(value)
    return ""


def count_shapes(payload: Any) -> int:
    """Shapes in a payload (for the request log line): 0 for an image answer."""
    if isinstance(payload, RawAnswer):
        return 0
    if isinstance(payload, list):
        return sum(count_shapes(item) if isinstance(item, list) else 1 for item in payload)
    return 1 if payload else 0


def answer_response(context: Any, payload: Any, notes: Sequence[str] = ()) -> Response:
    """The 200 response carrying a payload: JSON, or the file of a :class:`RawAnswer`; the
    handler's warnings (``notes``) in the WARNING_HEADER."""
    headers = {WARNING_HEADER: warning_header(notes)} if notes else {}
    if isinstance(payload, RawAnswer):
        return context.Response(
            body=payload.body, headers=headers, content_type=payload.content_type, status_code=200
        )
    return context.Response(
        body=answer_json(payload),
        headers=headers,
        content_type="application/json",
        status_code=200,
    )


def warning_header(notes: Sequence[str]) -> str:
    """The warnings as one header value: printable ASCII, joined by "; ", at most
    MAX_WARNING_CHARS (an HTTP header holds neither newlines nor arbitrary bytes)."""
    text = "; ".join(" ".join(note.split()) for note in notes)
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text if len(text) <= MAX_WARNING_CHARS else text[: MAX_WARNING_CHARS - 3] + "..."


def failure_response(handler: ModelHandler, context: Any, exc: Exception) -> Response:
    """The response to a request that failed: 4xx for a RequestError, 503 (cache emptied)
    when out of memory, else 500 with the first line (the traceback goes to the log)."""
    logger = context.logger
    if isinstance(exc, RequestError):
        logger.warn_with(
            "rejected request", status=exc.status, error=exc.message, worker=context.worker_id
        )
        return error_response(context, exc.status, exc.message)
    if is_out_of_memory(exc):
        empty_cuda_cache()
        logger.error_with("out of memory", error=first_line(exc, 300))
        return error_response(
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
    message = f"internal error in {type(handler).__name__}: {describe_error(exc)}"
    return error_response(context, 500, message)


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

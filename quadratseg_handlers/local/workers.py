"""Nuclio-style worker processes: one imported handler module and one context per process.

Nuclio's Python runtime runs every worker of a function as its own Python process: each
imports the handler module, calls ``init_context`` once, then serves one event at a time.
:class:`WorkerProcess` does the same with a ``spawn``-started process talking over a pipe, so
module globals, the model in ``context.user_data`` and any thread-unsafe state stay per
worker, CPU work outside the GIL-releasing parts runs in parallel, and a crashing worker
cannot take the server down. A worker says when it has taken an event, before its handler
runs, so an event handed to a worker that has just died goes to another one. The event a
handler sees is built as Nuclio builds it: the body is a dict only when the content type is
exactly ``application/json`` and the JSON parses, else bytes; what the handler returns is
encoded as Nuclio's wrapper encodes it. A list of requests (the trigger's batch mode) reaches
the handler as one list of events, as in Nuclio.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import multiprocessing
import os
import signal
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import nuclio_sdk
import nuclio_sdk.json_encoder
import nuclio_sdk.logger

from quadratseg_handlers.core.messages import describe_error
from quadratseg_handlers.deploy.compatibility import outdated_import


class WorkerError(Exception):
    """A worker that failed to start or died: one line saying which and why."""


class WorkerDied(WorkerError):
    """A worker process ended while it started, without a word: killed (the out-of-memory
    killer, a person) or crashed. Unlike an ``init_context`` that raised, it may start if
    tried again."""


class WorkerGone(WorkerError):
    """A worker ended before it took the event handed to it: the event may go to another."""


TOOK = "took"
"""What a worker sends the moment it has read an event, before its handler runs: a worker
that ends before saying it never saw the event, which can then go to another worker."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to run a function (picklable, sent to the child)."""

    module_path: str
    handler_function: str
    env: dict[str, str]
    function_name: str
    trigger_name: str = "http"


@dataclass
class EventMessage:
    """One HTTP request as the parent hands it to a worker."""

    body: bytes
    content_type: str
    method: str
    path: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Reply:
    """What the worker answers: status, content type, headers and the raw body."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


# --- in the worker process -----------------------------------------------------------------------


def _worker_logger(worker_id: int, function_name: str) -> nuclio_sdk.Logger:
    """Nuclio's own logger, human-readable on stderr, one logger name per worker."""
    logger = nuclio_sdk.Logger(logging.INFO, name=f"{function_name}.worker{worker_id}")
    logger.set_handler("stderr", sys.stderr, nuclio_sdk.logger.HumanReadableFormatter())
    return logger


def event_body(body: bytes, content_type: str) -> Any:
    """The body a Nuclio handler receives: parsed JSON for exactly ``application/json``.

    As in Nuclio's event decoding, a body that fails to parse for any reason (not UTF-8, not
    JSON, nested deeper than the recursion limit) reaches the handler as the raw bytes.
    """
    if content_type == "application/json":
        try:
            return json.loads(body.decode("utf-8"))
        except Exception:
            return body
    return body


def make_event(message: EventMessage, trigger_name: str) -> nuclio_sdk.Event:
    """A ``nuclio_sdk.Event`` from a request message."""
    return nuclio_sdk.Event(
        body=event_body(message.body, message.content_type),
        content_type=message.content_type,
        trigger=nuclio_sdk.TriggerInfo(kind="http", name=trigger_name),
        fields=dict(message.fields),
        headers=dict(message.headers),
        _id=str(uuid.uuid4()),
        method=message.method,
        path=message.path,
        size=len(message.body),
        timestamp=datetime.datetime.now(datetime.timezone.utc),
        url=message.url,
    )


def encode_output(output: Any) -> Reply:
    """Encode a handler's return value the way Nuclio's Python wrapper sends it.

    A list is a batch of responses to the wrapper: only its first element goes out (an empty
    list is an error in Nuclio's processor), so ``return shapes`` is a bug this exposes.
    """
    if isinstance(output, list):
        if not output:
            return Reply(
                500,
                "text/plain",
                b"handler returned an empty list: Nuclio takes a list as a batch of responses "
                b"and fails; return context.Response(body=json.dumps(shapes), ...)",
            )
        output = output[0]
    encoded = nuclio_sdk.Response.from_entrypoint_output(
        nuclio_sdk.json_encoder.Encoder().encode, output
    )
    body = encoded["body"]
    raw = (
        base64.b64decode(body)
        if encoded["body_encoding"] == "base64"
        else str(body).encode("utf-8")
    )
    headers = {str(k): str(v) for k, v in (encoded.get("headers") or {}).items()}
    return Reply(int(encoded["status_code"]), str(encoded["content_type"]), raw, headers)


def _raised(context: nuclio_sdk.Context) -> Reply:
    """The 500 Nuclio answers when the handler raised: the traceback as plain text."""
    text = traceback.format_exc()
    context.logger.error_with("handler raised", traceback=text)
    return Reply(500, "text/plain", text.encode("utf-8"))


def run_event(handler: Any, context: nuclio_sdk.Context, event: nuclio_sdk.Event) -> Reply:
    """Call the handler once; an exception becomes 500 with the traceback, as in Nuclio."""
    try:
        return encode_output(handler(context, event))
    except Exception:
        return _raised(context)


def run_batch(
    handler: Any, context: nuclio_sdk.Context, events: list[nuclio_sdk.Event]
) -> list[Reply]:
    """Call the handler once with a list of events, as Nuclio's batch mode does.

    Each event's reply is the response whose ``event_id`` is the event's id (Nuclio routes
    responses by that id and never answers an event none carries: here a 500 says so).
    """
    try:
        output = handler(context, events)
    except Exception:
        return [_raised(context)] * len(events)
    if not isinstance(output, list):
        text = (
            f"handler answered a batch with {type(output).__name__}: Nuclio's batch mode needs "
            "a list of responses, each with its event's event_id"
        )
        return [Reply(500, "text/plain", text.encode("utf-8"))] * len(events)
    by_id = {
        response.event_id: response
        for response in output
        if isinstance(response, nuclio_sdk.Response) and response.event_id
    }
    missing = Reply(
        500,
        "text/plain",
        b"no response of the batch carries this event's id (event_id): Nuclio never answers it",
    )
    return [encode_output(by_id[e.id]) if e.id in by_id else missing for e in events]


def worker_main(spec: WorkerSpec, worker_id: int, conn: Connection) -> None:
    """Entry point of a worker process: import, ``init_context``, then serve events."""
    # Ctrl-C reaches the whole process group: the server, not each worker, decides to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(spec.env)
    logger = _worker_logger(worker_id, spec.function_name)
    try:
        from quadratseg_handlers.local.harness import load_main

        module = load_main(spec.module_path)
        handler = getattr(module, spec.handler_function, None)
        if handler is None:
            raise WorkerError(f"{spec.module_path} defines no {spec.handler_function}()")
        context = nuclio_sdk.Context(
            logger=logger,
            platform=nuclio_sdk.Platform("local"),
            worker_id=str(worker_id),
            trigger=nuclio_sdk.TriggerInfo(kind="http", name=spec.trigger_name),
        )
        init_context = getattr(module, "init_context", None)
        if init_context is not None:
            init_context(context)
    except BaseException as exc:
        outdated = outdated_import(exc, Path(spec.module_path).parent)
        if outdated is not None:
            conn.send(("outdated", outdated))
        else:
            if not isinstance(exc, WorkerError):
                logger.error_with("init_context failed", traceback=traceback.format_exc())
            conn.send(("failed", describe_error(exc, 300)))
        conn.close()
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        conn.send(TOOK)
        if isinstance(message, list):
            events = [make_event(item, spec.trigger_name) for item in message]
            conn.send(run_batch(handler, context, events))
        else:
            conn.send(run_event(handler, context, make_event(message, spec.trigger_name)))
    conn.close()


# --- in the server process -----------------------------------------------------------------------


class WorkerProcess:
    """The server's handle on one worker process: start, wait until ready, call, stop."""

    def __init__(self, spec: WorkerSpec, worker_id: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.worker_id = worker_id
        self.ready = False
        self.conn, child = context.Pipe()
        # Daemonic: a worker can never outlive the server, whatever way the server ends.
        self.process = context.Process(
            target=worker_main,
            args=(spec, worker_id, child),
            name=f"quadratseg-worker-{worker_id}",
            daemon=True,
        )
        self.process.start()
        child.close()

    def died(self, doing: str) -> str:
        """``worker N exited (code C) DOING``, naming the signal that killed it, if one did."""
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        how = ""
        if code is not None and code < 0:
            try:
                how = f", killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f", killed by signal {-code}"
            if code == -signal.SIGKILL:
                how += " (as the out-of-memory killer does)"
        return f"worker {self.worker_id} exited (code {code}{how}) {doing}"

    def wait_ready(self, timeout: float) -> None:
        """Block until ``init_context`` has run; raise WorkerDied if the process ended without
        a word, WorkerError if ``init_context`` failed or did not finish in ``timeout``."""
        try:
            if not self.conn.poll(timeout):
                raise WorkerError(f"worker {self.worker_id} not ready after {timeout:.0f} s")
            state, detail = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerDied(self.died("during start-up")) from None
        if state == "outdated":  # the bundle's own one-line message: package it again
            raise WorkerError(detail)
        if state != "ready":
            raise WorkerError(f"worker {self.worker_id} failed to start: {detail}")
        self.ready = True

    def call(self, message: EventMessage | list[EventMessage]) -> Reply | list[Reply]:
        """Send one event (or a batch: a list, answered by a list) and block for the reply
        (the caller runs this in a thread). WorkerGone when the worker ended before it took
        the event (it may go to another), WorkerError when it ended while handling it."""
        try:
            self.conn.send(message)
            took = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerGone(self.died("before it took a request")) from None
        if took != TOOK:
            raise WorkerError(f"worker {self.worker_id} answered {took!r} to an event")
        try:
            reply: Reply | list[Reply] = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerError(self.died("while handling a request")) from None
        return reply

    def can_answer(self) -> bool:
        """Started (``init_context`` done) and still running."""
        return self.ready and self.process.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to finish, then terminate (and kill) it if it does not."""
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

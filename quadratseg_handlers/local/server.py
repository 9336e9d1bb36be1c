"""Serve a function bundle over HTTP the way Nuclio's HTTP trigger does, without Nuclio.

An aiohttp server hands each request to a free worker process (the pool and batcher of
:mod:`.pool`, the processes of :mod:`.workers`); the worker count, the wait for a free worker
(503 after ``workerAvailabilityTimeoutMilliseconds``), the body limit (413 above
``maxRequestBodySize``) and the trigger's ``batch`` mode (requests gathered and handed to one
worker as one list of events, as Nuclio does) come from the bundle's ``function.yaml``. A
bundle whose ``main.py`` imports modules this version lacks (packaged by 0.1) stops the
server before it listens, with one line (:mod:`~quadratseg_handlers.deploy.compatibility`).
Two GET paths are the server's own: ``/health`` and ``/spec`` (the CVAT labels, which
``quadratseg check`` and ``annotate`` use when no spec is given); every other request goes to
the function, whatever its method and path, as in Nuclio.

:class:`FunctionServer` is the asyncio object; :func:`serve_forever` runs it until Ctrl-C or
SIGTERM; :class:`BackgroundServer` runs it in a thread on a free loopback port for tests,
notebooks and the demo.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any

from aiohttp import web

from quadratseg_handlers.core.messages import byte_size, plural
from quadratseg_handlers.deploy.compatibility import outdated_bundle
from quadratseg_handlers.deploy.function_yaml import (
    DEFAULT_BATCH_TIMEOUT_MS,
    Batching,
    FunctionConfig,
    HttpTrigger,
    batch_option_problems,
)
from quadratseg_handlers.local import pool
from quadratseg_handlers.local.pool import Batcher, NoWorkerAvailable, WorkerPool
from quadratseg_handlers.local.workers import EventMessage, WorkerError, WorkerSpec

log = logging.getLogger(__name__)


class ServeError(Exception):
    """The server could not start: one line saying why."""


RETRY_AFTER_S = 1
"""Seconds a 503 (no free worker) asks the client to wait before retrying (``Retry-After``)."""

READ_TIMEOUT_S = 60.0
"""Seconds a client has to send a request's whole body once its headers arrived (else 408)."""


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode("utf-8"),
        content_type="application/json",
        headers=headers,
    )


def _busy_response(message: str) -> web.Response:
    """503 with a JSON error and ``Retry-After``, as for every overload the server answers."""
    return _json_response(503, {"error": message}, {"Retry-After": str(RETRY_AFTER_S)})


class FunctionServer:
    """One function served over HTTP by Nuclio-like workers (asyncio; see BackgroundServer)."""

    def __init__(
        self,
        function: FunctionConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 8010,
        workers: int | None = None,
        env: Mapping[str, str] | None = None,
        shutdown_timeout: float = 30.0,
        read_timeout: float = READ_TIMEOUT_S,
        buffered_bodies: int | None = None,
        batch_size: int | None = None,
        batch_timeout_ms: int | None = None,
    ) -> None:
        """``read_timeout``: seconds to receive a body (408 after); ``buffered_bodies``: most
        request bodies held in memory at once (default: twice what the workers take at once);
        ``batch_size`` and ``batch_timeout_ms``: the trigger's batch mode, over function.yaml's."""
        trigger: HttpTrigger = function.trigger
        if workers is not None:
            if workers < 1:
                raise ServeError(f"--workers must be at least 1, got {workers}")
            trigger = replace(trigger, workers=workers)
        trigger = replace(trigger, batch=_batching(trigger.batch, batch_size, batch_timeout_ms))
        self.function = replace(function, trigger=trigger, env={**function.env, **(env or {})})
        self.host = host
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self.read_timeout = read_timeout
        per_worker = trigger.batch.size if trigger.batch is not None else 1
        self.buffered_bodies = buffered_bodies or 2 * trigger.workers * per_worker
        self.body_slots = asyncio.Semaphore(self.buffered_bodies)
        self.pool = WorkerPool(
            WorkerSpec(
                module_path=str(self.function.module_path),
                handler_function=self.function.handler_function,
                env=self.function.env,
                function_name=self.function.name,
                trigger_name=trigger.name,
            ),
            trigger.workers,
            trigger.availability_timeout_ms / 1000.0,
            self.function.readiness_timeout_s,
        )
        self.batcher = Batcher(self.pool, trigger.batch) if trigger.batch is not None else None
        self.runner: web.AppRunner | None = None
        self.started = 0.0
        self.requests = 0

    @property
    def url(self) -> str:
        """The base URL clients post to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def describe(self) -> str:
        """One line: the function, its workers and limits, the URL."""
        trigger = self.function.trigger
        batches = (
            ""
            if trigger.batch is None
            else f", batches of up to {plural(trigger.batch.size, 'request')} "
            f"gathered for {trigger.batch.timeout_ms} ms"
        )
        return (
            f"serving {self.function.name} on {self.url} with "
            f"{plural(trigger.workers, 'worker')} (max body {byte_size(trigger.max_body_size)}, "
            f"503 after {trigger.availability_timeout_ms} ms without a free worker{batches})"
        )

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self.function.trigger.max_body_size)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self) -> None:
        """Listen, then start the workers; raise ServeError with a one-line reason on failure.

        Listening first makes a taken port fail at once, not after the models have loaded;
        requests that arrive meanwhile wait for a worker like any other.
        """
        if not self.function.module_path.is_file():
            raise ServeError(f"{self.function.module_path}: handler module not found")
        outdated = outdated_bundle(self.function.folder)
        if outdated is not None:
            raise ServeError(outdated)
        self.runner = web.AppRunner(
            self._app(), access_log=None, shutdown_timeout=self.shutdown_timeout
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            reason = str(exc).rsplit(": ", 1)[-1]
            raise ServeError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        self.port = int(self.runner.addresses[0][1])
        try:
            await self.pool.start()
        except WorkerError as exc:
            await self.runner.cleanup()
            raise ServeError(str(exc)) from None
        if self.batcher is not None:
            self.batcher.start()
        self.started = time.monotonic()

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish (up to shutdown_timeout), stop workers."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.batcher is not None:
            await self.batcher.stop()
        await self.pool.stop()

    def _health(self) -> web.Response:
        """200 while starting or while a worker lives; 503 once none does."""
        alive = self.pool.alive() if self.started else 0
        status = "starting"
        if self.started:
            status = "ok" if alive == self.pool.count else "degraded" if alive else "down"
        return _json_response(
            503 if status == "down" else 200,
            {
                "status": status,
                "function": self.function.name,
                "workers": self.pool.count,
                "alive": alive,
                "busy": self.pool.busy,
                "requests": self.requests,
                "uptime_s": round(time.monotonic() - self.started, 1) if self.started else 0.0,
            },
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path == "/health":
            return self._health()
        if request.method == "GET" and request.path == "/spec":
            return _json_response(200, self.function.labels)
        started = time.perf_counter()
        limit = self.function.trigger.max_body_size
        if request.content_length is not None and request.content_length > limit:
            return self._log(request, started, self._too_large(request.content_length), None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pool.availability_timeout_s
        try:
            await asyncio.wait_for(self.body_slots.acquire(), self.pool.availability_timeout_s)
        except asyncio.TimeoutError:
            return self._log(request, started, self._no_worker(), None)
        try:
            response, worker = await self._forward(request, deadline)
        finally:
            self.body_slots.release()
        return self._log(request, started, response, worker)

    def _no_worker(self) -> web.Response:
        timeout = self.function.trigger.availability_timeout_ms
        return _busy_response(
            f"all {self.pool.count} workers busy for {timeout} ms "
            "(workerAvailabilityTimeoutMilliseconds); retry later"
        )

    async def _forward(
        self, request: web.Request, deadline: float
    ) -> tuple[web.Response, int | None]:
        """Read the body (within the read timeout) and hand it to a worker before ``deadline``."""
        try:
            body = await asyncio.wait_for(request.read(), self.read_timeout)
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(None), None
        except asyncio.TimeoutError:
            response = _json_response(
                408, {"error": f"request body not received within {self.read_timeout:g} s"}
            )
            # Sent now and the connection closed: aiohttp would otherwise linger, reading
            # what is left of the body for another 10 s.
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            if request.protocol is not None:
                request.protocol.force_close()
            return response, None
        message = EventMessage(
            body=body,
            content_type=request.headers.get("Content-Type", ""),
            method=request.method,
            path=request.path,
            url=str(request.url),
            headers=dict(request.headers),
            fields=dict(request.query),
        )
        self.requests += 1
        try:
            if self.batcher is not None:
                reply, worker = await self.batcher.call(message, deadline)
            else:
                reply, worker = await self.pool.call(message, deadline)
        except NoWorkerAvailable:
            return self._no_worker(), None
        headers = dict(reply.headers)
        headers["Content-Type"] = reply.content_type
        return web.Response(status=reply.status, body=reply.body, headers=headers), worker

    def _too_large(self, length: int | None) -> web.Response:
        trigger = self.function.trigger
        size = f"{byte_size(length)} " if length is not None else ""
        return _json_response(
            413,
            {
                "error": f"request body {size}over the limit of {byte_size(trigger.max_body_size)} "
                f"(triggers.{trigger.name}.attributes.maxRequestBodySize in function.yaml)"
            },
        )

    def _log(
        self, request: web.Request, started: float, response: web.Response, worker: int | None
    ) -> web.Response:
        elapsed_ms = (time.perf_counter() - started) * 1000
        where = f" worker {worker}" if worker is not None else ""
        log.info(
            "%s %s %d %s %.0f ms%s",
            request.method,
            request.path_qs,
            response.status,
            byte_size(len(response.body) if isinstance(response.body, bytes) else 0),
            elapsed_ms,
            where,
        )
        return response


def _batching(
    declared: Batching | None, size: int | None, timeout_ms: int | None
) -> Batching | None:
    """The batch mode to serve: function.yaml's, with ``--batch-size``/``--batch-timeout``
    over it; ServeError with one line when the options are wrong."""
    if size is None and timeout_ms is None:
        return declared
    if size is None and declared is None:
        raise ServeError("--batch-timeout needs --batch-size (the requests per batch)")
    base = declared or Batching(1, DEFAULT_BATCH_TIMEOUT_MS)
    batch = Batching(
        base.size if size is None else size, base.timeout_ms if timeout_ms is None else timeout_ms
    )
    problems = batch_option_problems(batch.size, batch.timeout_ms)
    if problems:
        raise ServeError("; ".join(problems))
    return batch


def _configure_logging() -> None:
    """Request lines and the pool's worker replacements on stderr, in the style of the
    workers' Nuclio logger."""
    for logger in (log, pool.log):
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(
                logging.Formatter("Server> %(asctime)s [%(levelname)s] %(message)s")
            )
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def serve_forever(server: FunctionServer) -> None:
    """Run until Ctrl-C or SIGTERM, then shut down cleanly (in-flight requests finish first)."""
    _configure_logging()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        print(server.describe() + "; Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            print("stopping: finishing requests in flight, stopping workers", file=sys.stderr)
            await server.stop()

    asyncio.run(main())


class BackgroundServer:
    """A :class:`FunctionServer` on its own event loop thread, for tests, notebooks and demos.

    ``with BackgroundServer(config) as url: ...`` starts the workers, listens on a free
    loopback port and stops everything on exit.
    """

    def __init__(
        self,
        function: FunctionConfig,
        *,
        workers: int | None = None,
        env: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_requests: bool = False,
        read_timeout: float = READ_TIMEOUT_S,
        buffered_bodies: int | None = None,
        batch_size: int | None = None,
        batch_timeout_ms: int | None = None,
    ) -> None:
        self.server = FunctionServer(
            function,
            host=host,
            port=port,
            workers=workers,
            env=env,
            read_timeout=read_timeout,
            buffered_bodies=buffered_bodies,
            batch_size=batch_size,
            batch_timeout_ms=batch_timeout_ms,
        )
        self.log_requests = log_requests
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.server.stop()

        asyncio.run(main())

    def start(self) -> str:
        """Start and return the URL; raise ServeError if the function cannot start."""
        if self.log_requests:
            _configure_logging()
        self._thread = threading.Thread(target=self._run, name="quadratseg-serve", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.url

    def stop(self) -> None:
        """Stop listening and stop the workers; wait until done."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

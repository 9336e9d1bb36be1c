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
the function, whatever its method and path, as in Nuclio. The server's own limits (header and
body time-outs, body memory in bytes, start-up retries, shutdown time) are
:class:`~.limits.ServeSettings`, from the environment.

:class:`FunctionServer` is the asyncio object; :func:`serve_forever` runs it until Ctrl-C or
SIGTERM (or until a worker cannot be started again); :class:`BackgroundServer` runs it in a
thread on a free loopback port for tests, notebooks and the demo.
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
from quadratseg_handlers.deploy.function_yaml import FunctionConfig, HttpTrigger
from quadratseg_handlers.local import pool
from quadratseg_handlers.local.limits import (
    BodyMemory,
    BodyTimeout,
    BodyTooLarge,
    NoBodyMemory,
    ReadingStopped,
    ServeSettings,
)
from quadratseg_handlers.local.pool import (
    Batcher,
    NoWorkerAvailable,
    WorkerPool,
    WorkersGaveUp,
    batch_mode,
)
from quadratseg_handlers.local.workers import EventMessage, Reply, WorkerError, WorkerSpec

log = logging.getLogger(__name__)


class ServeError(Exception):
    """The server could not start, or stopped because a worker could not be started: one
    line saying why, and the exit code ``quadratseg serve`` ends with."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


WORKERS_LOST_EXIT_CODE = 1
"""``quadratseg serve``'s exit code when a worker kept dying while it started (or a dead
worker's replacement could not start): the function ran and failed, as Nuclio's processor
exits for its container to be restarted. Bad bundles and options are 2, as everywhere."""

RETRY_AFTER_S = 1
"""Seconds a 503 (no free worker) asks the client to wait before retrying (``Retry-After``)."""

STOP_RESERVE_S = 3.0
"""Seconds of the shutdown time kept for stopping the workers after the last answer."""


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


class _Answered(Exception):
    """The request is answered before it reaches a worker (408, 413, 503)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


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
        settings: ServeSettings | None = None,
        batch_size: int | None = None,
        batch_timeout_ms: int | None = None,
    ) -> None:
        """``settings``: the server's limits (:class:`~.limits.ServeSettings`; default: read
        from this process's environment); ``batch_size`` and ``batch_timeout_ms``: the
        trigger's batch mode, over function.yaml's."""
        trigger: HttpTrigger = function.trigger
        if workers is not None:
            if workers < 1:
                raise ServeError(f"--workers must be at least 1, got {workers}")
            trigger = replace(trigger, workers=workers)
        try:
            batch = batch_mode(trigger.batch, batch_size, batch_timeout_ms)
        except ValueError as exc:
            raise ServeError(str(exc)) from None
        trigger = replace(trigger, batch=batch)
        self.function = replace(function, trigger=trigger, env={**function.env, **(env or {})})
        self.host = host
        self.port = port
        self.settings = settings if settings is not None else ServeSettings.load()
        per_worker = trigger.batch.size if trigger.batch is not None else 1
        try:
            memory = self.settings.body_memory_for(
                trigger.workers, per_worker, trigger.max_body_size
            )
        except ValueError as exc:
            raise ServeError(str(exc)) from None
        self.body_memory = BodyMemory(memory)
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
            self.settings,
        )
        self.batcher = Batcher(self.pool, trigger.batch) if trigger.batch is not None else None
        self.runner: web.AppRunner | None = None
        self.started = 0.0
        self.requests = 0
        self.closing = False
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._abandon: asyncio.Future[None] | None = None

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
        loop = asyncio.get_running_loop()
        self._abandon = loop.create_future()
        # aiohttp closes a connection whose request has not fully arrived when its keep-alive
        # timer fires; the timer runs from the connection's start (and from each answer), so
        # it is the time a client has to send its headers.
        self.runner = web.AppRunner(
            self._app(),
            access_log=None,
            keepalive_timeout=self.settings.serve_header_timeout,
            shutdown_timeout=1.0,  # by then every request is answered (see stop)
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
            code = WORKERS_LOST_EXIT_CODE if isinstance(exc, WorkersGaveUp) else 2
            raise ServeError(str(exc), code) from None
        if self.batcher is not None:
            self.batcher.start()
        self.started = time.monotonic()

    def failure(self) -> ServeError | None:
        """Why the server must stop on its own (a worker that cannot be started), if so."""
        if self.pool.failure is None:
            return None
        return ServeError(str(self.pool.failure), WORKERS_LOST_EXIT_CODE)

    async def stop(self) -> None:
        """Stop within ``serve_shutdown_timeout``: stop listening; requests waiting for a
        worker (or still sending their body) get 503 at once; requests in flight get their
        answer until STOP_RESERVE_S before the end, then 503; then the workers stop."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.settings.serve_shutdown_timeout
        self.closing = True
        if self.runner is not None:
            for site in list(self.runner.sites):
                await site.stop()
        self.body_memory.stop_reading()
        self.pool.close("the server is stopping; retry later")
        if self.batcher is not None:
            self.batcher.close()
        try:
            await asyncio.wait_for(
                self._drained.wait(), max(ends - STOP_RESERVE_S - loop.time(), 0.0)
            )
        except asyncio.TimeoutError:
            self.hurry()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.batcher is not None:
            await self.batcher.stop()
        await self.pool.stop(timeout=min(max(ends - loop.time() - 2.5, 0.1), 5.0))

    def hurry(self) -> None:
        """Answer every request in flight 503 now (a second Ctrl-C, or the shutdown time up)."""
        if self._abandon is not None and not self._abandon.done():
            self._abandon.set_result(None)

    def _health(self) -> web.Response:
        """200 while starting or while a worker can answer; 503 once none can."""
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
        if self.closing:
            return self._log(request, started, _busy_response("the server is stopping"), None)
        self._in_flight += 1
        self._drained.clear()
        try:
            response, worker = await self._forward(request)
        except _Answered as answered:
            response, worker = answered.response, None
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.set()
        return self._log(request, started, response, worker)

    def _no_worker(self, reason: str | None = None) -> web.Response:
        if reason is not None:
            return _busy_response(reason)
        timeout = self.function.trigger.availability_timeout_ms
        return _busy_response(
            f"all {self.pool.count} workers busy for {timeout} ms "
            "(workerAvailabilityTimeoutMilliseconds); retry later"
        )

    async def _forward(self, request: web.Request) -> tuple[web.Response, int | None]:
        """Read the body and hand it to a worker within the availability timeout."""
        deadline = asyncio.get_running_loop().time() + self.pool.availability_timeout_s
        body = await self._read_body(request, deadline)
        try:
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
            return await self._call(message, deadline)
        finally:
            await self.body_memory.give(len(body))

    async def _call(
        self, message: EventMessage, deadline: float
    ) -> tuple[web.Response, int | None]:
        """The worker's answer, or 503 when none is free in time or the server gives up
        waiting for it while stopping."""
        call: asyncio.Future[tuple[Reply, int]] = asyncio.ensure_future(
            self.batcher.call(message, deadline)
            if self.batcher is not None
            else self.pool.call(message, deadline)
        )
        assert self._abandon is not None
        either: list[asyncio.Future[Any]] = [call, self._abandon]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the client left: the worker finishes its event unheard
            call.cancel()
            raise
        if not call.done():
            call.cancel()
            return _busy_response(
                "the server stopped before the function answered "
                f"(SERVE_SHUTDOWN_TIMEOUT={self.settings.serve_shutdown_timeout:g} s); "
                "retry later"
            ), None
        try:
            reply, worker = call.result()
        except NoWorkerAvailable as exc:
            return self._no_worker(str(exc) if exc.args and exc.args[0] else None), None
        headers = dict(reply.headers)
        headers["Content-Type"] = reply.content_type
        return web.Response(status=reply.status, body=reply.body, headers=headers), worker

    async def _read_body(self, request: web.Request, deadline: float) -> bytes:
        """The whole body (:meth:`~.limits.BodyMemory.read`); _Answered with 408, 413 or 503
        when it cannot be read."""
        try:
            return await self.body_memory.read(
                request.content,
                self.function.trigger.max_body_size,
                self.settings.serve_body_timeout,
                deadline,
            )
        except BodyTooLarge:
            raise _Answered(self._too_large(None)) from None
        except BodyTimeout:
            error = f"request body not received within {self.settings.serve_body_timeout:g} s"
            response = _json_response(408, {"error": error})
        except NoBodyMemory:
            response = self._no_body_memory()
        except ReadingStopped:
            response = _busy_response("the server is stopping; retry later")
        raise _Answered(await self._closed(request, response))

    def _no_body_memory(self) -> web.Response:
        timeout = self.function.trigger.availability_timeout_ms
        return _busy_response(
            f"request bodies fill the server's {byte_size(self.body_memory.limit)} of body "
            f"memory (SERVE_BODY_MEMORY) for {timeout} ms; retry later"
        )

    @staticmethod
    async def _closed(request: web.Request, response: web.Response) -> web.Response:
        """Send ``response`` now and close the connection: aiohttp would otherwise linger,
        reading what is left of the body for another 10 s."""
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        if request.protocol is not None:
            request.protocol.force_close()
        return response

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


def serve_forever(server: FunctionServer) -> int:
    """Run until Ctrl-C or SIGTERM, then shut down within the shutdown time; return the
    signal that stopped it. A second signal answers the requests in flight 503 at once.
    ServeError when it cannot start, or when a worker cannot be started again."""
    _configure_logging()

    async def main() -> int:
        received: list[int] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(number: int) -> None:
            if received:
                server.hurry()
            received.append(number)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        stopped = loop.create_task(stop.wait())
        starting = loop.create_task(server.start())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a ServeError ends here, before anything is printed
            print(server.describe() + "; Ctrl-C to stop", file=sys.stderr, flush=True)
            failed = loop.create_task(server.pool.failed.wait())
            await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            failed.cancel()
        else:  # stopped while the workers load
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        stopped.cancel()
        print("stopping: finishing requests in flight, stopping workers", file=sys.stderr)
        await server.stop()
        failure = server.failure()
        if failure is not None:
            raise failure
        return received[0]

    return asyncio.run(main())


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
        settings: ServeSettings | None = None,
        batch_size: int | None = None,
        batch_timeout_ms: int | None = None,
    ) -> None:
        self.server = FunctionServer(
            function,
            host=host,
            port=port,
            workers=workers,
            env=env,
            settings=settings,
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
            failed = asyncio.ensure_future(self.server.pool.failed.wait())
            stopped = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                failed.cancel()
                stopped.cancel()
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

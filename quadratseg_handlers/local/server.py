"""Serve a function bundle over HTTP the way Nuclio's HTTP trigger does, without Nuclio.

An aiohttp server hands each request to a free worker process (:mod:`.workers`); the worker
count, the wait for a free worker (503 after ``workerAvailabilityTimeoutMilliseconds``), the
body limit (413 above ``maxRequestBodySize``) and the trigger's ``batch`` mode (requests
gathered and handed to one worker as one list of events, as Nuclio does) come from the
bundle's ``function.yaml``. Two GET paths are the server's own: ``/health`` and ``/spec`` (the
CVAT labels, which ``quadratseg check`` and ``annotate`` use when no spec is given); every
other request goes to the function, whatever its method and path, as in Nuclio.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import TracebackType
from typing import Any

from aiohttp import web

from quadratseg_handlers.core.messages import byte_size, plural
from quadratseg_handlers.deploy.function_yaml import (
    DEFAULT_BATCH_TIMEOUT_MS,
    Batching,
    FunctionConfig,
    HttpTrigger,
    batch_option_problems,
)
from quadratseg_handlers.local.workers import (
    EventMessage,
    Reply,
    WorkerError,
    WorkerProcess,
    WorkerSpec,
)

log = logging.getLogger(__name__)


class ServeError(Exception):
    """The server could not start: one line saying why."""


class NoWorkerAvailable(Exception):
    """Every worker stayed busy for the whole availability timeout."""


RETRY_AFTER_S = 1
"""Seconds a 503 (no free worker) asks the client to wait before retrying (``Retry-After``)."""

READ_TIMEOUT_S = 60.0
"""Seconds a client has to send a request's whole body once its headers arrived (else 408)."""

WATCH_INTERVAL_S = 0.5
"""How often idle workers are checked for life; a dead one is replaced, never sent a request."""


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


def _idle_death(worker: WorkerProcess) -> str:
    return f"worker {worker.worker_id} exited (code {worker.process.exitcode}) while idle"


class WorkerPool:
    """Idle workers in a queue: a request takes one, waits at most the availability timeout."""

    def __init__(
        self,
        spec: WorkerSpec,
        count: int,
        availability_timeout_s: float,
        readiness_timeout_s: float,
    ) -> None:
        self.spec = spec
        self.count = count
        self.availability_timeout_s = availability_timeout_s
        self.readiness_timeout_s = readiness_timeout_s
        self.workers: list[WorkerProcess] = []
        self.idle: asyncio.Queue[WorkerProcess] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=count + 1, thread_name_prefix="worker-io")
        self.busy = 0
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every worker at once and wait until all ran ``init_context``."""
        loop = asyncio.get_running_loop()
        self.workers = [WorkerProcess(self.spec, index) for index in range(self.count)]
        try:
            await asyncio.gather(
                *(
                    loop.run_in_executor(self.executor, worker.wait_ready, self.readiness_timeout_s)
                    for worker in self.workers
                )
            )
        except WorkerError as exc:
            await self.stop()
            raise ServeError(str(exc)) from None
        for worker in self.workers:
            self.idle.put_nowait(worker)
        self._watch = asyncio.get_running_loop().create_task(self._watch_idle())

    def alive(self) -> int:
        """How many workers are running (a dead one counts until its replacement is ready)."""
        return sum(worker.process.is_alive() for worker in self.workers)

    async def _watch_idle(self) -> None:
        """Replace idle workers that died (killed, crashed) before a request is sent to them."""
        while not self.stopping:
            await asyncio.sleep(WATCH_INTERVAL_S)
            waiting = [self.idle.get_nowait() for _ in range(self.idle.qsize())]
            for worker in waiting:
                if worker.process.is_alive():
                    self.idle.put_nowait(worker)
                else:
                    self._start_replacement(worker, _idle_death(worker))

    async def _take(self, deadline: float) -> WorkerProcess:
        """A live idle worker, waiting until ``deadline`` (loop time) at most."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                worker = await asyncio.wait_for(self.idle.get(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise NoWorkerAvailable from None
            if worker.process.is_alive():
                return worker
            self._start_replacement(worker, _idle_death(worker))

    async def call(self, message: EventMessage, deadline: float | None = None) -> tuple[Reply, int]:
        """Run one event on a free worker; return the reply and the worker's id.

        ``deadline`` (loop time) ends the wait for a free worker; by default the availability
        timeout from now.
        """
        replies, worker = await self._run(message, 1, deadline)
        return replies[0], worker

    async def call_batch(
        self, messages: list[EventMessage], deadline: float | None = None
    ) -> tuple[list[Reply], int]:
        """Run a batch of events as one list on a free worker: one reply per event, in order."""
        return await self._run(messages, len(messages), deadline)

    async def _run(
        self, payload: EventMessage | list[EventMessage], count: int, deadline: float | None
    ) -> tuple[list[Reply], int]:
        loop = asyncio.get_running_loop()
        worker = await self._take(
            loop.time() + self.availability_timeout_s if deadline is None else deadline
        )
        self.busy += 1
        future = asyncio.get_running_loop().run_in_executor(self.executor, worker.call, payload)
        future.add_done_callback(lambda done: self._finished(worker, done))
        try:
            # Shielded: if the request is cancelled, the worker still finishes its event and
            # is freed by _finished only then.
            reply = await asyncio.shield(future)
        except WorkerError as exc:
            error = json.dumps({"error": str(exc)}).encode("utf-8")
            return [Reply(500, "application/json", error)] * count, worker.worker_id
        return (reply if isinstance(reply, list) else [reply]), worker.worker_id

    def _finished(self, worker: WorkerProcess, future: asyncio.Future[Any]) -> None:
        """Put a worker back once it has answered; start a replacement if it died."""
        self.busy -= 1
        problem = None if future.cancelled() else future.exception()
        if isinstance(problem, WorkerError):
            self._start_replacement(worker, str(problem))
        else:
            self.idle.put_nowait(worker)

    def _start_replacement(self, dead: WorkerProcess, reason: str) -> None:
        """Log why a worker is gone and start its replacement in the background."""
        log.error("%s; starting a new one", reason)
        task = asyncio.get_running_loop().create_task(self._replace(dead))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self, dead: WorkerProcess) -> None:
        """Start a worker with the dead one's id in its place (unless the pool is stopping)."""
        loop = asyncio.get_running_loop()
        dead.stop(timeout=0.1)
        if self.stopping:
            return
        fresh = WorkerProcess(self.spec, dead.worker_id)
        self.workers[self.workers.index(dead)] = fresh
        try:
            await loop.run_in_executor(self.executor, fresh.wait_ready, self.readiness_timeout_s)
        except WorkerError as exc:
            log.error("could not replace worker %d: %s", dead.worker_id, exc)
            return
        if not self.stopping:
            self.idle.put_nowait(fresh)

    async def stop(self) -> None:
        """Stop every worker (each finishes its current event first, within a few seconds)."""
        self.stopping = True
        if self._watch is not None:
            self._watch.cancel()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, worker.stop) for worker in self.workers))
        self.executor.shutdown(wait=False)


Waiting = tuple[EventMessage, float, "asyncio.Future[tuple[Reply, int]]"]
"""A request waiting for its batch: the event, its deadline for a worker, its answer."""


class Batcher:
    """Nuclio's batch mode: requests gathered until ``size`` of them or ``timeout_ms`` after
    the first, then handed to one worker as one list of events; each request gets its reply."""

    def __init__(self, pool: WorkerPool, batching: Batching) -> None:
        self.pool = pool
        self.batching = batching
        self.queue: asyncio.Queue[Waiting] = asyncio.Queue()
        self._collector: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start gathering (on the running loop)."""
        self._collector = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Stop gathering; batches already handed to workers finish."""
        if self._collector is not None:
            self._collector.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def call(self, message: EventMessage, deadline: float) -> tuple[Reply, int]:
        """Queue an event for the next batch; its reply and the worker's id once answered."""
        future: asyncio.Future[tuple[Reply, int]] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((message, deadline, future))
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        timeout_s = self.batching.timeout_ms / 1000.0
        while True:
            batch = [await self.queue.get()]
            closes = loop.time() + timeout_s
            while len(batch) < self.batching.size and loop.time() < closes:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), closes - loop.time()))
                except asyncio.TimeoutError:
                    break
            task = loop.create_task(self._dispatch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, batch: list[Waiting]) -> None:
        """Run a batch on a free worker (waiting until its earliest deadline at most)."""
        futures = [future for _, _, future in batch]
        try:
            replies, worker = await self.pool.call_batch(
                [message for message, _, _ in batch], min(deadline for _, deadline, _ in batch)
            )
        except NoWorkerAvailable:
            for future in futures:
                if not future.done():
                    future.set_exception(NoWorkerAvailable())
            return
        for future, reply in zip(futures, replies, strict=True):
            if not future.done():  # a request whose client left is cancelled
                future.set_result((reply, worker))


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
        except ServeError:
            await self.runner.cleanup()
            raise
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
    """Request lines on stderr, in the style of the workers' Nuclio logger."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("Server> %(asctime)s [%(levelname)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


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

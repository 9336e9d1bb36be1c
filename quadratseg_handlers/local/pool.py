"""The worker processes of a served function: a pool that hands events to free workers and
replaces dead ones, and the batcher of Nuclio's batch mode.

:class:`WorkerPool` keeps the idle :class:`~.workers.WorkerProcess` objects in a queue: a
request takes one and waits at most the trigger's availability timeout (else
:class:`NoWorkerAvailable`). A worker that dies, idle or mid-request, is replaced with one of
the same id; one that dies while it starts (killed while loading, out of memory) is started
again after a back-off, and past ``SERVE_START_RETRIES`` deaths in a row the pool gives up
(:attr:`WorkerPool.failed`): the server stops with the reason, as Nuclio restarts a function
whose worker cannot start. An event handed to a worker that died before taking it goes to
another worker. :class:`Batcher` gathers requests into the lists of events the trigger's
``batch`` mode hands one worker. :mod:`.server` puts HTTP in front of both.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from quadratseg_handlers.core.messages import plural
from quadratseg_handlers.deploy.function_yaml import (
    DEFAULT_BATCH_TIMEOUT_MS,
    Batching,
    batch_option_problems,
)
from quadratseg_handlers.local.limits import ServeSettings, start_backoff
from quadratseg_handlers.local.workers import (
    EventMessage,
    Reply,
    WorkerDied,
    WorkerError,
    WorkerGone,
    WorkerProcess,
    WorkerSpec,
)

log = logging.getLogger(__name__)


class NoWorkerAvailable(Exception):
    """No worker took the request in time: every worker stayed busy for the whole
    availability timeout, or the pool is stopping (the message says why)."""


class WorkersGaveUp(WorkerError):
    """A worker could not be (re)started: it kept dying while it started, or its
    ``init_context`` failed; the server stops."""


WATCH_INTERVAL_S = 0.5
"""How often idle workers are checked for life; a dead one is replaced, never sent a request."""


def _idle_death(worker: WorkerProcess) -> str:
    return worker.died("while idle")


class WorkerPool:
    """Idle workers in a queue: a request takes one, waits at most the availability timeout."""

    def __init__(
        self,
        spec: WorkerSpec,
        count: int,
        availability_timeout_s: float,
        readiness_timeout_s: float,
        settings: ServeSettings | None = None,
    ) -> None:
        self.spec = spec
        self.count = count
        self.availability_timeout_s = availability_timeout_s
        self.readiness_timeout_s = readiness_timeout_s
        self.settings = settings or ServeSettings()
        self.workers: list[WorkerProcess] = []
        # None in the queue: the pool is closed; each waiter that takes it puts it back.
        self.idle: asyncio.Queue[WorkerProcess | None] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=count + 1, thread_name_prefix="worker-io")
        self.busy = 0
        self.stopping = False
        self.closed_reason: str | None = None
        self.failed = asyncio.Event()
        self.failure: WorkerError | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every worker at once and wait until all ran ``init_context`` (a worker that
        dies meanwhile is started again, see :meth:`_ready`); on a WorkerError stop them all
        and raise it (WorkersGaveUp when one kept dying past the retries)."""
        loop = asyncio.get_running_loop()
        self.workers = [WorkerProcess(self.spec, index) for index in range(self.count)]
        starting = [loop.create_task(self._ready(index)) for index in range(self.count)]
        try:
            await asyncio.gather(*starting)
        except BaseException:
            for task in starting:
                task.cancel()
            await self.stop()
            raise
        for worker in self.workers:
            self.idle.put_nowait(worker)
        self._watch = loop.create_task(self._watch_idle())

    async def _ready(self, index: int) -> None:
        """Wait until worker ``index`` has started; start it again after a back-off each time
        it dies meanwhile, up to ``serve_start_retries`` times in a row."""
        loop = asyncio.get_running_loop()
        deaths = 0
        while True:
            worker = self.workers[index]
            try:
                await loop.run_in_executor(
                    self.executor, worker.wait_ready, self.readiness_timeout_s
                )
                return
            except WorkerDied as exc:
                deaths += 1
                retries = self.settings.serve_start_retries
                if deaths > retries:
                    raise WorkersGaveUp(
                        f"{exc}, {plural(deaths, 'time')} in a row; giving up "
                        f"(SERVE_START_RETRIES={retries})"
                    ) from None
                delay = start_backoff(self.settings, deaths)
                log.error("%s; starting it again in %.1f s (%d of %d)", exc, delay, deaths, retries)
                await asyncio.sleep(delay)
            await loop.run_in_executor(self.executor, worker.stop, 0.1)
            if self.stopping:
                raise WorkerError("the pool is stopping")
            self.workers[index] = WorkerProcess(self.spec, index)

    def alive(self) -> int:
        """How many workers can answer: started and running (a dead one, or its replacement
        while it loads, does not count)."""
        return sum(worker.can_answer() for worker in self.workers)

    async def _watch_idle(self) -> None:
        """Replace idle workers that died (killed, crashed) before a request is sent to them."""
        while not self.stopping:
            await asyncio.sleep(WATCH_INTERVAL_S)
            waiting = [self.idle.get_nowait() for _ in range(self.idle.qsize())]
            for worker in waiting:
                if worker is None or worker.process.is_alive():
                    self.idle.put_nowait(worker)
                else:
                    self._start_replacement(worker, _idle_death(worker))

    async def _take(self, deadline: float) -> WorkerProcess:
        """A live idle worker, waiting until ``deadline`` (loop time) at most."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                worker = self.idle.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    worker = await asyncio.wait_for(self.idle.get(), max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    raise NoWorkerAvailable from None
            if worker is None:
                self.idle.put_nowait(None)
                raise NoWorkerAvailable(self.closed_reason)
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
        if deadline is None:
            deadline = loop.time() + self.availability_timeout_s
        while True:
            worker = await self._take(deadline)
            self.busy += 1
            future = loop.run_in_executor(self.executor, worker.call, payload)
            future.add_done_callback(functools.partial(self._finished, worker))
            try:
                # Shielded: if the request is cancelled, the worker still finishes its event
                # and is freed by _finished only then.
                reply = await asyncio.shield(future)
            except WorkerGone:
                continue  # it died before it took the event: the next worker gets it
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
        if self.stopping:
            return
        log.error("%s; starting a new one", reason)
        task = asyncio.get_running_loop().create_task(self._replace(dead))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self, dead: WorkerProcess) -> None:
        """Start a worker with the dead one's id in its place (unless the pool is stopping);
        when it cannot be started, the pool fails (:meth:`_give_up`)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, dead.stop, 0.1)
        if self.stopping:
            return
        index = self.workers.index(dead)
        self.workers[index] = WorkerProcess(self.spec, dead.worker_id)
        try:
            await self._ready(index)
        except WorkerError as exc:
            if not self.stopping:
                self._give_up(exc)
            return
        if not self.stopping:
            self.idle.put_nowait(self.workers[index])

    def _give_up(self, failure: WorkerError) -> None:
        """A worker cannot be started: every waiting request gets 503 and the server stops."""
        log.error("%s", failure)
        self.failure = failure
        self.close(f"the function is stopping: {failure}")
        self.failed.set()

    def close(self, reason: str) -> None:
        """Take no more events: requests waiting for a worker, and later ones, get
        NoWorkerAvailable with ``reason``; events already handed to workers go on."""
        if self.closed_reason is None:
            self.closed_reason = reason
            self.idle.put_nowait(None)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop every worker (each finishes its current event first, within ``timeout``; one
        still in ``init_context`` is stopped at once)."""
        self.stopping = True
        self.close("the server is stopping")
        for task in [self._watch, *self._tasks]:
            if task is not None:
                task.cancel()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(None, worker.stop, timeout if worker.ready else 0.0)
                for worker in self.workers
            )
        )
        self.executor.shutdown(wait=False)


def batch_mode(
    declared: Batching | None, size: int | None, timeout_ms: int | None
) -> Batching | None:
    """The batch mode to serve: function.yaml's, with ``--batch-size``/``--batch-timeout``
    over it; ValueError with one line when the options are wrong."""
    if size is None and timeout_ms is None:
        return declared
    if size is None and declared is None:
        raise ValueError("--batch-timeout needs --batch-size (the requests per batch)")
    base = declared or Batching(1, DEFAULT_BATCH_TIMEOUT_MS)
    batch = Batching(
        base.size if size is None else size, base.timeout_ms if timeout_ms is None else timeout_ms
    )
    problems = batch_option_problems(batch.size, batch.timeout_ms)
    if problems:
        raise ValueError("; ".join(problems))
    return batch


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
        self._gathering: list[Waiting] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start gathering (on the running loop)."""
        self._collector = asyncio.get_running_loop().create_task(self._collect())

    def close(self) -> None:
        """Stop gathering: requests not yet handed to a worker get NoWorkerAvailable (with
        the pool's reason); batches already handed to workers go on."""
        if self._collector is not None:
            self._collector.cancel()
        waiting = list(self._gathering)
        self._gathering.clear()
        while not self.queue.empty():
            waiting.append(self.queue.get_nowait())
        for _, _, future in waiting:
            if not future.done():
                future.set_exception(NoWorkerAvailable(self.pool.closed_reason))

    async def stop(self) -> None:
        """Close, then cancel the batches still running (their requests were answered)."""
        self.close()
        for task in list(self._tasks):
            task.cancel()
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
        batch = self._gathering
        while True:
            batch.append(await self.queue.get())
            closes = loop.time() + timeout_s
            while len(batch) < self.batching.size and loop.time() < closes:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), closes - loop.time()))
                except asyncio.TimeoutError:
                    break
            task = loop.create_task(self._dispatch(list(batch)))
            batch.clear()
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, batch: list[Waiting]) -> None:
        """Run a batch on a free worker (waiting until its earliest deadline at most)."""
        futures = [future for _, _, future in batch]
        try:
            replies, worker = await self.pool.call_batch(
                [message for message, _, _ in batch], min(deadline for _, deadline, _ in batch)
            )
        except NoWorkerAvailable as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(NoWorkerAvailable(*exc.args))
            return
        for future, reply in zip(futures, replies, strict=True):
            if not future.done():  # a request whose client left is cancelled
                future.set_result((reply, worker))

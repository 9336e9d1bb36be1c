"""The worker processes of a served function: a pool that hands events to free workers and
replaces dead ones, and the batcher of Nuclio's batch mode.

:class:`WorkerPool` keeps the idle :class:`~.workers.WorkerProcess` objects in a queue: a
request takes one and waits at most the trigger's availability timeout (else
:class:`NoWorkerAvailable`); a worker that dies, idle or mid-request, is replaced with one of
the same id. :class:`Batcher` gathers requests into the lists of events the trigger's
``batch`` mode hands one worker. :mod:`.server` puts HTTP in front of both.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from quadratseg_handlers.deploy.function_yaml import Batching
from quadratseg_handlers.local.workers import (
    EventMessage,
    Reply,
    WorkerError,
    WorkerProcess,
    WorkerSpec,
)

log = logging.getLogger(__name__)


class NoWorkerAvailable(Exception):
    """Every worker stayed busy for the whole availability timeout."""


WATCH_INTERVAL_S = 0.5
"""How often idle workers are checked for life; a dead one is replaced, never sent a request."""


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
        """Start every worker at once and wait until all ran ``init_context``; on a
        WorkerError (one failed or timed out) stop them all and raise it."""
        loop = asyncio.get_running_loop()
        self.workers = [WorkerProcess(self.spec, index) for index in range(self.count)]
        try:
            await asyncio.gather(
                *(
                    loop.run_in_executor(self.executor, worker.wait_ready, self.readiness_timeout_s)
                    for worker in self.workers
                )
            )
        except WorkerError:
            await self.stop()
            raise
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

"""The local server's own limits: its settings (environment variables) and its body memory.

These are settings of ``quadratseg serve`` itself, read from the environment of the command
(not from ``function.yaml``, whose ``spec.env`` goes to the workers): how long a client may
take to send its headers and its body, how many bytes of request bodies the server holds at
once, how often a worker that dies while starting is started again, and how long a shutdown
may take. They are a :class:`~quadratseg_handlers.core.config.Settings` dataclass like a
handler's, so ``docs/configuration.md`` lists them from these declarations.

:class:`BodyMemory` counts the bytes of request bodies as they arrive, across connections: a
client that sends slowly holds only what it has sent, so slow senders cannot lock out the
others the way a count of body slots let two of them do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from quadratseg_handlers.core.config import Settings, setting
from quadratseg_handlers.core.messages import byte_size


@dataclass(frozen=True)
class ServeSettings(Settings):
    """``quadratseg serve``'s limits, from its own environment (``ServeSettings.load()``)."""

    serve_header_timeout: float = setting(
        10.0,
        "Seconds a client has to send a request's headers, from connecting "
        "(or from the previous answer on a kept-alive connection); then the connection is "
        "closed. Also how long an idle kept-alive connection stays open.",
        low=0.05,
    )
    serve_body_timeout: float = setting(
        30.0,
        "Seconds a client has to send a request's whole body once its "
        "headers arrived (time spent waiting for body memory not counted); then 408 and the "
        "connection closed.",
        low=0.05,
    )
    serve_body_memory: int | None = setting(
        None,
        "Most bytes of request bodies held in memory at once, all "
        "connections together, counted as the bytes arrive (a slow sender holds only what it "
        "sent); a body that would pass it waits for room within the trigger's "
        "workerAvailabilityTimeoutMilliseconds, then 503. Empty: twice what the workers take "
        "at once (workers x batch size x maxRequestBodySize). At least maxRequestBodySize.",
        low=1,
    )
    serve_start_retries: int = setting(
        3,
        "Times a worker that dies while it starts (killed, out of memory, a native crash; "
        "not an init_context that raises, which stops the server at once) is started again, "
        "after 1, 2, 4 ... times SERVE_START_BACKOFF seconds; one more death stops the server "
        "with exit 1 and the reason, as Nuclio restarts a function whose worker cannot start.",
        low=0,
    )
    serve_start_backoff: float = setting(
        1.0,
        "Seconds before a worker that died while starting is started "
        "again, doubled at each death in a row (at most 30 s).",
        low=0.0,
    )
    serve_shutdown_timeout: float = setting(
        30.0,
        "Seconds Ctrl-C or SIGTERM may take: requests in flight get their "
        "answer until a few seconds before it (then 503), waiting ones 503 at once, then the "
        "workers are stopped.",
        low=1.0,
    )

    def body_memory_for(self, workers: int, per_worker: int, max_body_size: int) -> int:
        """The body memory in bytes for this trigger; ValueError when below one largest body."""
        if self.serve_body_memory is None:
            return 2 * workers * per_worker * max_body_size
        if self.serve_body_memory < max_body_size:
            raise ValueError(
                f"SERVE_BODY_MEMORY={self.serve_body_memory} is below maxRequestBodySize "
                f"({byte_size(max_body_size)}): a body of the largest size could never be read"
            )
        return self.serve_body_memory


MAX_START_BACKOFF_S = 30.0
"""The longest wait before a worker that died while starting is started again."""


def start_backoff(settings: ServeSettings, deaths: int) -> float:
    """Seconds to wait after the ``deaths``-th start-up death in a row (1, 2, 4 ... times)."""
    doubled = settings.serve_start_backoff * 2.0 ** min(deaths - 1, 32)
    return min(doubled, MAX_START_BACKOFF_S)


class NoBodyMemory(Exception):
    """The body memory stayed full until the request's deadline."""


class BodyTooLarge(Exception):
    """The body grew past the trigger's maxRequestBodySize while it arrived."""


class BodyTimeout(Exception):
    """The body did not arrive within ``serve_body_timeout``."""


class ReadingStopped(Exception):
    """The server began to stop while the body was arriving."""


class BodyStream(Protocol):
    """What a body is read from: aiohttp's ``StreamReader`` (``request.content``)."""

    async def readany(self) -> bytes: ...

    def set_exception(self, exc: BaseException) -> None: ...


class BodyMemory:
    """Bytes of request bodies held at once, all connections together, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._freed = asyncio.Condition()
        self._reading: set[BodyStream] = set()

    async def read(
        self, stream: BodyStream, max_size: int, timeout_s: float, deadline: float
    ) -> bytes:
        """A whole body, read as it arrives within ``timeout_s`` (plus the time spent waiting
        for room), each chunk held as it arrives; the body stays held until :meth:`give`.
        BodyTooLarge past ``max_size``, BodyTimeout, NoBodyMemory when no room frees up by
        ``deadline`` (loop time), ReadingStopped after :meth:`stop_reading`."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout_s
        timer = loop.call_at(ends, stream.set_exception, BodyTimeout())
        parts: list[bytes] = []
        held = 0
        self._reading.add(stream)
        try:
            while chunk := await stream.readany():
                if held + len(chunk) > max_size:
                    raise BodyTooLarge
                waited = await self.take(len(chunk), deadline)
                held += len(chunk)
                parts.append(chunk)
                if waited:  # the client is not to blame for the server's wait
                    timer.cancel()
                    ends += waited
                    timer = loop.call_at(ends, stream.set_exception, BodyTimeout())
        except BaseException:
            await self.give(held)
            raise
        finally:
            timer.cancel()
            self._reading.discard(stream)
        return b"".join(parts)

    def stop_reading(self) -> None:
        """Every body still arriving ends in ReadingStopped (the server is stopping)."""
        for stream in list(self._reading):
            stream.set_exception(ReadingStopped())

    async def take(self, count: int, deadline: float) -> float:
        """Hold ``count`` more bytes, waiting for room until ``deadline`` (loop time) at
        most; return the seconds waited. NoBodyMemory when there is no room by then."""
        if self.held + count <= self.limit:
            self.held += count
            return 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self._freed:
            try:
                await asyncio.wait_for(
                    self._freed.wait_for(lambda: self.held + count <= self.limit),
                    max(deadline - started, 0.0),
                )
            except asyncio.TimeoutError:
                raise NoBodyMemory from None
        self.held += count
        return loop.time() - started

    async def give(self, count: int) -> None:
        """Give back ``count`` bytes (a body answered or refused) and wake who waits for them."""
        if count <= 0:
            return
        self.held -= count
        async with self._freed:
            self._freed.notify_all()

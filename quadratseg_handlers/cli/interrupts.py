"""SIGTERM ends a command the way Ctrl-C does: every clean-up runs.

Python stops at once on SIGTERM, skipping ``finally`` blocks: ``quadratseg package`` killed
while writing left its hidden ``.nuclio.zip.*.tmp`` and its staging folder behind.
:func:`terminate_as_interrupt` turns SIGTERM into :class:`Terminated`, raised in the main
thread like KeyboardInterrupt, so the temporary files are removed before the process exits.
``quadratseg serve`` handles both signals in its event loop instead (to shut down within its
time) and raises the same exceptions once it has stopped, so it exits 130 or 143 too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

TERMINATED_EXIT_CODE = 128 + signal.SIGTERM
"""The exit code of a command stopped by SIGTERM (143), as a shell reports a killed one."""


class Terminated(BaseException):
    """SIGTERM arrived; raised where the main thread was, unwinding like KeyboardInterrupt."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM raises :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

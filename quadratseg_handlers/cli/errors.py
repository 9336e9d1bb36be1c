"""How the command line fails: one line per problem on stderr and an exit code, no traceback.

2 for bad arguments or inputs, 1 for a check that ran and failed (docs/tools.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence


class CliError(Exception):
    """A user-facing command-line failure: one message per problem, an exit code."""

    def __init__(self, message: str | Sequence[str], code: int = 2) -> None:
        self.lines = [message] if isinstance(message, str) else list(message)
        super().__init__("; ".join(self.lines))
        self.code = code


@contextlib.contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn the library's one-line errors of these kinds into a CliError (exit 2)."""
    try:
        yield
    except kinds as exc:
        raise CliError(str(exc)) from None

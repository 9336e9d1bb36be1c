"""One-line messages: an exception's first line and counted nouns, worded the same everywhere.

Errors reach users as one line (an HTTP ``{"error"}``, a command's stderr, a start-up log);
these helpers keep that wording in one place.
"""

from __future__ import annotations

import errno


def first_line(error: BaseException | str, limit: int = 200, empty: str = "") -> str:
    """The first line of an exception's (or a text's) message, cut to ``limit`` characters."""
    text = str(error)
    return (text.strip().splitlines() or [empty])[0][:limit]


def last_line(text: str, limit: int = 300, empty: str = "no output") -> str:
    """The last line of a program's output (where a failing tool says why), cut to ``limit``."""
    return (text.strip().splitlines() or [empty])[-1][:limit]


def describe_error(error: BaseException, limit: int = 200) -> str:
    """``TypeName: first line`` of an exception, the form every one-line error report uses."""
    return f"{type(error).__name__}: {first_line(error, limit)}"


def plural(count: int, noun: str) -> str:
    """``1 shape``, ``3 shapes``: a count with its noun (regular plurals only)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def byte_size(count: int) -> str:
    """A byte count for people: 512 B, 4.0 MiB, 2.5 GiB."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def disk_error(exc: OSError) -> str:
    """Why writing failed, in a few words: ``no space left on device`` for a full disk (the
    error names no file, or the one being read), else the system's reason."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    return exc.strerror or first_line(exc)

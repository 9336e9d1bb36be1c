"""Reproducible, safe zip archives: fixed timestamps and modes, sorted entries, atomic writes.

The same entries always give the same bytes, so a bundle can be compared or cached by hash.
Entry names are relative POSIX paths without ``..``: a name that could escape the folder it is
unpacked into is refused when writing, and when reading (:mod:`.extraction`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
"""The earliest time a zip entry can hold; every entry gets it."""

FILE_MODE = 0o644
COMPRESS_BELOW = 1024 * 1024
"""Entries smaller than this are deflated; larger ones (weights) are stored, which is fast and
costs little: checkpoints barely compress."""

Content = Path | bytes
"""An entry's content: a file to copy, or the bytes themselves."""


def entry_name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe archive entry name, or None when it is."""
    if not name:
        return "empty entry name"
    if "\x00" in name or "\\" in name:
        return f"entry name {name!r} holds a NUL or backslash"
    if name.startswith("/") or (len(name) > 1 and name[0].isalpha() and name[1] == ":"):
        return f"entry name {name!r} is absolute"
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"entry name {name!r} has an empty, '.' or '..' component"
    return None


def check_entry_name(name: str) -> str:
    """Return ``name`` when it is safe; raise ValueError saying why otherwise."""
    problem = entry_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


def write_zip(path: Path, entries: Mapping[str, Content]) -> None:
    """Write ``entries`` (name -> file or bytes) to ``path``: sorted, fixed time and mode."""
    for name in entries:
        check_entry_name(name)
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        for name in sorted(entries):
            content = entries[name]
            size = content.stat().st_size if isinstance(content, Path) else len(content)
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.create_system = 3
            info.external_attr = (0o100000 | FILE_MODE) << 16
            small = size < COMPRESS_BELOW
            info.compress_type = zipfile.ZIP_DEFLATED if small else zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as target:
                if isinstance(content, Path):
                    with content.open("rb") as source:
                        shutil.copyfileobj(source, target, 1024 * 1024)
                else:
                    target.write(content)


def write_atomically(output: Path, write: Callable[[Path], None], *, force: bool) -> None:
    """Run ``write(temporary_path)`` next to ``output``, then rename it into place.

    A failure leaves no partial file and never touches an existing ``output``; without
    ``force`` an existing ``output`` is an error (FileExistsError).
    """
    if output.exists() and not force:
        raise FileExistsError(f"{output} exists; use --force to replace it")
    handle, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o666 & ~umask)
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        if output.exists() and not force:
            raise FileExistsError(f"{output} exists; use --force to replace it")
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise

"""Unpacking a bundle zip that may be hostile or damaged: every check before the first byte.

``quadratseg validate`` and ``serve`` unpack a bundle into a temporary folder. A crafted zip
could name a path outside that folder, or expand a few megabytes into gigabytes (a zip bomb);
a damaged one could be cut short or hold an entry whose checksum fails. :func:`extract` reads
the central directory first and refuses, with one line, names that escape, entries or a
total over the limits (the total also against the archive's size, so that many small entries
count), a compression ratio no bundle has, and a total the disk cannot hold with a margin. While
writing, zipfile stops each entry at its declared size and checks its CRC, so an entry that
lies about its size fails as damaged. Every refusal is a :class:`ArchiveError` (a ValueError).
"""

from __future__ import annotations

import errno
import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from quadratseg_handlers.core.messages import byte_size
from quadratseg_handlers.deploy.archive import entry_name_problem

MAX_UNPACKED_BYTES = 32 * 1024**3
"""The most a bundle may expand to, all entries together: the largest weights (SAM ViT-H,
2.5 GB) several times over."""

MAX_RATIO = 100
"""The most an entry may expand (uncompressed / compressed size) once it is over
:data:`RATIO_FLOOR`: weights are stored as they are, text and wheels deflate about 3 to 10
times; a zip bomb expands hundreds of times."""

RATIO_FLOOR = 1024 * 1024
"""Entries smaller than this are not held to :data:`MAX_RATIO` (a short file of repeated
text compresses far, and costs nothing)."""

MAX_ENTRIES = 10_000
"""The most entries a bundle may hold: a function's files, its wheel and a few --source
modules are a handful; a million empty entries would exhaust the folder's inodes."""

FREE_MARGIN = 256 * 1024 * 1024
"""Space that must stay free on the disk a bundle is unpacked onto: a bundle that fits only
by filling the disk to its last byte is refused, since the function, its logs and the system
need room too."""

MAGIC = b"PK\x03\x04"
"""The first bytes of a zip archive (its first local file header)."""

CHUNK = 1024 * 1024


class ArchiveError(ValueError):
    """A zip that is refused or cannot be unpacked: one line saying why."""


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a zip archive; ArchiveError for a file that starts like one or is
    named ``.zip`` but is not a complete archive (cut short or damaged)."""
    if not path.is_file():
        return False
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as stream:
        starts_like_zip = stream.read(len(MAGIC)) == MAGIC
    if starts_like_zip or path.suffix.lower() == ".zip":
        raise ArchiveError(f"{path}: not a complete zip archive (cut short or damaged)")
    return False


def unsafe_entries(path: Path) -> list[str]:
    """Problems with the entry names of a zip archive (empty when every name is safe)."""
    with _open(path) as archive:
        problems = [entry_name_problem(info.filename) for info in archive.infolist()]
    return [problem for problem in problems if problem is not None]


def size_problems(
    infos: list[zipfile.ZipInfo], free: int | None = None, archive_size: int | None = None
) -> list[str]:
    """Entries or a total too large, a zip-bomb ratio (of one entry over
    :data:`RATIO_FLOOR`, or of all entries together against the ``archive_size`` they came in:
    many small entries of zeros), too many entries, or more than ``free`` bytes less
    :data:`FREE_MARGIN` needed."""
    problems = []
    if len(infos) > MAX_ENTRIES:
        problems.append(f"holds {len(infos)} entries, over the limit of {MAX_ENTRIES}")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            sizes = f"{byte_size(info.compress_size)} to {byte_size(info.file_size)}"
            problems.append(
                f"entry {info.filename!r} expands {ratio:.0f} times ({sizes}), over the limit "
                f"of {MAX_RATIO}: a zip bomb?"
            )
    total = sum(info.file_size for info in infos)
    if archive_size is not None and total > RATIO_FLOOR and total > MAX_RATIO * archive_size:
        problems.append(
            f"expands {total / max(archive_size, 1):.0f} times, all {len(infos)} entries "
            f"together ({byte_size(archive_size)} to {byte_size(total)}), over the limit of "
            f"{MAX_RATIO}: a zip bomb?"
        )
    if total > MAX_UNPACKED_BYTES:
        problems.append(
            f"expands to {byte_size(total)}, over the limit of {byte_size(MAX_UNPACKED_BYTES)}"
        )
    elif free is not None and total > free - FREE_MARGIN:
        problems.append(
            f"expands to {byte_size(total)}, but only {byte_size(free)} is free to unpack it "
            f"and {byte_size(FREE_MARGIN)} must stay free"
        )
    return problems


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"{path}: not a readable zip archive ({exc})") from None


def extract(path: Path, destination: Path) -> None:
    """Unpack a zip archive into ``destination`` after every check; ArchiveError otherwise.

    What was written before a failure stays in ``destination`` (a temporary folder its
    caller removes).
    """
    with _open(path) as archive:
        infos = archive.infolist()
        names = [entry_name_problem(info.filename) for info in infos]
        problems = [problem for problem in names if problem is not None]
        destination.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(destination).free
        problems += size_problems(infos, free, path.stat().st_size)
        if problems:
            raise ArchiveError(f"{path}: {problems[0]}")
        root = destination.resolve()
        for info in infos:
            target = (root / PurePosixPath(info.filename)).resolve()
            if root not in target.parents:
                raise ArchiveError(f"{path}: entry {info.filename!r} would leave {destination}")
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, target.open("wb") as output:
                    shutil.copyfileobj(source, output, CHUNK)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise ArchiveError(f"{path}: entry {info.filename!r} is damaged ({exc})") from None
            except OSError as exc:
                reason = "no space left" if exc.errno == errno.ENOSPC else exc.strerror
                raise ArchiveError(f"{path}: cannot unpack into {destination}: {reason}") from None

"""Loading a pickled checkpoint so that the file can only rebuild weights, never run code.

Loading a pickle runs whatever functions it names: a crafted ``best.pt`` or ``.pth`` would
run its code in ``quadratseg package``, ``validate`` and every worker. :func:`load_checkpoint`
reads every checkpoint (ultralytics ``.pt``, MMSegmentation ``.pth``, SAM) once, through
``torch.load`` with :mod:`.safe_unpickler` as its pickle module: model classes are rebuilt
without being called, only tensor and container rebuilders are called, and anything else is
refused before it is imported. Formats the check cannot read whole are refused first: torch's
legacy tar archives and TorchScript archives. The libraries are then handed the loaded
object, so nothing reads the file a second time. A TorchScript model (LaMa) runs no Python,
but its code may call torch's file operations: :func:`torchscript_problem` refuses those.
``TRUST_WEIGHTS=true`` loads with plain
``torch.load(weights_only=False)``, for weights the user trusts (docs/security.md).
"""

from __future__ import annotations

import os
import re
import tarfile
import warnings
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from quadratseg_handlers.core.config import ConfigError, setting
from quadratseg_handlers.core.messages import describe_error, first_line

TRUST_WEIGHTS = "TRUST_WEIGHTS"
"""The opt-out of :func:`load_checkpoint`'s restrictions, read by every function that loads a
pickle."""

ADVICE = f"set {TRUST_WEIGHTS}=true only if you trust this file"


class UnreadableCheckpoint(ConfigError):
    """A file torch cannot read as a checkpoint (not a torch file, cut short, damaged);
    ``reason`` is what torch said, for a caller that words it its own way."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def trust_weights_setting() -> Any:
    """The TRUST_WEIGHTS field of a settings dataclass (``trust_weights: bool = ...``)."""
    return setting(
        False,
        "Load pickled weights (`.pt`, `.pth`) with plain `torch.load(weights_only=False)`. "
        "Off: a checkpoint may only rebuild the torch, NumPy, ultralytics and MMEngine objects "
        "real checkpoints hold, and is refused if its pickle names or calls anything else "
        "(docs/security.md). Only for weights you trust: loading a pickle can run any code.",
    )


def trust_setting(
    declared: Collection[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """TRUST_WEIGHTS as the caller's environment sets it, for a handler that declares it
    (``TRUST_WEIGHTS=true quadratseg package ...`` loads the weights unchecked)."""
    env = os.environ if environ is None else environ
    name = TRUST_WEIGHTS
    return {name: env[name]} if name in declared and name in env else {}


def refuse_unchecked_formats(path: Path, where: str) -> None:
    """Refuse the formats torch would read without going through the restricted pickle
    module in full: its legacy tar archive (extracted to disk first) and TorchScript archives
    (``torch.load`` hands them to ``torch.jit.load``)."""
    if tarfile.is_tarfile(path):
        raise ConfigError(
            f"{where}: refusing to load: a legacy torch tar archive, which this check does not "
            f"read; save it again with torch.save, or {ADVICE}"
        )
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(name.split("/", 1)[-1] == "constants.pkl" for name in names):
            raise ConfigError(
                f"{where}: refusing to load: a TorchScript archive, not a checkpoint (save the "
                "model's checkpoint with torch.save or ultralytics)"
            )


def load_checkpoint(path: Path, variable: str, *, trusted: bool = False) -> Any:
    """The object pickled in ``path`` (tensors on the CPU), rebuilt by the restricted
    unpickler unless ``trusted``. Every problem is one ConfigError line naming ``variable``,
    the file and, for a refused pickle, the first name it calls or uses."""
    import torch

    from quadratseg_handlers.backends import safe_unpickler

    where = f"{variable}={path}"
    if trusted:
        options: dict[str, Any] = {"weights_only": False}
    else:
        refuse_unchecked_formats(path, where)
        options = {"weights_only": False, "pickle_module": safe_unpickler, "mmap": False}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", **options)
    except safe_unpickler.RefusedPickle as exc:
        raise ConfigError(
            f"{where}: refusing to load: {first_line(exc, 200)}, which no torch, NumPy, "
            f"ultralytics or MMEngine checkpoint needs; {ADVICE}"
        ) from None
    except Exception as exc:
        reason = describe_error(exc)
        raise UnreadableCheckpoint(
            f"{where}: cannot read the checkpoint: not a torch file, or malformed, cut short "
            f"or crafted ({reason})",
            reason,
        ) from None


TORCHSCRIPT_FILE_ACCESS = re.compile(
    r"\b(?:save|from_file|load_tensor)\b|\bclasses\.\w+|\bops\.(?!aten\.|prim\.)\w+"
)
"""What TorchScript code may not name: torch's operators that write or read files
(``torch.save``, ``torch.from_file``, ``load_tensor``), TorchBind classes and operators outside
torch's own ``aten`` and ``prim`` namespaces."""


def torchscript_problem(path: Path) -> str | None:
    """Why the TorchScript archive at ``path`` may not be loaded (None: it may): its code (the
    ``.py`` records ``torch.jit.load`` compiles, ``__setstate__`` included, which runs at
    load) names an operator of :data:`TORCHSCRIPT_FILE_ACCESS`. Not a zip: None, torch refuses
    it itself without unpickling anything."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith(".py"):
                continue
            found = TORCHSCRIPT_FILE_ACCESS.search(archive.read(name).decode("utf-8", "replace"))
            if found:
                return (
                    f"refusing to load: its TorchScript code ({name}) calls {found.group()}, "
                    "which reaches files outside the model; an inpainting model needs no such call"
                )
    return None

"""Checking a pickled checkpoint before it is loaded: only the globals real weights use.

Loading a pickle runs whatever functions it names: ultralytics loads ``.pt`` checkpoints with
``torch.load(weights_only=False)``, so a crafted ``best.pt`` would run its code in
``quadratseg package``, ``validate`` and every worker. :func:`check_checkpoint` lists the
globals of every pickle in the file with picklescan (a maintained scanner: zip and legacy
torch files, several pickles per file) and refuses the file unless each global is one that
ultralytics, torch, NumPy or MMEngine checkpoints use. ``TRUST_WEIGHTS=true`` skips the
check for weights the user trusts (docs/security.md).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from quadratseg_handlers.core.config import ConfigError, setting

TRUST_WEIGHTS = "TRUST_WEIGHTS"
"""The opt-out of :func:`check_checkpoint`, read by every function that loads a pickle."""


def trust_weights_setting() -> Any:
    """The TRUST_WEIGHTS field of a settings dataclass (``trust_weights: bool = ...``)."""
    return setting(
        False,
        "Load pickled weights (`.pt`, `.pth`) without checking their globals first. Off: a "
        "checkpoint naming anything but the torch, NumPy, ultralytics and MMEngine globals real "
        "checkpoints use is refused before it is loaded (docs/security.md). Only for weights "
        "you trust: loading a pickle can run any code.",
    )


ALLOWED_GLOBALS = frozenset(
    {
        "__builtin__.set",
        "__builtin__.frozenset",
        "__builtin__.slice",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "collections.OrderedDict",
        "collections.defaultdict",
        "copyreg._reconstructor",
        "_codecs.encode",
        "datetime.datetime",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "types.SimpleNamespace",
        "argparse.Namespace",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2",
        "torch.Size",
        "torch.device",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "ultralytics.utils.IterableSimpleNamespace",
        "mmengine.logging.history_buffer.HistoryBuffer",
        "mmengine.logging.message_hub.MessageHub",
        "mmengine.config.config.ConfigDict",
    }
)
"""Functions and classes real checkpoints name: containers, tensor and array rebuilding."""

MODULE_PACKAGES = ("torch.nn.modules.", "ultralytics.nn.", "mmseg.models.", "mmcv.cnn.")
"""Packages whose ``torch.nn.Module`` classes a pickled model may name (its layers)."""

TORCH_TYPES = ("Storage", "dtype")
"""``torch.FloatStorage`` and the other typed storages; ``torch.float16`` and other dtypes."""


def trust_setting(
    declared: Collection[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """TRUST_WEIGHTS as the caller's environment sets it, for a handler that declares it
    (``TRUST_WEIGHTS=true quadratseg package ...`` loads the weights unchecked)."""
    env = os.environ if environ is None else environ
    name = TRUST_WEIGHTS
    return {name: env[name]} if name in declared and name in env else {}


def _resolve(module: str, name: str) -> object:
    """The object a pickle global names, imported from an allowed package (None if absent)."""
    try:
        target: object = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return target


def is_allowed(module: str, name: str) -> bool:
    """Whether a pickle may name ``module.name``: listed, a torch storage or dtype, or a
    ``torch.nn.Module`` class of one of :data:`MODULE_PACKAGES`."""
    if f"{module}.{name}" in ALLOWED_GLOBALS:
        return True
    if module == "torch" and "." not in name:
        import torch

        value = getattr(torch, name, None)
        return isinstance(value, torch.dtype) or (
            isinstance(value, type) and name.endswith("Storage")
        )
    if not module.startswith(MODULE_PACKAGES):
        return False
    import torch

    target = _resolve(module, name)
    return isinstance(target, type) and issubclass(target, torch.nn.Module)


def pickle_globals(path: Path) -> tuple[list[tuple[str, str]], bool]:
    """The ``(module, name)`` globals of every pickle in ``path``, and whether the scan
    stopped early on a malformed pickle (picklescan, its own log silenced)."""
    from picklescan.scanner import scan_file_path

    scanner_log = logging.getLogger("picklescan")
    level = scanner_log.level
    scanner_log.setLevel(logging.CRITICAL)
    try:
        result = scan_file_path(str(path))
    finally:
        scanner_log.setLevel(level)
    found = sorted({(found.module, found.name) for found in result.globals})
    return found, bool(result.scan_err)


def check_checkpoint(path: Path, variable: str, *, trusted: bool = False) -> None:
    """Refuse a pickled checkpoint (ConfigError naming ``variable``, the file and the first
    offending global) before anything loads it, unless ``trusted`` (TRUST_WEIGHTS)."""
    if trusted:
        return
    try:
        found, broken = pickle_globals(path)
    except Exception as exc:
        raise ConfigError(
            f"{variable}={path}: cannot check the checkpoint's pickle ({exc}); "
            f"{TRUST_WEIGHTS}=true loads it unchecked"
        ) from None
    refused = [f"{module}.{name}" for module, name in found if not is_allowed(module, name)]
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise ConfigError(
            f"{variable}={path}: refusing to load: its pickle calls {refused[0]}{more}, which "
            "no torch, NumPy, ultralytics or MMEngine checkpoint uses; set "
            f"{TRUST_WEIGHTS}=true only if you trust this file"
        )
    if broken:
        raise ConfigError(
            f"{variable}={path}: refusing to load: its pickle is malformed (cut short or "
            f"crafted); set {TRUST_WEIGHTS}=true only if you trust this file"
        )

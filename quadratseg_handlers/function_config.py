"""What a Nuclio function bundle declares: name, CVAT labels, environment, HTTP trigger limits.

A bundle is a folder holding ``function.yaml`` and the handler module (``main.py``) beside the
files the environment points at, or a zip of that folder under ``nuclio/``. The local tools
(serve, check, annotate) read the same ``function.yaml`` Nuclio deploys, so a function tested
here runs with the worker count, limits and settings it will have in production.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import archive
from .cvat import LabelSpec

NUCLIO_DIR = "/opt/nuclio"
"""Where Nuclio puts the bundle's files in the function's image."""

DEFAULT_WORKERS = 1
DEFAULT_AVAILABILITY_TIMEOUT_MS = 10_000
DEFAULT_MAX_BODY_SIZE = 4 * 1024 * 1024
"""Nuclio's own defaults for an HTTP trigger that does not set them."""


class BundleError(Exception):
    """A bundle that cannot be read: the message says which file and what is wrong."""


@dataclass(frozen=True)
class HttpTrigger:
    """The HTTP trigger settings a local server honours."""

    name: str = "http"
    workers: int = DEFAULT_WORKERS
    availability_timeout_ms: int = DEFAULT_AVAILABILITY_TIMEOUT_MS
    max_body_size: int = DEFAULT_MAX_BODY_SIZE


@dataclass(frozen=True)
class FunctionConfig:
    """A parsed ``function.yaml``, with environment paths resolved for running from ``folder``."""

    folder: Path
    name: str
    labels: list[LabelSpec]
    handler_module: str
    handler_function: str
    env: dict[str, str] = field(default_factory=dict)
    trigger: HttpTrigger = HttpTrigger()

    @property
    def module_path(self) -> Path:
        """The file of the handler module (``main.py`` for ``main:handler``)."""
        return self.folder / f"{self.handler_module.replace('.', '/')}.py"


def local_path(value: str, folder: Path, *, prefer_bundle: bool = False) -> str:
    """Map ``/opt/nuclio/<file>`` to ``<folder>/<file>`` when the bundle holds that file and
    ``/opt/nuclio/<file>`` does not exist (or always, with ``prefer_bundle``)."""
    if not value.startswith(NUCLIO_DIR + "/"):
        return value
    relative = value[len(NUCLIO_DIR) + 1 :]
    if relative and (folder / relative).exists() and (prefer_bundle or not Path(value).exists()):
        return str(folder / relative)
    return value


def _positive_int(raw: Any, where: str, default: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise BundleError(f"{where} must be a positive integer, got {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise BundleError(f"{where} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise BundleError(f"{where} must be a positive integer, got {raw!r}")
    return value


def http_trigger(triggers: Any, source: str) -> HttpTrigger:
    """The first HTTP trigger of ``spec.triggers`` (Nuclio's defaults when there is none)."""
    if not triggers:
        return HttpTrigger()
    if not isinstance(triggers, Mapping):
        raise BundleError(f"{source}: spec.triggers must be a mapping of trigger names")
    for name, trigger in triggers.items():
        if not isinstance(trigger, Mapping) or trigger.get("kind") != "http":
            continue
        where = f"{source}: spec.triggers.{name}"
        attributes = trigger.get("attributes") or {}
        if not isinstance(attributes, Mapping):
            raise BundleError(f"{where}.attributes must be a mapping")
        return HttpTrigger(
            name=str(name),
            workers=_positive_int(
                trigger.get("numWorkers"), f"{where}.numWorkers", DEFAULT_WORKERS
            ),
            availability_timeout_ms=_positive_int(
                trigger.get("workerAvailabilityTimeoutMilliseconds"),
                f"{where}.workerAvailabilityTimeoutMilliseconds",
                DEFAULT_AVAILABILITY_TIMEOUT_MS,
            ),
            max_body_size=_positive_int(
                attributes.get("maxRequestBodySize"),
                f"{where}.attributes.maxRequestBodySize",
                DEFAULT_MAX_BODY_SIZE,
            ),
        )
    return HttpTrigger()


def parse_labels(spec: Any, source: str) -> list[LabelSpec]:
    """The CVAT label list from ``metadata.annotations.spec`` (a JSON string or a list)."""
    if spec is None:
        raise BundleError(f"{source}: metadata.annotations.spec is missing (CVAT needs the labels)")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise BundleError(
                f"{source}: metadata.annotations.spec is not valid JSON ({exc.msg}, line "
                f"{exc.lineno})"
            ) from None
    if not isinstance(spec, list) or not all(
        isinstance(label, dict) and isinstance(label.get("name"), str) for label in spec
    ):
        raise BundleError(
            f"{source}: metadata.annotations.spec must be a list of labels with names"
        )
    return spec


def find_function_yaml(path: Path) -> Path:
    """``function.yaml`` itself, or the one in a bundle folder (or its ``nuclio/`` folder)."""
    if path.is_file():
        return path
    for candidate in (path / "function.yaml", path / "nuclio" / "function.yaml"):
        if candidate.is_file():
            return candidate
    raise BundleError(f"{path}: no function.yaml in this folder or in its nuclio/ folder")


def load_function_yaml(yaml_path: Path) -> Mapping[str, Any]:
    """The parsed document of a ``function.yaml``; BundleError when it is no YAML mapping."""
    try:
        document = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{yaml_path}: not a YAML file ({first})") from None
    if not isinstance(document, Mapping):
        raise BundleError(f"{yaml_path}: expected a mapping with metadata and spec")
    return document


def environment(
    spec: Mapping[str, Any], folder: Path, *, prefer_bundle: bool = False
) -> dict[str, str]:
    """The ``env`` of a function.yaml ``spec``, with ``/opt/nuclio`` paths as :func:`local_path`
    maps them (items without a name and a value are skipped)."""
    env: dict[str, str] = {}
    for item in spec.get("env") or []:
        if isinstance(item, Mapping) and "name" in item and "value" in item:
            value = local_path(str(item["value"]), folder, prefer_bundle=prefer_bundle)
            env[str(item["name"])] = value
    return env


def read_function_config(path: str | Path) -> FunctionConfig:
    """Parse a ``function.yaml`` (or the one in a bundle folder) into a :class:`FunctionConfig`."""
    source = Path(path)
    if not source.exists():
        raise BundleError(f"{source}: no such file or folder")
    yaml_path = find_function_yaml(source)
    document = load_function_yaml(yaml_path)
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
        raise BundleError(f"{yaml_path}: metadata and spec must be mappings")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise BundleError(f"{yaml_path}: metadata.annotations must be a mapping")
    entry = str(spec.get("handler") or "main:handler")
    module, _, function = entry.partition(":")
    if not module or not function:
        raise BundleError(f"{yaml_path}: spec.handler must read module:function, got {entry!r}")
    folder = yaml_path.parent.resolve()
    return FunctionConfig(
        folder=folder,
        name=str(metadata.get("name") or folder.name),
        labels=parse_labels(annotations.get("spec"), str(yaml_path)),
        handler_module=module,
        handler_function=function,
        env=environment(spec, folder),
        trigger=http_trigger(spec.get("triggers"), str(yaml_path)),
    )


@contextmanager
def open_bundle(path: str | Path) -> Iterator[FunctionConfig]:
    """A bundle folder as is, or a bundle zip unpacked into a temporary folder for the block."""
    source = Path(path)
    if not source.is_file() or not zipfile.is_zipfile(source):
        yield read_function_config(source)
        return
    folder = Path(tempfile.mkdtemp(prefix="quadratseg-bundle-"))
    try:
        try:
            archive.extract(source, folder)
        except ValueError as exc:
            raise BundleError(f"{source}: {exc}") from None
        yield read_function_config(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

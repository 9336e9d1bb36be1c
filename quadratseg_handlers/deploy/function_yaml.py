"""What a Nuclio function bundle declares: name, CVAT labels, environment, HTTP trigger limits.

A bundle is a folder holding ``function.yaml`` and the handler module (``main.py``) beside the
files the environment points at, or a zip of that folder under ``nuclio/``. The local tools
(serve, check, annotate) read the same ``function.yaml`` Nuclio deploys, so a function tested
here runs with the worker count, limits and settings it will have in production.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from quadratseg_handlers.core.messages import first_line
from quadratseg_handlers.cvat.spec import LabelSpec
from quadratseg_handlers.deploy import extraction

NUCLIO_DIR = "/opt/nuclio"
"""Where Nuclio puts the bundle's files in the function's image."""

DEFAULT_WORKERS = 1
DEFAULT_AVAILABILITY_TIMEOUT_MS = 10_000
DEFAULT_MAX_BODY_SIZE = 4 * 1024 * 1024
DEFAULT_READINESS_TIMEOUT_S = 60
"""Nuclio's own defaults for a function.yaml that does not set them."""

# --- what `quadratseg package` writes ------------------------------------------------------

RUNTIME = "python:3.11"
NAMESPACE = "cvat"
HTTP_TRIGGER = "myHttpTrigger"
NUM_WORKERS = 1
"""One model copy per replica: scale with replicas, not workers (GPU memory)."""

WORKER_WAIT_MS = 60_000
"""How long a request waits for the busy worker before Nuclio answers 503."""

MAX_REQUEST_BODY = 64 * 1024 * 1024
"""A 30 MB frame is 40 MB of base64; Nuclio's 4 MiB default refuses it."""

EVENT_TIMEOUT = "300s"
"""Longest request; the slowest function takes about 20 s per 1920 px image on a GPU."""

READINESS_TIMEOUT_S = 600
"""Start-up budget: image pull, CUDA initialisation and model loading."""

# --- what Nuclio and CVAT accept -------------------------------------------------------------

RUNTIMES = ("python:3.9", "python:3.10", "python:3.11")
"""Python runtimes current Nuclio deploys (3.8 no longer does)."""

FUNCTION_TYPES = ("detector", "interactor", "tracker", "reid")
MIN_REQUEST_BODY = 4 * math.ceil(30 * 1024 * 1024 / 3) + 64 * 1024
"""A 30 MiB frame as base64 plus room for the rest of the JSON body."""

MIN_EVENT_TIMEOUT_S = 120
"""CVAT waits 120 s for a function by default; a shorter eventTimeout cuts such requests."""

MIN_READINESS_TIMEOUT_S = 300
"""Loading big weights on a busy node can take minutes; Nuclio's default is 60 s."""

DEFAULT_BATCH_TIMEOUT_MS = 50
"""How long a batch waits to fill when only ``--batch-size`` is given: a few fast predicts."""

MAX_BATCH_TIMEOUT_MS = 10_000
"""Longest wait for a batch to fill: the first request of a batch waits this long on top of
its own run, within CVAT's 120 s."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: Any) -> float | None:
    """A Go duration (``300s``, ``5m``, ``1h30m``) in seconds; None when it does not parse."""
    if not isinstance(text, str) or not text:
        return None
    parts = _DURATION.findall(text)
    if "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def get(config: Any, *keys: str) -> Any:
    """``config[k1][k2]...``; None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(config, Mapping):
            return None
        config = config.get(key)
    return config


class BundleError(Exception):
    """A bundle that cannot be read: the message says which file and what is wrong."""


MAX_YAML_DEPTH = 100
"""The deepest nesting of lists and mappings a function.yaml may have (Nuclio's is about 8):
PyYAML builds nodes recursively, and 50,000 nested ``[`` would end in a RecursionError."""


class _DepthLimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document nested deeper than :data:`MAX_YAML_DEPTH`."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    problem=f"nested deeper than {MAX_YAML_DEPTH} levels",
                    problem_mark=self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


@dataclass(frozen=True)
class Batching:
    """The HTTP trigger's ``batch`` mode (Nuclio 1.14 and later): up to ``size`` events, or
    what arrived within ``timeout_ms`` of the first, reach the handler as one list."""

    size: int
    timeout_ms: int

    def trigger_config(self) -> dict[str, Any]:
        """The trigger's ``batch`` mapping as Nuclio reads it (``timeout`` a Go duration)."""
        return {"mode": "enable", "batchSize": self.size, "timeout": f"{self.timeout_ms}ms"}


def batch_option_problems(size: Any, timeout_ms: Any, where: str = "--batch") -> list[str]:
    """What is wrong with a batch size and timeout (ms) given as options, named
    ``<where>-size`` and ``<where>-timeout``; none when both are right."""
    problems = []
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        problems.append(f"{where}-size {size!r}: expected a whole number of events >= 1")
    if (
        isinstance(timeout_ms, bool)
        or not isinstance(timeout_ms, int)
        or not 1 <= timeout_ms <= MAX_BATCH_TIMEOUT_MS
    ):
        problems.append(
            f"{where}-timeout {timeout_ms!r}: expected milliseconds from 1 to "
            f"{MAX_BATCH_TIMEOUT_MS} (how long a batch waits to fill)"
        )
    return problems


@dataclass(frozen=True)
class HttpTrigger:
    """The HTTP trigger settings a local server honours."""

    name: str = "http"
    workers: int = DEFAULT_WORKERS
    availability_timeout_ms: int = DEFAULT_AVAILABILITY_TIMEOUT_MS
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    batch: Batching | None = None
    """The ``batch`` mode when enabled; None hands the handler one event at a time."""


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
    readiness_timeout_s: float = DEFAULT_READINESS_TIMEOUT_S
    """``spec.readinessTimeoutSeconds``: how long a worker may take to start."""

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
            batch=trigger_batching(trigger.get("batch"), where),
        )
    return HttpTrigger()


def trigger_batching(batch: Any, where: str) -> Batching | None:
    """The ``batch`` mapping of an HTTP trigger: None unless its mode is ``enable``;
    BundleError when it is malformed (see :func:`batch_problems`)."""
    problems = batch_problems(batch, where)
    if problems:
        raise BundleError(problems[0])
    if batch is None or batch.get("mode") != "enable":
        return None
    seconds = duration_seconds(batch["timeout"])
    return Batching(int(batch["batchSize"]), round((seconds or 0.0) * 1000))


def batch_problems(batch: Any, where: str) -> list[str]:
    """What Nuclio would refuse, or serve badly, in an HTTP trigger's ``batch`` mapping:
    ``mode`` enable or disable; when enabled a ``batchSize`` >= 1 and a ``timeout`` (a Go
    duration) from 1 ms to MAX_BATCH_TIMEOUT_MS."""
    if batch is None:
        return []
    if not isinstance(batch, Mapping):
        return [f"{where}.batch: must be a mapping with mode, batchSize and timeout"]
    mode = batch.get("mode")
    if mode not in ("enable", "disable"):
        return [f"{where}.batch.mode: {mode!r}, expected 'enable' or 'disable'"]
    if mode == "disable":
        return []
    problems = []
    size = batch.get("batchSize")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        problems.append(f"{where}.batch.batchSize: {size!r}, expected a whole number >= 1")
    seconds = duration_seconds(batch.get("timeout"))
    if seconds is None or not 0.001 <= seconds <= MAX_BATCH_TIMEOUT_MS / 1000:
        problems.append(
            f"{where}.batch.timeout: {batch.get('timeout')!r}, expected a duration from 1ms to "
            f"{MAX_BATCH_TIMEOUT_MS}ms (e.g. 50ms)"
        )
    return problems


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


def load_function_yaml(yaml_path: Path, name: str | None = None) -> Mapping[str, Any]:
    """The parsed document of a ``function.yaml``; BundleError when it is no YAML mapping,
    naming the file as ``name`` (default: its path; ``validate`` says ``function.yaml`` rather
    than the temporary folder a zip was unpacked into)."""
    source = name or str(yaml_path)
    try:
        document = yaml.load(yaml_path.read_text(encoding="utf-8"), Loader=_DepthLimitedLoader)
    except UnicodeDecodeError:
        raise BundleError(f"{source}: not a YAML file (not UTF-8 text)") from None
    except yaml.YAMLError as exc:
        first = first_line(exc, 300, type(exc).__name__)
        raise BundleError(f"{source}: not a YAML file ({first})") from None
    except RecursionError:
        raise BundleError(f"{source}: not a YAML file (nested too deeply)") from None
    if not isinstance(document, Mapping):
        raise BundleError(f"{source}: expected a mapping with metadata and spec")
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
        labels=(
            []
            if annotations.get("type") is None and annotations.get("spec") is None
            else parse_labels(annotations.get("spec"), str(yaml_path))
        ),
        handler_module=module,
        handler_function=function,
        env=environment(spec, folder),
        trigger=http_trigger(spec.get("triggers"), str(yaml_path)),
        readiness_timeout_s=_positive_int(
            spec.get("readinessTimeoutSeconds"),
            f"{yaml_path}: spec.readinessTimeoutSeconds",
            DEFAULT_READINESS_TIMEOUT_S,
        ),
    )


@contextmanager
def open_bundle(path: str | Path) -> Iterator[FunctionConfig]:
    """A bundle folder as is, or a bundle zip unpacked into a temporary folder for the block."""
    source = Path(path)
    try:
        is_zip = extraction.is_archive(source)
    except extraction.ArchiveError as exc:
        raise BundleError(str(exc)) from None
    if not is_zip:
        yield read_function_config(source)
        return
    try:
        folder = Path(tempfile.mkdtemp(prefix="quadratseg-bundle-"))
    except OSError as exc:
        raise BundleError(f"{source}: cannot make a folder to unpack it: {exc.strerror}") from None
    try:
        try:
            extraction.extract(source, folder)
        except extraction.ArchiveError as exc:
            raise BundleError(str(exc)) from None
        yield read_function_config(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- checking a function.yaml -------------------------------------------------------------


def config_problems(config: Any, *, detector: bool = True) -> list[str]:
    """Missing or wrong keys of a function.yaml that Nuclio or CVAT read.

    A detector declares CVAT's ``type`` and a label ``spec``; a pipeline-only function
    (``detector=False``: pth-lama) declares neither, so CVAT never offers it (docs/lama.md).
    """
    if not isinstance(config, Mapping):
        return ["function.yaml: not a mapping"]
    problems: list[str] = []
    name = get(config, "metadata", "name")
    if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
        problems.append(f"metadata.name: {name!r} is not a DNS label (a-z, 0-9, '-', <= 63)")
    for key in ("name", "framework", "spec") if detector else ("name", "framework"):
        if not isinstance(get(config, "metadata", "annotations", key), str):
            problems.append(f"metadata.annotations.{key}: missing (CVAT reads it)")
    kind = get(config, "metadata", "annotations", "type")
    if detector and kind not in FUNCTION_TYPES:
        problems.append(f"metadata.annotations.type: {kind!r}, expected one of {FUNCTION_TYPES}")
    if not detector and kind is not None:
        problems.append(
            f"metadata.annotations.type: {kind!r}; a pipeline-only function declares no CVAT "
            "type, or CVAT offers it to its users"
        )
    if not isinstance(get(config, "spec", "description"), str):
        problems.append("spec.description: missing (CVAT fails to list the function without it)")
    handler = get(config, "spec", "handler")
    if not isinstance(handler, str) or not re.match(r"^[\w.]+:\w+$", handler):
        problems.append(f"spec.handler: {handler!r}, expected module:function")
    runtime = get(config, "spec", "runtime")
    if runtime not in RUNTIMES:
        problems.append(f"spec.runtime: {runtime!r}, expected one of {', '.join(RUNTIMES)}")
    env = get(config, "spec", "env") or []
    if not isinstance(env, list) or not all(
        isinstance(item, Mapping)
        and isinstance(item.get("name"), str)
        and isinstance(item.get("value"), str)
        for item in env
    ):
        problems.append("spec.env: must be a list of {name, value} with string values")
    timeout = duration_seconds(get(config, "spec", "eventTimeout"))
    if timeout is None or timeout < MIN_EVENT_TIMEOUT_S:
        problems.append(
            f"spec.eventTimeout: {get(config, 'spec', 'eventTimeout')!r}, "
            f"expected a duration of at least {MIN_EVENT_TIMEOUT_S}s"
        )
    readiness = get(config, "spec", "readinessTimeoutSeconds")
    if not isinstance(readiness, int) or readiness < MIN_READINESS_TIMEOUT_S:
        problems.append(
            f"spec.readinessTimeoutSeconds: {readiness!r}, expected at least "
            f"{MIN_READINESS_TIMEOUT_S} (model loading)"
        )
    problems += _trigger_problems(get(config, "spec", "triggers"))
    gpus = get(config, "spec", "resources", "limits", "nvidia.com/gpu")
    if gpus is not None and (not isinstance(gpus, int) or gpus < 1):
        problems.append(f"spec.resources.limits.nvidia.com/gpu: {gpus!r}, expected a count >= 1")
    commands = get(config, "spec", "build", "commands") or []
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        problems.append("spec.build.commands: must be a list of strings")
    return problems


def _trigger_problems(triggers: Any) -> list[str]:
    http = (
        [
            (name, trigger)
            for name, trigger in (triggers or {}).items()
            if isinstance(trigger, Mapping) and trigger.get("kind") == "http"
        ]
        if isinstance(triggers, Mapping)
        else []
    )
    if not http:
        return ["spec.triggers: no http trigger (CVAT calls the function over HTTP)"]
    problems = []
    for name, trigger in http:
        workers = trigger.get("numWorkers")
        if not isinstance(workers, int) or workers < 1:
            problems.append(f"spec.triggers.{name}.numWorkers: {workers!r}, expected >= 1")
        body = get(trigger, "attributes", "maxRequestBodySize")
        if not isinstance(body, int) or body < MIN_REQUEST_BODY:
            problems.append(
                f"spec.triggers.{name}.attributes.maxRequestBodySize: {body!r}, expected at "
                f"least {MIN_REQUEST_BODY} (a 30 MB frame as base64; Nuclio's default is 4 MiB)"
            )
        wait = trigger.get("workerAvailabilityTimeoutMilliseconds")
        if wait is not None and (not isinstance(wait, int) or wait < 0):
            problems.append(f"spec.triggers.{name}.workerAvailabilityTimeoutMilliseconds: {wait!r}")
        problems += batch_problems(trigger.get("batch"), f"spec.triggers.{name}")
    return problems

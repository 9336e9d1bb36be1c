"""``quadratseg validate``: check a bundle the way Nuclio and CVAT will use it, before deploying.

A bundle (``nuclio.zip``, or a folder holding ``function.yaml``) passes when its yaml parses
and has the keys Nuclio and CVAT read, its label spec follows CVAT's rules, every file its
environment and build commands name is in the bundle (or downloaded by a build command), and
its ``main.py``, run through ``nuclio_sdk.test.Platform`` in a subprocess whose working
directory is the bundle, answers a generated image with JSON CVAT accepts.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from . import archive, cvat
from .function_config import NUCLIO_DIR
from .functions import FUNCTIONS, FunctionKind

RUNTIMES = ("python:3.9", "python:3.10", "python:3.11")
"""Python runtimes current Nuclio deploys (3.8 no longer does)."""

FUNCTION_TYPES = ("detector", "interactor", "tracker", "reid")
MIN_REQUEST_BODY = 4 * math.ceil(30 * 1024 * 1024 / 3) + 64 * 1024
"""A 30 MiB frame as base64 plus room for the rest of the JSON body."""

MIN_EVENT_TIMEOUT_S = 120
"""CVAT waits 120 s for a function by default; a shorter eventTimeout cuts such requests."""

MIN_READINESS_TIMEOUT_S = 300
"""Loading big weights on a busy node can take minutes; Nuclio's default is 60 s."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BUNDLE_PATH = re.compile(re.escape(NUCLIO_DIR) + r"/([A-Za-z0-9._/-]+)")
POST_COPY = "@nuclio.postCopy"


@dataclass
class Report:
    """The outcome: problems (none means valid), notes, and a one-line summary."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        """Whether the bundle passed every check."""
        return not self.problems


def duration_seconds(text: str) -> float | None:
    """A Go duration (``300s``, ``5m``, ``1h30m``) in seconds; None when it does not parse."""
    if not isinstance(text, str) or not text:
        return None
    parts = _DURATION.findall(text)
    if "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _get(config: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(config, Mapping):
            return None
        config = config.get(key)
    return config


def config_problems(config: Any) -> list[str]:
    """Missing or wrong keys of a function.yaml that Nuclio or CVAT read."""
    if not isinstance(config, Mapping):
        return ["function.yaml: not a mapping"]
    problems: list[str] = []
    name = _get(config, "metadata", "name")
    if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
        problems.append(f"metadata.name: {name!r} is not a DNS label (a-z, 0-9, '-', <= 63)")
    for key in ("name", "framework", "spec"):
        if not isinstance(_get(config, "metadata", "annotations", key), str):
            problems.append(f"metadata.annotations.{key}: missing (CVAT reads it)")
    kind = _get(config, "metadata", "annotations", "type")
    if kind not in FUNCTION_TYPES:
        problems.append(f"metadata.annotations.type: {kind!r}, expected one of {FUNCTION_TYPES}")
    if not isinstance(_get(config, "spec", "description"), str):
        problems.append("spec.description: missing (CVAT fails to list the function without it)")
    handler = _get(config, "spec", "handler")
    if not isinstance(handler, str) or not re.match(r"^[\w.]+:\w+$", handler):
        problems.append(f"spec.handler: {handler!r}, expected module:function")
    runtime = _get(config, "spec", "runtime")
    if runtime not in RUNTIMES:
        problems.append(f"spec.runtime: {runtime!r}, expected one of {', '.join(RUNTIMES)}")
    env = _get(config, "spec", "env") or []
    if not isinstance(env, list) or not all(
        isinstance(item, Mapping) and isinstance(item.get("name"), str)
        and isinstance(item.get("value"), str) for item in env
    ):
        problems.append("spec.env: must be a list of {name, value} with string values")
    timeout = duration_seconds(_get(config, "spec", "eventTimeout"))
    if timeout is None or timeout < MIN_EVENT_TIMEOUT_S:
        problems.append(
            f"spec.eventTimeout: {_get(config, 'spec', 'eventTimeout')!r}, "
            f"expected a duration of at least {MIN_EVENT_TIMEOUT_S}s"
        )
    readiness = _get(config, "spec", "readinessTimeoutSeconds")
    if not isinstance(readiness, int) or readiness < MIN_READINESS_TIMEOUT_S:
        problems.append(
            f"spec.readinessTimeoutSeconds: {readiness!r}, expected at least "
            f"{MIN_READINESS_TIMEOUT_S} (model loading)"
        )
    problems += _trigger_problems(_get(config, "spec", "triggers"))
    gpus = _get(config, "spec", "resources", "limits", "nvidia.com/gpu")
    if gpus is not None and (not isinstance(gpus, int) or gpus < 1):
        problems.append(f"spec.resources.limits.nvidia.com/gpu: {gpus!r}, expected a count >= 1")
    commands = _get(config, "spec", "build", "commands") or []
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        problems.append("spec.build.commands: must be a list of strings")
    return problems


def _trigger_problems(triggers: Any) -> list[str]:
    http = [
        (name, trigger) for name, trigger in (triggers or {}).items()
        if isinstance(trigger, Mapping) and trigger.get("kind") == "http"
    ] if isinstance(triggers, Mapping) else []
    if not http:
        return ["spec.triggers: no http trigger (CVAT calls the function over HTTP)"]
    problems = []
    for name, trigger in http:
        workers = trigger.get("numWorkers")
        if not isinstance(workers, int) or workers < 1:
            problems.append(f"spec.triggers.{name}.numWorkers: {workers!r}, expected >= 1")
        body = _get(trigger, "attributes", "maxRequestBodySize")
        if not isinstance(body, int) or body < MIN_REQUEST_BODY:
            problems.append(
                f"spec.triggers.{name}.attributes.maxRequestBodySize: {body!r}, expected at "
                f"least {MIN_REQUEST_BODY} (a 30 MB frame as base64; Nuclio's default is 4 MiB)"
            )
        wait = trigger.get("workerAvailabilityTimeoutMilliseconds")
        if wait is not None and (not isinstance(wait, int) or wait < 0):
            problems.append(f"spec.triggers.{name}.workerAvailabilityTimeoutMilliseconds: {wait!r}")
    return problems


def file_problems(config: Mapping[str, Any], folder: Path) -> tuple[list[str], list[str]]:
    """Files the yaml names that the bundle lacks; and those downloaded at build time."""
    problems: list[str] = []
    handler = _get(config, "spec", "handler")
    if isinstance(handler, str) and ":" in handler:
        module = folder / (handler.split(":")[0].replace(".", "/") + ".py")
        if not module.is_file():
            problems.append(f"spec.handler: {handler} needs {module.name}, not in the bundle")
    commands = [c for c in (_get(config, "spec", "build", "commands") or []) if isinstance(c, str)]
    split = commands.index(POST_COPY) if POST_COPY in commands else len(commands)
    downloaded = {path for c in commands[:split] for path in _BUNDLE_PATH.findall(c)}
    fetched: list[str] = []
    for item in _get(config, "spec", "env") or []:
        value = str(item.get("value", "")) if isinstance(item, Mapping) else ""
        if not value.startswith(f"{NUCLIO_DIR}/"):
            continue
        relative = value[len(NUCLIO_DIR) + 1 :]
        if (folder / relative).is_file():
            continue
        if relative in downloaded:
            fetched.append(relative)
        else:
            problems.append(f"spec.env: {item['name']}={value} but the bundle has no {relative}")
    for command in commands[split:]:
        for relative in _BUNDLE_PATH.findall(command):
            if not (folder / relative).is_file():
                problems.append(f"spec.build.commands: {relative} is not in the bundle")
    return problems, fetched


def locate(path: Path, workdir: Path) -> Path:
    """The bundle folder (the one holding function.yaml) of a zip (unpacked into ``workdir``)
    or a folder; FileNotFoundError / ValueError when ``path`` is neither."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path}: neither a zip archive nor a folder")
        archive.extract(path, workdir)
        path = workdir
    for folder in (path, path / "nuclio"):
        if (folder / "function.yaml").is_file():
            return folder
    raise ValueError(f"{path}: holds no function.yaml (nor nuclio/function.yaml)")


def run_probe(folder: Path, kind: FunctionKind, timeout: float) -> dict[str, Any]:
    """Run the bundle's main.py once in a subprocess with the bundle as working directory."""
    with tempfile.TemporaryDirectory(prefix="quadratseg-probe-") as temporary:
        result_file = Path(temporary) / "result.json"
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "quadratseg_handlers.bundle", "probe", "--kind", kind,
                 "--result", str(result_file)],
                cwd=folder, capture_output=True, text=True, timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"no answer within {timeout:.0f} s"}
        if not result_file.is_file():
            last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"the probe exited with {completed.returncode}: {last}"}
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result


def answer_problems(result: Mapping[str, Any], kind: FunctionKind, labels: Any) -> list[str]:
    """What is wrong with the probe's answer, for a function of this kind and spec."""
    if "error" in result:
        return [f"main.py: {result['error']}"]
    answer, size = result["answer"], (result["width"], result["height"])
    if result["status"] != 200:
        return [f"main.py answered HTTP {result['status']}: {json.dumps(answer)[:300]}"]
    if kind == "inpainter":
        if not isinstance(answer, Mapping) or not isinstance(answer.get("image"), str):
            return ["main.py: an inpainter must answer {\"image\": \"<base64>\"}"]
        try:
            returned = Image.open(io.BytesIO(base64.b64decode(answer["image"]))).size
        except Exception as exc:
            return [f"main.py: the answered image does not decode ({exc})"]
        return [] if returned == size else [f"main.py: answered a {returned} image for {size}"]
    return [f"answer: {problem}" for problem in cvat.validate_response(answer, labels, size)]


def validate(path: Path, *, run: bool = True, timeout: float = 600.0) -> Report:
    """Check a bundle (zip or folder); FileNotFoundError / ValueError when it is not one."""
    report = Report()
    with tempfile.TemporaryDirectory(prefix="quadratseg-validate-") as workdir:
        if path.is_file() and zipfile.is_zipfile(path):
            unsafe = archive.unsafe_entries(path)
            if unsafe:
                report.problems += [f"{path}: {problem}" for problem in unsafe]
                return report
        folder = locate(path, Path(workdir))
        try:
            config = yaml.safe_load((folder / "function.yaml").read_text())
        except yaml.YAMLError as exc:
            report.problems.append(f"function.yaml does not parse: {' '.join(str(exc).split())}")
            return report
        report.problems += config_problems(config)
        labels: Any = None
        spec_text = _get(config, "metadata", "annotations", "spec")
        if isinstance(spec_text, str):
            try:
                labels = json.loads(spec_text)
            except json.JSONDecodeError as exc:
                report.problems.append(f"metadata.annotations.spec: not JSON ({exc})")
            else:
                report.problems += [f"spec: {p}" for p in cvat.spec_problems(labels)]
        if not isinstance(config, Mapping):
            return report
        missing, fetched = file_problems(config, folder)
        report.problems += missing
        name = _get(config, "metadata", "name")
        catalogued = _get(config, "metadata", "annotations", "quadratseg.function")
        function = FUNCTIONS.get(str(catalogued))
        kind: FunctionKind = function.kind if function else "detector"
        if not run or report.problems:
            return report
        if fetched:
            report.notes.append(
                f"not run: {', '.join(fetched)} is downloaded when the image is built; give the "
                "file to `quadratseg package` to run the bundle here"
            )
            report.summary = f"{name}: configuration valid"
            return report
        result = run_probe(folder, kind, timeout)
        report.problems += answer_problems(result, kind, labels)
        if report.ok:
            shapes = len(result["answer"])
            answered = (
                f"{shapes} shape{'' if shapes == 1 else 's'}"
                if kind == "detector"
                else "an inpainted image"
            )
            count = f"{len(labels)} label{'' if len(labels) == 1 else 's'}"
            report.summary = (
                f"{name}: {count}; main.py started in {result['start_seconds']:.2f} s and "
                f"answered a {result['width']}x{result['height']} JPEG with {answered} in "
                f"{result['seconds']:.2f} s"
            )
    return report

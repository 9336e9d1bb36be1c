"""``quadratseg validate``: check a bundle the way Nuclio and CVAT will use it, before deploying.

A bundle (``nuclio.zip``, or a folder holding ``function.yaml``) passes when its yaml parses
and has the keys Nuclio and CVAT read, its label spec follows CVAT's rules, every file its
environment and build commands name is in the bundle (or downloaded by a build command), and
its ``main.py``, run once by a probe (``nuclio_sdk.test.Platform`` in a subprocess whose
working directory is the bundle: :func:`quadratseg_handlers.local.bundle.run_probe`), answers
a generated image with JSON CVAT accepts.
"""

from __future__ import annotations

import base64
import io
import json
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from quadratseg_handlers import cvat
from quadratseg_handlers.core.messages import plural
from quadratseg_handlers.deploy import extraction
from quadratseg_handlers.deploy.catalog import FUNCTIONS, FunctionKind
from quadratseg_handlers.deploy.compatibility import OutdatedBundle, outdated_bundle
from quadratseg_handlers.deploy.function_yaml import (
    NUCLIO_DIR,
    BundleError,
    config_problems,
    find_function_yaml,
    get,
    load_function_yaml,
)
from quadratseg_handlers.deploy.rendering import WHEELHOUSE

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


def file_problems(config: Mapping[str, Any], folder: Path) -> tuple[list[str], list[str]]:
    """Files the yaml names that the bundle lacks; and those downloaded at build time."""
    problems: list[str] = []
    handler = get(config, "spec", "handler")
    if isinstance(handler, str) and ":" in handler:
        module = folder / (handler.split(":")[0].replace(".", "/") + ".py")
        if not module.is_file():
            problems.append(f"spec.handler: {handler} needs {module.name}, not in the bundle")
    commands = [c for c in (get(config, "spec", "build", "commands") or []) if isinstance(c, str)]
    split = commands.index(POST_COPY) if POST_COPY in commands else len(commands)
    downloaded = {path for c in commands[:split] for path in _BUNDLE_PATH.findall(c)}
    fetched: list[str] = []
    for item in get(config, "spec", "env") or []:
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
            if relative == WHEELHOUSE and (folder / relative).is_dir():
                continue  # --find-links of a --wheelhouse bundle
            if not (folder / relative).is_file():
                problems.append(f"spec.build.commands: {relative} is not in the bundle")
    return problems, fetched


def locate(path: Path, workdir: Path) -> Path:
    """The bundle folder (the one holding function.yaml) of a zip (unpacked into ``workdir``)
    or a folder; FileNotFoundError / ValueError when ``path`` is neither."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    if path.is_file():
        if not extraction.is_archive(path):
            raise ValueError(f"{path}: neither a zip archive nor a folder")
        extraction.extract(path, workdir)
        path = workdir
    try:
        return find_function_yaml(path).parent
    except BundleError:
        raise ValueError(f"{path}: holds no function.yaml (nor nuclio/function.yaml)") from None


def answer_problems(result: Mapping[str, Any], kind: FunctionKind, labels: Any) -> list[str]:
    """What is wrong with the probe's answer, for a function of this kind and spec."""
    if "error" in result:
        return [f"main.py: {result['error']}"]
    answer, size_wh = result["answer"], (result["width"], result["height"])
    if result["status"] != 200:
        return [f"main.py answered HTTP {result['status']}: {json.dumps(answer)[:300]}"]
    if kind == "inpainter":
        if not isinstance(answer, Mapping) or not isinstance(answer.get("image"), str):
            return ['main.py: an inpainter must answer {"image": "<base64>"}']
        try:
            returned_wh = Image.open(io.BytesIO(base64.b64decode(answer["image"]))).size
        except Exception as exc:
            return [f"main.py: the answered image does not decode ({exc})"]
        if returned_wh != size_wh:
            return [f"main.py: answered a {returned_wh} image for {size_wh}"]
        return []
    return [f"answer: {problem}" for problem in cvat.validate_response(answer, labels, size_wh)]


Probe = Callable[[Path, FunctionKind, float], dict[str, Any]]
"""Runs a bundle folder's main.py once (a function kind, a timeout) and reports the answer:
:func:`quadratseg_handlers.local.bundle.run_probe` in a subprocess. Its result holds
``outdated`` (the one-line message) when the bundle imports what this version lacks."""


def validate(path: Path, *, probe: Probe | None = None, timeout: float = 600.0) -> Report:
    """Check a bundle (zip or folder), and run it once with ``probe`` when one is given;
    FileNotFoundError / ValueError when ``path`` is not a bundle (ArchiveError: a zip refused,
    an unsafe entry name included), BundleError when its function.yaml does not parse,
    OutdatedBundle when it was packaged by a version whose modules this one lacks (found in
    main.py or by the probe)."""
    report = Report()
    with tempfile.TemporaryDirectory(prefix="quadratseg-validate-") as workdir:
        if extraction.is_archive(path):
            unsafe = extraction.unsafe_entries(path)
            if unsafe:
                raise extraction.ArchiveError(f"{path}: {unsafe[0]}")
        folder = locate(path, Path(workdir))
        config = load_function_yaml(folder / "function.yaml", "function.yaml")
        catalogued = get(config, "metadata", "annotations", "quadratseg.function")
        function = FUNCTIONS.get(str(catalogued))
        kind: FunctionKind = function.kind if function else "detector"
        report.problems += config_problems(config, detector=kind == "detector")
        labels: Any = None
        spec_text = get(config, "metadata", "annotations", "spec")
        if isinstance(spec_text, str):
            try:
                labels = json.loads(spec_text)
            except json.JSONDecodeError as exc:
                report.problems.append(f"metadata.annotations.spec: not JSON ({exc})")
            else:
                report.problems += [f"spec: {p}" for p in cvat.spec_problems(labels)]
        if not isinstance(config, Mapping):
            return report
        outdated = outdated_bundle(folder, config)
        if outdated is not None:
            raise OutdatedBundle(outdated)
        missing, fetched = file_problems(config, folder)
        report.problems += missing
        name = get(config, "metadata", "name")
        if report.problems:
            return report
        if probe is None:
            report.summary = f"{name}: configuration valid (not run)"
            return report
        if fetched:
            report.notes.append(
                f"not run: {', '.join(fetched)} is downloaded when the image is built; give the "
                "file to `quadratseg package` to run the bundle here"
            )
            report.summary = f"{name}: configuration valid"
            return report
        result = probe(folder, kind, timeout)
        if "outdated" in result:
            raise OutdatedBundle(result["outdated"])
        report.problems += answer_problems(result, kind, labels)
        if report.ok:
            shapes = len(result["answer"])
            answered = plural(shapes, "shape") if kind == "detector" else "an inpainted image"
            count = plural(len(labels or []), "label")
            report.summary = (
                f"{name}: {count}; main.py started in {result['start_seconds']:.2f} s and "
                f"answered a {result['width']}x{result['height']} JPEG with {answered} in "
                f"{result['seconds']:.2f} s"
            )
    return report

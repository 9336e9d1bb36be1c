"""Rendering a function's Nuclio files from the catalogue: function.yaml and main.py.

Both the bundles ``quadratseg package`` writes and the committed ``functions/<name>/`` folders
come from here, so they cannot drift apart. Every environment path points at the file the
bundle holds under its standard name in ``/opt/nuclio``; the image installs the library from
the wheel inside the bundle, with the function's extra, pinned by ``constraints.txt`` when the
source tree has one (else by the specifiers of ``pyproject.toml``).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from quadratseg_handlers.deploy.catalog import FunctionSpec, PipStep
from quadratseg_handlers.deploy.function_yaml import (
    HTTP_TRIGGER,
    MAX_REQUEST_BODY,
    NAMESPACE,
    NUCLIO_DIR,
    NUM_WORKERS,
    READINESS_TIMEOUT_S,
    RUNTIME,
    WORKER_WAIT_MS,
    Batching,
)
from quadratseg_handlers.deploy.torch_builds import (
    TORCH_PACKAGES,
    TORCH_WHEEL_INDEX,
    CudaBuild,
    is_cuda_runtime_package,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONSTRAINTS_NAME = "constraints.txt"
ONNXRUNTIME_GPU = "onnxruntime-gpu"
"""onnxruntime's CUDA build, same versions: what a GPU bundle runs an ``.onnx`` model on."""
TORCH_CPU_INDEX = f"{TORCH_WHEEL_INDEX}/cpu"
"""PyTorch's CPU wheel index: CPU images take torch from it, not PyPI's CUDA build."""
CPU_TORCH_PACKAGES = TORCH_PACKAGES
_EXACT_PIN = re.compile(r"^([A-Za-z0-9._-]+)\s*==\s*([0-9][^,;\s+]*)")
PROJECT_NAME = "quadratseg-handlers"

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def normalize(name: str) -> str:
    """A distribution name in PEP 503 normal form (``Simple_Lama`` -> ``simple-lama``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized distribution name of a PEP 508 requirement string."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"cannot read requirement {requirement!r}")
    return normalize(match.group(1))


@dataclass(frozen=True)
class SourceTree:
    """The library's source checkout: version, dependencies and pins, read from its files."""

    root: Path
    version: str
    dependencies: tuple[str, ...]
    extras: Mapping[str, tuple[str, ...]]
    constraints: Mapping[str, str] = field(default_factory=dict)
    """Normalized name -> pinned specifier (``==2.13.0,!=2.13.0+cpu``), from constraints.txt."""

    @classmethod
    def read(cls, root: Path) -> SourceTree:
        """Read ``pyproject.toml`` and, when present, ``constraints.txt`` under ``root``."""
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        if project.get("name") != PROJECT_NAME:
            raise ValueError(f"{root / 'pyproject.toml'} is not the {PROJECT_NAME} project")
        extras = project.get("optional-dependencies", {})
        pins = root / CONSTRAINTS_NAME
        return cls(
            root=root,
            version=project["version"],
            dependencies=tuple(project.get("dependencies", ())),
            extras={name: tuple(reqs) for name, reqs in extras.items()},
            constraints=parse_constraints(pins.read_text()) if pins.is_file() else {},
        )

    @classmethod
    def of_library(cls) -> SourceTree:
        """The checkout this library is imported from (packaging needs its source)."""
        root = Path(__file__).resolve().parents[2]
        if not (root / "pyproject.toml").is_file():
            raise FileNotFoundError(
                f"no pyproject.toml in {root}: packaging needs a source checkout of "
                f"{PROJECT_NAME} (pip install -e .)"
            )
        return cls.read(root)

    @property
    def wheel_name(self) -> str:
        """The file name of the library's wheel."""
        return f"{PROJECT_NAME.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def requirements(self, extra: str | None) -> list[str]:
        """The core dependencies plus an extra's, with the extras it includes expanded."""
        result = list(self.dependencies)
        pending = [extra] if extra else []
        seen: set[str] = set()
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            if name not in self.extras:
                raise KeyError(f"{PROJECT_NAME} has no extra {name!r}")
            for requirement in self.extras[name]:
                if requirement_name(requirement) == PROJECT_NAME:
                    inner = _REQUIREMENT.match(requirement)
                    assert inner is not None
                    pending += [e.strip() for e in (inner.group(2) or "[]")[1:-1].split(",") if e]
                elif requirement not in result:
                    result.append(requirement)
        return result

    def pin(self, requirement: str, known: Iterable[str] = ()) -> str:
        """``requirement`` with its constraints.txt pin, else as ``known`` or it specifies it."""
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise ValueError(f"cannot read requirement {requirement!r}")
        name, extras, marker = match.group(1), match.group(2) or "", match.group(4) or ""
        pinned = self.constraints.get(normalize(name))
        if pinned is not None:
            return f"{name}{extras}{pinned}{marker}"
        if not match.group(3):
            for other in known:
                if requirement_name(other) == normalize(name):
                    return other
        return requirement

    def bundle_constraints(self, *, gpu: bool = True, cuda: CudaBuild | None = None) -> str | None:
        """constraints.txt as the image uses it (without this project's own line), or None.

        A CPU image's pins torch and torchvision at their ``+cpu`` builds (:func:`cpu_build`);
        a ``cuda`` build's at theirs (``+cu126``), without the pins of PyPI's CUDA libraries
        (that torch wheel pins its own).
        """
        if not self.constraints:
            return None
        lines = []
        for name, spec in sorted(self.constraints.items()):
            line = f"{name}{spec}"
            if cuda is not None:
                if is_cuda_runtime_package(name):
                    continue
                lines.append(local_build(line, cuda.label) or line)
            else:
                lines.append(line if gpu else cpu_build(line) or line)
        return "\n".join(lines) + "\n"

    @property
    def torch_version(self) -> str | None:
        """The torch version constraints.txt pins (``2.13.0``), or None."""
        match = _EXACT_PIN.match(f"torch{self.constraints.get('torch', '')}")
        return match.group(2) if match else None


def cpu_build(requirement: str) -> str | None:
    """``torch==2.13.0+cpu`` for a requirement pinning torch (or torchvision) exactly; None
    for any other requirement."""
    return local_build(requirement, "cpu")


def local_build(requirement: str, label: str) -> str | None:
    """``torch==2.13.0+<label>`` (``cpu``, ``cu126``) for a requirement pinning torch (or
    torchvision) exactly; None for any other requirement."""
    match = _EXACT_PIN.match(requirement)
    if match is None or normalize(match.group(1)) not in CPU_TORCH_PACKAGES:
        return None
    return f"{match.group(1)}=={match.group(2)}+{label}"


def parse_constraints(text: str) -> dict[str, str]:
    """Pins by normalized name from a constraints file (``name==1.0`` lines, comments skipped).

    Option lines (``-e``, ``--index-url``) and this project's own line are left out: they are
    not constraints the image can use.
    """
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _REQUIREMENT.match(line)
        if match is None or "==" not in (match.group(3) or "") or "@" in line:
            continue
        name = normalize(match.group(1))
        if name != PROJECT_NAME:
            pins[name] = match.group(3).replace(" ", "")
    return pins


@dataclass(frozen=True)
class BundleLayout:
    """What a bundle holds besides main.py and function.yaml, as function.yaml refers to it."""

    files: Mapping[str, str]
    """File argument -> its name in the bundle, for every file the bundle holds."""

    fetched: tuple[str, ...]
    """File arguments downloaded at image-build time instead."""

    wheel: str
    constraints: bool

    @classmethod
    def default(cls, spec: FunctionSpec, source: SourceTree) -> BundleLayout:
        """The layout when only required files are given (the committed functions/ folders)."""
        return cls(
            files={f.argument: f.bundle_name() for f in spec.files if f.fetch_url is None},
            fetched=tuple(f.argument for f in spec.files if f.fetch_url is not None),
            wheel=source.wheel_name,
            constraints=bool(source.constraints),
        )


def bundle_path(name: str) -> str:
    """The absolute path of a bundle file inside the image."""
    return f"{NUCLIO_DIR}/{name}"


def pip_installs(
    spec: FunctionSpec,
    source: SourceTree,
    *,
    gpu: bool = False,
    cuda: CudaBuild | None = None,
) -> list[PipStep]:
    """The image's pip installs before the library's wheel, in order: torch and torchvision
    from PyTorch's index (a CPU bundle's ``+cpu`` builds, without the CUDA libraries, or a
    ``cuda`` build's ``+cu126``), the pinned requirements (those torch builds pinned), then
    the catalogue's special steps."""
    requirements = source.requirements(spec.extra)
    special = {requirement_name(p) for step in spec.pip_steps for p in step.packages}
    pinned = [source.pin(r) for r in requirements if requirement_name(r) not in special]
    steps = []
    if not gpu or cuda is not None:
        label, index = ("cpu", TORCH_CPU_INDEX) if cuda is None else (cuda.label, cuda.index_url)
        torch = [build for build in (local_build(r, label) for r in pinned) if build]
        if torch:
            steps.append(PipStep(tuple(torch), ("--index-url", index)))
        pinned = [local_build(r, label) or r for r in pinned]
    steps.append(PipStep(tuple(pinned)))
    for step in spec.pip_steps:
        packages = tuple(source.pin(p, requirements) for p in step.packages)
        steps.append(PipStep(packages, step.options, step.env))
    return steps


WHEELHOUSE = "wheels"
"""The bundle's folder of wheels (``--wheelhouse``) the image installs from, offline."""


def offline_options(options: Iterable[str]) -> tuple[str, ...]:
    """pip options that install from the bundle's wheelhouse only: its index options dropped."""
    kept: list[str] = []
    skip = False
    for option in options:
        if skip:
            skip = False
        elif option in ("--index-url", "--extra-index-url"):
            skip = True
        else:
            kept.append(option)
    return ("--no-index", "--find-links", bundle_path(WHEELHOUSE), *kept)


def build_commands(
    spec: FunctionSpec,
    layout: BundleLayout,
    source: SourceTree,
    *,
    gpu: bool = False,
    cuda: CudaBuild | None = None,
    wheelhouse: bool = False,
) -> list[str]:
    """Nuclio ``build.commands``: system packages, the pip installs (:func:`pip_installs`) and
    downloads before the bundle is copied (cached layers), then the library from its wheel;
    a GPU bundle holding an ONNX model then swaps onnxruntime for its CUDA build. With a
    ``wheelhouse`` every install runs after the copy, from the bundle's wheels only."""
    commands = []
    if spec.apt_packages:
        commands.append(
            "apt-get update && apt-get install -y --no-install-recommends "
            f"{' '.join(spec.apt_packages)} && rm -rf /var/lib/apt/lists/*"
        )
    installs = pip_installs(spec, source, gpu=gpu, cuda=cuda)
    offline: tuple[str, ...] = ()
    if wheelhouse:
        commands.append("@nuclio.postCopy")
        offline = offline_options(())
        installs = [replace(step, options=offline_options(step.options)) for step in installs]
    commands += [_pip(step.packages, step.options, step.env) for step in installs]
    for argument in layout.fetched:
        bundle_file = spec.file(argument)
        target = bundle_path(bundle_file.bundle_name())
        commands.append(
            f'mkdir -p {NUCLIO_DIR} && python -c "import urllib.request; '
            f"urllib.request.urlretrieve('{bundle_file.fetch_url}', '{target}')\""
        )
    if not wheelhouse:
        commands.append("@nuclio.postCopy")
    wheel = bundle_path(layout.wheel) + (f"[{spec.extra}]" if spec.extra else "")
    options = offline + (("-c", bundle_path(CONSTRAINTS_NAME)) if layout.constraints else ())
    commands.append(_pip([wheel], options))
    if gpu and any(name.lower().endswith(".onnx") for name in layout.files.values()):
        version = source.constraints.get("onnxruntime", "")
        commands.append(
            "python -m pip uninstall -y onnxruntime && "
            + _pip([f"{ONNXRUNTIME_GPU}{version}"], options)
        )
    return commands


def _pip(packages: Iterable[str], options: Iterable[str] = (), env: str = "") -> str:
    words = ["python", "-m", "pip", "install", "--no-cache-dir", *options]
    words += [shlex.quote(p) for p in packages]
    return f"{env} {' '.join(words)}" if env else " ".join(words)


def function_name(spec: FunctionSpec, tag: str | None, name: str | None = None) -> str:
    """The Nuclio function name (``name``, else the catalogue's), with the tag appended."""
    base = name or spec.name
    return f"{base}-{tag}" if tag else base


def function_config(
    spec: FunctionSpec,
    layout: BundleLayout,
    source: SourceTree,
    *,
    gpu: bool,
    labels_json: str | None = None,
    tag: str | None = None,
    name: str | None = None,
    network: str | None = None,
    batch: Batching | None = None,
    cuda: CudaBuild | None = None,
    wheelhouse: bool = False,
) -> dict[str, Any]:
    """The function.yaml content as data (``labels_json`` is the spec; None leaves it out).

    ``network`` is the Docker network a local-platform function joins
    (``spec.platform.attributes.network``); ``batch`` turns on the HTTP trigger's batch mode.
    """
    annotations: dict[str, Any] = {"name": f"{spec.title} [{tag}]" if tag else spec.title}
    if spec.kind == "detector":
        annotations["type"] = "detector"
    annotations["framework"] = spec.framework
    if labels_json is not None and spec.kind == "detector":
        annotations["spec"] = labels_json
    annotations["quadratseg.function"] = spec.name
    annotations["quadratseg.version"] = source.version
    if cuda is not None:
        annotations["quadratseg.cuda"] = cuda.cuda
        annotations["quadratseg.min-driver"] = cuda.min_driver
    if wheelhouse:
        annotations["quadratseg.wheelhouse"] = WHEELHOUSE
    env = [
        {"name": f.env, "value": bundle_path(layout.files.get(f.argument, f.bundle_name()))}
        for f in spec.files
        if f.argument in layout.files or f.argument in layout.fetched
    ]
    env += [{"name": name, "value": value} for name, value in spec.env]
    env.append({"name": "DEVICE", "value": "cuda" if gpu else "cpu"})
    resources: dict[str, Any] = {"requests": {"memory": spec.memory}}
    if gpu:
        resources["limits"] = {"nvidia.com/gpu": 1}
    platform: dict[str, Any] = {
        "restartPolicy": {"name": "always", "maximumRetryCount": 3},
        "mountMode": "volume",
    }
    if network:
        platform["network"] = network
    trigger: dict[str, Any] = {
        "kind": "http",
        "numWorkers": NUM_WORKERS,
        "workerAvailabilityTimeoutMilliseconds": WORKER_WAIT_MS,
        "attributes": {"maxRequestBodySize": MAX_REQUEST_BODY},
    }
    if batch is not None:
        trigger["batch"] = batch.trigger_config()
    return {
        "metadata": {
            "name": function_name(spec, tag, name),
            "namespace": NAMESPACE,
            "annotations": annotations,
        },
        "spec": {
            "description": spec.description,
            "runtime": RUNTIME,
            "handler": "main:handler",
            "eventTimeout": spec.event_timeout,
            "readinessTimeoutSeconds": READINESS_TIMEOUT_S,
            "minReplicas": 1,
            "maxReplicas": 1,
            "env": env,
            "build": {
                "baseImage": spec.gpu_base_image if gpu else spec.cpu_base_image,
                "commands": build_commands(
                    spec, layout, source, gpu=gpu, cuda=cuda, wheelhouse=wheelhouse
                ),
            },
            "triggers": {HTTP_TRIGGER: trigger},
            "resources": resources,
            "platform": {"attributes": platform},
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block style, indented lists, multi-line strings (the spec JSON) as ``|`` literals."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_function_yaml(
    spec: FunctionSpec,
    layout: BundleLayout,
    source: SourceTree,
    *,
    gpu: bool,
    labels_json: str | None = None,
    tag: str | None = None,
    name: str | None = None,
    network: str | None = None,
    batch: Batching | None = None,
    cuda: CudaBuild | None = None,
    wheelhouse: bool = False,
) -> str:
    """function.yaml (or function-gpu.yaml) text, with a header saying where it comes from."""
    config = function_config(
        spec,
        layout,
        source,
        gpu=gpu,
        labels_json=labels_json,
        tag=tag,
        name=name,
        network=network,
        batch=batch,
        cuda=cuda,
        wheelhouse=wheelhouse,
    )
    variant = f"GPU, CUDA {cuda.cuda}" if cuda else "GPU" if gpu else "CPU"
    if labels_json is None:
        header = [
            f"# {spec.name} ({variant}): rendered from the catalogue in "
            "quadratseg_handlers/deploy/catalog.py;",
            "# edit the catalogue and run scripts/update_functions.py, not this file.",
            "# metadata.annotations.spec is generated from the weights by `quadratseg package`.",
        ]
    else:
        header = [
            f"# {function_name(spec, tag, name)} ({variant}): generated by `quadratseg package` "
            f"(quadratseg-handlers {source.version});",
            "# the label spec was read from the packaged weights.",
        ]
    body = yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True)
    return "\n".join(header) + "\n" + body


MAIN_TEMPLATE = '''"""Nuclio entry points of {name}: generated by `quadratseg package`, do not edit.

Nuclio calls init_context once per worker and handler once per event. Outside Nuclio,
`python main.py IMAGE [--threshold T]` runs the function once and prints its JSON answer.
"""

from quadratseg_handlers.core import runtime
from {module} import {cls} as Handler


def init_context(context):
    runtime.init_context(Handler, context)


def handler(context, event):
    return runtime.handle_event(context, event)


if __name__ == "__main__":
    from quadratseg_handlers.local.bundle import run_once

    raise SystemExit(run_once(__file__))
'''


def render_main(spec: FunctionSpec) -> str:
    """The generated main.py of a function."""
    return MAIN_TEMPLATE.format(name=spec.name, module=spec.module_name, cls=spec.class_name)


def folder_files(spec: FunctionSpec, source: SourceTree) -> dict[str, str]:
    """The committed ``functions/<name>/`` files: CPU and GPU function.yaml, and main.py."""
    layout = BundleLayout.default(spec, source)
    return {
        "function.yaml": render_function_yaml(spec, layout, source, gpu=False),
        "function-gpu.yaml": render_function_yaml(spec, layout, source, gpu=True),
        "main.py": render_main(spec),
    }

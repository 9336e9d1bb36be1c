"""``quadratseg package``: trained weights -> a deployable ``nuclio.zip``, checked before writing.

The steps: check the inputs cheaply (files, extensions, names, the output), stage the files
under their standard names, construct and load the handler on them (the weights must fit the
function; this is also where the label spec comes from: class names from the checkpoint,
skeletons from the template), build the library wheel, render function.yaml and main.py, and
write the zip atomically. Every problem is one line; nothing is written unless all pass.

Bundle layout (the deployment guide's)::

    nuclio/function.yaml     nuclio/main.py        nuclio/<weights under standard names>
    nuclio/<library wheel>   nuclio/constraints.txt (when the source tree pins versions)
    nuclio/<--source modules>
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from quadratseg_handlers import cvat
from quadratseg_handlers.backends.checkpoints import trust_setting
from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.core.messages import disk_error, first_line, plural
from quadratseg_handlers.core.references import resolve
from quadratseg_handlers.cvat.spec import LabelSpec
from quadratseg_handlers.deploy import library_wheel
from quadratseg_handlers.deploy.archive import Content, write_atomically, write_zip
from quadratseg_handlers.deploy.catalog import BundleFile, FunctionSpec
from quadratseg_handlers.deploy.function_yaml import (
    DEFAULT_BATCH_TIMEOUT_MS,
    Batching,
    batch_option_problems,
)
from quadratseg_handlers.deploy.library_wheel import SKIPPED, WheelError
from quadratseg_handlers.deploy.rendering import (
    CONSTRAINTS_NAME,
    BundleLayout,
    SourceTree,
    function_name,
    pip_installs,
    render_function_yaml,
    render_main,
)
from quadratseg_handlers.deploy.torch_builds import requested_build
from quadratseg_handlers.deploy.wheelhouse import WheelhouseError, bundle_wheels

BUNDLE_FOLDER = "nuclio"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PackageError(Exception):
    """Packaging cannot go on: one message per problem, and the exit code to end with."""

    def __init__(self, problems: Sequence[str], code: int = 2) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)
        self.code = code


@dataclass(frozen=True)
class PackageRequest:
    """What to package: a function, the user's files by argument name, and the options."""

    function: FunctionSpec
    files: Mapping[str, Path]
    sources: tuple[Path, ...] = ()
    output: Path = Path("nuclio.zip")
    gpu: bool = False
    cuda: str | None = None
    """``--cuda 12.6``: a GPU bundle with that CUDA build of torch (PyTorch's index), not PyPI's."""
    wheelhouse: bool = False
    """``--wheelhouse``: the image's wheels carried in the bundle, installed offline."""
    tag: str | None = None
    force: bool = False
    env: tuple[str, ...] = ()
    """``NAME=VALUE`` settings written into function.yaml, over the catalogue's values."""
    name: str | None = None
    """The function's name instead of the catalogue's (a lab's own model)."""
    display_name: str | None = None
    """The name CVAT shows instead of the catalogue's title."""
    description: str | None = None
    """``spec.description`` instead of the catalogue's."""
    network: str | None = None
    """Docker network of a local-platform function (``--network``)."""
    batch_size: int | None = None
    """Events per batch of the HTTP trigger's batch mode (``--batch-size``); None: off."""
    batch_timeout_ms: int | None = None
    """How long a batch waits to fill (``--batch-timeout``; DEFAULT_BATCH_TIMEOUT_MS)."""

    @property
    def batch(self) -> Batching | None:
        """The trigger's batch mode as asked (None when no ``--batch-size``)."""
        if self.batch_size is None:
            return None
        timeout = (
            DEFAULT_BATCH_TIMEOUT_MS if self.batch_timeout_ms is None else self.batch_timeout_ms
        )
        return Batching(self.batch_size, timeout)


@dataclass(frozen=True)
class PackageResult:
    """What was written."""

    output: Path
    entries: list[str]
    size: int
    labels: list[LabelSpec]
    seconds: float


def assign_files(
    function: FunctionSpec, positional: Sequence[Path], named: Mapping[str, Path]
) -> tuple[dict[str, Path], list[str]]:
    """Map positional files (the guide's order) and ``--<argument>`` options onto the
    function's files; also return the problems (too many, unknown option, twice, missing)."""
    problems: list[str] = []
    if len(positional) > len(function.files):
        problems.append(
            f"{function.model} takes at most {len(function.files)} file(s) "
            f"(usage: quadratseg package {function.usage()}), got {len(positional)}: "
            + " ".join(str(path) for path in positional)
        )
    files = {f.argument: path for f, path in zip(function.files, positional, strict=False)}
    valid = [f.argument for f in function.files]
    for argument, path in named.items():
        if argument not in valid:
            owned = ", ".join(f"--{name}" for name in valid) or "none"
            problems.append(f"--{argument} is not a file of {function.model} (its files: {owned})")
        elif argument in files:
            problems.append(
                f"{function.file(argument).metavar} given twice: {files[argument]} and "
                f"--{argument} {path}"
            )
        else:
            files[argument] = path
    for bundle_file in function.files:
        if bundle_file.required and bundle_file.argument not in files:
            problems.append(
                f"missing {bundle_file.metavar} ({bundle_file.help}, "
                f"{_extensions(bundle_file)}); usage: quadratseg package {function.usage()}"
            )
    return files, problems


def _extensions(bundle_file: BundleFile) -> str:
    return " or ".join(f"a {suffix} file" for suffix in bundle_file.suffixes)


def file_problem(bundle_file: BundleFile, path: Path) -> str | None:
    """Why ``path`` cannot be ``bundle_file`` (before anything loads it), or None."""
    where = bundle_file.metavar
    if not path.exists():
        return f"{where}: file not found: {path}"
    if path.is_dir():
        return f"{where}: {path} is a directory, expected {_extensions(bundle_file)}"
    if not os.access(path, os.R_OK):
        return f"{where}: {path} is not readable"
    refused = dict(bundle_file.refused).get(path.suffix.lower())
    if refused is not None:
        return f"{where}: {path}: {refused}"
    if path.suffix.lower() not in bundle_file.suffixes:
        return (
            f"{where}: {path} has extension {path.suffix or '(none)'!r}; "
            f"expected {_extensions(bundle_file)}"
        )
    if path.stat().st_size == 0:
        return f"{where}: {path} is empty"
    return None


def reserved_names(function: FunctionSpec, source: SourceTree) -> set[str]:
    """Top-level bundle names the package step writes itself."""
    names = {"function.yaml", "main.py", CONSTRAINTS_NAME, source.wheel_name}
    for bundle_file in function.files:
        names.update(bundle_file.bundle_name(suffix) for suffix in bundle_file.suffixes)
    return names


def input_problems(request: PackageRequest, source: SourceTree) -> list[str]:
    """Every problem that can be seen without loading anything, one line each."""
    problems: list[str] = []
    for argument, path in request.files.items():
        problem = file_problem(request.function.file(argument), path)
        if problem:
            problems.append(problem)
    reserved = reserved_names(request.function, source)
    seen: set[str] = set()
    for path in request.sources:
        if not path.exists():
            problems.append(f"--source {path}: not found")
            continue
        if path.name in reserved or path.name in seen:
            problems.append(f"--source {path}: the bundle already holds a {path.name!r}")
        seen.add(path.name)
        problems += [f"--source {path}: {link} is a symbolic link" for link in _links(path)]
    if request.network is not None and not _NETWORK.match(request.network):
        problems.append(
            f"--network {request.network!r}: a Docker network name (letters, digits, '_', '.', '-')"
        )
    if request.cuda is not None:
        try:
            requested_build(source.torch_version, request.cuda)
        except ValueError as exc:
            problems.append(str(exc))
    if request.wheelhouse and bundle_files(request)[1]:
        problems.append("--wheelhouse: give every file (one would be downloaded at build time)")
    if request.batch_size is None and request.batch_timeout_ms is not None:
        problems.append("--batch-timeout needs --batch-size (the events per batch)")
    if request.batch is not None:
        problems += batch_option_problems(request.batch.size, request.batch.timeout_ms)
    name = function_name(request.function, request.tag, request.name)
    for option, value in (("--name", request.name), ("--tag", request.tag)):
        if value is not None and (not _NAME.match(value) or len(name) > 63):
            problems.append(
                f"{option} {value!r}: use lower-case letters, digits and '-' "
                f"(the function name {name!r} must be a DNS label of at most 63 characters)"
            )
    for option, text in (
        ("--display-name", request.display_name),
        ("--description", request.description),
    ):
        if text is not None and (not text.strip() or not text.isprintable()):
            problems.append(f"{option} {text!r}: give one line of text")
    output = request.output
    if output.is_dir():
        problems.append(f"--output {output}: is a directory")
    elif not output.parent.is_dir():
        problems.append(f"--output {output}: folder {output.parent} does not exist")
    elif output.exists() and not request.force:
        problems.append(f"--output {output}: exists; use --force to replace it")
    return problems


def _links(path: Path) -> list[Path]:
    if path.is_symlink():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*") if p.is_symlink())


def _source_files(path: Path) -> Iterator[tuple[str, Path]]:
    """(relative name, file) under a --source file or folder, skipping compiled Python."""
    if path.is_file():
        yield path.name, path
        return
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if not file.is_file() or any(
            part == "__pycache__" or part.endswith((".pyc", ".pyo")) for part in relative.parts
        ):
            continue
        yield f"{path.name}/{relative.as_posix()}", file


def split_env(assignments: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``NAME=VALUE`` strings as a dict (in order), and the problems (no ``=``, given twice)."""
    env: dict[str, str] = {}
    problems: list[str] = []
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            problems.append(f"--env {assignment!r}: expected NAME=VALUE")
        elif name in env:
            problems.append(f"--env {name}: given twice")
        else:
            env[name] = value
    return env, problems


def env_problems(function: FunctionSpec, env: Mapping[str, str]) -> list[str]:
    """Why ``env`` cannot go into this function's bundle: unknown names, names the package
    step sets itself (files, DEVICE), and values the setting refuses; one line each."""
    try:
        handler_class = resolve(function.handler)
    except ImportError:
        return []  # read_labels reports the missing extra
    settings = {setting.name: setting for setting in handler_class.declared_settings()}
    files = {f.env: f.metavar for f in function.files}
    problems: list[str] = []
    for name, value in env.items():
        if name not in settings:
            problems.append(
                f"--env {name}: not a setting of {function.model} "
                f"(`quadratseg settings {function.model}` lists them)"
            )
        elif name in files:
            problems.append(f"--env {name}: set by the {files[name]} file argument")
        elif name == "DEVICE":
            problems.append("--env DEVICE: set by --gpu (cuda) or its absence (cpu)")
        else:
            try:
                settings[name].read(value)
            except ConfigError as exc:
                problems.append(f"--env {exc}")
    return problems


def customised(request: PackageRequest) -> FunctionSpec:
    """The catalogue's function with the request's settings, display name and description."""
    function = request.function
    env = dict(function.env)
    env.update(split_env(request.env)[0])
    return replace(
        function,
        title=request.display_name or function.title,
        description=request.description or function.description,
        env=tuple(env.items()),
    )


def bundle_files(request: PackageRequest) -> tuple[dict[str, Path], tuple[str, ...]]:
    """The files a bundle holds by their bundle name (given, else shipped defaults), and the
    arguments fetched at image-build time instead; a file the settings leave unused is
    neither held nor fetched unless given."""
    files: dict[str, Path] = {}
    fetched: list[str] = []
    settings = dict(customised(request).env)
    for bundle_file in request.function.files:
        given = request.files.get(bundle_file.argument)
        if given is not None:
            files[bundle_file.argument] = given
        elif any(settings.get(name) == value for name, value in bundle_file.unused_when):
            continue
        elif bundle_file.default is not None:
            files[bundle_file.argument] = bundle_file.default_path()
        elif bundle_file.fetch_url is not None:
            fetched.append(bundle_file.argument)
    return files, tuple(fetched)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, destination)


def _stage(path: Path, destination: Path) -> None:
    """Put a file or folder into the staging bundle as a real file (a hard link, else a
    copy): code that looks next to a file (an mmseg config's custom imports) finds exactly
    what the bundle will hold, never the file's original folder."""
    if path.is_dir():
        shutil.copytree(
            path,
            destination,
            copy_function=_link_or_copy,
            ignore=shutil.ignore_patterns(*SKIPPED),
        )
    else:
        _link_or_copy(str(path), str(destination))


@contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` (custom model modules next to a config), then not.

    Modules imported from it stay imported: model registries (mmengine's) refuse to register
    the same class twice, so a second package run in one process must reuse them.
    """
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def read_labels(
    request: PackageRequest, layout: BundleLayout, stage: Path
) -> tuple[list[LabelSpec], str | None]:
    """Construct and load the handler on the staged files, as Nuclio would, and return its
    label spec and model family: the weights prove they fit the function, and the spec (and
    the name CVAT shows) come from them."""
    function = customised(request)
    try:
        handler_class = resolve(function.handler)
    except ImportError as exc:
        extra = f"'quadratseg-handlers[{function.extra}]'" if function.extra else "the library"
        raise PackageError(
            [f"{function.name} needs {extra} installed here to check its files ({exc})"]
        ) from None
    environ = {
        f.env: str(stage / layout.files[f.argument])
        for f in function.files
        if f.argument in layout.files
    }
    environ.update(dict(function.env))
    environ["DEVICE"] = "cpu"
    declared = {setting.name for setting in handler_class.declared_settings()}
    unknown = sorted(set(environ) - declared)
    if unknown:
        raise PackageError(
            [f"catalogue error: {', '.join(unknown)} not a setting of {function.handler}"], code=1
        )
    if layout.fetched:
        return [], None
    environ.update(trust_setting(declared))
    given = {str(stage / layout.files[a]): str(p) for a, p in request.files.items()}
    try:
        with _importable(stage):
            handler = handler_class(environ=environ)
            handler.load()
            labels: list[LabelSpec] = handler.labels() if function.kind == "detector" else []
            family = handler.model_family()
    except ConfigError as exc:
        raise PackageError([f"{function.model}: {_user_paths(str(exc), given)}"]) from None
    except Exception as exc:
        first = first_line(exc, 300)
        raise PackageError(
            [
                f"{function.model}: the files do not load as {function.class_name}: "
                f"{type(exc).__name__}: {_user_paths(first, given)}"
            ]
        ) from None
    problems = cvat.spec_problems(labels)
    if problems:
        raise PackageError(
            [f"{function.class_name} gives an invalid label spec: {p}" for p in problems], code=1
        )
    return labels, family


def _user_paths(message: str, staged: Mapping[str, str]) -> str:
    for staged_path, user_path in staged.items():
        message = message.replace(staged_path, user_path)
    return message


def build_wheel(source: SourceTree, destination: Path) -> Path:
    """The library's wheel in ``destination``, built reproducibly from a clean copy of its
    source, or taken from the wheel cache (:data:`library_wheel.WHEEL_CACHE_ENV`)."""
    try:
        return library_wheel.build_wheel(source, destination)
    except WheelError as exc:
        raise PackageError([str(exc)], code=1) from None


def package(
    request: PackageRequest,
    *,
    problems: Sequence[str] = (),
    source: SourceTree | None = None,
    wheel: Path | None = None,
    pip_options: Sequence[str] = (),
) -> PackageResult:
    """Check, stage, load, render and write one bundle; raise PackageError on any problem.

    ``problems`` found earlier (by :func:`assign_files`) are reported with the input checks.
    ``wheel`` reuses a wheel already built from this source (tests); otherwise one is built.
    ``pip_options`` go to the wheelhouse's ``pip download`` (tests: a local index).
    """
    started = time.perf_counter()
    if source is None:
        try:
            source = SourceTree.of_library()
        except (FileNotFoundError, ValueError) as exc:
            raise PackageError([*problems, str(exc)]) from None
    env, env_found = split_env(request.env)
    found = [
        *problems,
        *input_problems(request, source),
        *env_found,
        *env_problems(request.function, env),
    ]
    if found:
        raise PackageError(found)
    function = customised(request)
    files, fetched = bundle_files(request)
    with tempfile.TemporaryDirectory(prefix="quadratseg-package-") as temporary:
        stage = Path(temporary) / BUNDLE_FOLDER
        stage.mkdir()
        names = {
            argument: function.file(argument).bundle_name(path.suffix)
            for argument, path in files.items()
        }
        try:
            for argument, path in files.items():
                _stage(path, stage / names[argument])
            for path in request.sources:
                _stage(path, stage / path.name)
        except OSError as exc:
            raise PackageError(
                [f"cannot stage the files in {Path(temporary).parent}: {disk_error(exc)} "
                 "(TMPDIR chooses the folder)"]
            ) from None  # fmt: skip
        cuda = requested_build(source.torch_version, request.cuda)
        gpu = request.gpu or cuda is not None
        constraints = source.bundle_constraints(gpu=gpu, cuda=cuda)
        wheel_name = wheel.name if wheel else source.wheel_name
        layout = BundleLayout(names, fetched, wheel_name, constraints is not None)
        labels, family = read_labels(request, layout, stage)
        described = function.described_by([str(label["name"]) for label in labels], family)
        title, text = request.display_name, request.description  # given: kept as given
        function = replace(
            function, title=title or described.title, description=text or described.description
        )
        wheel_path = wheel or build_wheel(source, Path(temporary) / "wheel")
        labels_json = cvat.spec_json(labels)
        entries: dict[str, Content] = {
            "function.yaml": render_function_yaml(
                function,
                layout,
                source,
                gpu=gpu,
                labels_json=labels_json,
                tag=request.tag,
                name=request.name,
                network=request.network,
                batch=request.batch,
                cuda=cuda,
                wheelhouse=request.wheelhouse,
            ).encode(),
            "main.py": render_main(function).encode(),
            wheel_path.name: wheel_path,
        }
        if constraints is not None:
            entries[CONSTRAINTS_NAME] = constraints.encode()
        if request.wheelhouse:
            steps = pip_installs(function, source, gpu=gpu, cuda=cuda)
            try:
                entries.update(bundle_wheels(steps, constraints, Path(temporary), pip_options))
            except WheelhouseError as exc:
                raise PackageError([str(exc)], code=1) from None
        for argument, path in files.items():
            entries[names[argument]] = path
        for path in request.sources:
            entries.update(_source_files(path))
        archive = {f"{BUNDLE_FOLDER}/{name}": content for name, content in entries.items()}
        try:
            write_atomically(
                request.output, lambda path: write_zip(path, archive), force=request.force
            )
        except FileExistsError as exc:
            raise PackageError([str(exc)]) from None
        except OSError as exc:
            raise PackageError([f"cannot write {request.output}: {disk_error(exc)}"]) from None
    return PackageResult(
        output=request.output,
        entries=sorted(archive),
        size=request.output.stat().st_size,
        labels=labels,
        seconds=time.perf_counter() - started,
    )


def describe(result: PackageResult, function: FunctionSpec, request: PackageRequest) -> str:
    """The summary line the command prints after writing a bundle."""
    kind = f"GPU, CUDA {request.cuda}" if request.cuda else "GPU" if request.gpu else "CPU"
    return (
        f"packaged {function_name(function, request.tag, request.name)} ({kind}) -> "
        f"{result.output}: "
        f"{len(result.entries)} entries, {result.size / 1e6:.1f} MB, "
        f"{plural(len(result.labels), 'label')}, {result.seconds:.1f} s"
    )


def warnings(function: FunctionSpec, request: PackageRequest) -> list[str]:
    """What the bundle will do badly though it is valid (a CPU bundle of a GPU model)."""
    if function.cpu_warning and not (request.gpu or request.cuda):
        return [function.cpu_warning]
    return []


def next_steps(output: Path, folder: str, function: FunctionSpec) -> str:
    """How to deploy what was just written (printed after the summary); ``folder`` is the
    bundle's folder under ``bundles/``. A detector goes into the Nuclio project ``cvat``,
    whose functions CVAT lists; a pipeline-only function (pth-lama) into ``quadratseg``,
    which CVAT does not list."""
    path = f"bundles/{folder}"
    project = "cvat" if function.kind == "detector" else "quadratseg"
    return "\n".join(
        [
            "deploy (docs/deployment.md):",
            f"  mkdir -p bundles && unzip {output} -d {path}",
            f"  nuctl create project {project} --platform local    # once per Nuclio host",
            f"  nuctl deploy --project-name {project} --path {path}/nuclio --platform local",
        ]
    )


def bundle_folder(function: FunctionSpec, request: PackageRequest) -> str:
    """The folder name the docs unpack this bundle into: ``coralsegv4``, ``coralsegv4-v2``."""
    base = request.name or function.model
    return f"{base}-{request.tag}" if request.tag else base

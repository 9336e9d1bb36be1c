"""The ``settings``, ``package`` and ``validate`` sub-commands: a function's bundle.

``package`` turns weights into a checked ``nuclio.zip``; ``validate`` checks one (and runs it
once locally, through :mod:`quadratseg_handlers.local.bundle`); ``settings`` prints the
environment variables a function reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from quadratseg_handlers.cli.errors import CliError
from quadratseg_handlers.core.config import combined_table, markdown_table
from quadratseg_handlers.deploy import catalog, function_yaml
from quadratseg_handlers.deploy.torch_builds import cuda_choices


def cmd_settings(args: argparse.Namespace) -> int:
    """Print the environment variables of one function (or all) as a Markdown table."""
    if args.function is None:
        print(combined_table(catalog.declared_settings()))
        return 0
    try:
        handler = catalog.handler_class(args.function)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    print(f"## {args.function} ({handler.__name__})\n")
    print(markdown_table(handler.declared_settings()))
    print()
    return 0


def _file_options() -> dict[str, str]:
    """Every file argument of the catalogue (``weights``...) -> its argparse destination."""
    arguments = {f.argument for spec in catalog.FUNCTIONS.values() for f in spec.files}
    return {argument: "file_" + argument.replace("-", "_") for argument in sorted(arguments)}


def _file_help(argument: str) -> str:
    """Which models take a file option: ``the WEIGHTS file of coralsegv4, gridpose``."""
    owners = [
        spec.model
        for spec in catalog.FUNCTIONS.values()
        if argument in {f.argument for f in spec.files}
    ]
    return f"the {argument.upper().replace('-', '_')} file of {', '.join(owners)}"


def cmd_package(args: argparse.Namespace) -> int:
    """Package a function and its weights as a Nuclio bundle (nuclio.zip)."""
    from quadratseg_handlers.deploy.packager import (
        PackageError,
        PackageRequest,
        assign_files,
        bundle_folder,
        describe,
        next_steps,
        package,
        warnings,
    )

    try:
        function = catalog.find(args.model)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    named = {
        argument: Path(getattr(args, dest))
        for argument, dest in _file_options().items()
        if getattr(args, dest) is not None
    }
    files, problems = assign_files(function, [Path(p) for p in args.files], named)
    request = PackageRequest(
        function=function,
        files=files,
        sources=tuple(Path(p) for p in args.source),
        output=Path(args.output),
        gpu=args.gpu or args.cuda is not None,
        cuda=args.cuda,
        wheelhouse=args.wheelhouse,
        tag=args.tag,
        force=args.force,
        env=tuple(args.env),
        name=args.name,
        display_name=args.display_name,
        description=args.description,
        network=args.network,
        batch_size=args.batch_size,
        batch_timeout_ms=args.batch_timeout,
    )
    try:
        result = package(request, problems=problems)
    except PackageError as exc:
        raise CliError(exc.problems, exc.code) from None
    print(describe(result, function, request), file=sys.stderr)
    for warning in warnings(function, request):
        print(f"quadratseg package: warning: {warning}", file=sys.stderr)
    print(next_steps(result.output, bundle_folder(function, request), function), file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a bundle (zip or folder) the way Nuclio and CVAT will use it."""
    from quadratseg_handlers.deploy.bundle_checks import validate
    from quadratseg_handlers.deploy.compatibility import OutdatedBundle
    from quadratseg_handlers.deploy.function_yaml import BundleError
    from quadratseg_handlers.local.bundle import run_probe

    probe = None if args.no_run else run_probe
    try:
        report = validate(Path(args.bundle), probe=probe, timeout=args.timeout)
    except (FileNotFoundError, ValueError, OutdatedBundle, BundleError) as exc:
        raise CliError(str(exc)) from None
    for note in report.notes:
        print(f"quadratseg validate: note: {note}", file=sys.stderr)
    if not report.ok:
        raise CliError(report.problems, code=1)
    print(f"valid: {report.summary}", file=sys.stderr)
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """Print the label configuration of a CVAT project that keeps a function's whole answer."""
    from quadratseg_handlers.cvat.spec import project_labels
    from quadratseg_handlers.deploy.function_yaml import BundleError, open_bundle

    target = Path(args.function_or_bundle)
    if target.exists():
        try:
            with open_bundle(target) as config:
                spec = config.labels
        except BundleError as exc:
            raise CliError(str(exc)) from None
        if not spec:
            raise CliError(f"{target}: its function.yaml declares no labels (not a detector)")
    else:
        spec = _template_labels(args.function_or_bundle)
    print(json.dumps(project_labels(spec), indent=2))
    return 0


def _template_labels(name: str) -> list[dict[str, Any]]:
    """A catalogued function's labels when they do not come from weights (grid skeletons)."""
    from quadratseg_handlers.core.config import ConfigError

    try:
        handler = catalog.handler_class(name)(environ=dict(os.environ))
    except KeyError as exc:
        raise CliError(f"{name}: no such file or bundle, and {exc.args[0]}") from None
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    template_labels = getattr(handler, "template_labels", None)
    if template_labels is None:
        raise CliError(
            f"the labels of {handler.function_name} come from its weights: give its bundle "
            "(quadratseg labels nuclio.zip)"
        )
    try:
        labels: list[dict[str, Any]] = template_labels()
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return labels


def add_bundle_commands(sub: Any) -> None:
    """Add ``settings``, ``package`` and ``validate`` to the ``quadratseg`` parser."""
    settings = sub.add_parser("settings", help="list a function's environment variables")
    settings.add_argument(
        "function", nargs="?", help="function name (default: one table of every function)"
    )
    settings.set_defaults(run=cmd_settings)

    models = ", ".join(spec.usage() for spec in catalog.FUNCTIONS.values())
    pack = sub.add_parser(
        "package",
        help="turn weights into a deployable Nuclio bundle (nuclio.zip)",
        description=f"Files in the deployment guide's order: {models}.",
    )
    pack.add_argument("model", help="short model name (coralsegv4, ...) or function name")
    pack.add_argument("files", nargs="*", help="the model's files, in the guide's order")
    for argument, dest in _file_options().items():
        pack.add_argument(f"--{argument}", dest=dest, metavar="PATH", help=_file_help(argument))
    pack.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="PATH",
        help="custom model module (file or folder) to ship next to main.py; repeatable",
    )
    pack.add_argument("--output", default="nuclio.zip", help="bundle to write (nuclio.zip)")
    pack.add_argument("--gpu", action="store_true", help="CUDA image and nvidia.com/gpu: 1")
    pack.add_argument(
        "--cuda",
        metavar="VERSION",
        help="a GPU bundle whose torch is PyTorch's build for this CUDA version, for older "
        f"NVIDIA drivers ({', '.join(cuda_choices())}; docs/deployment.md gives each one's "
        "minimum driver); --gpu alone installs PyPI's build",
    )
    pack.add_argument(
        "--wheelhouse",
        action="store_true",
        help="carry every wheel the image installs in the bundle (downloaded now), so a Nuclio "
        "host without registry access can build it",
    )
    pack.add_argument("--tag", help="version tag appended to the function name (v2)")
    pack.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting written into function.yaml, checked now "
        "(`quadratseg settings MODEL` lists them); repeatable",
    )
    pack.add_argument("--name", help="function name instead of the catalogue's (pth-...)")
    pack.add_argument("--display-name", help="the model's name as CVAT lists it")
    pack.add_argument("--description", help="the one-line description CVAT shows")
    pack.add_argument("--force", action="store_true", help="replace an existing output")
    pack.add_argument(
        "--network",
        metavar="NAME",
        help="Docker network of the function on Nuclio's local platform (CVAT's: cvat_cvat)",
    )
    pack.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="turn on the HTTP trigger's batch mode (Nuclio >= 1.14): up to N requests "
        "answered by one batched predict",
    )
    pack.add_argument(
        "--batch-timeout",
        type=int,
        metavar="MS",
        help="with --batch-size: how long a batch waits to fill, in milliseconds "
        f"({function_yaml.DEFAULT_BATCH_TIMEOUT_MS})",
    )
    pack.set_defaults(run=cmd_package)

    labels = sub.add_parser(
        "labels",
        help="print the label configuration of a CVAT project that keeps a function's answer",
        description="JSON for CVAT's raw label editor (Project > Constructor > Raw).",
    )
    labels.add_argument(
        "function_or_bundle",
        metavar="FUNCTION_OR_BUNDLE",
        help="nuclio.zip or a bundle folder; or a grid function's name (gridcorners, gridpose)",
    )
    labels.set_defaults(run=cmd_labels)

    check = sub.add_parser("validate", help="check a bundle (nuclio.zip or its folder)")
    check.add_argument("bundle", help="nuclio.zip, or a folder holding function.yaml")
    check.add_argument("--no-run", action="store_true", help="check files only, run nothing")
    check.add_argument("--timeout", type=float, default=600.0, help="seconds for the test call")
    check.set_defaults(run=cmd_validate)

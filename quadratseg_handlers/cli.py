"""The ``quadratseg`` command line.

Every failure a user can cause ends in one line on stderr and a non-zero exit code, never a
traceback: 2 for bad arguments or inputs, 1 for a check that ran and failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import catalog, functions
from .config import ConfigError, combined_table, markdown_table


class CliError(Exception):
    """A user-facing command-line failure: one message per problem, an exit code."""

    def __init__(self, message: str | Sequence[str], code: int = 2) -> None:
        self.lines = [message] if isinstance(message, str) else list(message)
        super().__init__("; ".join(self.lines))
        self.code = code


def cmd_settings(args: argparse.Namespace) -> int:
    """Print the environment variables of one function (or all) as a Markdown table."""
    if args.function is None:
        print(combined_table(catalog.declared_settings()))
        return 0
    for name in [args.function]:
        try:
            handler = catalog.handler_class(name)
        except KeyError as exc:
            raise CliError(str(exc.args[0])) from None
        print(f"## {name} ({handler.__name__})\n")
        print(markdown_table(handler.declared_settings()))
        print()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the pipeline over HTTP on a drawn quadrat (or, with --example, the blob handler)."""
    if not args.example:
        return run_pipeline_demo(args)
    return example_demo(args)


def run_pipeline_demo(args: argparse.Namespace) -> int:
    """gridcorners -> warp -> gridpose -> grid removal -> corals, overlays in --output."""
    from .demo import run_demo, summary

    started = time.perf_counter()
    reports = run_demo(args.output, size=args.size, seed=args.seed,
                       log=lambda line: print(f"demo: {line}", file=sys.stderr, flush=True))
    print(summary(reports))
    print(f"\noverlays of every stage and the bundles are in {args.output}/ "
          f"({time.perf_counter() - started:.0f} s in all)")
    return 0


def example_demo(args: argparse.Namespace) -> int:
    """Run the example blob handler on a generated image through Nuclio objects; print JSON."""
    from . import cvat
    from .blobs import BlobHandler
    from .synthetic import blobs_image
    from .testing import FunctionClient, cvat_request, response_json

    image = blobs_image(args.width, args.height, count=args.blobs, seed=args.seed)
    client = FunctionClient(BlobHandler)
    started = time.perf_counter()
    handler = client.start()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    response = client.call(cvat_request(image))
    elapsed = time.perf_counter() - started
    shapes = response_json(response)
    print(json.dumps(shapes, indent=None if args.compact else 2))
    problems = cvat.validate_response(
        shapes, handler.labels(), (image.shape[1], image.shape[0])
    )
    print(
        f"demo: {len(shapes)} shapes from a {image.shape[1]}x{image.shape[0]} generated image "
        f"(start-up {loaded * 1000:.0f} ms, request {elapsed * 1000:.0f} ms), "
        f"HTTP {response.status_code}, "
        f"{'valid CVAT JSON' if not problems else 'INVALID: ' + '; '.join(problems)}",
        file=sys.stderr,
    )
    return 0 if response.status_code == 200 and not problems else 1


def _file_options() -> dict[str, str]:
    """Every file argument of the catalogue (``weights``...) -> its argparse destination."""
    arguments = {f.argument for spec in functions.FUNCTIONS.values() for f in spec.files}
    return {argument: "file_" + argument.replace("-", "_") for argument in sorted(arguments)}


def _file_help(argument: str) -> str:
    """Which models take a file option: ``the WEIGHTS file of coralsegv4, gridpose``."""
    owners = [
        spec.model for spec in functions.FUNCTIONS.values()
        if argument in {f.argument for f in spec.files}
    ]
    return f"the {argument.upper().replace('-', '_')} file of {', '.join(owners)}"


def cmd_package(args: argparse.Namespace) -> int:
    """Package a function and its weights as a Nuclio bundle (nuclio.zip)."""
    from .packager import PackageError, PackageRequest, assign_files, describe, next_steps, package

    try:
        function = functions.find(args.model)
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
        gpu=args.gpu,
        tag=args.tag,
        force=args.force,
    )
    try:
        result = package(request, problems=problems)
    except PackageError as exc:
        raise CliError(exc.problems, exc.code) from None
    print(describe(result, function, request), file=sys.stderr)
    print(next_steps(result.output), file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a bundle (zip or folder) the way Nuclio and CVAT will use it."""
    from .validator import validate

    try:
        report = validate(Path(args.bundle), run=not args.no_run, timeout=args.timeout)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    for note in report.notes:
        print(f"quadratseg validate: note: {note}", file=sys.stderr)
    if not report.ok:
        raise CliError(report.problems, code=1)
    print(f"valid: {report.summary}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="quadratseg", description="Coral-reef quadrat models as Nuclio functions for CVAT."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    settings = sub.add_parser("settings", help="list a function's environment variables")
    settings.add_argument(
        "function", nargs="?", help="function name (default: one table of every function)"
    )
    settings.set_defaults(run=cmd_settings)

    demo = sub.add_parser(
        "demo", help="run the whole pipeline over HTTP on a drawn quadrat with small models"
    )
    demo.add_argument("--output", default="demo-output", help="folder for overlays and bundles")
    demo.add_argument("--size", type=int, default=1024, help="side of the drawn photo in pixels")
    demo.add_argument("--seed", type=int, default=3)
    demo.add_argument("--example", action="store_true",
                      help="instead: the example blob handler on a generated image, as JSON")
    demo.add_argument("--width", type=int, default=640, help="--example image width")
    demo.add_argument("--height", type=int, default=480, help="--example image height")
    demo.add_argument("--blobs", type=int, default=5, help="--example blob count")
    demo.add_argument("--compact", action="store_true", help="--example: JSON on one line")
    demo.set_defaults(run=cmd_demo)

    models = ", ".join(spec.usage() for spec in functions.FUNCTIONS.values())
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
        "--source", action="append", default=[], metavar="PATH",
        help="custom model module (file or folder) to ship next to main.py; repeatable",
    )
    pack.add_argument("--output", default="nuclio.zip", help="bundle to write (nuclio.zip)")
    pack.add_argument("--gpu", action="store_true", help="CUDA image and nvidia.com/gpu: 1")
    pack.add_argument("--tag", help="version tag appended to the function name (v2)")
    pack.add_argument("--force", action="store_true", help="replace an existing output")
    pack.set_defaults(run=cmd_package)

    check = sub.add_parser("validate", help="check a bundle (nuclio.zip or its folder)")
    check.add_argument("bundle", help="nuclio.zip, or a folder holding function.yaml")
    check.add_argument("--no-run", action="store_true", help="check files only, run nothing")
    check.add_argument("--timeout", type=float, default=600.0, help="seconds for the test call")
    check.set_defaults(run=cmd_validate)

    from .cli_tools import add_tool_commands

    add_tool_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quadratseg`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: Any = args.run(args)
    except CliError as exc:
        for line in exc.lines:
            print(f"quadratseg {args.command}: error: {line}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"quadratseg {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"quadratseg {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    # Run the package's copy of this module, not __main__, so that the sub-command modules
    # (which import CliError from quadratseg_handlers.cli) and main() share one CliError.
    from quadratseg_handlers import cli

    sys.exit(cli.main())

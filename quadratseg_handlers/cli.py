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
from typing import Any

from . import catalog
from .config import ConfigError, combined_table, markdown_table


class CliError(Exception):
    """A user-facing command-line failure: one message, an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
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

    demo = sub.add_parser("demo", help="run the example handler on a generated image")
    demo.add_argument("--width", type=int, default=640)
    demo.add_argument("--height", type=int, default=480)
    demo.add_argument("--blobs", type=int, default=5)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--compact", action="store_true", help="print JSON on one line")
    demo.set_defaults(run=cmd_demo)

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
        print(f"quadratseg {args.command}: error: {exc}", file=sys.stderr)
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

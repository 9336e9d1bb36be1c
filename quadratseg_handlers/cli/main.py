"""The ``quadratseg`` command line: the parser and the entry point.

Every failure a user can cause ends in one line on stderr and a non-zero exit code, never a
traceback: 2 for bad arguments or inputs (and a full disk), 1 for a check that ran and failed,
130 for Ctrl-C and 143 for SIGTERM, after the same clean-up. The sub-commands
live by group: :mod:`.bundles` (settings, package, validate), :mod:`.demo`, and :mod:`.tools`
(serve, check, bench, annotate).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from quadratseg_handlers.cli.bundles import add_bundle_commands
from quadratseg_handlers.cli.demo import add_demo_command
from quadratseg_handlers.cli.errors import CliError
from quadratseg_handlers.cli.evaluation import add_evaluate_command
from quadratseg_handlers.cli.interrupts import (
    TERMINATED_EXIT_CODE,
    Terminated,
    terminate_as_interrupt,
)
from quadratseg_handlers.cli.tools import add_tool_commands
from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.core.messages import first_line


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="quadratseg", description="Coral-reef quadrat models as Nuclio functions for CVAT."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_bundle_commands(sub)
    add_demo_command(sub)
    add_tool_commands(sub)
    add_evaluate_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quadratseg`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with terminate_as_interrupt():
            code: Any = args.run(args)
    except CliError as exc:
        for line in exc.lines:
            print(f"quadratseg {args.command}: error: {line}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"quadratseg {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"quadratseg {args.command}: error: {os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"quadratseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"quadratseg {args.command}: terminated", file=sys.stderr)
        return TERMINATED_EXIT_CODE
    return int(code or 0)


def os_error(exc: OSError) -> str:
    """An operating-system failure (disk full, permission denied) as one line."""
    reason = exc.strerror or first_line(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason

"""The ``quadratseg`` command line (entry point :func:`main`)."""

from quadratseg_handlers.cli.main import main

__all__ = ["main"]

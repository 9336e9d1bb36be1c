"""pth-lama (grid removal) is not a cvat-sdk auto-annotation function.

A cvat-sdk detection function answers shapes for a task's frames; grid removal answers a new
image, which neither ``task auto-annotate`` nor an agent can upload. ``--function-module
quadratseg_handlers.sdk.lama`` therefore exits with one line saying so; docs/cvat-sdk.md shows
what fits instead: cleaned images written by the handler in Python, for a new task.
"""

from __future__ import annotations

from typing import Any

from quadratseg_handlers.sdk.function import DetectorFunction, create_or_exit


def create(**parameters: Any) -> DetectorFunction:
    """cvat-cli's entry: always exits with one line (pth-lama is not a detector)."""
    return create_or_exit("lama", parameters)

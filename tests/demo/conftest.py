"""Fixtures of the local-tools tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def committed_models() -> Path:
    """The trained demo models committed at the repository root (docs/demo.md)."""
    return Path(__file__).resolve().parents[2] / "demo-models"

"""The table of which tiny models each catalogued function is tested and demonstrated with."""

from __future__ import annotations

import pytest

from quadratseg_handlers.demo.tinymodels import TINY_MODELS, tiny_model_files
from quadratseg_handlers.deploy.catalog import FUNCTIONS


def test_every_tiny_model_is_for_a_catalogued_function_with_files():
    assert set(TINY_MODELS) <= set(FUNCTIONS)
    assert all(FUNCTIONS[name].files for name in TINY_MODELS)


def test_a_function_without_tiny_models_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="^example-blobs has no tiny-model builder; functions"):
        tiny_model_files("example-blobs", tmp_path)
    assert not list(tmp_path.iterdir())

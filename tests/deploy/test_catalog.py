"""The function catalogue: names, files, usage, lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging_for_tests import AGREED_NAMES, LEVELS

from quadratseg_handlers.deploy import catalog
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.rendering import (
    BundleLayout,
    function_config,
)

# --- the catalogue ------------------------------------------------------------------------------


def test_standard_bundle_names_are_the_agreed_ones(source):
    for name, expected in AGREED_NAMES.items():
        spec = FUNCTIONS[name]
        assert {f.env: f.bundle_name() for f in spec.files} == expected, name
        config = function_config(spec, BundleLayout.default(spec, source), source, gpu=False)
        env = {item["name"]: item["value"] for item in config["spec"]["env"]}
        assert {k: env[k] for k in expected} == {k: f"/opt/nuclio/{v}" for k, v in expected.items()}


def test_catalogue_entries_are_consistent():
    models = [spec.model for spec in FUNCTIONS.values()]
    assert len(models) == len(set(models))
    for spec in FUNCTIONS.values():
        assert spec.handler.count(":") == 1, spec.name
        arguments = [f.argument for f in spec.files]
        assert len(arguments) == len(set(arguments)), spec.name
        for bundle_file in spec.files:
            assert Path(bundle_file.filename).suffix == bundle_file.suffixes[0], bundle_file
            assert all(s == s.lower() and s.startswith(".") for s in bundle_file.suffixes)
            assert not (bundle_file.default and bundle_file.fetch_url), bundle_file
            if bundle_file.default:
                assert bundle_file.default.startswith("quadratseg_handlers:") or spec is LEVELS
        if spec.kind == "detector":
            assert all(f.fetch_url is None for f in spec.files), "a detector's spec needs its files"


def test_usage_follows_the_guide_argument_order():
    usages = {spec.model: spec.usage() for spec in FUNCTIONS.values()}
    assert usages["coralsegv4"] == "coralsegv4 WEIGHTS"
    assert usages["coralscopsegformer"] == (
        "coralscopsegformer SEGFORMER_WEIGHTS SEGFORMER_CONFIG SAM_WEIGHTS"
    )
    assert usages["gridpose"] == "gridpose WEIGHTS [TEMPLATE]"
    assert usages["lama"] == "lama [LAMA_MODEL]"


def test_find_by_model_or_function_name():
    assert catalog.find("gridpose") is catalog.find("pth-yolo-gridpose")
    with pytest.raises(KeyError, match="unknown model 'nope'; valid: coralsegv4, "):
        catalog.find("nope")

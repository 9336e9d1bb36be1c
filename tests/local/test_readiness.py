"""The local server reads every limit from function.yaml, the readiness timeout too."""

from __future__ import annotations

from bundles_for_tests import BLOB_MAIN, write_bundle

from quadratseg_handlers.deploy.function_yaml import (
    DEFAULT_READINESS_TIMEOUT_S,
    READINESS_TIMEOUT_S,
    read_function_config,
)
from quadratseg_handlers.local.server import FunctionServer


def test_the_server_waits_as_long_as_function_yaml_says(tmp_path):
    default = read_function_config(write_bundle(tmp_path / "plain", BLOB_MAIN))
    assert default.readiness_timeout_s == DEFAULT_READINESS_TIMEOUT_S
    folder = write_bundle(tmp_path / "packaged", BLOB_MAIN, readiness_s=READINESS_TIMEOUT_S)
    config = read_function_config(folder)
    assert config.readiness_timeout_s == READINESS_TIMEOUT_S == 600
    assert FunctionServer(config).pool.readiness_timeout_s == 600

"""The local server reads every limit from function.yaml, the readiness timeout too."""

from __future__ import annotations

import pytest
from bundles_for_tests import BLOB_MAIN, write_bundle

from quadratseg_handlers.deploy.function_yaml import (
    DEFAULT_READINESS_TIMEOUT_S,
    READINESS_TIMEOUT_S,
    read_function_config,
)
from quadratseg_handlers.local.server import BackgroundServer, FunctionServer, ServeError

SLOW_START_MAIN = """\
import time


def init_context(context):
    time.sleep(30)


def handler(context, event):
    return "never"
"""


def test_the_readiness_timeout_comes_from_function_yaml(tmp_path):
    default = read_function_config(write_bundle(tmp_path / "plain", BLOB_MAIN))
    assert default.readiness_timeout_s == DEFAULT_READINESS_TIMEOUT_S
    folder = write_bundle(tmp_path / "packaged", BLOB_MAIN, readiness_s=READINESS_TIMEOUT_S)
    config = read_function_config(folder)
    assert config.readiness_timeout_s == READINESS_TIMEOUT_S == 600
    assert FunctionServer(config).pool.readiness_timeout_s == 600


@pytest.mark.slow
def test_a_worker_slower_than_the_readiness_timeout_stops_serve(tmp_path):
    folder = write_bundle(tmp_path / "slow", SLOW_START_MAIN, readiness_s=2)
    with (
        pytest.raises(ServeError, match="worker 0 not ready after 2 s"),
        BackgroundServer(read_function_config(folder)),
    ):
        pass

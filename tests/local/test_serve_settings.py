"""quadratseg serve's own settings (SERVE_*): read from the command's environment, checked,
and what they compute: the body memory and the start-up back-off."""

from __future__ import annotations

import pytest
from bundles_for_tests import ECHO_MAIN, write_bundle

from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.local.limits import ServeSettings, start_backoff
from quadratseg_handlers.local.server import FunctionServer


def test_settings_come_from_the_environment_with_documented_defaults():
    defaults = ServeSettings.load(environ={})
    assert defaults == ServeSettings()
    assert (defaults.serve_header_timeout, defaults.serve_body_timeout) == (10.0, 30.0)
    assert (defaults.serve_start_retries, defaults.serve_shutdown_timeout) == (3, 30.0)
    given = ServeSettings.load(environ={"SERVE_BODY_MEMORY": "5000", "SERVE_START_RETRIES": "0"})
    assert (given.serve_body_memory, given.serve_start_retries) == (5000, 0)
    with pytest.raises(ConfigError, match=r"SERVE_HEADER_TIMEOUT='0': must be >= 0.05"):
        ServeSettings.load(environ={"SERVE_HEADER_TIMEOUT": "0"})


def test_body_memory_is_twice_what_the_workers_take_unless_set():
    assert ServeSettings().body_memory_for(3, 4, 1000) == 24_000
    assert ServeSettings(serve_body_memory=1000).body_memory_for(3, 4, 1000) == 1000
    with pytest.raises(ValueError, match="SERVE_BODY_MEMORY=999 is below maxRequestBodySize"):
        ServeSettings(serve_body_memory=999).body_memory_for(1, 1, 1000)


def test_the_start_up_back_off_doubles_up_to_30_s():
    settings = ServeSettings(serve_start_backoff=1.0)
    assert [start_backoff(settings, deaths) for deaths in range(1, 8)] == [
        1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
    ]  # fmt: skip
    assert start_backoff(settings, 5000) == 30.0


def test_a_bad_setting_stops_serve_with_one_line_before_anything_starts(
    tmp_path, monkeypatch, capsys
):
    from quadratseg_handlers.cli.main import main

    folder = write_bundle(tmp_path / "echo", ECHO_MAIN)
    monkeypatch.setenv("SERVE_BODY_TIMEOUT", "soon")
    assert main(["serve", str(folder)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "quadratseg serve: configuration error: SERVE_BODY_TIMEOUT='soon': expected number "
        "(could not convert string to float: 'soon')"
    ]
    monkeypatch.setenv("SERVE_BODY_TIMEOUT", "1")
    monkeypatch.setenv("SERVE_BODY_MEMORY", "10")
    assert main(["serve", str(folder)]) == 2
    assert "SERVE_BODY_MEMORY=10 is below maxRequestBodySize (4.0 MiB)" in capsys.readouterr().err
    server = FunctionServer(read_function_config(folder), settings=ServeSettings())
    assert server.body_memory.limit == 2 * 4 * 1024 * 1024

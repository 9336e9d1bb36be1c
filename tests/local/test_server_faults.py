"""quadratseg serve when workers die while they start or just before a request, and on SIGTERM
with requests waiting: the server serves or exits with the reason, never hangs, never 500s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import pytest
from bundles_for_tests import ECHO_MAIN, SLOW_MAIN, write_bundle
from test_server import ROOT, free_port, get_json, post
from test_server_limits import killed, wait_for

from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.local.limits import ServeSettings
from quadratseg_handlers.local.server import BackgroundServer, ServeError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

STARTS_MAIN = """\
import os
import signal
import time
import urllib.error
from pathlib import Path


def init_context(context):
    starts = Path(os.environ["STARTS_FILE"])
    with starts.open("a") as log:
        log.write(f"{os.getpid()}\\n")
    if len(starts.read_text().split()) <= int(os.environ.get("DIE_STARTS", "0")):
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does
    if Path(starts.parent / "die").exists():
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("LOAD_S", "0")))


def handler(context, event):
    return "served"
"""
"""Each start appends the worker's pid to STARTS_FILE; the first DIE_STARTS starts, and every
start once a file ``die`` sits beside it, kill themselves; a start takes LOAD_S seconds."""

FAST_RETRIES = {"SERVE_START_RETRIES": "2", "SERVE_START_BACKOFF": "0.05"}


def starts_bundle(folder: Path, **env: str) -> Path:
    """A bundle of STARTS_MAIN whose requests wait up to 60 s for a worker (longer than any
    series of restarts here)."""
    env = {"STARTS_FILE": str(folder / "starts"), **env}
    return write_bundle(folder, STARTS_MAIN, env=env, availability_ms=60_000)


def started_pids(folder: Path) -> list[int]:
    path = folder / "starts"
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def serve(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "quadratseg_handlers", "serve", str(folder), "--port", str(port)],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip
    return process, port


def health(url: str) -> tuple[int, str]:
    try:
        answer = get_json(url + "/health")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["status"]
    return 200, answer["status"]  # type: ignore[index]


def test_a_worker_killed_while_it_starts_is_started_again(tmp_path):
    folder = starts_bundle(tmp_path / "f", DIE_STARTS="2")
    settings = ServeSettings.load(FAST_RETRIES)
    with BackgroundServer(read_function_config(folder), settings=settings) as url:
        assert post(url, b"{}")[:1] == (200,)
        assert get_json(url + "/health")["status"] == "ok"  # type: ignore[index]
    assert len(started_pids(folder)) == 3


def test_a_worker_that_keeps_dying_at_start_stops_the_server(tmp_path):
    folder = starts_bundle(tmp_path / "f", DIE_STARTS="99")
    settings = ServeSettings.load(FAST_RETRIES)
    with pytest.raises(ServeError) as info:
        BackgroundServer(read_function_config(folder), settings=settings).start()
    assert info.value.code == 1
    assert str(info.value) == (
        "worker 0 exited (code -9, killed by SIGKILL (as the out-of-memory killer does)) "
        "during start-up, 3 times in a row; giving up (SERVE_START_RETRIES=2)"
    )
    assert len(started_pids(folder)) == 3


def test_serve_killed_while_loading_retries_then_exits_1_with_the_reason(tmp_path):
    """The worker is killed from outside while init_context runs, each time it starts."""
    folder = starts_bundle(tmp_path / "f", LOAD_S="60")
    process, _ = serve(folder, {**FAST_RETRIES, "SERVE_START_RETRIES": "1"})
    try:
        for attempt in (1, 2):
            wait_for(lambda attempt=attempt: len(started_pids(folder)) == attempt)
            killed(started_pids(folder)[-1])
        assert process.wait(timeout=30) == 1
        assert process.stderr is not None
        last = process.stderr.read().splitlines()[-1]
        assert last.startswith("quadratseg serve: error: worker 0 exited (code -9, killed by ")
        assert last.endswith("during start-up, 2 times in a row; giving up (SERVE_START_RETRIES=1)")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_replacement_that_cannot_start_stops_serve_with_exit_1(tmp_path):
    """Serving, the worker is killed and every replacement dies while it starts: the requests
    waiting get 503 and the server exits 1 with the reason, instead of waiting for ever."""
    folder = starts_bundle(tmp_path / "f")
    process, port = serve(folder, FAST_RETRIES)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("serving "):
                break
        url = f"http://127.0.0.1:{port}"
        assert post(url, b"{}")[0] == 200
        (folder / "die").touch()
        killed(started_pids(folder)[0])
        status, headers, data = post(url, b"{}")
        assert status == 503 and headers["Retry-After"] == "1"
        assert "giving up (SERVE_START_RETRIES=2)" in json.loads(data)["error"]
        assert process.wait(timeout=30) == 1
        assert (
            process.stderr.read()
            .splitlines()[-1]
            .endswith("during start-up, 3 times in a row; giving up (SERVE_START_RETRIES=2)")
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_request_right_after_an_idle_worker_dies_is_never_500(tmp_path):
    """The request races the death (no wait for the kill to land): it goes to the replacement;
    /health says "down" (503) while no worker can answer."""
    folder = write_bundle(tmp_path / "echo", ECHO_MAIN, workers=1)
    with BackgroundServer(read_function_config(folder)) as url:
        for _ in range(3):
            pid = json.loads(post(url, b"{}")[2])["pid"]
            os.kill(pid, signal.SIGKILL)
            status, _, data = post(url, b"{}")
            assert status == 200, data
            assert json.loads(data)["pid"] != pid
        killed(json.loads(post(url, b"{}")[2])["pid"])
        landed = time.monotonic()
        wait_for(lambda: health(url) != (200, "ok"), seconds=5)
        assert time.monotonic() - landed < 1.0  # once the process is reaped
        assert health(url) == (503, "down")
        assert post(url, b"{}")[0] == 200
        assert get_json(url + "/health")["status"] == "ok"  # type: ignore[index]


def test_sigterm_with_requests_waiting_ends_within_the_shutdown_time(tmp_path):
    """One request in flight for 20 s and two waiting: SIGTERM answers the waiting ones 503 at
    once, the one in flight 503 when the shutdown time is nearly up, and exits 143 within it."""
    folder = write_bundle(
        tmp_path / "slow", SLOW_MAIN, env={"DELAY_S": "20"}, workers=1, availability_ms=60_000
    )
    process, port = serve(folder, {"SERVE_SHUTDOWN_TIMEOUT": "5"})
    url = f"http://127.0.0.1:{port}"
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("serving "):
                break
        answers: list[tuple[float, int, str]] = []

        def one() -> None:
            status, _, data = post(url, b"{}")
            answers.append((time.monotonic(), status, json.loads(data).get("error", "")))

        clients = [threading.Thread(target=one) for _ in range(3)]
        clients[0].start()
        wait_for(lambda: get_json(url + "/health")["busy"] == 1)  # type: ignore[index]
        for client in clients[1:]:
            client.start()
        time.sleep(0.5)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 143
        took = time.monotonic() - sent
        for client in clients:
            client.join(timeout=10)
        assert took < 5.0
        assert process.stderr.read().splitlines()[-1] == "quadratseg serve: terminated"
        answers.sort()
        assert [status for _, status, _ in answers] == [503, 503, 503]
        assert [error for _, _, error in answers[:2]] == ["the server is stopping; retry later"] * 2
        assert answers[1][0] - sent < 1.0
        assert "stopped before the function answered" in answers[2][2]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_while_the_worker_loads_exits_143_at_once(tmp_path):
    folder = starts_bundle(tmp_path / "f", LOAD_S="60")
    process, _ = serve(folder, {})
    try:
        wait_for(lambda: len(started_pids(folder)) == 1)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 143
        assert time.monotonic() - sent < 5.0
        killed_worker = started_pids(folder)[0]
        wait_for(
            lambda: (
                not Path(f"/proc/{killed_worker}").exists()
                or Path(f"/proc/{killed_worker}/stat").read_text().rsplit(")", 1)[1].split()[0]
                in {"Z", "X"}
            )
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

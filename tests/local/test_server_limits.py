"""quadratseg serve under abuse: workers that die while idle, slow clients, many bodies at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bundles_for_tests import ECHO_MAIN, SLOW_MAIN, write_bundle
from test_server import get_json, post

from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.local.server import BackgroundServer

pytestmark = pytest.mark.slow


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def killed(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it has exited (a zombie or gone), as a crash leaves it."""
    os.kill(pid, signal.SIGKILL)

    def exited() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        return state in {"Z", "X"}

    wait_for(exited)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_killed_while_idle_is_replaced_and_never_sent_a_request(tmp_path):
    folder = write_bundle(tmp_path / "echo", ECHO_MAIN, workers=2)
    with BackgroundServer(read_function_config(folder)) as url:
        pids = set()
        while len(pids) < 2:
            with ThreadPoolExecutor(max_workers=2) as pool:
                answers = pool.map(lambda _: json.loads(post(url, b"{}")[2]), range(2))
                pids |= {answer["pid"] for answer in answers}
        victim = min(pids)
        killed(victim)
        statuses = [post(url, b"{}")[0] for _ in range(6)]
        assert statuses == [200] * 6
        wait_for(lambda: get_json(url + "/health")["alive"] == 2)
        health = get_json(url + "/health")
        assert health["status"] == "ok"  # type: ignore[index]
        answered = {json.loads(post(url, b"{}")[2])["pid"] for _ in range(6)}
        assert victim not in answered


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_health_reports_a_pool_with_no_live_worker(tmp_path):
    folder = write_bundle(tmp_path / "echo", ECHO_MAIN, workers=1, readiness_s=30)
    with BackgroundServer(read_function_config(folder)) as url:
        killed(json.loads(post(url, b"{}")[2])["pid"])
        seen: list[object] = []

        def down_then_ok() -> bool:
            try:
                health = get_json(url + "/health")
            except Exception as exc:  # urllib raises on the 503
                seen.append(getattr(exc, "code", None))
                return False
            return health["status"] == "ok" and health["alive"] == 1  # type: ignore[index]

        wait_for(down_then_ok)
        assert seen == [] or set(seen) == {503}
        assert post(url, b"{}")[0] == 200


def test_a_body_that_stops_arriving_is_408_and_the_connection_closed(tmp_path):
    folder = write_bundle(tmp_path / "echo", ECHO_MAIN)
    with BackgroundServer(read_function_config(folder), read_timeout=0.5) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"image": "'
            )
            started = time.monotonic()
            answer = b""
            while chunk := client.recv(4096):
                answer += chunk
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert answer.endswith(b'{"error": "request body not received within 0.5 s"}')
        assert 0.4 < waited < 5
        assert post(url, b"{}")[0] == 200


@pytest.mark.parametrize(("buffered", "statuses"), [(1, [200, 503]), (2, [200, 200])])
def test_bodies_held_at_once_are_bounded(tmp_path, buffered, statuses):
    """Two workers, one slow request in flight: a second body is read only if a slot is free."""
    folder = write_bundle(
        tmp_path / "slow", SLOW_MAIN, env={"DELAY_S": "1.5"}, workers=2, availability_ms=400
    )
    with BackgroundServer(read_function_config(folder), buffered_bodies=buffered) as url:
        first: list[int] = []
        thread = threading.Thread(target=lambda: first.append(post(url, b"{}")[0]))
        thread.start()
        wait_for(lambda: get_json(url + "/health")["busy"] == 1)
        status, headers, _ = post(url, b"{}")
        thread.join()
        assert [*first, status] == statuses
        if status == 503:
            assert headers["Retry-After"] == "1"

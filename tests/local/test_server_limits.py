"""quadratseg serve under abuse: workers that die while idle, slow clients, many bodies at once."""

from __future__ import annotations

import contextlib
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
from quadratseg_handlers.local.limits import ServeSettings
from quadratseg_handlers.local.server import BackgroundServer, FunctionServer, ServeError

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
    settings = ServeSettings(serve_body_timeout=0.5)
    with BackgroundServer(read_function_config(folder), settings=settings) as url:
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


@pytest.mark.parametrize(("memory", "statuses"), [(1000, [200, 503]), (2000, [200, 200])])
def test_bodies_held_at_once_are_bounded_by_bytes(tmp_path, memory, statuses):
    """Two workers, one slow request of 600 bytes in flight: a second one of 600 bytes is read
    only if the body memory has room for both."""
    folder = write_bundle(
        tmp_path / "slow", SLOW_MAIN, env={"DELAY_S": "1.5"}, workers=2, availability_ms=400,
        max_body=1000,
    )  # fmt: skip
    body = json.dumps({"pad": "x" * 589}).encode()
    assert len(body) == 600
    settings = ServeSettings(serve_body_memory=memory)
    with BackgroundServer(read_function_config(folder), settings=settings) as url:
        first: list[int] = []
        thread = threading.Thread(target=lambda: first.append(post(url, body)[0]))
        thread.start()
        wait_for(lambda: get_json(url + "/health")["busy"] == 1)
        status, headers, data = post(url, body)
        thread.join()
        assert [*first, status] == statuses
        if status == 503:
            assert headers["Retry-After"] == "1"
            assert "1000 B of body memory (SERVE_BODY_MEMORY)" in json.loads(data)["error"]


def test_body_memory_below_one_largest_body_is_one_line(tmp_path):
    folder = write_bundle(tmp_path / "echo", ECHO_MAIN, max_body=1000)
    with pytest.raises(ServeError, match=r"SERVE_BODY_MEMORY=999 is below maxRequestBodySize"):
        FunctionServer(read_function_config(folder), settings=ServeSettings(serve_body_memory=999))


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_until_closed(client: socket.socket) -> bytes:
    """What the server sends before it closes the connection (a reset counts as closed)."""
    answer = b""
    try:
        while chunk := client.recv(4096):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def test_headers_that_never_end_are_cut_off(tmp_path):
    folder = write_bundle(tmp_path / "echo", ECHO_MAIN)
    settings = ServeSettings(serve_header_timeout=0.5)
    with BackgroundServer(read_function_config(folder), settings=settings) as url:
        with connect(url) as client:
            client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            started = time.monotonic()
            assert read_until_closed(client) == b""
            waited = time.monotonic() - started
        assert 0.4 < waited < 5
        assert post(url, b"{}")[0] == 200


SLOW_HEADERS = b"POST / HTTP/1.1\r\nHost: x\r\n"
SLOW_BODY = (
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9000\r\n\r\n{"
)


def test_200_slow_clients_do_not_delay_a_good_one(tmp_path):
    """100 clients send their headers and 100 their bodies a byte at a time: a good client is
    answered at once, and every slow one is cut off once its time is up (408 for a body)."""
    folder = write_bundle(tmp_path / "echo", ECHO_MAIN)
    settings = ServeSettings(serve_header_timeout=3.0, serve_body_timeout=3.0)
    with BackgroundServer(read_function_config(folder), settings=settings) as url:
        slow = [connect(url) for _ in range(200)]
        try:
            for index, client in enumerate(slow):
                client.sendall(SLOW_BODY if index % 2 else SLOW_HEADERS)
            dripping = threading.Event()
            dripping.set()

            def drip() -> None:
                while dripping.is_set():
                    for index, client in enumerate(slow):
                        with contextlib.suppress(OSError):
                            client.send(b" " if index % 2 else b"X")
                    time.sleep(0.2)

            dripper = threading.Thread(target=drip)
            dripper.start()
            time.sleep(0.5)
            took = []
            for _ in range(3):
                started = time.monotonic()
                assert post(url, b"{}")[0] == 200
                took.append(time.monotonic() - started)
            dripping.clear()
            dripper.join()
            assert max(took) < 2.0, took
            answers = [read_until_closed(client) for client in slow]
            assert all(answer == b"" for answer in answers[0::2])
            assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers[1::2])
        finally:
            for client in slow:
                client.close()
        assert post(url, b"{}")[0] == 200

"""quadratseg serve: a bundle served in-process over HTTP, as Nuclio's HTTP trigger serves it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bundles_for_tests import BLOB_MAIN, ECHO_MAIN, SLOW_MAIN, as_packaged_by_0_1, write_bundle

from quadratseg_handlers.core.request import cvat_request
from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.local.bundle import blobs_image
from quadratseg_handlers.local.harness import FunctionClient, response_json
from quadratseg_handlers.local.server import BackgroundServer, ServeError

ROOT = Path(__file__).resolve().parents[2]


def post(
    url: str, body: bytes, content_type: str | None = "application/json"
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


DEEP = b"[" * 1000 + b"]" * 1000
"""2 KB of JSON nested 1,000 deep: past the recursion limit of Nuclio's event decoding."""


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def blob_bundle(tmp_path_factory) -> Path:
    return write_bundle(
        tmp_path_factory.mktemp("blob"), BLOB_MAIN, name="example-blobs",
        env={"BLOB_LEVEL": "150"}, workers=2, max_body=256 * 1024,
    )  # fmt: skip


@pytest.fixture(scope="module")
def blob_url(blob_bundle):
    with BackgroundServer(read_function_config(blob_bundle)) as url:
        yield url


@pytest.fixture(scope="module")
def echo_url(tmp_path_factory):
    folder = write_bundle(
        tmp_path_factory.mktemp("echo"), ECHO_MAIN, env={"ECHO_VALUE": "from-yaml"}, workers=2
    )
    with BackgroundServer(read_function_config(folder), env={"ECHO_VALUE": "overridden"}) as url:
        yield url


def images(count: int) -> list[bytes]:
    return [
        json.dumps(cvat_request(blobs_image(160, 120, count=3, seed=seed))).encode()
        for seed in range(count)
    ]


def direct_answers(bundle: Path, bodies: list[bytes], monkeypatch) -> list[object]:
    """What the bundle's main.py answers when called in-process through nuclio_sdk."""
    monkeypatch.setenv("BLOB_LEVEL", "150")
    client = FunctionClient(bundle / "main.py")
    return [response_json(client.call(json.loads(body))) for body in bodies]


@pytest.mark.slow
def test_answers_as_a_direct_handler_call_does(blob_url, blob_bundle, monkeypatch):
    bodies = images(2)
    expected = direct_answers(blob_bundle, bodies, monkeypatch)
    for body, answer in zip(bodies, expected, strict=True):
        status, headers, data = post(blob_url, body)
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert json.loads(data) == answer
    assert answer and answer[0]["label"] == "blob"


@pytest.mark.slow
def test_50_requests_from_4_client_threads_are_all_answered(blob_url, blob_bundle, monkeypatch):
    bodies = images(5)
    expected = direct_answers(blob_bundle, bodies, monkeypatch)
    before = get_json(blob_url + "/health")["requests"]  # type: ignore[index]

    def one(index: int) -> tuple[int, object]:
        status, _, data = post(blob_url, bodies[index % 5])
        return status, json.loads(data)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(one, range(50)))
    assert [status for status, _ in answers] == [200] * 50
    assert [answer for _, answer in answers] == [expected[i % 5] for i in range(50)]
    assert get_json(blob_url + "/health")["requests"] == before + 50  # type: ignore[index]


@pytest.mark.slow
def test_oversize_body_is_413_and_the_server_keeps_serving(blob_url):
    status, _, data = post(blob_url, b'{"image": "' + b"A" * 300_000 + b'"}')
    assert status == 413
    assert "over the limit of 256.0 KiB" in json.loads(data)["error"]
    # Without Content-Length (chunked), the limit holds while reading.
    connection = http.client.HTTPConnection(blob_url.removeprefix("http://"), timeout=10)
    connection.request(
        "POST", "/", body=iter([b"A" * 100_000] * 3),
        headers={"Content-Type": "application/json"}, encode_chunked=True,
    )  # fmt: skip
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    assert post(blob_url, images(1)[0])[0] == 200


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"{not json", "application/json", "malformed JSON body"),
        (b"", "application/json", "empty request body"),
        (b"[1, 2]", "application/json", "JSON body must be an object, got list"),
        (b'{"image": "@@@"}', "application/json", "'image' is not valid base64"),
        (b'{"image": "aGVsbG8="}', "application/json", "'image' is not a decodable image"),
        (b"\xff\xfe\x00", "application/octet-stream", "not UTF-8 JSON"),
        (b'{"image": 1}', "text/plain", "'image' must be a base64 string"),
        (DEEP, "application/json", "malformed JSON body: nested too deeply"),
        (DEEP, "text/plain", "malformed JSON body: nested too deeply"),
        (b'"{\\"image\\": \\"aGk=\\"}"', "application/json", "got a string"),
    ],
    ids=lambda value: value[:20] if isinstance(value, bytes) else value,
)
def test_malformed_bodies_are_400_and_the_server_keeps_serving(blob_url, body, content_type, error):
    status, headers, data = post(blob_url, body, content_type)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert error in json.loads(data)["error"]
    assert post(blob_url, images(1)[0])[0] == 200
    assert get_json(blob_url + "/health")["alive"] == 2  # type: ignore[index]


@pytest.mark.slow
def test_event_body_is_a_dict_only_for_exactly_application_json(echo_url):
    def seen(body: bytes, content_type: str | None, path: str = "/") -> dict:
        status, headers, data = post(echo_url + path, body, content_type)
        assert status == 200
        return json.loads(data)

    assert seen(b'{"a": 1}', "application/json")["body_type"] == "dict"
    assert seen(b'{"a": 1}', "application/json; charset=utf-8")["body_type"] == "bytes"
    assert seen(b"{broken", "application/json")["body_type"] == "bytes"
    assert seen(b"raw", "image/jpeg")["body"] == "raw"
    echoed = seen(b"{}", "application/json", "/some/path?x=1")
    assert echoed["method"] == "POST"
    assert (echoed["path"], echoed["fields"]) == ("/some/path", {"x": "1"})
    assert echoed["env"] == "overridden"


@pytest.mark.slow
def test_each_worker_is_its_own_process_with_its_own_context(echo_url):
    barrier = threading.Barrier(2)

    def one(_: int) -> dict:
        barrier.wait()
        status, headers, data = post(echo_url, b"{}")
        assert headers["X-Worker"] == json.loads(data)["worker"]
        return json.loads(data)

    seen = set()
    for _ in range(5):
        with ThreadPoolExecutor(max_workers=2) as pool:
            seen |= {(a["worker"], a["pid"]) for a in pool.map(one, range(2))}
        if len(seen) == 2:
            break
    assert {worker for worker, _ in seen} == {"0", "1"}
    assert len({pid for _, pid in seen}) == 2 and os.getpid() not in {pid for _, pid in seen}


@pytest.mark.slow
def test_return_values_are_encoded_as_nuclio_does(echo_url):
    status, _, data = post(echo_url + "/?batch=1", b"{}")
    assert status == 200 and "second" not in json.loads(data)  # a list is a batch: first only
    status, _, data = post(echo_url + "/?empty=1", b"{}")
    assert status == 500 and b"empty list" in data
    status, headers, data = post(echo_url + "/?raise=1", b"{}")
    assert status == 500 and headers["Content-Type"] == "text/plain"
    assert b"Traceback" in data and b"RuntimeError: asked to fail" in data
    assert post(echo_url, b"{}")[0] == 200


@pytest.mark.slow
def test_a_dead_worker_is_replaced(echo_url):
    status, _, data = post(echo_url + "/?exit=1", b"{}")
    assert status == 500 and "exited (code 3)" in json.loads(data)["error"]
    assert {post(echo_url, b"{}")[0] for _ in range(4)} == {200}
    assert get_json(echo_url + "/health")["workers"] == 2  # type: ignore[index]


@pytest.mark.slow
def test_health_and_spec(blob_url):
    health = get_json(blob_url + "/health")
    assert health["status"] == "ok" and health["function"] == "example-blobs"  # type: ignore[index]
    assert health["workers"] == 2  # type: ignore[index]
    assert get_json(blob_url + "/spec")[0]["name"] == "blob"  # type: ignore[index]


def occupy_the_worker(url: str) -> tuple[threading.Thread, list[int]]:
    """Start a request that keeps a one-worker server busy; return its thread and the list its
    status lands in, once the server reports the worker busy."""
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(post(url, b"{}")[0]))
    thread.start()
    deadline = time.monotonic() + 5
    while get_json(url + "/health")["busy"] != 1:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return thread, status


@pytest.mark.slow
def test_all_workers_busy_is_503_after_the_availability_timeout(tmp_path):
    folder = write_bundle(
        tmp_path / "slow", SLOW_MAIN, env={"DELAY_S": "1.0"}, workers=1, availability_ms=300
    )
    with BackgroundServer(read_function_config(folder)) as url:
        thread, first = occupy_the_worker(url)
        started = time.monotonic()
        status, headers, data = post(url, b"{}")
        waited = time.monotonic() - started
        assert status == 503 and headers["Retry-After"] == "1"
        assert "workerAvailabilityTimeoutMilliseconds" in json.loads(data)["error"]
        assert 0.29 <= waited < 0.9
        thread.join()
        assert first == [200]
        assert post(url, b"{}")[0] == 200


@pytest.mark.slow
def test_workers_flag_overrides_num_workers(tmp_path):
    folder = write_bundle(tmp_path / "echo", ECHO_MAIN, workers=1)
    with BackgroundServer(read_function_config(folder), workers=3) as url:
        assert get_json(url + "/health")["workers"] == 3  # type: ignore[index]


@pytest.mark.slow
def test_a_function_that_cannot_start_is_one_line(tmp_path):
    folder = write_bundle(tmp_path / "bad", BLOB_MAIN, env={"BLOB_LEVEL": "bright"})
    with pytest.raises(ServeError) as info:
        BackgroundServer(read_function_config(folder)).start()
    assert str(info.value).startswith("worker 0 failed to start: ConfigError: BLOB_LEVEL='bright'")
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize(("through", "importer"), [(None, "main.py"), ("old.py", "old.py")])
def test_serve_asks_to_package_a_0_1_bundle_again(tmp_path, capfd, through, importer):
    """Found in main.py before any worker starts, or when a worker fails to import: the same
    one line and exit code as `quadratseg validate`, no traceback from the worker."""
    from quadratseg_handlers.cli.main import main

    folder = write_bundle(tmp_path / "old", BLOB_MAIN, name="example-blobs")
    as_packaged_by_0_1(folder, through=through, function="example-blobs")
    assert main(["serve", str(folder), "--port", "0"]) == 2
    assert capfd.readouterr().err.splitlines() == [
        "quadratseg serve: error: example-blobs: packaged with quadratseg-handlers 0.1.0 "
        f"({importer} imports quadratseg_handlers.blobs, which this version does not have); "
        "package it again with `quadratseg package blobs`"
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_a_zip_and_stops_cleanly_on_a_signal(tmp_path, stop_signal):
    folder = write_bundle(tmp_path / "src", BLOB_MAIN, name="example-blobs", workers=2)
    archive = tmp_path / "nuclio.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in folder.iterdir():
            zipped.write(path, f"nuclio/{path.name}")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "quadratseg_handlers", "serve", str(archive), "--port",
         str(port)],
        stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if line.startswith("serving "):
                break
        assert f"serving example-blobs on http://127.0.0.1:{port} with 2 workers" in lines[-1]
        assert post(f"http://127.0.0.1:{port}", images(1)[0])[0] == 200
        process.send_signal(stop_signal)
        assert process.wait(timeout=20) == 128 + stop_signal  # 143 and 130, as docs/tools.md says
        err = process.stderr.read()
        assert "stopping" in err
        word = "terminated" if stop_signal == signal.SIGTERM else "interrupted"
        assert err.splitlines()[-1] == f"quadratseg serve: {word}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_serve_errors_are_one_line(tmp_path, capsys):
    from quadratseg_handlers.cli.main import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file or folder" in err


def test_a_taken_port_fails_at_once_with_one_line(blob_bundle):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        server = BackgroundServer(read_function_config(blob_bundle), port=port)
        message = f"cannot listen on 127.0.0.1:{port}: address already in use"
        with pytest.raises(ServeError, match=message):
            server.start()
        assert time.monotonic() - started < 1.0  # before any worker started

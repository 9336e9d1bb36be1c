"""quadratseg serve in Nuclio's batch mode: concurrent requests reach one worker as one list of
events, and each client gets its own answer."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nuclio_sdk
import pytest
import yaml
from bundles_for_tests import write_bundle
from test_server import direct_answers, images, occupy_the_worker, post

from quadratseg_handlers.deploy.function_yaml import Batching, read_function_config
from quadratseg_handlers.local.harness import make_context
from quadratseg_handlers.local.server import BackgroundServer, FunctionServer, ServeError
from quadratseg_handlers.local.workers import EventMessage, make_event, run_batch

COUNTING_MAIN = """\
from quadratseg_handlers.core import runtime
from quadratseg_handlers.handlers.blobs import BlobHandler


def init_context(context):
    runtime.init_context(BlobHandler, context)


def handler(context, event):
    answer = runtime.handle_event(context, event)
    size = str(len(event)) if isinstance(event, list) else "single"
    for response in answer if isinstance(answer, list) else [answer]:
        response.headers["X-Events"] = size
    return answer
"""
"""The blob function, telling each client how many events its handler call received."""


def batched_bundle(folder: Path, batch: dict | None) -> Path:
    write_bundle(folder, COUNTING_MAIN, env={"BLOB_LEVEL": "150"}, workers=1)
    document = yaml.safe_load((folder / "function.yaml").read_text())
    if batch is not None:
        document["spec"]["triggers"]["myHttpTrigger"]["batch"] = batch
    (folder / "function.yaml").write_text(yaml.safe_dump(document))
    return folder


@pytest.mark.slow
def test_8_concurrent_clients_share_one_batch_and_each_gets_its_own_answer(tmp_path, monkeypatch):
    batch = {"mode": "enable", "batchSize": 8, "timeout": "5s"}
    folder = batched_bundle(tmp_path / "b", batch)
    bodies = images(7) + [b'{"image": "not base64!"}']
    expected = direct_answers(folder, bodies[:7], monkeypatch)
    server = BackgroundServer(read_function_config(folder))
    with server as url, ThreadPoolExecutor(max_workers=8) as clients:
        answers = list(clients.map(lambda body: post(url, body), bodies))
    assert [status for status, _, _ in answers] == [200] * 7 + [400]
    assert [json.loads(data) for _, _, data in answers[:7]] == expected
    assert "base64" in json.loads(answers[7][2])["error"]
    # the batch closed when full, long before its 5 s timeout: one handler call for all 8
    assert [headers["X-Events"] for _, headers, _ in answers] == ["8"] * 8


@pytest.mark.slow
def test_without_batch_mode_the_handler_gets_single_events(tmp_path):
    folder = batched_bundle(tmp_path / "b", None)
    with BackgroundServer(read_function_config(folder)) as url:
        status, headers, _ = post(url, images(1)[0])
    assert status == 200 and headers["X-Events"] == "single"


@pytest.mark.slow
def test_a_lone_request_waits_for_the_timeout_only(tmp_path):
    folder = batched_bundle(tmp_path / "b", None)
    config = read_function_config(folder)
    with BackgroundServer(config, batch_size=4, batch_timeout_ms=10) as url:
        status, headers, _ = post(url, images(1)[0])
    assert status == 200 and headers["X-Events"] == "1"


def test_options_override_the_yaml_batch_and_bad_values_are_one_line(tmp_path, capsys):
    folder = batched_bundle(tmp_path / "b", {"mode": "enable", "batchSize": 8, "timeout": "1s"})
    config = read_function_config(folder)
    assert config.trigger.batch == Batching(8, 1000)
    server = FunctionServer(config, batch_timeout_ms=100)
    assert server.function.trigger.batch == Batching(8, 100)
    assert "batches of up to 8 requests gathered for 100 ms" in server.describe()
    # body memory: twice what the one worker takes at once, 8 bodies of 4 MiB
    assert server.body_memory.limit == 2 * 8 * 4 * 1024 * 1024
    assert FunctionServer(config, batch_size=2).function.trigger.batch == Batching(2, 1000)
    plain = read_function_config(batched_bundle(tmp_path / "plain", None))
    assert FunctionServer(plain, batch_size=3).function.trigger.batch == Batching(3, 50)
    with pytest.raises(ServeError, match="--batch-timeout needs --batch-size"):
        FunctionServer(plain, batch_timeout_ms=20)

    from quadratseg_handlers.cli.main import main

    for options, message in [
        (["--batch-size", "0"], "--batch-size 0: expected a whole number of events >= 1"),
        (["--batch-size", "4", "--batch-timeout", "0"], "--batch-timeout 0: expected millisec"),
        (["--batch-timeout", "5"], "--batch-timeout needs --batch-size"),
    ]:
        assert main(["serve", str(tmp_path / "plain"), *options]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


SLOW_BATCH_MAIN = """\
import time


def handler(context, events):
    time.sleep(1.0)
    return [
        context.Response(body="done", headers={}, status_code=200, event_id=event.id)
        for event in events
    ]
"""


@pytest.mark.slow
def test_a_batch_without_a_free_worker_is_503_after_the_availability_timeout(tmp_path):
    folder = write_bundle(tmp_path / "slow", SLOW_BATCH_MAIN, workers=1, availability_ms=300)
    with BackgroundServer(read_function_config(folder), batch_size=1) as url:
        thread, first = occupy_the_worker(url)
        status, headers, data = post(url, b"{}")
        assert status == 503 and headers["Retry-After"] == "1"
        assert "workerAvailabilityTimeoutMilliseconds" in json.loads(data)["error"]
        thread.join()
        assert first == [200]


def message(body: bytes) -> EventMessage:
    return EventMessage(body, "application/json", "POST", "/", "http://x/")


def test_worker_replies_follow_nuclio_event_ids():
    context = make_context()
    events = [make_event(message(b"{}"), "http") for _ in range(3)]

    def answer_two(context, batch):
        return [
            nuclio_sdk.Response(body="late", status_code=200, event_id=batch[2].id),
            nuclio_sdk.Response(body="first", status_code=201, event_id=batch[0].id),
        ]

    first, missing, late = run_batch(answer_two, context, events)
    assert (first.status, first.body) == (201, b"first")
    assert (late.status, late.body) == (200, b"late")
    assert missing.status == 500 and b"event_id" in missing.body

    single = run_batch(lambda context, batch: nuclio_sdk.Response(body="x"), context, events)
    assert {reply.status for reply in single} == {500}
    assert b"needs a list of responses" in single[0].body

    def fail(context, batch):
        raise RuntimeError("broken")

    raised = run_batch(fail, context, events)
    assert len(raised) == 3 and all(r.status == 500 and b"broken" in r.body for r in raised)

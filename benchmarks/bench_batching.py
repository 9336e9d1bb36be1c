"""Nuclio's batch mode: requests per second of a served YOLO function under 8 clients, with and
without the HTTP trigger's batching, side by side in one run.

The trained demo coral model (``demo-models/coralseg.pt``, so the answers hold realistic
colonies) is served by ``quadratseg serve``'s server with one worker, as ``quadratseg package``
deploys it. 8 client threads post the coral stage's input (the warped quadrat without its grid
string, a held-out seed) as a JPEG; without batching the worker answers one request at a time,
with it the server hands the worker up to 8 waiting requests as one list of events, which the
handler runs through one batched predict. BATCH_REQUESTS sets the requests per mode (48).
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import DEFAULT_FOLDER, TEST_SEEDS, verified_models
from quadratseg_handlers.demo.warped import remove_string, warped_view
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.deploy.rendering import render_main
from quadratseg_handlers.local.server import BackgroundServer

from .timing import bench_device, jpeg_bytes, on_gpu

DEVICES = ("cpu", "cuda")

CLIENTS = 8
SIZE = 1024
IMGSZ = 640
BATCH_SIZE = 8
BATCH_TIMEOUT_MS = 50
FUNCTION = "pth-yolo-coralsegv4"
MODES: dict[str, dict[str, int]] = {
    "off": {},
    f"{BATCH_SIZE} / {BATCH_TIMEOUT_MS} ms": {
        "batch_size": BATCH_SIZE,
        "batch_timeout_ms": BATCH_TIMEOUT_MS,
    },
}
"""Each mode's label and the server's batch options."""


def write_bundle(folder: Path, weights: Path) -> Path:
    """The coral function's main.py and a function.yaml serving the demo model on BENCH_DEVICE."""
    (folder / "main.py").write_text(render_main(FUNCTIONS[FUNCTION]))
    config = {
        "metadata": {"name": FUNCTION},
        "spec": {
            "handler": "main:handler",
            "env": [
                {"name": "MODEL_PATH", "value": str(weights)},
                {"name": "DEVICE", "value": bench_device()},
                {"name": "IMGSZ", "value": str(IMGSZ)},
            ],
            "triggers": {
                "http": {
                    "kind": "http",
                    "numWorkers": 1,
                    "workerAvailabilityTimeoutMilliseconds": 600_000,
                    "attributes": {"maxRequestBodySize": 64 * 1024 * 1024},
                }
            },
        },
    }
    (folder / "function.yaml").write_text(yaml.safe_dump(config))
    return folder


def post(url: str, body: bytes) -> tuple[float, bytes]:
    """Seconds and body of one POST (any status but 200 is an error here)."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = response.read()
    return time.perf_counter() - started, answer


def load(url: str, body: bytes, requests: int) -> dict[str, Any]:
    """``requests`` POSTs from CLIENTS threads after one uncounted request per client."""
    with ThreadPoolExecutor(max_workers=CLIENTS) as clients:
        first = list(clients.map(lambda _: post(url, body), range(CLIENTS)))
        started = time.perf_counter()
        timed = list(clients.map(lambda _: post(url, body), range(requests)))
        elapsed = time.perf_counter() - started
    latencies = sorted(seconds for seconds, _ in timed)
    return {
        "rps": requests / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "answer": first[0][1],
    }


def run() -> str:
    """Return the Markdown section."""
    requests = int(os.environ.get("BATCH_REQUESTS", "48"))
    weights = verified_models(DEFAULT_FOLDER)["coralseg"]
    scene = quadrat_image(SIZE, TEST_SEEDS + 5000)
    image = remove_string(warped_view(scene, SIZE))
    body = json.dumps({"image": base64.b64encode(jpeg_bytes(image)).decode()}).encode()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as folder:
        function = read_function_config(write_bundle(Path(folder), weights))
        for label, options in MODES.items():
            with BackgroundServer(function, **options) as url:
                results[label] = load(url, body, requests)
    answers = {label: json.loads(result["answer"]) for label, result in results.items()}
    same = "the same" if len({json.dumps(a) for a in answers.values()}) == 1 else "different"
    shapes = len(next(iter(answers.values())))
    base = results["off"]["rps"]
    rows = [
        f"| {label} | {result['rps']:.2f} | {result['rps'] / base:.2f} x | "
        f"{result['p50_ms']:.0f} | {result['p95_ms']:.0f} |"
        for label, result in results.items()
    ]
    return (
        "## Nuclio batch mode: a served function under 8 clients\n\n"
        f"`{FUNCTION}` with the trained demo coral model at `IMGSZ` {IMGSZ}, served by "
        "`quadratseg serve`'s server with 1 worker (as packaged), 8 client threads posting a "
        f"{SIZE} x {SIZE} JPEG of the coral stage's input ({shapes} shapes in the answer, "
        f"{same} with and without batching); {requests} counted requests per mode after one "
        "uncounted request per client. Batching: the trigger's `batch` mode "
        "(`quadratseg serve --batch-size 8 --batch-timeout 50`), up to 8 requests handed to "
        "the worker as one list of events and run through one batched predict.\n\n"
        "| Batching | Requests/s | vs off | p50 ms | p95 ms |\n"
        "| --- | --- | --- | --- | --- |\n" + "\n".join(rows) + cpu_note()
    )


def cpu_note() -> str:
    """Why the figures above may show no gain, when they come from a CPU."""
    if on_gpu():
        return ""
    return (
        "\n\nOn a CPU a predict costs about as much per image in a batch as alone (torch "
        "already spreads one image over the cores), so batching saves only the per-request "
        "overhead around it; the gain batching is for, many images on a GPU in the time of "
        "one, needs a GPU run of this benchmark."
    )

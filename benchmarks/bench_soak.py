"""Soak: many requests from 8 clients through ``quadratseg serve``, mixed with bad ones and one
large image; errors, latency percentiles and the workers' memory from start to end.

The example blob function stands in for a model (its cost is the library's: decoding, limits,
shapes, the server and its workers). Every 10th request is malformed (it must be a 4xx, never a
5xx); one 48-megapixel PNG in the middle shows whether a worker gives the memory back.
SOAK_REQUESTS sets the number of requests (default 1000). A second measurement runs one
100-megapixel PNG through the YOLO segmentation function (tiny model) in a fresh process and
reads what the process still holds afterwards, with and without the library's clean-up.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from quadratseg_handlers import cvat
from quadratseg_handlers.core.request import cvat_request, encode_image
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.deploy.rendering import render_main
from quadratseg_handlers.local.bundle import blobs_image
from quadratseg_handlers.local.server import BackgroundServer

CLIENTS = 8
WORKERS = 2
BAD_BODIES = [b"[" * 1000 + b"]" * 1000, b'{"image": "@@@"}', b'"{}"', b""]


def post(url: str, body: bytes, timeout: float = 300) -> tuple[int, float]:
    """Status and seconds of one POST."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return status, time.perf_counter() - started


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_blob_bundle(folder: Path) -> Path:
    spec = FUNCTIONS["example-blobs"]
    (folder / "main.py").write_text(render_main(spec))
    config = {
        "metadata": {
            "name": spec.name,
            "annotations": {"spec": cvat.spec_json([cvat.label_spec("blob", "polygon")])},
        },
        "spec": {
            "handler": "main:handler",
            "env": [{"name": "BLOB_LEVEL", "value": "150"}],
            "triggers": {
                "http": {
                    "kind": "http",
                    "numWorkers": WORKERS,
                    "workerAvailabilityTimeoutMilliseconds": 600_000,
                    "attributes": {"maxRequestBodySize": 256 * 1024 * 1024},
                }
            },
        },
    }
    (folder / "function.yaml").write_text(yaml.safe_dump(config))
    return folder


RETAINED = """
import gc, json, sys
from pathlib import Path
from quadratseg_handlers.backends import ultralytics
from quadratseg_handlers.core import runtime
from quadratseg_handlers.core.request import encode_image
from quadratseg_handlers.handlers.yolo import CoralSegV4Handler
from quadratseg_handlers.local.harness import FunctionClient
from quadratseg_handlers.local.bundle import blobs_image

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

if sys.argv[2] == "off":
    runtime.LARGE_REQUEST_PIXELS = 10**12
    ultralytics.YoloModel.forget_last_batch = lambda self: None
client = FunctionClient(CoralSegV4Handler, {"MODEL_PATH": sys.argv[1], "DEVICE": "cpu"})
client.start()
body = {"image": encode_image(blobs_image(10000, 10000, count=60, seed=4), "PNG")}
gc.collect()
before = rss()
status = client.call(body).status_code
print(json.dumps({"status": status, "before": before, "after": rss()}))
"""


def retained_mib(weights: Path, clean_up: bool) -> tuple[float, float]:
    """RSS before and after one 100-megapixel request, in a fresh process."""
    completed = subprocess.run(
        [sys.executable, "-c", RETAINED, str(weights), "on" if clean_up else "off"],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    return figures["before"], figures["after"]


def retained_section() -> str:
    """What a worker keeps after one large request, with and without the clean-up."""
    from quadratseg_handlers.demo.tinymodels.yolo import tiny_yolo

    with tempfile.TemporaryDirectory() as temporary:
        weights = tiny_yolo(Path(temporary) / "best.pt", "segment", ["coral"], deterministic=False)
        rows = []
        for clean_up, label in ((False, "kept by ultralytics, no trim"), (True, "this library")):
            before, after = retained_mib(weights, clean_up)
            rows.append(f"| {label} | {before:.0f} | {after:.0f} | {after - before:+.0f} |")
    return (
        "### Memory kept after one large request\n\n"
        "One 10000 x 10000 PNG through pth-yolo-coralsegv4 (tiny model) in a fresh process; RSS "
        "in MiB before the request and once it is answered.\n\n"
        + "| Clean-up | Before | After | Kept |\n| --- | --- | --- | --- |\n"
        + "\n".join(rows)
    )


def run() -> str:
    """Return the Markdown section."""
    total = int(os.environ.get("SOAK_REQUESTS", "1000"))
    good = json.dumps(cvat_request(blobs_image(640, 480, count=12, seed=2))).encode()
    large = json.dumps({"image": encode_image(blobs_image(8000, 6000, count=60, seed=4), "PNG")})
    with tempfile.TemporaryDirectory() as temporary:
        folder = write_blob_bundle(Path(temporary))
        server = BackgroundServer(read_function_config(folder))
        with server as url:
            pids = [worker.process.pid for worker in server.server.pool.workers]
            post(url, good)
            start = [rss_mib(pid) for pid in pids if pid]

            def one(index: int) -> tuple[int, float, bool]:
                bad = index % 10 == 9
                body = BAD_BODIES[index % len(BAD_BODIES)] if bad else good
                if index == total // 2:
                    body = large.encode()
                status, seconds = post(url, body)
                return status, seconds, bad

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=CLIENTS) as clients:
                answers = list(clients.map(one, range(total)))
            wall = time.perf_counter() - started
            end = [rss_mib(pid) for pid in pids if pid]
            alive = server.server.pool.alive()
    good_times = sorted(s for status, s, bad in answers if status == 200)
    errors_5xx = sum(status >= 500 for status, _, _ in answers)
    bad_4xx = sum(400 <= status < 500 for status, _, bad in answers if bad)
    bad_count = sum(bad for _, _, bad in answers)
    p50, p95 = (statistics.quantiles(good_times, n=100)[i] * 1000 for i in (49, 94))
    rss = ", ".join(f"{a:.0f} -> {b:.0f}" for a, b in zip(start, end, strict=True))
    return (
        "## Soak: 8 clients through quadratseg serve\n\n"
        f"{total} requests to the example blob function ({WORKERS} workers, "
        f"{CLIENTS} client threads): 640 x 480 JPEGs, every 10th request malformed (deep JSON, "
        "bad base64, a JSON string, empty), and one 8000 x 6000 PNG (48 megapixels) half-way. "
        "`make bench` (`python -m benchmarks soak`; SOAK_REQUESTS sets the count).\n\n"
        "| Figure | Value |\n| --- | --- |\n"
        f"| requests answered 200 | {len(good_times)} |\n"
        f"| malformed requests answered 4xx | {bad_4xx} of {bad_count} |\n"
        f"| 5xx answers | {errors_5xx} |\n"
        f"| p50 / p95 of the 200s | {p50:.0f} ms / {p95:.0f} ms |\n"
        f"| throughput | {total / wall:.1f} requests/s |\n"
        f"| worker RSS, start -> end (MiB) | {rss} |\n"
        f"| workers alive at the end | {alive} of {WORKERS} |\n\n"
        "The large PNG takes a worker's memory up by about 48 M x 3 bytes per copy while it is "
        "decoded and thresholded; the end figure shows what the worker kept afterwards (memory "
        "is given back after requests of 16 megapixels or more, `core/memory.py`).\n\n"
        + retained_section()
    )

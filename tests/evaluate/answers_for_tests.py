"""Answers for the evaluate tests: CVAT shapes built from drawn truth (perfect, or changed in a
known way), and a function on a thread (no process) that answers them by image over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from quadratseg_handlers import cvat
from quadratseg_handlers.demo.exports import DrawnImage


def coral_shapes(drawn: DrawnImage, score: float = 0.9, skip: int | None = None) -> list[Any]:
    """Each drawn colony answered as a CVAT mask of its genus (``skip``: leave one out)."""
    shapes: list[Any] = []
    for number, (label, mask) in enumerate(drawn.instances):
        if number != skip:
            shapes += cvat.instance_shapes(label, mask, score, as_mask=True, group_id=number + 1)
    return [json.loads(cvat.answer_json([shape])[1:-1]) for shape in shapes]


def skeleton_shape(
    label: str, points: np.ndarray, score: float = 0.9, outside: tuple[int, ...] = ()
) -> dict[str, Any]:
    """A skeleton answer with nodes "1".."N" at ``points`` (``outside``: nodes so flagged)."""
    names = [str(n) for n in range(1, len(points) + 1)]
    flags = [n in outside for n in range(1, len(points) + 1)]
    elements = cvat.skeleton_elements(names, points, None, flags)
    return dict(cvat.skeleton(label, elements, score))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def answering(answers: Mapping[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """A function at a URL answering the image whose bytes hash to a key with its value
    (a list of shapes, or an int: that HTTP status with a JSON error); the thresholds it was
    sent are recorded."""
    seen: list[Any] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body.get("threshold"))
            answer = answers[digest(base64.b64decode(body["image"]))]
            status = answer if isinstance(answer, int) else 200
            payload = {"error": "drawn failure"} if isinstance(answer, int) else answer
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()

"""Small function bundles written by the tests: function.yaml + main.py, as Nuclio deploys them.

``BLOB_MAIN`` is the example blob handler behind a generated-style ``main.py``; ``SLOW_MAIN``
sleeps before answering (to keep workers busy); ``FLOAT_CONFIDENCE_MAIN`` answers shapes whose
confidences are floats, which CVAT drops (``quadratseg check`` must fail it); ``ECHO_MAIN``
answers what it received (body type, path, fields, worker, pid) and can be told to raise, to
exit, or to return a list; ``EMPTY_WITH_REASON_MAIN`` answers nothing and says why.
:func:`as_packaged_by_0_1` turns any of them into a bundle of the flat 0.1 layout, which
``validate`` and ``serve`` must ask to be packaged again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from quadratseg_handlers import cvat

BLOB_MAIN = """\
from quadratseg_handlers.core import runtime
from quadratseg_handlers.handlers.blobs import BlobHandler


def init_context(context):
    runtime.init_context(BlobHandler, context)


def handler(context, event):
    return runtime.handle_event(context, event)
"""

SLOW_MAIN = """\
import json
import os
import time


def init_context(context):
    context.user_data.delay = float(os.environ["DELAY_S"])


def handler(context, event):
    time.sleep(context.user_data.delay)
    return context.Response(
        body=json.dumps({"worker": context.worker_id}),
        headers={},
        content_type="application/json",
        status_code=200,
    )
"""

FLOAT_CONFIDENCE_MAIN = """\
import json

from quadratseg_handlers.core import runtime
from quadratseg_handlers.handlers.blobs import BlobHandler


def init_context(context):
    runtime.init_context(BlobHandler, context)


def handler(context, event):
    response = runtime.handle_event(context, event)
    if response.status_code != 200:
        return response
    shapes = json.loads(response.body)
    for shape in shapes:
        shape["confidence"] = 0.87
        shape["attributes"] = [{"name": "confidence", "value": "0.87"}]
    response.body = json.dumps(shapes)
    return response
"""

EMPTY_WITH_REASON_MAIN = """\
from quadratseg_handlers.core import runtime
from quadratseg_handlers.handlers.blobs import BlobHandler

REASON = "no skeleton: 2 distinct detection(s), at least 4 needed"


class NoBlobs(BlobHandler):
    def predict(self, images, threshold):
        self.warn(REASON, detections=2)
        return [[] for _ in images]


def init_context(context):
    runtime.init_context(NoBlobs, context)


def handler(context, event):
    return runtime.handle_event(context, event)
"""
"""Answers no shapes and warns why, as a grid function does when it finds no skeleton."""

BLOB_LABELS = [cvat.label_spec("blob", "polygon")]


def write_bundle(
    folder: Path,
    main: str,
    *,
    name: str = "test-function",
    labels: list[dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
    availability_ms: int = 10_000,
    max_body: int = 4 * 1024 * 1024,
    readiness_s: int | None = None,
) -> Path:
    """Write ``function.yaml`` and ``main.py`` into ``folder``; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(main)
    config = {
        "metadata": {
            "name": name,
            "namespace": "cvat",
            "annotations": {
                "name": name,
                "type": "detector",
                "spec": cvat.spec_json(labels if labels is not None else BLOB_LABELS),
            },
        },
        "spec": {
            "handler": "main:handler",
            "runtime": "python:3.11",
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
            "triggers": {
                "myHttpTrigger": {
                    "kind": "http",
                    "numWorkers": workers,
                    "workerAvailabilityTimeoutMilliseconds": availability_ms,
                    "attributes": {"maxRequestBodySize": max_body},
                }
            },
        },
    }
    if readiness_s is not None:
        config["spec"]["readinessTimeoutSeconds"] = readiness_s
    (folder / "function.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


ECHO_MAIN = """\
import json
import os


def init_context(context):
    context.user_data.started = os.getpid()


def handler(context, event):
    if event.fields.get("raise"):
        raise RuntimeError("asked to fail")
    if event.fields.get("exit"):
        os._exit(3)
    seen = {
        "body_type": type(event.body).__name__,
        "body": event.body if isinstance(event.body, dict) else event.body.decode("latin-1"),
        "content_type": event.content_type,
        "method": event.method,
        "path": event.path,
        "fields": event.fields,
        "worker": context.worker_id,
        "pid": context.user_data.started,
        "env": os.environ.get("ECHO_VALUE", ""),
    }
    if event.fields.get("batch"):
        return [seen, {"second": True}]
    if event.fields.get("empty"):
        return []
    return context.Response(
        body=json.dumps(seen), headers={"X-Worker": context.worker_id},
        content_type="application/json", status_code=200,
    )
"""


OLD_MODULE = "quadratseg_handlers.blobs"
"""Where the flat 0.1 layout kept BlobHandler (now quadratseg_handlers.handlers.blobs)."""


def as_packaged_by_0_1(
    folder: Path, *, through: str | None = None, function: str | None = None
) -> Path:
    """Make the bundle in ``folder`` one that 0.1 packaged: function.yaml says 0.1.0 (and
    names the catalogue's ``function`` when given) and the handler is imported from the flat
    layout's module name, by main.py's first import or, with ``through`` (a file name), by
    that file of the bundle, which main.py imports instead (an import only running it finds).
    Return the folder."""
    main = folder / "main.py"
    first_import = re.compile(r"^from \S+ import (\w+)", re.MULTILINE)
    old_import = first_import.sub(rf"from {OLD_MODULE} import \1", main.read_text(), count=1)
    if through is None:
        main.write_text(old_import)
    else:
        (folder / through).write_text(old_import)
        main.write_text(f"from {Path(through).stem} import handler, init_context\n")
    path = folder / "function.yaml"
    config = yaml.safe_load(path.read_text())
    config["metadata"]["annotations"]["quadratseg.version"] = "0.1.0"
    if function is not None:
        config["metadata"]["annotations"]["quadratseg.function"] = function
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return folder

"""A bounded, seeded mutation fuzzer through the real server: a few hundred mutated requests per
function (bytes flipped or cut, fields replaced by random JSON, images damaged, bodies wrapped
or nested, every Content-Type), from 4 clients at once to one worker. Every answer must be
JSON, none a 5xx, the worker must not die, and the next good request gets the same answer."""

from __future__ import annotations

import base64
import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from bundles_for_tests import write_bundle
from functions_for_tests import SLOW, function_env, function_params, valid_body
from test_server import get_json, post

from quadratseg_handlers.deploy.function_yaml import read_function_config
from quadratseg_handlers.deploy.rendering import render_main
from quadratseg_handlers.local.server import BackgroundServer

REQUESTS = 200
"""Mutated requests per function (a tenth for the SLOW ones, whose valid requests take seconds)."""

CONTENT_TYPES = ["application/json", "text/plain", "application/octet-stream", "", "image/jpeg"]
FIELDS = ["image", "images", "threshold", "mask", "keypoints", "output_format", "x"]
JUNK = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\u0000", b"1e999", b"-", b"null", b"\xff"]


pytestmark = pytest.mark.slow


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: scalars of every type and size, strings, lists and objects."""
    kinds = ["null", "bool", "int", "float", "text", "base64"]
    if depth < 3:
        kinds += ["list", "object"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 17, 2**31, -(2**63), 10**30])
    if kind == "float":
        return rng.choice([0.0, 0.5, -0.25, 1.5, 1e-300, 1e300])
    if kind == "text":
        return "".join(rng.choice("ab/+=-_ \u00e9\u4e2d{}") for _ in range(rng.randint(0, 40)))
    if kind == "base64":
        return base64.b64encode(rng.randbytes(rng.randint(0, 200))).decode()
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def damage_image(rng: random.Random, text: str) -> str:
    """The image's bytes flipped in a few places, or cut short."""
    data = bytearray(base64.b64decode(text))
    if rng.random() < 0.5:
        del data[rng.randint(0, len(data)) :]
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return base64.b64encode(bytes(data)).decode()


def mutate(rng: random.Random, valid: dict[str, Any]) -> bytes:
    """One mutation of a valid body, chosen by ``rng``."""
    body = dict(valid)
    raw = json.dumps(body).encode()
    choice = rng.randrange(8)
    if choice == 0:  # flip bytes
        data = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice == 1:  # cut short
        return raw[: rng.randint(0, len(raw))]
    if choice == 2:  # splice in JSON-ish junk
        at = rng.randint(0, len(raw))
        return raw[:at] + b"".join(rng.choices(JUNK, k=rng.randint(1, 4))) + raw[at:]
    if choice == 3:  # a field replaced by any JSON value
        body[rng.choice(FIELDS)] = random_value(rng)
    elif choice == 4:  # a field dropped
        body.pop(rng.choice(list(body)))
    elif choice == 5:  # the image damaged
        body["image"] = damage_image(rng, body["image"])
    elif choice == 6:  # a batch of damaged images
        body = {"images": [damage_image(rng, body["image"]) for _ in range(rng.randint(1, 3))]}
    else:  # wrapped: as a JSON string, in a list, or nested deep
        depth = rng.choice([1, 50, 1000, 3000])
        wrapped: Any = body
        for _ in range(depth if depth < 100 else 0):
            wrapped = rng.choice([[wrapped], {"a": wrapped}, json.dumps(wrapped)])
        if depth >= 100:
            return b"[" * depth + raw + b"]" * depth
        return json.dumps(wrapped).encode()
    return json.dumps(body).encode()


def one_per_handler_module() -> list[Any]:
    """A function per handler module: the others share its code (the matrix covers them all)."""
    seen: set[str] = set()
    params = []
    for param in function_params():
        module = param.values[0].module_name
        if module not in seen:
            seen.add(module)
            params.append(param)
    return params


@pytest.mark.parametrize("spec", one_per_handler_module())
def test_fuzzed_requests_get_json_answers_and_no_worker_dies(tmp_path, spec):
    env = function_env(spec, tmp_path / "files")
    folder = write_bundle(
        tmp_path / "bundle", render_main(spec), name=spec.name, env=env, workers=1,
        availability_ms=120_000,
    )  # fmt: skip
    count = REQUESTS // 10 if spec.name in SLOW else REQUESTS
    good = json.dumps(valid_body(spec)).encode()
    with BackgroundServer(read_function_config(folder)) as url:
        status, _, expected = post(url, good)
        assert status == 200

        def one(index: int) -> str | None:
            rng = random.Random(f"{spec.name}-{index}")
            body = mutate(rng, valid_body(spec))
            content_type = rng.choice(CONTENT_TYPES)
            status, headers, data = post(url, body, content_type)
            try:
                payload = json.loads(data)
            except ValueError:
                payload = None
            json_answer = headers.get("Content-Type") == "application/json" and (
                status == 200 or (isinstance(payload, dict) and "error" in payload)
            )
            if status >= 500 or not json_answer:
                return f"request {index} ({content_type}): {status} {data[:200]!r}"
            return None

        with ThreadPoolExecutor(max_workers=4) as clients:
            failures = [failure for failure in clients.map(one, range(count)) if failure]
        assert failures == []
        health = get_json(url + "/health")
        assert health["alive"] == 1  # type: ignore[index]
        assert post(url, good)[2] == expected

"""Running a bundle's function outside Nuclio: its environment, one call, the validation probe.

Deployed, a bundle's files sit in ``/opt/nuclio`` and function.yaml's ``env`` points there.
Unpacked on a workstation they sit next to ``main.py``: :func:`bundle_environment` maps the
``/opt/nuclio`` paths of function.yaml onto the bundle folder, so that ``python main.py
IMAGE`` and ``quadratseg validate`` run the function with the bundle's own settings.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.core.messages import describe_error, last_line
from quadratseg_handlers.core.request import cvat_request, encode_image
from quadratseg_handlers.deploy.catalog import FunctionKind
from quadratseg_handlers.deploy.compatibility import outdated_import
from quadratseg_handlers.deploy.function_yaml import BundleError, environment, load_function_yaml
from quadratseg_handlers.local.harness import FunctionClient, response_json


def bundle_environment(
    folder: Path, *, prefer_bundle: bool, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """function.yaml's environment for running the bundle in ``folder`` outside Nuclio.

    ``/opt/nuclio/<file>`` becomes ``<folder>/<file>``: always with ``prefer_bundle`` (checking
    the bundle), else only where ``/opt/nuclio/<file>`` does not exist. Without
    ``prefer_bundle`` a variable already set in ``environ`` is kept. DEVICE is the caller's,
    or ``auto``: the bundle's ``cpu``/``cuda`` describes its image, not this machine.
    """
    env = os.environ if environ is None else environ
    spec = load_function_yaml(folder / "function.yaml").get("spec") or {}
    declared = environment(spec, folder.resolve(), prefer_bundle=prefer_bundle)
    result = {name: value for name, value in declared.items() if prefer_bundle or name not in env}
    result["DEVICE"] = env.get("DEVICE") or "auto"
    return result


def blobs_image(width: int = 640, height: int = 480, count: int = 6, seed: int = 0) -> np.ndarray:
    """A dark textured RGB image with ``count`` bright elliptic blobs of varied brightness: the
    JPEG the validation probe sends, and the example handler's input."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(20, 90, size=(height, width, 3), dtype=np.uint8)
    image: np.ndarray = cv2.GaussianBlur(noise, (0, 0), 3)
    radius = max(4, min(width, height) // 12)
    for _ in range(count):
        center = (
            int(rng.integers(radius, width - radius)),
            int(rng.integers(radius, height - radius)),
        )
        axes = (int(rng.integers(radius // 2, radius)), int(rng.integers(radius // 2, radius)))
        level = int(rng.integers(215, 256))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(image, center, axes, angle, 0, 360, (level, level, level), -1)
    return image


def probe_mask(width: int, height: int) -> np.ndarray:
    """The mask an inpainter is probed with: a centred rectangle, 255 inside."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = 255
    return mask


def probe(folder: Path, kind: FunctionKind, width: int, height: int) -> dict[str, Any]:
    """Call the bundle's main.py once through ``nuclio_sdk.test.Platform`` with a generated
    JPEG (and a mask for an inpainter); return what came back, for ``quadratseg validate``."""
    os.environ.update(bundle_environment(folder, prefer_bundle=True))
    image = blobs_image(width, height, seed=0)
    body = cvat_request(image)
    if kind == "inpainter":
        body["mask"] = encode_image(probe_mask(width, height), fmt="PNG")
    client = FunctionClient(folder / "main.py")
    started = time.perf_counter()
    client.start()
    loaded = time.perf_counter()
    response = client.call(body)
    answered = time.perf_counter()
    try:
        answer: Any = response_json(response)
    except ValueError:
        answer = str(response.body)[:500]
    return {
        "status": response.status_code,
        "content_type": response.content_type,
        "answer": answer,
        "width": width,
        "height": height,
        "start_seconds": round(loaded - started, 3),
        "seconds": round(answered - loaded, 3),
    }


def run_probe(folder: Path, kind: FunctionKind, timeout: float) -> dict[str, Any]:
    """Run the bundle's main.py once in a subprocess with the bundle as working directory."""
    with tempfile.TemporaryDirectory(prefix="quadratseg-probe-") as temporary:
        result_file = Path(temporary) / "result.json"
        try:
            completed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "quadratseg_handlers.local.bundle",
                    "probe",
                    "--kind",
                    kind,
                    "--result",
                    str(result_file),
                ],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"no answer within {timeout:.0f} s"}
        if not result_file.is_file():
            last = last_line(completed.stderr)
            return {"error": f"the probe exited with {completed.returncode}: {last}"}
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result


def run_once(main_file: str, argv: Sequence[str] | None = None) -> int:
    """``python main.py IMAGE [--threshold T]``: the function once outside Nuclio, JSON out."""
    parser = argparse.ArgumentParser(
        prog="python main.py", description="Run this function once on an image, print its JSON."
    )
    parser.add_argument("image", type=Path, help="an image file, sent as CVAT sends a frame")
    parser.add_argument("--threshold", type=float, help="the request's threshold (CVAT's)")
    parser.add_argument("--mask", type=Path, help="inpainting mask image (grid removal)")
    parser.add_argument("--save", type=Path, help="write an image answer to this file")
    args = parser.parse_args(argv)
    for path in (args.image, args.mask):
        if path is not None and not path.is_file():
            print(f"main.py: error: file not found: {path}", file=sys.stderr)
            return 2
    folder = Path(main_file).resolve().parent
    try:
        os.environ.update(bundle_environment(folder, prefer_bundle=False))
    except BundleError as exc:
        print(f"main.py: error: {exc}", file=sys.stderr)
        return 2
    body = cvat_request(args.image, args.threshold)
    if args.mask is not None:
        body["mask"] = encode_image(args.mask)
    try:
        # Start-up logs and library chatter go to stderr: stdout carries only the JSON.
        with contextlib.redirect_stdout(sys.stderr):
            response = FunctionClient(folder / "main.py").call(body)
    except ConfigError as exc:
        print(f"main.py: configuration error: {exc}", file=sys.stderr)
        return 2
    answer = response_json(response)
    if args.save is not None and isinstance(answer, dict) and "image" in answer:
        args.save.write_bytes(base64.b64decode(answer["image"]))
        answer["image"] = f"<written to {args.save}>"
    print(json.dumps(answer))
    print(f"main.py: HTTP {response.status_code}", file=sys.stderr)
    return 0 if response.status_code == 200 else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m quadratseg_handlers.local.bundle probe``: the subprocess ``validate`` runs in the
    bundle folder; it writes its result as JSON to ``--result``."""
    parser = argparse.ArgumentParser(prog="python -m quadratseg_handlers.local.bundle")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("probe", help="call the bundle in the working directory once")
    run.add_argument("--kind", choices=("detector", "inpainter"), default="detector")
    run.add_argument("--width", type=int, default=640)
    run.add_argument("--height", type=int, default=480)
    run.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        result = probe(Path.cwd(), args.kind, args.width, args.height)
        code = 0
    except Exception as exc:
        outdated = outdated_import(exc, Path.cwd())
        if outdated is not None:
            result = {"outdated": outdated}
        else:
            result = {"error": describe_error(exc, 300), "traceback": traceback.format_exc()}
        code = 1
    args.result.write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())

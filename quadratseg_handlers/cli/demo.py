"""The ``demo`` sub-command: the whole pipeline over HTTP, or the example blob handler.

The pipeline itself lives in :mod:`quadratseg_handlers.local.demo`; this module parses the
options and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the pipeline over HTTP on a drawn quadrat (or, with --example, the blob handler)."""
    if not args.example:
        return run_pipeline_demo(args)
    return example_demo(args)


def run_pipeline_demo(args: argparse.Namespace) -> int:
    """gridcorners -> warp -> gridpose -> grid removal -> corals, overlays in --output."""
    from quadratseg_handlers.local.demo import run_demo, summary

    started = time.perf_counter()
    reports = run_demo(
        args.output,
        size=args.size,
        seed=args.seed,
        log=lambda line: print(f"demo: {line}", file=sys.stderr, flush=True),
    )
    print(summary(reports))
    print(
        f"\noverlays of every stage and the bundles are in {args.output}/ "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    return 0


def example_demo(args: argparse.Namespace) -> int:
    """Run the example blob handler on a generated image through Nuclio objects; print JSON."""
    from quadratseg_handlers import cvat
    from quadratseg_handlers.core.request import cvat_request
    from quadratseg_handlers.handlers.blobs import BlobHandler
    from quadratseg_handlers.local.harness import FunctionClient, response_json
    from quadratseg_handlers.local.synthetic import blobs_image

    image = blobs_image(args.width, args.height, count=args.blobs, seed=args.seed)
    client = FunctionClient(BlobHandler)
    started = time.perf_counter()
    handler = client.start()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    response = client.call(cvat_request(image))
    elapsed = time.perf_counter() - started
    shapes = response_json(response)
    print(json.dumps(shapes, indent=None if args.compact else 2))
    problems = cvat.validate_response(shapes, handler.labels(), (image.shape[1], image.shape[0]))
    print(
        f"demo: {len(shapes)} shapes from a {image.shape[1]}x{image.shape[0]} generated image "
        f"(start-up {loaded * 1000:.0f} ms, request {elapsed * 1000:.0f} ms), "
        f"HTTP {response.status_code}, "
        f"{'valid CVAT JSON' if not problems else 'INVALID: ' + '; '.join(problems)}",
        file=sys.stderr,
    )
    return 0 if response.status_code == 200 and not problems else 1


def add_demo_command(sub: Any) -> None:
    """Add ``demo`` to the ``quadratseg`` parser."""
    demo = sub.add_parser(
        "demo", help="run the whole pipeline over HTTP on a drawn quadrat with small models"
    )
    demo.add_argument("--output", default="demo-output", help="folder for overlays and bundles")
    demo.add_argument("--size", type=int, default=1024, help="side of the drawn photo in pixels")
    demo.add_argument("--seed", type=int, default=3)
    demo.add_argument(
        "--example",
        action="store_true",
        help="instead: the example blob handler on a generated image, as JSON",
    )
    demo.add_argument("--width", type=int, default=640, help="--example image width")
    demo.add_argument("--height", type=int, default=480, help="--example image height")
    demo.add_argument("--blobs", type=int, default=5, help="--example blob count")
    demo.add_argument("--compact", action="store_true", help="--example: JSON on one line")
    demo.set_defaults(run=cmd_demo)

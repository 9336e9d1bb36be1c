"""The ``demo`` and ``train-demo`` sub-commands.

``demo`` runs the whole pipeline over HTTP on a drawn quadrat with the trained demo models
(with --photo, on the user's own photo, unscored; with --example, the blob handler instead);
``train-demo`` retrains those models. The work itself lives in
:mod:`quadratseg_handlers.demo.pipeline` and :mod:`quadratseg_handlers.demo.training`; this
module parses the options and prints the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quadratseg_handlers.cli.errors import CliError, user_errors

if TYPE_CHECKING:
    import numpy as np


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the pipeline over HTTP on a drawn quadrat or on --photo (or, with --example, the blob
    handler)."""
    if args.photo and args.example:
        raise CliError("--photo and --example cannot go together")
    if args.photo:
        return run_photo_demo(args)
    if not args.example:
        return run_pipeline_demo(args)
    return example_demo(args)


def read_photo(path: str) -> np.ndarray:
    """The user's photo as an RGB array (EXIF orientation applied, as the functions decode it);
    a missing or undecodable file is one line (exit 2)."""
    from quadratseg_handlers.core.request import RequestError, load_image

    target = Path(path)
    if not target.is_file():
        raise CliError(f"{path}: {'not a file' if target.exists() else 'no such file'}")
    try:
        return load_image(target)
    except PermissionError as error:
        raise CliError(f"{path}: cannot be read ({error.strerror})") from None
    except (RequestError, OSError, ValueError):
        raise CliError(
            f"{path}: not a readable image (expected JPEG, PNG, TIFF, BMP or WebP)"
        ) from None


def _log(line: str) -> None:
    """A demo progress line on stderr, so that stdout holds only the table."""
    print(f"demo: {line}", file=sys.stderr, flush=True)


def run_photo_demo(args: argparse.Namespace) -> int:
    """The pipeline on the user's own photo: answers and overlays in --output, nothing scored.

    Exit 0 when every stage answered, 1 when one failed (no quadrat found, say).
    """
    from quadratseg_handlers.demo.pipeline import NO_TRUTH, run_photo_demo, summary
    from quadratseg_handlers.demo.training import DemoModelsError

    photo = read_photo(args.photo)
    started = time.perf_counter()
    with user_errors(DemoModelsError):
        run = run_photo_demo(
            photo,
            args.output,
            models=args.models,
            log=_log,
        )
    print(summary(run.reports))
    print(
        f"\n{NO_TRUTH}: the table says what each model answered, not whether it is right; "
        f"look at the overlays in {args.output}/ and the CVAT answers in {args.output}/answers/ "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    if run.failure:
        print(f"demo: the pipeline stopped: {run.failure}", file=sys.stderr)
        return 1
    return 0


def run_pipeline_demo(args: argparse.Namespace) -> int:
    """gridcorners -> warp -> gridpose -> grid removal -> corals, overlays in --output.

    Exit 0 when every stage answered, 1 when one failed (the pipeline stopped there); a stage
    below its accuracy bar is marked in the table and named on stderr.
    """
    from quadratseg_handlers.demo.pipeline import run_demo, summary
    from quadratseg_handlers.demo.training import TEST_SEEDS, DemoModelsError

    started = time.perf_counter()
    with user_errors(DemoModelsError):
        run = run_demo(
            args.output,
            size=args.size,
            seed=TEST_SEEDS + 3 if args.seed is None else args.seed,
            models=args.models,
            log=_log,
        )
    print(summary(run.reports))
    print(
        f"\noverlays of every stage and the bundles are in {args.output}/ "
        f"({time.perf_counter() - started:.0f} s in all)"
    )
    if run.failure:
        print(f"demo: the pipeline stopped: {run.failure}", file=sys.stderr)
        return 1
    below = [report.stage for report in run.reports if not report.passed]
    if below:
        print(f"demo: below the bar (docs/demo.md): {', '.join(below)}", file=sys.stderr)
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    """Draw the data sets and train the demo models into --output (about 6 hours, 2 cores)."""
    from quadratseg_handlers.demo.reef_photos import reef_textures_folder
    from quadratseg_handlers.demo.training import train_demo_models

    with user_errors(ValueError):
        manifest = train_demo_models(
            Path(args.output),
            Path(args.work) if args.work else None,
            only=args.only or None,
            epochs=args.epochs,
            log=lambda line: print(f"train-demo: {line}", file=sys.stderr, flush=True),
            reef=reef_textures_folder(args.reef_textures),
        )
    print(f"trained; manifest: {manifest}")
    return 0


def size_argument(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` or a single side, as (width, height)."""
    try:
        parts = [int(part) for part in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 256 or max(parts) > 8000:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT or SIDE, 256 to 8000 pixels, got {text!r}"
        )
    return parts[0], parts[1]


def example_demo(args: argparse.Namespace) -> int:
    """Run the example blob handler on a generated image through Nuclio objects; print JSON."""
    from quadratseg_handlers import cvat
    from quadratseg_handlers.core.request import cvat_request
    from quadratseg_handlers.handlers.blobs import BlobHandler
    from quadratseg_handlers.local.bundle import blobs_image
    from quadratseg_handlers.local.harness import FunctionClient, response_json

    image = blobs_image(args.width, args.height, count=args.blobs, seed=args.seed or 0)
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
    demo.add_argument(
        "--size", type=size_argument, default=(1600, 1200), help="drawn photo, WIDTHxHEIGHT or SIDE"
    )
    demo.add_argument(
        "--seed", type=int, default=None, help="photo seed (default: a held-out test seed)"
    )
    demo.add_argument(
        "--models", default="demo-models", help="folder of the trained demo models and manifest"
    )
    demo.add_argument(
        "--photo",
        default=None,
        help="instead of a drawn quadrat: your own photo (answers and overlays, no scores)",
    )
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

    train = sub.add_parser(
        "train-demo",
        help="retrain the demo models on drawn quadrats (about 6 hours on 2 CPU cores)",
    )
    train.add_argument("--output", default="demo-models", help="folder for weights and manifest")
    train.add_argument("--work", default=None, help="keep the drawn data sets and runs here")
    train.add_argument(
        "--only", action="append", choices=["gridcorners", "gridpose", "coralseg"],
        help="train only this model (repeatable)",
    )  # fmt: skip
    train.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    train.add_argument(
        "--reef-textures", default=None,
        help="real reef photos to draw over (default: $QUADRATSEG_REEF_TEXTURES, else "
        "../shared/data/reef-textures when it exists; without them the reef runs are skipped)",
    )  # fmt: skip
    train.set_defaults(run=cmd_train_demo)

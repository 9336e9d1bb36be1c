"""The ``serve``, ``check``, ``bench`` and ``annotate`` sub-commands: functions run locally.

Each command turns the errors a user can cause (a bundle that does not load, an unreachable
URL, an empty image folder) into one line and an exit code (:mod:`.errors`).
The server (aiohttp, the ``serve`` extra) is imported only by the commands that start one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from quadratseg_handlers import cvat
from quadratseg_handlers.cli.errors import CliError, user_errors
from quadratseg_handlers.cli.interrupts import Terminated
from quadratseg_handlers.core.messages import plural
from quadratseg_handlers.core.request import RequestError, load_image
from quadratseg_handlers.cvat.spec import LabelSpec
from quadratseg_handlers.deploy.function_yaml import BundleError, open_bundle
from quadratseg_handlers.local import bench, check, overlay
from quadratseg_handlers.local.client import (
    FunctionError,
    HttpFunction,
    image_files,
    image_size_wh,
    request_body,
)


def _user_errors(*more: type[Exception]) -> contextlib.AbstractContextManager[None]:
    """Bundle and function errors (and ``more`` kinds) as one-line CliErrors (exit 2)."""
    return user_errors(BundleError, FunctionError, *more)


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--env expects NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def _spec_labels(spec: str | None, function: HttpFunction | None) -> list[LabelSpec] | None:
    """Labels from --spec (function.yaml, bundle folder or zip), else from quadratseg serve."""
    if spec is not None:
        with _user_errors(), open_bundle(spec) as config:
            return config.labels
    return function.labels() if function is not None else None


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a bundle until Ctrl-C (exit 130) or SIGTERM (exit 143), after the same clean
    shutdown; exit 1 when a worker cannot be started again, 2 for a bundle that cannot start."""
    from quadratseg_handlers.local.server import FunctionServer, ServeError, serve_forever

    with _user_errors(), open_bundle(args.bundle) as config:
        try:
            server = FunctionServer(
                config,
                host=args.host,
                port=args.port,
                workers=args.workers,
                env=_env_pairs(args.env),
                batch_size=args.batch_size,
                batch_timeout_ms=args.batch_timeout,
            )
            stopped_by = serve_forever(server)
        except ServeError as exc:
            raise CliError(str(exc), exc.code) from None
    if stopped_by == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def cmd_check(args: argparse.Namespace) -> int:
    """Send every test image, validate every answer; exit 1 if any image fails."""
    with _user_errors():
        function = HttpFunction(args.function_url, timeout=args.timeout)
        images = image_files(args.test_images)
        labels = _spec_labels(args.spec, function)
        if labels is None:
            raise CliError(
                f"no label spec: give --spec function.yaml (or the bundle); {args.function_url} "
                "is not a quadratseg serve that could tell it"
            )
        width = check.name_width(images)
        print(check.table_header(width))

        def show(result: check.ImageCheck) -> None:
            print(check.table_row(result, width), flush=True)

        results = check.check_images(
            function, images, labels, args.threshold, show, strict=args.strict
        )
    problems = check.details(results)
    if problems:
        print()
        print("\n".join(problems))
    print()
    print(check.summary(results))
    warning = check.empty_warning(results)
    if warning:
        print(f"quadratseg check: warning: {warning}", file=sys.stderr)
    return 0 if all(result.passed for result in results) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    """Time the function over the test images; print the guide's table, optionally JSON."""
    if args.num_runs < 1 or args.concurrency < 1:
        raise CliError("--num-runs and --concurrency must be at least 1")
    if args.warmup is not None and args.warmup < 0:
        raise CliError("--warmup must be 0 or more")
    with _user_errors():
        function = HttpFunction(args.function_url, timeout=args.timeout)
        images = image_files(args.test_images)
        bodies = [request_body(path, args.threshold) for path in images]
        sizes_wh = [image_size_wh(path) for path in images]
        warmup = args.concurrency if args.warmup is None else args.warmup
        print(
            f"bench: {len(images)} images, {warmup} warm-up + {args.num_runs} counted requests, "
            f"concurrency {args.concurrency}",
            file=sys.stderr,
        )
        bar = bench.ProgressBar(args.num_runs)
        result = bench.run(function, bodies, args.num_runs, args.concurrency, warmup, bar.update)
        result.model = args.model or function.name() or args.function_url
        result.image_size = bench.size_text(sizes_wh)
    print(bench.table(result))
    for error, count in result.errors.most_common():
        print(f"failed x{count}: {error}", file=sys.stderr)
    if args.json is not None:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        print(f"bench: figures written to {path}", file=sys.stderr)
    return 0 if not result.errors else 1


def _annotate_answer(
    args: argparse.Namespace, body: bytes
) -> tuple[tuple[Any, str], list[LabelSpec] | None, str]:
    """The function's answer for the image and its warning, its labels, and the function's
    name."""
    if args.bundle is not None:
        from quadratseg_handlers.local.server import BackgroundServer, ServeError

        with (
            _user_errors(ServeError),
            open_bundle(args.bundle) as config,
            BackgroundServer(config, workers=1) as url,
        ):
            answer = _post(HttpFunction(url, timeout=args.timeout), body)
            return answer, config.labels, config.name
    function = HttpFunction(args.function_url, timeout=args.timeout)
    labels = _spec_labels(args.spec, function)
    return _post(function, body), labels, function.name() or args.function_url


def _post(function: HttpFunction, body: bytes) -> tuple[Any, str]:
    answer = function.post(body)
    if answer.status != 200:
        raise CliError(f"the function answered HTTP {answer.status}: {answer.error_text()}", 1)
    try:
        return answer.json(), answer.warning
    except (ValueError, UnicodeDecodeError):
        raise CliError("the function's answer is not JSON", 1) from None


def cmd_annotate(args: argparse.Namespace) -> int:
    """Draw the function's answer for one image into a PNG of the image's size."""
    source = Path(args.image)
    if not source.is_file():
        raise CliError(f"{source}: no such image")
    with _user_errors():
        try:
            image = load_image(source)
        except (OSError, ValueError, RequestError) as exc:
            raise CliError(f"{source}: not a readable image ({exc})") from None
        (shapes, warning), labels, name = _annotate_answer(
            args, request_body(source, args.threshold)
        )
    if not isinstance(shapes, list):
        raise CliError("the function's answer is not a list of CVAT shapes", 1)
    count = plural(len(shapes), "shape")
    drawn = overlay.draw_shapes(image, shapes, labels, title=f"{name}: {count}")
    overlay.save_png(drawn, args.out)
    counts = ", ".join(
        f"{label} x{count}"
        for label, count in Counter(
            str(s.get("label")) for s in shapes if isinstance(s, dict)
        ).most_common()
    )
    print(
        f"annotate: {count} ({counts or 'none'}) on {image.shape[1]}x"
        f"{image.shape[0]} -> {args.out}",
        file=sys.stderr,
    )
    if warning:
        print(f"annotate: the function says: {warning}", file=sys.stderr)
    if labels is not None:
        problems = cvat.validate_response(shapes, labels, (image.shape[1], image.shape[0]))
        if problems:
            print(
                f"annotate: warning: {len(problems)} problems CVAT would reject, first: "
                f"{problems[0]} (quadratseg check lists them all)",
                file=sys.stderr,
            )
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Survey photos through corners, warp, grid, grid removal and corals; exit 1 if any
    photo failed (reported and skipped)."""
    from quadratseg_handlers.local import pipeline

    if args.warp_side < 64 or not 0 <= args.warp_margin < 0.5:
        raise CliError("--warp-side must be at least 64 and --warp-margin in [0, 0.5)")
    with _user_errors():
        photos = pipeline.photo_paths(args.photos)
        urls = {"corners": args.corners, "grid": args.grid, "removal": args.removal}
        functions = pipeline.functions({**urls, "corals": args.corals}, args.timeout)
        chain = pipeline.Chain(
            functions["corners"],
            functions["grid"],
            functions["removal"],
            functions["corals"],
            out=Path(args.out),
            warp_side=args.warp_side,
            warp_margin=args.warp_margin,
            line_width=args.line_width,
            keep_corners=args.keep_corners,
        )
        bar = bench.ProgressBar(len(photos), label="pipeline")

        def failed(result: pipeline.PhotoResult) -> None:
            start = "\n" if bar.tty else ""
            print(f"{start}pipeline: {result.photo}: skipped: {result.failure}", file=sys.stderr)

        results = pipeline.run_chain(chain, photos, bar.update, failed)
    done = sum(not result.failure for result in results)
    print(
        f"pipeline: {done}/{len(results)} photos through every stage -> {args.out} "
        f"(stage images and {pipeline.EXPORT_NAME} per stage)",
        file=sys.stderr,
    )
    return 0 if done == len(results) else 1


def _function_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--function-url", required=True, help="the function, e.g. http://localhost:8010"
    )
    parser.add_argument(
        "--test-images", required=True, help="folder of test images (jpg, png, tif, bmp, webp)"
    )
    parser.add_argument("--threshold", type=float, help="send this threshold with each image")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (120)")


def add_tool_commands(sub: Any) -> None:
    """Add serve, check, bench and annotate to the ``quadratseg`` sub-command parser."""
    serve = sub.add_parser(
        "serve", help="serve a function bundle over HTTP with Nuclio-like workers"
    )
    serve.add_argument("bundle", help="bundle folder (function.yaml + main.py) or nuclio.zip")
    serve.add_argument("--port", type=int, default=8010, help="port (8010)")
    serve.add_argument("--host", default="127.0.0.1", help="address (127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--workers", type=int, help="worker processes (default: numWorkers)")
    serve.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="override one of the function's environment variables (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--batch-size", type=int, metavar="N",
        help="Nuclio's batch mode: hand a worker up to N concurrent requests as one list of "
        "events (default: the trigger's batch in function.yaml, else off)",
    )  # fmt: skip
    serve.add_argument(
        "--batch-timeout", type=int, metavar="MS",
        help="how long a batch waits to fill, in milliseconds (function.yaml's, else 50)",
    )  # fmt: skip
    serve.set_defaults(run=cmd_serve)

    check_parser = sub.add_parser("check", help="validate a function's answers on test images")
    _function_arguments(check_parser)
    check_parser.add_argument(
        "--spec",
        help="function.yaml, bundle folder or zip with the labels (default: ask the server)",
    )
    check_parser.add_argument(
        "--strict",
        action="store_true",
        help="an answer with no shapes fails the image (exit 1), with the function's reason",
    )
    check_parser.set_defaults(run=cmd_check)

    bench_parser = sub.add_parser("bench", help="measure a function's latency and throughput")
    _function_arguments(bench_parser)
    bench_parser.add_argument("--num-runs", type=int, default=100, help="counted requests (100)")
    bench_parser.add_argument("--concurrency", type=int, default=1, help="requests at once (1)")
    bench_parser.add_argument(
        "--warmup", type=int, help="uncounted requests first (default: the concurrency)"
    )
    bench_parser.add_argument("--model", help="name in the table (default: the function's)")
    bench_parser.add_argument("--json", help="also write the figures to this JSON file")
    bench_parser.set_defaults(run=cmd_bench)

    annotate = sub.add_parser("annotate", help="draw a function's answer on an image")
    annotate.add_argument("image", help="the image to send")
    source = annotate.add_mutually_exclusive_group(required=True)
    source.add_argument("--function-url", help="a running function")
    source.add_argument("--bundle", help="a bundle folder or zip, served for this one image")
    annotate.add_argument("--spec", help="labels for --function-url (function.yaml or bundle)")
    annotate.add_argument("--out", required=True, help="the PNG to write")
    annotate.add_argument("--threshold", type=float, help="send this threshold")
    annotate.add_argument("--timeout", type=float, default=120.0, help="seconds (120)")
    annotate.set_defaults(run=cmd_annotate)

    chain = sub.add_parser(
        "pipeline",
        help="survey photos through the deployed functions, as the bridge does",
        description="Corners on each photo, the quadrat warped upright, grid points, the string "
        "painted out, corals segmented; each stage's images and CVAT for images 1.1 export "
        "go to --out (docs/tools.md).",
    )
    chain.add_argument("photos", nargs="+", metavar="PHOTO", help="photos, or folders of them")
    for name, what in (
        ("corners", "the grid-corner function (pth-yolo-gridcorners)"),
        ("grid", "the grid-point function (pth-yolo-gridpose)"),
        ("removal", "the grid-removal function (pth-lama)"),
        ("corals", "the coral-segmentation function (pth-yolo-coralsegv4 or another)"),
    ):
        chain.add_argument(f"--{name}", required=True, metavar="URL", help=what)
    chain.add_argument("--out", required=True, help="folder for the stage images and exports")
    chain.add_argument(
        "--warp-side", type=int, default=1024, help="side of the warped quadrat in pixels (1024)"
    )
    chain.add_argument(
        "--warp-margin", type=float, default=0.05,
        help="margin around the warped quadrat, a share of its side (0.05)",
    )  # fmt: skip
    chain.add_argument(
        "--line-width", type=int, help="grid removal's line width (default: the function's)"
    )
    chain.add_argument(
        "--keep-corners",
        action="store_true",
        help="warp from the corners as answered, not moved where the grid puts them",
    )
    chain.add_argument("--timeout", type=float, default=600.0, help="seconds per request (600)")
    chain.set_defaults(run=cmd_pipeline)

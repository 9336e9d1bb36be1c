"""The ``evaluate`` sub-command: a function scored against a lab's own CVAT export.

The work lives in :mod:`quadratseg_handlers.evaluate`; this module parses the options, turns
an export it cannot read, a missing image or an unreachable function into one line (exit 2),
and prints the figures and the threshold line to use.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from quadratseg_handlers.cli.errors import CliError, user_errors


def _sweep(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 0.1,0.25,0.4, got {text!r}"
        ) from None
    if not values or not all(0 < value <= 1 for value in values):
        raise argparse.ArgumentTypeError(f"thresholds must be in (0, 1], got {text!r}")
    return values


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score the function on the export; exit 0 when every request was answered, 1 otherwise."""
    from quadratseg_handlers.deploy.function_yaml import BundleError
    from quadratseg_handlers.evaluate import evaluate
    from quadratseg_handlers.evaluate.exports import ExportError
    from quadratseg_handlers.local.client import FunctionError

    kinds: list[type[Exception]] = [BundleError, ExportError, FunctionError]
    try:
        from quadratseg_handlers.local.server import ServeError

        kinds.append(ServeError)
    except ImportError:
        pass
    if args.served_threshold is not None and not 0 < args.served_threshold <= 1:
        raise CliError("--served-threshold must be in (0, 1]")
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise CliError(
            "pycocotools is missing: pip install 'quadratseg-handlers[evaluate]'"
        ) from None
    with user_errors(*kinds):
        result = evaluate(
            args.export,
            args.out,
            function_url=args.function_url,
            bundle=args.bundle,
            images=args.images,
            served_threshold=args.served_threshold,
            skeleton_sweep=args.skeleton_sweep,
            timeout=args.timeout,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    report = result.report
    print(
        f"{report['images']} images, served threshold {report['served_threshold']:g}, "
        f"{report['errors']} failed requests, {report['seconds_per_image']['mean']:.2f} s per image"
    )
    if "instances" in report:
        print(_label_line("all labels", {"kind": "instances", **report["instances"]}))
    for name, figures in report["labels"].items():
        print(_label_line(name, figures))
    for label in report["labels_not_answered"]:
        print(f"evaluate: {label!r} is drawn in the export but was never answered", file=sys.stderr)
    for label in report["labels_not_in_export"]:
        print(
            f"evaluate: {label!r} was answered but is not in the export (not scored)",
            file=sys.stderr,
        )
    for message, count in report["error_messages"].items():
        print(f"evaluate: failed x{count}: {message}", file=sys.stderr)
    print(f"report: {args.out}/report.md, report.json and {len(result.files) - 2} pictures")
    print("threshold to serve:")
    for line in result.package_lines:
        print(f"  {line}")
    return 0 if not report["errors"] else 1


def _label_line(name: str, figures: dict[str, Any]) -> str:
    head = f"{name}: precision {figures['precision']:.1%}, recall {figures['recall']:.1%}"
    if figures["kind"] == "instances":
        return (
            f"{head}, F1 {figures['f1']:.1%}, mAP {figures['map']:.3f}, AP50 {figures['ap50']:.3f}"
        )
    pck = figures["pck"]
    return (
        f"{head}, PCK 1/2/5 % {pck['0.01']:.1%} / {pck['0.02']:.1%} / {pck['0.05']:.1%}, "
        f"images within 2 % {figures['images_within_2pct']:.1%}, "
        f"missing skeletons {figures['missing_skeletons']}"
    )


def add_evaluate_command(sub: Any) -> None:
    """Add ``evaluate`` to the ``quadratseg`` sub-command parser."""
    parser = sub.add_parser(
        "evaluate", help="score a function against a CVAT export and choose its threshold"
    )
    parser.add_argument(
        "export",
        help="CVAT export: CVAT for images 1.1, COCO 1.0 or COCO Keypoints 1.0 (zip or folder)",
    )
    function = parser.add_mutually_exclusive_group(required=True)
    function.add_argument("--function-url", help="a running function, e.g. http://localhost:8010")
    function.add_argument("--bundle", help="a bundle folder or zip, served for the run")
    parser.add_argument("--images", help="folder of the images when the export holds none")
    parser.add_argument("--out", required=True, help="folder for report.json, report.md, plots")
    parser.add_argument(
        "--served-threshold", type=float,
        help="the function's CONF_THRESHOLD (default: the bundle's, else the catalogue's)",
    )  # fmt: skip
    parser.add_argument(
        "--skeleton-sweep", type=_sweep, default=[0.1, 0.25, 0.4, 0.55], metavar="T,T,...",
        help="request thresholds a skeleton function is called at (0.1,0.25,0.4,0.55)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (120)")
    parser.set_defaults(run=cmd_evaluate)

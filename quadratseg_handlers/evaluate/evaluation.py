"""One evaluation run: each image of an export sent to the function as CVAT sends it, the
answers scored against the drawn truth, a threshold to serve chosen, the report written.

The function is a URL (a deployed or served function, called over HTTP exactly as CVAT calls
it) or a bundle, served here for the run (one worker, as ``quadratseg serve`` would).

Thresholds. The *served threshold* is the CONF_THRESHOLD the function runs with: given, else
the bundle's, else the catalogue's for the function's name, else 0.25. Instances: each image is
sent once with the sweep's lowest threshold and the answers are cut at each threshold of the
sweep (a detector's answers at a threshold are its answers at a lower one, cut). Skeletons: the
threshold picks the detections the skeleton is fitted from, so each image is sent once per
threshold of the skeleton sweep; the skeleton's own confidence is swept on the answers at the
served threshold. An answer of 4xx/5xx is counted, its image scored as answered with nothing,
and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quadratseg_handlers.core.contract import ThresholdSettings
from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.deploy.function_yaml import FunctionConfig, open_bundle
from quadratseg_handlers.evaluate import report, summary
from quadratseg_handlers.evaluate.exports import Export, ExportError, ExportImage, open_export
from quadratseg_handlers.evaluate.summary import ImageAnswer
from quadratseg_handlers.local.bench import ProgressBar
from quadratseg_handlers.local.client import (
    FunctionError,
    HttpFunction,
    image_size_wh,
    request_body,
)

SKELETON_SWEEP = (0.1, 0.25, 0.4, 0.55)
"""Request thresholds a skeleton function is called at (with the served one)."""

SWEEP_FROM = 0.05
"""The threshold an instance function is called at; its answers are cut above it."""


@dataclass
class Evaluation:
    """What a run measured: the report (report.json's content) and the files written."""

    report: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    @property
    def package_lines(self) -> list[str]:
        """The ``quadratseg package ... --env CONF_THRESHOLD=...`` line(s) to use."""
        return list(self.report.get("recommendation", {}).get("commands", []))


def default_threshold(name: str | None, env: dict[str, str] | None = None) -> float:
    """The CONF_THRESHOLD a function serves with: its environment's, else its catalogue
    entry's, else the settings' default."""
    value = (env or {}).get("CONF_THRESHOLD")
    if value is None and name in FUNCTIONS:
        value = dict(FUNCTIONS[name].env).get("CONF_THRESHOLD")
    if value is not None:
        try:
            return float(value)
        except ValueError:
            pass
    field_default = {f.name: f.default for f in dataclasses.fields(ThresholdSettings)}
    return float(field_default["conf_threshold"])  # type: ignore[arg-type]


def ask(function: HttpFunction, image: ExportImage, threshold: float | None) -> ImageAnswer:
    """One image sent as CVAT sends it; an HTTP error or a non-list answer is an error."""
    assert image.path is not None
    answer = function.post(request_body(image.path, threshold))
    if answer.status != 200:
        return ImageAnswer([], answer.seconds, f"HTTP {answer.status}: {answer.error_text()[:120]}")
    try:
        shapes = answer.json()
    except (ValueError, UnicodeDecodeError):
        return ImageAnswer([], answer.seconds, "the answer is not JSON")
    if not isinstance(shapes, list) or not all(isinstance(s, dict) for s in shapes):
        return ImageAnswer([], answer.seconds, "the answer is not a list of CVAT shapes")
    return ImageAnswer(shapes, answer.seconds)


def check_sizes(export: Export) -> None:
    """Every image file has the size the export gives it (else the truth would not fit)."""
    for image in export.images:
        assert image.path is not None
        try:
            size = image_size_wh(image.path)
        except FunctionError as exc:
            raise ExportError(str(exc)) from None
        if size != (image.width, image.height):
            raise ExportError(
                f"image {image.name!r} is {size[0]}x{size[1]}, the export says "
                f"{image.width}x{image.height}: not the image the annotations were drawn on"
            )


@contextlib.contextmanager
def _function(
    function_url: str | None, bundle: str | Path | None, timeout: float
) -> Iterator[tuple[HttpFunction, str | None, FunctionConfig | None]]:
    """The function to call, its name, and its bundle's config when it is served here."""
    if (function_url is None) == (bundle is None):
        raise ValueError("give exactly one of function_url and bundle")
    if function_url is not None:
        function = HttpFunction(function_url, timeout=timeout)
        yield function, function.name(), None
        return
    from quadratseg_handlers.local.server import BackgroundServer

    with open_bundle(str(bundle)) as config, BackgroundServer(config, workers=1) as url:
        yield HttpFunction(url, timeout=timeout), config.name, config


def collect(
    function: HttpFunction,
    images: Sequence[ExportImage],
    thresholds: Sequence[float],
    progress: Callable[[int], None] | None = None,
) -> dict[float, list[ImageAnswer]]:
    """Every image's answer at each threshold. A function that cannot be reached on the first
    request is a FunctionError (nothing to score); later, a timeout or a dropped connection is
    that image's error, counted like a 5xx."""
    answers: dict[float, list[ImageAnswer]] = {threshold: [] for threshold in thresholds}
    for done, image in enumerate(images, start=1):
        for threshold in thresholds:
            try:
                answer = ask(function, image, threshold)
            except FunctionError as exc:
                if done == 1 and not answers[threshold]:
                    raise
                answer = ImageAnswer([], 0.0, str(exc))
            answers[threshold].append(answer)
        if progress is not None:
            progress(done)
    return answers


def evaluate(
    export: str | Path,
    out: str | Path,
    *,
    function_url: str | None = None,
    bundle: str | Path | None = None,
    images: str | Path | None = None,
    served_threshold: float | None = None,
    skeleton_sweep: Sequence[float] = SKELETON_SWEEP,
    timeout: float = 120.0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Score a function on a CVAT export; report.json, report.md and the plots go to ``out``.

    ``export``: a CVAT for images 1.1, COCO 1.0 or COCO Keypoints 1.0 export (zip, folder or
    annotation file); ``images``: where its images are when the export holds none.
    """
    with open_export(export, images) as truth:
        check_sizes(truth)
        kinds = truth.label_kinds()
        if not kinds:
            raise ExportError(f"{export}: nothing drawn (no polygons, masks or skeletons)")
        with _function(function_url, bundle, timeout) as (function, name, config):
            served = round(
                served_threshold
                if served_threshold is not None
                else default_threshold(name, config.env if config else None),
                4,
            )
            calls = _thresholds(kinds, served, skeleton_sweep)
            log(
                f"evaluate: {len(truth.images)} images ({truth.format}), labels "
                f"{', '.join(f'{k} ({v})' for k, v in kinds.items())}; served threshold "
                f"{served:g}, {len(calls)} request(s) per image"
            )
            bar = ProgressBar(len(truth.images), label="evaluate") if progress else None
            answers = collect(function, truth.images, calls, bar.update if bar else None)
        result = summary.build(truth, kinds, answers, served, name, config.env if config else None)
        files = report.write(result, truth, answers, Path(out))
    return Evaluation(result, files)


def _thresholds(kinds: dict[str, str], served: float, sweep: Sequence[float]) -> list[float]:
    """The request thresholds: the instance sweep's lowest, the skeleton sweep and served."""
    calls: set[float] = set()
    if "instances" in kinds.values():
        calls.add(min(SWEEP_FROM, served))
    if "skeleton" in kinds.values():
        calls.update(round(value, 4) for value in (*sweep, served))
    return sorted(calls)

"""The integration check: every test image through the function, every answer validated.

Each image is posted as CVAT posts it and the answer is checked with
:func:`cvat.validate_response` against the function's label spec and the image's size, so
what CVAT would reject or silently drop (float confidences, unknown labels, mask boxes off the
image) fails here, before deployment. An answer with no shapes passes, with the function's
own reason (its ``X-Quadratseg-Warning`` header) shown, unless the check is strict.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from quadratseg_handlers import cvat
from quadratseg_handlers.core.messages import plural
from quadratseg_handlers.cvat.spec import LabelSpec
from quadratseg_handlers.local.client import HttpFunction, image_size_wh, request_body


@dataclass
class ImageCheck:
    """What one image's answer held and what is wrong with it."""

    name: str
    size_wh: tuple[int, int]
    status: int
    seconds: float
    shapes: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    warning: str = ""
    """The function's warnings about this request (why its answer is empty)."""

    @property
    def passed(self) -> bool:
        return self.status == 200 and not self.problems

    @property
    def empty(self) -> bool:
        """A valid answer that holds no shapes."""
        return self.passed and self.shapes == 0

    def empty_text(self) -> str:
        """``empty: <the function's reason>`` (or that it gave none)."""
        return f"empty: {self.warning or 'the function gave no reason'}"


def check_image(
    function: HttpFunction,
    path: Path,
    labels: Sequence[LabelSpec],
    threshold: float | None,
    strict: bool = False,
) -> ImageCheck:
    """Post one image and validate the answer (``strict``: an empty answer fails)."""
    size_wh = image_size_wh(path)
    answer = function.post(request_body(path, threshold))
    result = ImageCheck(path.name, size_wh, answer.status, answer.seconds, warning=answer.warning)
    if answer.status != 200:
        result.problems.append(f"HTTP {answer.status}: {answer.error_text()}")
        return result
    try:
        shapes = answer.json()
    except (ValueError, UnicodeDecodeError):
        result.problems.append(
            f"the answer is not JSON (content type {answer.content_type or 'none'})"
        )
        return result
    if isinstance(shapes, list):
        result.shapes = len(shapes)
        result.labels = Counter(
            str(s.get("label")) for s in shapes if isinstance(s, dict) and "label" in s
        )
    result.problems = cvat.validate_response(shapes, labels, size_wh)
    if strict and result.empty:
        result.problems.append(result.empty_text())
    return result


def check_images(
    function: HttpFunction,
    images: Sequence[Path],
    labels: Sequence[LabelSpec],
    threshold: float | None = None,
    on_result: Callable[[ImageCheck], None] | None = None,
    strict: bool = False,
) -> list[ImageCheck]:
    """Check every image in turn; ``on_result`` sees each result as it arrives."""
    results = []
    for path in images:
        result = check_image(function, path, labels, threshold, strict)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results


def _label_counts(labels: Counter[str], width: int = 40) -> str:
    text = ", ".join(f"{name} x{count}" for name, count in labels.most_common())
    return text if len(text) <= width else text[: width - 3] + "..."


def name_width(images: Sequence[Path]) -> int:
    """The image column's width: the longest file name, whole (survey names are long)."""
    return max([len("image"), *(len(path.name) for path in images)])


def table_header(width: int = 28) -> str:
    """The per-image table's header (fixed-width columns; ``width``: the image column's)."""
    return (
        f"{'image':<{width}} {'size':>11} {'HTTP':>4} {'shapes':>6} {'time':>9}  "
        f"{'labels':<40}  problems"
    )


def table_row(result: ImageCheck, width: int = 28) -> str:
    """One image's line of the table, its file name whole."""
    size = f"{result.size_wh[0]}x{result.size_wh[1]}"
    if not result.passed:
        problems = f"{len(result.problems)}: {result.problems[0]}"
    else:
        problems = f"ok ({result.empty_text()})" if result.empty else "ok"
    return (
        f"{result.name:<{width}} {size:>11} {result.status:>4} {result.shapes:>6} "
        f"{result.seconds * 1000:>6.0f} ms  {_label_counts(result.labels):<40}  {problems}"
    )


def details(results: Sequence[ImageCheck], limit: int = 10) -> list[str]:
    """Every problem of each failed image (at most ``limit`` per image)."""
    lines = []
    for result in results:
        if result.passed:
            continue
        lines.append(f"{result.name}:")
        lines.extend(f"  - {problem}" for problem in result.problems[:limit])
        if len(result.problems) > limit:
            lines.append(f"  - ... and {len(result.problems) - limit} more")
    return lines


def summary(results: Sequence[ImageCheck]) -> str:
    """One line: how many images passed, shapes in all, median time."""
    passed = sum(result.passed for result in results)
    shapes = sum(result.shapes for result in results)
    median = statistics.median(result.seconds for result in results) * 1000
    verdict = "PASS" if passed == len(results) else "FAIL"
    return (
        f"{verdict}: {passed}/{len(results)} images passed, {plural(shapes, 'shape')}, "
        f"median {median:.0f} ms per image"
    )


def empty_warning(results: Sequence[ImageCheck]) -> str | None:
    """The loud line when answers passed with no shapes: how many, and the function's first
    reason; None when every passing answer holds shapes."""
    empty = [result for result in results if result.empty]
    if not empty:
        return None
    reasons = Counter(result.warning for result in empty if result.warning)
    reason = (
        f"the function says: {reasons.most_common(1)[0][0]}"
        if reasons
        else "the function gave no reason"
    )
    return (
        f"{len(empty)}/{len(results)} answers hold no shapes ({reason}); "
        "--strict fails on empty answers"
    )

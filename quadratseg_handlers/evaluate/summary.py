"""The report's content: each label's figures at the served threshold and over the sweeps,
the confusion between labels, the threshold to serve, and one row per image (worst first).

Everything here is computed from the answers (:class:`ImageAnswer`, one per image and request
threshold) and the export's truth by :mod:`~quadratseg_handlers.evaluate.scores`; it is what
``report.json`` holds (keys in :func:`build`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quadratseg_handlers.deploy.catalog import FUNCTIONS
from quadratseg_handlers.evaluate import scores
from quadratseg_handlers.evaluate.exports import Export, ExportImage

CONFIDENCE_CUTS = tuple(round(0.05 * step, 2) for step in range(0, 20))
"""Skeleton confidences the answers at the served threshold are cut at: 0 .. 0.95."""

PCK_CURVE = tuple(0.0025 * step for step in range(41))
"""Tolerances of the PCK curve: 0 .. 10 % of the side."""


@dataclass
class ImageAnswer:
    """The function's answer for one image at one threshold: shapes, or the error."""

    shapes: list[dict[str, Any]]
    seconds: float
    error: str | None = None


def _closest_best(values: dict[float, float], served: float) -> float:
    """The key with the largest value; among equals, the one closest to ``served``."""
    best = max(values.values())
    return min((t for t, v in values.items() if v >= best - 1e-12), key=lambda t: abs(t - served))


def _instance_labels(
    images: Sequence[ExportImage],
    answers: Sequence[ImageAnswer],
    labels: list[str],
    served: float,
    low: float,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[scores.ImageInstances]]]:
    """Each instance label's figures, the figures over all of them, and each label's
    instances image by image."""
    answered = [
        scores.answer_instances(answer.shapes, image.height, image.width)
        for image, answer in zip(images, answers, strict=True)
    ]
    per_label = {
        label: [
            scores.label_instances(image, found, label)
            for image, found in zip(images, answered, strict=True)
        ]
        for label in labels
    }
    precision = scores.coco_average_precision(images, answered, labels)
    sweep = [t for t in scores.SWEEP if t >= low - 1e-9]
    figures: dict[str, Any] = {}
    overall: dict[float, scores.Counts] = {t: scores.Counts() for t in (*sweep, served)}
    for label, matches in per_label.items():
        totals: dict[float, scores.Counts] = {t: scores.Counts() for t in (*sweep, served)}
        for match in matches:
            for threshold, counts in totals.items():
                counts.add(match.counts(threshold))
        for threshold, counts in totals.items():
            overall[threshold].add(counts)
        figures[label] = {
            "kind": "instances",
            "instances": sum(len(match.truth) for match in matches),
            **totals[served].figures(),
            **precision[label],
            "sweep": [{"threshold": t, **totals[t].figures()} for t in sweep],
        }
    cells = Counter(
        cell
        for image, found in zip(images, answered, strict=True)
        for cell in scores.confusion(image, [a for a in found if a[0] in labels], served)
    )
    confusion: dict[str, dict[str, int]] = {}
    for (drawn, said), count in sorted(cells.items()):
        confusion.setdefault(drawn, {})[said] = count
    best = _closest_best({t: overall[t].f1 for t in sweep}, served) if sweep else served
    summary = {
        **overall[served].figures(),
        **precision["all"],
        "confusion": confusion,
        "sweep": [{"threshold": t, **overall[t].figures()} for t in sweep],
        "best_threshold": best,
        "best_f1": overall[best].f1,
    }
    return figures, summary, per_label


def _skeleton_matches(
    images: Sequence[ExportImage], answers: Sequence[ImageAnswer], label: str, cut: float = 0.0
) -> list[scores.SkeletonMatch]:
    return [
        scores.match_skeletons(
            [s for s in image.skeletons if s.label == label],
            [s for s in scores.answer_skeletons(answer.shapes) if s.label == label],
            cut,
        )
        for image, answer in zip(images, answers, strict=True)
    ]


def _skeleton_label(
    images: Sequence[ExportImage],
    answers: dict[float, list[ImageAnswer]],
    label: str,
    served: float,
) -> tuple[dict[str, Any], list[scores.SkeletonMatch]]:
    """A skeleton label's figures at the served threshold, over the skeleton confidence and
    over the request thresholds; and the served answers' matches (for the rows)."""
    matches = _skeleton_matches(images, answers[served], label)
    figures = scores.skeleton_figures(matches)
    values = scores.node_error_values(matches)
    figures["pck_curve"] = [
        [round(tolerance, 4), float(np.mean(values <= tolerance)) if values.size else 1.0]
        for tolerance in PCK_CURVE
    ]
    figures["confidence_sweep"] = []
    for cut in CONFIDENCE_CUTS:
        cut_matches = _skeleton_matches(images, answers[served], label, cut)
        figures["confidence_sweep"].append(
            {
                "confidence": cut,
                "images_right": float(np.mean([m.right for m in cut_matches])),
                "pck_0.02": scores.pck(cut_matches, scores.RIGHT_TOLERANCE),
                "answered": sum(m.answered for m in cut_matches),
            }
        )
    figures["threshold_sweep"] = []
    for threshold in sorted(answers):
        at = scores.skeleton_figures(_skeleton_matches(images, answers[threshold], label))
        figures["threshold_sweep"].append(
            {
                "threshold": threshold,
                **{k: at[k] for k in ("precision", "recall", "images_right", "pck")},
            }
        )
    return figures, matches


def _rows(
    images: Sequence[ExportImage],
    first: Sequence[ImageAnswer],
    instance_rows: dict[str, list[scores.ImageInstances]],
    skeleton_rows: dict[str, list[scores.SkeletonMatch]],
    served: float,
) -> list[dict[str, Any]]:
    """One row per image, worst first: its time, error, and each label's result."""
    rows = []
    for number, (image, answer) in enumerate(zip(images, first, strict=True)):
        row: dict[str, Any] = {
            "image": image.name,
            "seconds": round(answer.seconds, 4),
            "error": answer.error,
            "labels": {},
        }
        total = scores.Counts()
        badness = 0.0
        for label, matches in instance_rows.items():
            counts = matches[number].counts(served)
            total.add(counts)
            row["labels"][label] = {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn}
        if instance_rows:
            badness = 1.0 - total.f1 if total.tp + total.fp + total.fn else 0.0
        for label, skeleton_matches in skeleton_rows.items():
            match = skeleton_matches[number]
            errors = [e for errors in match.errors for e in errors.values()]
            worst = max(errors) if errors else 0.0
            row["labels"][label] = {
                "worst_error": worst if np.isfinite(worst) else None,
                "missing_nodes": int(np.sum(~np.isfinite(errors))) if errors else 0,
                "right": match.right,
            }
            badness = max(badness, min(worst / 0.05, 1.0) if np.isfinite(worst) else 1.0)
        row["badness"] = round(1.5 if answer.error else badness, 4)
        rows.append(row)
    return sorted(rows, key=lambda r: -r["badness"])


def package_line(name: str | None, threshold: float, env: dict[str, str] | None = None) -> str:
    """The ``quadratseg package`` line serving ``threshold``: the catalogue's short model name
    and file slots when ``name`` is a catalogue function, and the bundle's own settings kept
    (those the catalogue does not set)."""
    spec = FUNCTIONS.get(name or "")
    model = spec.model if spec else (name or "MODEL")
    files = [f.argument.upper() for f in spec.files if f.default is None] if spec else ["FILES..."]
    fixed = dict(spec.env) if spec else {}
    file_settings = {f.env for f in spec.files} if spec else set()
    kept = [
        f"--env {key}={value}"
        for key, value in (env or {}).items()
        if key not in ("CONF_THRESHOLD", "DEVICE")
        and fixed.get(key) != value
        and key not in file_settings
    ]
    return " ".join(
        ["quadratseg package", model, *files, *kept, f"--env CONF_THRESHOLD={threshold:g}"]
    )


def build(
    truth: Export,
    kinds: dict[str, str],
    answers: dict[float, list[ImageAnswer]],
    served: float,
    name: str | None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """report.json's content (see docs/evaluate.md for each key)."""
    images = truth.images
    low = min(answers)
    first = answers[served] if served in answers else answers[low]
    instance_labels = [label for label, kind in kinds.items() if kind == "instances"]
    skeleton_labels = [label for label, kind in kinds.items() if kind == "skeleton"]
    labels: dict[str, Any] = {}
    report: dict[str, Any] = {"images": len(images)}
    instance_rows: dict[str, list[scores.ImageInstances]] = {}
    recommended: dict[str, float] = {}
    if instance_labels:
        figures, overall, instance_rows = _instance_labels(
            images, answers[low], instance_labels, served, low
        )
        labels.update(figures)
        report["instances"] = overall
        recommended["instances"] = overall["best_threshold"]
    skeleton_rows = {}
    for label in skeleton_labels:
        labels[label], skeleton_rows[label] = _skeleton_label(images, answers, label, served)
    if skeleton_labels:
        right = {
            t: float(
                np.mean(
                    [
                        next(r for r in labels[label]["threshold_sweep"] if r["threshold"] == t)[
                            "images_right"
                        ]
                        for label in skeleton_labels
                    ]
                )
            )
            for t in sorted(answers)
        }
        recommended["skeletons"] = _closest_best(right, served)
    answered_labels = {
        str(shape.get("label")) for calls in answers.values() for a in calls for shape in a.shapes
    }
    drawn = set(kinds) | set(truth.declared_labels)
    errors = Counter(a.error for calls in answers.values() for a in calls if a.error)
    seconds = np.asarray([a.seconds for a in first if not a.error] or [0.0])
    report.update(
        {
            "labels": labels,
            "format": truth.format,
            "export": truth.source,
            "function": name,
            "served_threshold": served,
            "request_thresholds": sorted(answers),
            "errors": sum(errors.values()),
            "error_messages": dict(errors.most_common(5)),
            "seconds_per_image": {
                "mean": float(seconds.mean()),
                "p50": float(np.percentile(seconds, 50)),
                "p95": float(np.percentile(seconds, 95)),
            },
            "labels_not_in_export": sorted(answered_labels - drawn),
            "labels_not_answered": sorted(set(kinds) - answered_labels),
            "recommendation": {
                **{f"{kind}_threshold": value for kind, value in recommended.items()},
                "commands": [
                    package_line(name, value, env) for value in dict.fromkeys(recommended.values())
                ],
            },
            "rows": _rows(images, first, instance_rows, skeleton_rows, served),
        }
    )
    return report

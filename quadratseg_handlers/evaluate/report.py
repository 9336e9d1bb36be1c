"""The report files: ``report.json`` (every figure), ``report.md`` (the same for people) and
PNG plots (precision-recall and F1 over the threshold, per-label bars, the PCK curve, the
skeleton sweeps, and the worst images with truth in green and the answer in magenta).

Plots need matplotlib (the ``evaluate`` extra); without it the report says so and carries on.
Every file is written atomically (a temporary file, then renamed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg_handlers.core.request import load_image
from quadratseg_handlers.deploy.archive import write_atomically
from quadratseg_handlers.evaluate import scores
from quadratseg_handlers.evaluate.exports import Export, ExportImage, decode
from quadratseg_handlers.evaluate.summary import ImageAnswer
from quadratseg_handlers.local.overlay import save_png

WORST_IMAGES = 3
"""How many of the worst images are drawn."""

TRUTH = (40, 220, 60)
ANSWER = (235, 40, 200)


def _write_text(path: Path, text: str) -> Path:
    def write(temporary: Path) -> None:
        temporary.write_text(text, encoding="utf-8")

    write_atomically(path, write, force=True)
    return path


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f} %"


def markdown(report: dict[str, Any], plots: Sequence[Path]) -> str:
    """report.md: the figures as tables, the threshold line, the worst images, the plots."""
    lines = [
        f"# Evaluation of {report['function'] or 'the function'}",
        "",
        f"{report['images']} images of `{report['export']}` ({report['format']}), served threshold "
        f"{report['served_threshold']:g}, {report['errors']} failed requests, "
        f"{report['seconds_per_image']['mean']:.2f} s per image (p95 "
        f"{report['seconds_per_image']['p95']:.2f} s).",
        "",
        "Threshold to serve:",
        "",
        "```",
        *report["recommendation"]["commands"],
        "```",
        "",
    ]
    labels = report["labels"]
    instance = {k: v for k, v in labels.items() if v["kind"] == "instances"}
    skeleton = {k: v for k, v in labels.items() if v["kind"] == "skeleton"}
    if instance:
        overall = report["instances"]
        lines += [
            "## Instances",
            "",
            f"Over all labels at {report['served_threshold']:g}: precision "
            f"{_percent(overall['precision'])}, recall {_percent(overall['recall'])}, F1 "
            f"{_percent(overall['f1'])}; COCO mask mAP@[.5:.95] {overall['map']:.3f}, AP50 "
            f"{overall['ap50']:.3f}. Best F1 {_percent(overall['best_f1'])} at "
            f"{overall['best_threshold']:g}.",
            "",
            "| Label | Drawn | Precision | Recall | F1 | mAP | AP50 |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {v['instances']} | {_percent(v['precision'])} | {_percent(v['recall'])} | "
            f"{_percent(v['f1'])} | {v['map']:.3f} | {v['ap50']:.3f} |"
            for name, v in instance.items()
        ]
        said = sorted({s for row in overall["confusion"].values() for s in row})
        lines += ["", "Confusion (rows drawn, columns answered, IoU >= 0.5):", ""]
        lines += [
            "| drawn \\ answered | " + " | ".join(said) + " |",
            "|---" * (len(said) + 1) + "|",
        ]
        for drawn, row in overall["confusion"].items():
            lines.append(f"| {drawn} | " + " | ".join(str(row.get(s, 0)) for s in said) + " |")
        lines += ["", "| Threshold | Precision | Recall | F1 |", "|---|---|---|---|"]
        lines += [
            f"| {r['threshold']:g} | {_percent(r['precision'])} | {_percent(r['recall'])} | "
            f"{_percent(r['f1'])} |"
            for r in overall["sweep"]
        ]
        lines.append("")
    if skeleton:
        lines += [
            "## Skeletons",
            "",
            "Errors are shares of the quadrat's side; a skeleton is right when every node is "
            "within 2 %.",
            "",
            "| Label | Drawn | Precision | Recall | PCK 1 % | PCK 2 % | PCK 5 % | Images within "
            "2 % | Missing | Extra | Mean error |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {v['skeletons']} | {_percent(v['precision'])} | {_percent(v['recall'])} | "
            f"{_percent(v['pck']['0.01'])} | {_percent(v['pck']['0.02'])} | "
            f"{_percent(v['pck']['0.05'])} | {_percent(v['images_within_2pct'])} | "
            f"{v['missing_skeletons']} | {v['extra_skeletons']} | {_percent(v['mean_error'])} |"
            for name, v in skeleton.items()
        ]
        for name, v in skeleton.items():
            lines += ["", f"`{name}` by request threshold:", ""]
            lines += ["| Threshold | Images right | PCK 2 % |", "|---|---|---|"]
            lines += [
                f"| {r['threshold']:g} | {_percent(r['images_right'])} | "
                f"{_percent(r['pck']['0.02'])} |"
                for r in v["threshold_sweep"]
            ]
        lines.append("")
    missing = report["labels_not_answered"]
    extra = report["labels_not_in_export"]
    if missing or extra:
        lines += [
            "## Labels",
            "",
            f"Drawn but never answered: {', '.join(missing) or 'none'}. Answered but not in "
            f"the export (not scored): {', '.join(extra) or 'none'}.",
            "",
        ]
    lines += ["## Worst images", "", "| Image | Seconds | Result |", "|---|---|---|"]
    for row in report["rows"][:10]:
        result = row["error"] or "; ".join(
            f"{label} " + ", ".join(f"{k} {v}" for k, v in values.items())
            for label, values in row["labels"].items()
        )
        lines.append(f"| {row['image']} | {row['seconds']:.2f} | {result} |")
    lines += ["", "## Plots", ""]
    lines += [f"![{path.stem}]({path.name})" for path in plots] or [
        "No plots: matplotlib is not installed (`pip install quadratseg-handlers[evaluate]`)."
    ]
    return "\n".join(lines) + "\n"


def _figure(columns: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5 * columns, 4.2), layout="constrained")
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def _save(figure: Any, path: Path) -> Path:
    write_atomically(
        path, lambda temporary: figure.savefig(temporary, format="png", dpi=110), force=True
    )
    return path


def plots(report: dict[str, Any], out: Path) -> list[Path]:
    """The charts of the report, as PNG files in ``out`` (none without matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    written = []
    labels = report["labels"]
    instance = {k: v for k, v in labels.items() if v["kind"] == "instances"}
    skeleton = {k: v for k, v in labels.items() if v["kind"] == "skeleton"}
    if instance:
        figure, (curves, f1) = _figure(2)
        overall = report["instances"]
        for name, values in [*instance.items(), ("all labels", overall)]:
            sweep = values["sweep"]
            style = {"linewidth": 2.5, "color": "black"} if name == "all labels" else {}
            curves.plot(
                [r["recall"] for r in sweep],
                [r["precision"] for r in sweep],
                ".-",
                label=name,
                **style,
            )
            f1.plot(
                [r["threshold"] for r in sweep], [r["f1"] for r in sweep], ".-", label=name, **style
            )
        f1.axvline(overall["best_threshold"], color="grey", linestyle="--", label="recommended")
        curves.set(
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1.02),
            ylim=(0, 1.02),
            title="Precision-recall over the threshold",
        )
        f1.set(
            xlabel="confidence threshold",
            ylabel="F1",
            ylim=(0, 1.02),
            title="F1 over the threshold",
        )
        curves.legend(fontsize=7)
        written.append(_save(figure, out / "precision-recall.png"))
        figure, (bars,) = _figure(1)
        names = list(instance)
        x = np.arange(len(names))
        for offset, key in enumerate(("precision", "recall", "ap50")):
            bars.bar(x + (offset - 1) * 0.27, [instance[n][key] for n in names], 0.27, label=key)
        bars.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        bars.set(ylim=(0, 1.05), title=f"Per label at threshold {report['served_threshold']:g}")
        bars.legend(fontsize=7)
        written.append(_save(figure, out / "per-label.png"))
    if skeleton:
        figure, (curve, sweep) = _figure(2)
        for name, values in skeleton.items():
            points = np.asarray(values["pck_curve"])
            curve.plot(100 * points[:, 0], points[:, 1], label=name)
            rows = values["threshold_sweep"]
            sweep.plot(
                [r["threshold"] for r in rows],
                [r["images_right"] for r in rows],
                "o-",
                label=f"{name}: request threshold",
            )
            cuts = values["confidence_sweep"]
            sweep.plot(
                [r["confidence"] for r in cuts],
                [r["images_right"] for r in cuts],
                ".--",
                label=f"{name}: skeleton confidence",
            )
        for tolerance in scores.PCK_TOLERANCES:
            curve.axvline(100 * tolerance, color="grey", linewidth=0.6, linestyle=":")
        curve.set(
            xlabel="tolerance (% of the quadrat's side)",
            ylabel="share of nodes within",
            ylim=(0, 1.02),
            title="PCK",
        )
        sweep.set(
            xlabel="threshold",
            ylabel="share of images right",
            ylim=(0, 1.02),
            title="Images right (every node within 2 %)",
        )
        curve.legend(fontsize=7)
        sweep.legend(fontsize=7)
        written.append(_save(figure, out / "pck.png"))
    return written


def draw_image(
    image: ExportImage, answer: ImageAnswer, threshold: float = 0.0, long_side: int = 1200
) -> np.ndarray:
    """The image with its truth (green) and the function's answer at ``threshold`` (magenta)."""
    assert image.path is not None
    picture = np.ascontiguousarray(load_image(image.path))
    width = max(2, round(max(picture.shape[:2]) / 500))
    for mask in (decode(rle) for _, rle in image.instances):
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(picture, contours, -1, TRUTH, width)
    for _, rle, score in scores.answer_instances(answer.shapes, image.height, image.width):
        if score < threshold - 1e-9:
            continue
        contours, _ = cv2.findContours(
            decode(rle).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(picture, contours, -1, ANSWER, width)
    for skeleton in image.skeletons:
        for x, y in skeleton.points.values():
            cv2.circle(picture, (round(x), round(y)), 3 * width, TRUTH, width)
    for found in scores.answer_skeletons(answer.shapes):
        for x, y in found.points.values():
            cv2.drawMarker(
                picture, (round(x), round(y)), ANSWER, cv2.MARKER_CROSS, 5 * width, width
            )
    scale = long_side / max(picture.shape[:2])
    if scale < 1:
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return picture


def write(
    report: dict[str, Any], truth: Export, answers: dict[float, list[ImageAnswer]], out: Path
) -> list[Path]:
    """report.json, the plots, the worst images and report.md into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = [_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")]
    charts = plots(report, out)
    served = report["served_threshold"]
    first = answers[served] if served in answers else answers[min(answers)]
    by_name = {image.name: number for number, image in enumerate(truth.images)}
    for rank, row in enumerate(report["rows"][:WORST_IMAGES], start=1):
        number = by_name[row["image"]]
        charts.append(
            save_png(
                draw_image(truth.images[number], first[number], served), out / f"worst-{rank}.png"
            )
        )
    files += charts
    files.append(_write_text(out / "report.md", markdown(report, charts)))
    return files

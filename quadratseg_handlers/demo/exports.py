"""CVAT exports of drawn quadrats, written the way CVAT writes them, with exact truth.

What a lab exports from a CVAT task, made from the drawn world so that the truth is exact:
the worked example of docs/evaluate.md and the tests of ``quadratseg evaluate``. The layouts
follow CVAT's own exporters (cvat/apps/dataset_manager/formats/cvat.py, and datumaro's COCO
exporter behind CVAT's "COCO 1.0" and "COCO Keypoints 1.0"):

- CVAT for images 1.1: ``annotations.xml`` and ``images/<name>``; ``<image id name width
  height>``; a ``<mask>`` as ``rle`` (runs of 0 then 1 over its box, row-major, written as a
  Python list's text without brackets), ``left``, ``top``, ``width``, ``height``; a
  ``<polygon>`` as ``points="x,y;x,y"`` with 2 decimals; a ``<skeleton>`` holding one
  ``<points label outside occluded points>`` per node;
- COCO 1.0: ``annotations/instances_default.json`` and ``images/default/<name>``; a mask as
  uncompressed RLE (column-major runs) with ``iscrowd`` 1, a polygon as ``[[x, y, ...]]``;
- COCO Keypoints 1.0: ``annotations/person_keypoints_default.json``; a skeleton as
  ``keypoints`` [x, y, v] (v 2: visible) named by its category's ``keypoints``.

Which photos: gridcorners sees the photo; gridpose and coralsegv4 the quadrat warped upright
from its true corners (coralsegv4 with the string painted out), as in the pipeline.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np
from PIL import Image

from quadratseg_handlers.demo.datasets import random_photo_size_wh
from quadratseg_handlers.demo.synthetic import quadrat_image
from quadratseg_handlers.demo.training import TEST_SEEDS
from quadratseg_handlers.demo.warped import remove_string, warped_masks, warped_view

EXPORT_SEEDS = TEST_SEEDS + 50_000
"""Seeds of the exported photos: held out from every demo model's training."""

SKELETON_LABELS = {"pth-yolo-gridcorners": "quadrat_corner", "pth-yolo-gridpose": "grid"}
"""The skeleton label each grid function answers with (its SKELETON_LABEL default)."""

MIN_AREA = 0.0005
"""Colonies smaller than this share of the image are not drawn (slivers at the frame's edge
no lab outlines; the demo model's training labels leave them out too)."""

FUNCTIONS = ("pth-yolo-gridcorners", "pth-yolo-gridpose", "pth-yolo-coralsegv4")


@dataclass
class DrawnImage:
    """One image of an export and its exact truth."""

    name: str
    image: np.ndarray
    instances: list[tuple[str, np.ndarray]] = field(default_factory=list)
    skeletons: list[tuple[str, np.ndarray]] = field(default_factory=list)
    """(label, (N, 2) nodes "1".."N")."""


def drawn_images(
    function: str, count: int, seed: int = EXPORT_SEEDS, warp: int = 640
) -> list[DrawnImage]:
    """``count`` held-out images for ``function`` with their truth."""
    images = []
    for number in range(count):
        scene_seed = seed + number
        rng = np.random.default_rng(scene_seed)
        if function == "pth-yolo-gridcorners":
            scene = quadrat_image(random_photo_size_wh(rng, (640, 960)), scene_seed)
            label = SKELETON_LABELS[function]
            images.append(
                DrawnImage(
                    f"photo_{number:03d}.jpg", scene.image, skeletons=[(label, scene.corners)]
                )
            )
            continue
        scene = quadrat_image(random_photo_size_wh(rng, (800, 1200)), scene_seed)
        view = warped_view(scene, warp)
        name = f"quadrat_{number:03d}.png"
        if function == "pth-yolo-gridpose":
            images.append(DrawnImage(name, view.image, skeletons=[("grid", view.grid_points)]))
        elif function == "pth-yolo-coralsegv4":
            masks = [
                (label, mask)
                for label, mask in warped_masks(scene, view.transform, (warp, warp))
                if mask.any()
            ]
            images.append(DrawnImage(name, remove_string(view), instances=masks))
        else:
            raise ValueError(f"no drawn export for {function}; one of {', '.join(FUNCTIONS)}")
    return images


def cvat_rle(mask: np.ndarray) -> tuple[list[int], tuple[int, int, int, int]]:
    """CVAT's mask runs over the mask's box (0 first, row-major) and the box (left, top,
    width, height)."""
    ys, xs = np.nonzero(mask)
    left, top, right, bottom = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    values = mask[top : bottom + 1, left : right + 1].reshape(-1).astype(np.int8)
    return _runs(values), (left, top, right - left + 1, bottom - top + 1)


def _runs(values: np.ndarray) -> list[int]:
    """Run lengths of 0/1 values, starting with a (possibly empty) run of 0."""
    changes = np.flatnonzero(np.diff(values)) + 1
    bounds = np.concatenate(([0], changes, [len(values)]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if len(values) and values[0] == 1 else runs


def coco_rle(mask: np.ndarray) -> dict[str, list[int]]:
    """COCO's uncompressed RLE (column-major runs, 0 first), as datumaro writes a mask."""
    return {"counts": _runs(mask.reshape(-1, order="F").astype(np.int8)), "size": list(mask.shape)}


def outline(mask: np.ndarray) -> np.ndarray:
    """The largest outer ring of a mask, (N, 2)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return np.asarray(max(contours, key=cv2.contourArea), dtype=np.float64).reshape(-1, 2)


def _xml_labels(images: Sequence[DrawnImage]) -> list[str]:
    lines = []
    drawn = [name for i in images for name, _ in [*i.instances, *i.skeletons]]
    for label in dict.fromkeys(drawn):
        skeleton = any(label == name for i in images for name, _ in i.skeletons)
        kind = "skeleton" if skeleton else "any"
        lines += [
            "      <label>",
            f"        <name>{label}</name>",
            f"        <type>{kind}</type>",
            "      </label>",
        ]
        if skeleton:
            nodes = next(len(p) for i in images for name, p in i.skeletons if name == label)
            for node in range(1, nodes + 1):
                lines += [
                    "      <label>",
                    f"        <name>{node}</name>",
                    "        <type>points</type>",
                    f"        <parent>{label}</parent>",
                    "      </label>",
                ]
    return lines


def cvat_xml(images: Sequence[DrawnImage], masks: bool = True) -> str:
    """annotations.xml of a CVAT for images 1.1 task export (``masks``: corals as <mask>,
    else as <polygon> outlines)."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<annotations>",
        "  <version>1.1</version>",
        "  <meta>",
        "    <task>",
        "      <id>1</id>",
        "      <name>quadrats</name>",
        f"      <size>{len(images)}</size>",
        "      <mode>annotation</mode>",
        "      <labels>",
        *["  " + line for line in _xml_labels(images)],
        "      </labels>",
        "    </task>",
        "  </meta>",
    ]
    for number, drawn in enumerate(images):
        height, width = drawn.image.shape[:2]
        name = quoteattr(drawn.name)
        lines.append(f'  <image id="{number}" name={name} width="{width}" height="{height}">')
        for label, mask in drawn.instances:
            if masks:
                runs, (left, top, box_w, box_h) = cvat_rle(mask)
                lines.append(
                    f'    <mask label={quoteattr(label)} source="manual" occluded="0" '
                    f'rle="{", ".join(map(str, runs))}" left="{left}" top="{top}" '
                    f'width="{box_w}" height="{box_h}" z_order="0">'
                )
                lines.append("    </mask>")
            else:
                points = ";".join(f"{x:.2f},{y:.2f}" for x, y in outline(mask))
                lines.append(
                    f'    <polygon label={quoteattr(label)} source="manual" occluded="0" '
                    f'points="{points}" z_order="0">'
                )
                lines.append("    </polygon>")
        for label, nodes in drawn.skeletons:
            lines.append(f'    <skeleton label={quoteattr(label)} source="manual" z_order="0">')
            for node, (x, y) in enumerate(nodes, start=1):
                lines.append(
                    f'      <points label="{node}" source="manual" outside="0" occluded="0" '
                    f'points="{x:.2f},{y:.2f}">'
                )
                lines.append("      </points>")
            lines.append("    </skeleton>")
        lines.append("  </image>")
    lines.append("</annotations>")
    return "\n".join(lines) + "\n"


def _coco_head() -> dict[str, object]:
    return {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {
            "contributor": "",
            "date_created": "",
            "description": "",
            "url": "",
            "version": "",
            "year": "",
        },
    }


def _coco_image(number: int, drawn: DrawnImage) -> dict[str, object]:
    height, width = drawn.image.shape[:2]
    return {
        "id": number,
        "width": width,
        "height": height,
        "file_name": drawn.name,
        "license": 0,
        "flickr_url": "",
        "coco_url": "",
        "date_captured": 0,
    }


def coco_instances(images: Sequence[DrawnImage], masks: bool = True) -> dict[str, object]:
    """instances_default.json of a COCO 1.0 export (masks as crowd RLE, else polygons)."""
    labels = list(dict.fromkeys(label for drawn in images for label, _ in drawn.instances))
    annotations: list[dict[str, object]] = []
    for number, drawn in enumerate(images, start=1):
        for label, mask in drawn.instances:
            ys, xs = np.nonzero(mask)
            box = [
                float(xs.min()),
                float(ys.min()),
                float(xs.max() - xs.min() + 1),
                float(ys.max() - ys.min() + 1),
            ]
            segmentation: object = coco_rle(mask) if masks else [outline(mask).reshape(-1).tolist()]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": labels.index(label) + 1,
                    "segmentation": segmentation,
                    "area": float(mask.sum()),
                    "bbox": box,
                    "iscrowd": int(masks),
                    "attributes": {"occluded": False},
                }
            )
    return {
        **_coco_head(),
        "categories": [
            {"id": n, "name": label, "supercategory": ""} for n, label in enumerate(labels, start=1)
        ],
        "images": [_coco_image(number, drawn) for number, drawn in enumerate(images, start=1)],
        "annotations": annotations,
    }


def coco_keypoints(images: Sequence[DrawnImage]) -> dict[str, object]:
    """person_keypoints_default.json of a COCO Keypoints 1.0 export: the skeleton label with
    its nodes' names, then the nodes as labels of their own (CVAT's sublabels)."""
    label, nodes = images[0].skeletons[0]
    names = [str(node) for node in range(1, len(nodes) + 1)]
    categories = [{"id": 1, "name": label, "supercategory": "", "keypoints": names, "skeleton": []}]
    categories += [
        {"id": n, "name": name, "supercategory": label, "keypoints": [], "skeleton": []}
        for n, name in enumerate(names, start=2)
    ]
    annotations: list[dict[str, object]] = []
    for number, drawn in enumerate(images, start=1):
        for _, points in drawn.skeletons:
            low, high = points.min(axis=0), points.max(axis=0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": number,
                    "category_id": 1,
                    "segmentation": [],
                    "area": float((high - low).prod()),
                    "bbox": [
                        float(low[0]),
                        float(low[1]),
                        float(high[0] - low[0]),
                        float(high[1] - low[1]),
                    ],
                    "iscrowd": 0,
                    "attributes": {"occluded": False},
                    "keypoints": [
                        v for x, y in points for v in (round(float(x), 2), round(float(y), 2), 2)
                    ],
                    "num_keypoints": len(points),
                }
            )
    return {
        **_coco_head(),
        "categories": categories,
        "images": [_coco_image(number, drawn) for number, drawn in enumerate(images, start=1)],
        "annotations": annotations,
    }


def _save_image(drawn: DrawnImage, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(np.ascontiguousarray(drawn.image))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        picture.save(path, quality=95)
    else:
        picture.save(path)


def write_export(
    images: Sequence[DrawnImage],
    path: str | Path,
    export_format: str = "cvat",
    *,
    masks: bool = True,
    with_images: bool = True,
) -> Path:
    """Write the export as CVAT would: ``export_format`` "cvat" (CVAT for images 1.1) or
    "coco" (COCO 1.0, or COCO Keypoints 1.0 for skeletons); a zip when ``path`` ends in .zip,
    else a folder."""
    target = Path(path)
    with tempfile.TemporaryDirectory(prefix="quadratseg-export-") as temporary:
        folder = Path(temporary)
        if export_format == "cvat":
            (folder / "annotations.xml").write_text(cvat_xml(images, masks), encoding="utf-8")
            image_folder = folder / "images"
        elif export_format == "coco":
            skeletons = any(drawn.skeletons for drawn in images)
            data = coco_keypoints(images) if skeletons else coco_instances(images, masks)
            name = "person_keypoints_default.json" if skeletons else "instances_default.json"
            (folder / "annotations").mkdir()
            (folder / "annotations" / name).write_text(json.dumps(data), encoding="utf-8")
            image_folder = folder / "images" / "default"
        else:
            raise ValueError(f"export_format must be 'cvat' or 'coco', got {export_format!r}")
        if with_images:
            for drawn in images:
                _save_image(drawn, image_folder / drawn.name)
        if target.suffix.lower() == ".zip":
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(folder.rglob("*")):
                    if file.is_file():
                        archive.write(file, file.relative_to(folder).as_posix())
        else:
            shutil.copytree(folder, target, dirs_exist_ok=True)
    return target


def save_images(images: Sequence[DrawnImage], folder: str | Path) -> Path:
    """The images alone, for an export written without them (``--images DIR``)."""
    for drawn in images:
        _save_image(drawn, Path(folder) / drawn.name)
    return Path(folder)


def drawn_export(
    path: str | Path,
    function: str,
    count: int = 6,
    export_format: str = "cvat",
    seed: int = EXPORT_SEEDS,
) -> Path:
    """A CVAT export of ``count`` held-out drawn images for ``function`` (docs/evaluate.md)."""
    return write_export(drawn_images(function, count, seed), path, export_format)

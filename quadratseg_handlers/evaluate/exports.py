"""Reading a CVAT export: the truth a lab drew, image by image, in any of three formats.

- "CVAT for images 1.1": ``annotations.xml`` (CVAT writes ``<image id name width height>``
  holding ``<polygon points="x,y;x,y">``, ``<mask rle="..." left top width height>`` where
  ``rle`` counts alternate runs of 0 and 1 over the box, row-major, and ``<skeleton>`` holding
  one ``<points label="SUBLABEL" outside="0|1" points="x,y">`` per node), images under
  ``images/`` (``images/<subset>/`` for a project);
- "COCO 1.0": ``annotations/instances_<subset>.json``, polygons as ``[[x, y, ...]]`` and
  masks as uncompressed RLE (``iscrowd`` 1), images under ``images/<subset>/`` or ``images/``;
- "COCO Keypoints 1.0": ``annotations/person_keypoints_<subset>.json``, a skeleton's nodes as
  ``keypoints`` [x, y, v, ...] named by its category's ``keypoints`` (v 0: absent).

A zip is unpacked with the bundle checks (:mod:`~quadratseg_handlers.deploy.extraction`).
Images come from the export, else from ``--images DIR`` (by path, then by file name). What
cannot be read is an :class:`ExportError` with one line.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from quadratseg_handlers.cvat.masks import polygon_to_mask
from quadratseg_handlers.deploy import extraction

Rle = dict[str, Any]
"""A compressed COCO RLE: ``{"size": [height, width], "counts": bytes}``."""

XML_FORMAT = "CVAT for images 1.1"
COCO_FORMAT = "COCO 1.0"
KEYPOINTS_FORMAT = "COCO Keypoints 1.0"


class ExportError(ValueError):
    """An export that cannot be read, or an image it names that cannot be found: one line."""


@dataclass
class TruthSkeleton:
    """One drawn skeleton: its label and the position of each node not marked outside."""

    label: str
    points: dict[str, tuple[float, float]]


@dataclass
class ExportImage:
    """One image of the export with what was drawn on it."""

    name: str
    width: int
    height: int
    path: Path | None = None
    instances: list[tuple[str, Rle]] = field(default_factory=list)
    """(label, COCO RLE of its mask) per instance: polygons of one ``group_id`` are one."""
    skeletons: list[TruthSkeleton] = field(default_factory=list)


@dataclass
class Export:
    """A whole export: its format, images and the kind of each label drawn."""

    source: str
    format: str
    images: list[ExportImage]
    declared_labels: list[str] = field(default_factory=list)
    """Labels the export's meta (or categories) declares, drawn or not."""

    def label_kinds(self) -> dict[str, str]:
        """Each drawn label: ``"instances"`` (polygons, masks) or ``"skeleton"``."""
        kinds: dict[str, str] = {}
        for image in self.images:
            for label, _ in image.instances:
                kinds.setdefault(label, "instances")
            for skeleton in image.skeletons:
                kinds.setdefault(skeleton.label, "skeleton")
        return dict(sorted(kinds.items()))


def cvat_rle_mask(rle: str, box: tuple[int, int, int, int], height: int, width: int) -> np.ndarray:
    """A CVAT XML mask (``rle``; ``box`` = left, top, width, height) as an image-size mask."""
    left, top, box_width, box_height = box
    counts = [int(value) for value in rle.replace(" ", "").split(",") if value]
    if sum(counts) != box_width * box_height:
        raise ValueError(f"rle counts {sum(counts)} pixels for a {box_width}x{box_height} box")
    values = np.repeat(np.arange(len(counts)) % 2 == 1, counts).reshape(box_height, box_width)
    mask = np.zeros((height, width), dtype=bool)
    crop = mask[top : top + box_height, left : left + box_width]
    crop[...] = values[: crop.shape[0], : crop.shape[1]]
    return mask


def _points(text: str) -> np.ndarray:
    pairs = [pair.split(",") for pair in text.split(";") if pair]
    return np.asarray([[float(x), float(y)] for x, y in pairs], dtype=np.float64)


def encode(mask: np.ndarray) -> Rle:
    """A boolean mask as a compressed COCO RLE (what pycocotools scores; a mask's pixels
    held as runs, so a lab's hundred 12-megapixel photos fit in memory)."""
    from pycocotools import mask as coco_mask

    rle: Rle = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))
    return rle


def decode(rle: Rle) -> np.ndarray:
    """The boolean mask of a COCO RLE."""
    import warnings

    from pycocotools import mask as coco_mask

    with warnings.catch_warnings():  # pycocotools 2.0 calls __array__ as NumPy 2 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(coco_mask.decode(rle), dtype=bool)


def _point(text: str) -> tuple[float, float]:
    x, y = _points(text)[0]
    return float(x), float(y)


def _merge(parts: list[tuple[str, str, np.ndarray]]) -> list[tuple[str, Rle]]:
    """Instances from (group key, label, mask) parts: a group's parts of a label are one."""
    merged: dict[tuple[str, str], np.ndarray] = {}
    for key, label, mask in parts:
        if (key, label) in merged:
            merged[(key, label)] = merged[(key, label)] | mask
        else:
            merged[(key, label)] = mask
    return [(label, encode(mask)) for (_, label), mask in merged.items()]


def _xml_image(element: ElementTree.Element) -> ExportImage:
    name = element.get("name") or f"frame_{int(element.get('id', 0)):06d}.PNG"
    width, height = int(element.get("width", 0)), int(element.get("height", 0))
    if width <= 0 or height <= 0:
        raise ValueError("no width and height")
    image = ExportImage(name, width, height)
    parts: list[tuple[str, str, np.ndarray]] = []
    for number, shape in enumerate(element):
        label = shape.get("label", "")
        group = shape.get("group_id", "0")
        key = f"group-{group}" if group != "0" else f"shape-{number}"
        if shape.tag == "polygon":
            parts.append(
                (key, label, polygon_to_mask(_points(shape.get("points", "")), height, width))
            )
        elif shape.tag == "mask":
            box = tuple(int(shape.get(name, 0)) for name in ("left", "top", "width", "height"))
            parts.append((key, label, cvat_rle_mask(shape.get("rle", ""), box, height, width)))  # type: ignore[arg-type]
        elif shape.tag == "skeleton":
            nodes = {
                str(node.get("label")): _point(node.get("points", ""))
                for node in shape
                if node.tag == "points" and node.get("outside", "0") != "1"
            }
            image.skeletons.append(TruthSkeleton(label, nodes))
    image.instances = _merge(parts)
    return image


def read_cvat_xml(path: Path) -> tuple[list[ExportImage], list[str]]:
    """The images of an ``annotations.xml`` and the labels its meta declares."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise ExportError(f"{path}: not a readable CVAT XML file ({exc})") from None
    if root.tag != "annotations":
        raise ExportError(f"{path}: not a CVAT for images export (root <{root.tag}>)")
    declared = [
        label.findtext("name", "")
        for label in root.iter("label")
        if label.findtext("name") and not (label.findtext("parent") or "").strip()
    ]
    images = []
    for element in root.iter("image"):
        try:
            images.append(_xml_image(element))
        except (ValueError, IndexError, TypeError) as exc:
            raise ExportError(f"{path}: image {element.get('name')!r}: {exc}") from None
    if not images and root.find("track") is not None:
        raise ExportError(f"{path}: a 'CVAT for video' export; export as CVAT for images 1.1")
    return images, declared


def _coco_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, or RLE with counts as a list or a string) as a mask."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):
        mask = np.zeros((height, width), dtype=bool)
        for polygon in segmentation:
            mask |= polygon_to_mask(
                np.asarray(polygon, dtype=np.float64).reshape(-1, 2), height, width
            )
        return mask
    return decode(coco_mask.frPyObjects(segmentation, height, width))


def read_coco(path: Path) -> tuple[list[ExportImage], list[str], str]:
    """The images of one COCO instances or keypoints file, its categories and its format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        categories = {int(c["id"]): c for c in data["categories"]}
        images = {
            int(i["id"]): ExportImage(str(i["file_name"]), int(i["width"]), int(i["height"]))
            for i in data["images"]
        }
        keypoints = any(category.get("keypoints") for category in categories.values())
        parts: dict[int, list[tuple[str, str, np.ndarray]]] = {key: [] for key in images}
        for number, annotation in enumerate(data["annotations"]):
            image = images[int(annotation["image_id"])]
            category = categories[int(annotation["category_id"])]
            label = str(category["name"])
            if keypoints:
                if category.get("keypoints"):
                    image.skeletons.append(_coco_skeleton(label, category, annotation))
                continue
            if annotation.get("segmentation"):
                mask = _coco_mask(annotation["segmentation"], image.height, image.width)
                parts[int(annotation["image_id"])].append((f"ann-{number}", label, mask))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ExportError(
            f"{path}: not a readable COCO file ({type(exc).__name__}: {exc})"
        ) from None
    for key, image in images.items():
        image.instances = _merge(parts[key])
    declared = [
        str(c["name"])
        for c in categories.values()
        if not keypoints or c.get("keypoints") or not c.get("supercategory")
    ]
    return list(images.values()), declared, KEYPOINTS_FORMAT if keypoints else COCO_FORMAT


def _coco_skeleton(
    label: str, category: dict[str, Any], annotation: dict[str, Any]
) -> TruthSkeleton:
    values = list(annotation.get("keypoints", []))
    names = [str(name) for name in category["keypoints"]]
    if len(values) != 3 * len(names):
        raise ValueError(f"{len(values)} keypoint values for {len(names)} keypoints of {label!r}")
    points = {
        name: (float(values[3 * i]), float(values[3 * i + 1]))
        for i, name in enumerate(names)
        if int(values[3 * i + 2]) != 0
    }
    return TruthSkeleton(label, points)


def _find_image(name: str, roots: list[Path]) -> Path | None:
    relative = PurePosixPath(name.replace("\\", "/"))
    for root in roots:
        for candidate in (root / relative, root / relative.name):
            if candidate.is_file():
                return candidate
    return None


def _image_roots(folder: Path, subset: str | None, images_dir: Path | None) -> list[Path]:
    roots = [folder / "images"]
    if subset:
        roots.insert(0, folder / "images" / subset)
    roots += [p for p in sorted((folder / "images").glob("*")) if p.is_dir()]
    if images_dir is not None:
        roots.insert(0, images_dir)
    return roots


def read_folder(folder: Path, source: str, images_dir: Path | None = None) -> Export:
    """The export unpacked in ``folder``: its annotation file(s) read, every image found."""
    xml_files = sorted(folder.rglob("*.xml"))
    coco_files = (
        sorted((folder / "annotations").glob("*.json")) if (folder / "annotations").is_dir() else []
    )
    coco_files = [p for p in coco_files if p.name.startswith(("instances_", "person_keypoints_"))]
    images: list[ExportImage] = []
    declared: list[str] = []
    if xml_files:
        export_format = XML_FORMAT
        for xml in xml_files:
            found, labels = read_cvat_xml(xml)
            for image in found:
                image.path = _find_image(image.name, _image_roots(xml.parent, None, images_dir))
            images += found
            declared += labels
    elif coco_files:
        export_format = COCO_FORMAT
        for file in coco_files:
            subset = file.stem.split("_", 2 if file.name.startswith("person_") else 1)[-1]
            found, labels, export_format = read_coco(file)
            for image in found:
                image.path = _find_image(image.name, _image_roots(folder, subset, images_dir))
            images += found
            declared += labels
    else:
        raise ExportError(
            f"{source}: no annotations.xml (CVAT for images 1.1) nor annotations/instances_*.json "
            "or person_keypoints_*.json (COCO 1.0, COCO Keypoints 1.0)"
        )
    if not images:
        raise ExportError(f"{source}: the export holds no images")
    missing = [image.name for image in images if image.path is None]
    if missing:
        where = f" nor in {images_dir}" if images_dir is not None else "; give --images DIR"
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ExportError(f"{source}: image {missing[0]!r}{more} is not in the export{where}")
    return Export(source, export_format, images, list(dict.fromkeys(declared)))


@contextlib.contextmanager
def open_export(path: str | Path, images_dir: str | Path | None = None) -> Iterator[Export]:
    """A CVAT export (zip, folder, or the annotation file itself) read for the block."""
    source = Path(path)
    images = Path(images_dir) if images_dir is not None else None
    if images is not None and not images.is_dir():
        raise ExportError(f"--images {images}: not a folder")
    if source.is_dir():
        yield read_folder(source, str(source), images)
        return
    if not source.is_file():
        raise ExportError(f"{source}: no such export (a CVAT export zip, folder or file)")
    try:
        is_zip = extraction.is_archive(source)
    except extraction.ArchiveError as exc:
        raise ExportError(str(exc)) from None
    folder = Path(tempfile.mkdtemp(prefix="quadratseg-export-"))
    try:
        if is_zip:
            try:
                extraction.extract(source, folder)
            except extraction.ArchiveError as exc:
                raise ExportError(str(exc)) from None
        else:
            target = folder / ("annotations" if source.suffix == ".json" else "") / source.name
            target.parent.mkdir(exist_ok=True)
            shutil.copy(source, target)
            images = images if images is not None else source.parent
        yield read_folder(folder, str(source), images)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

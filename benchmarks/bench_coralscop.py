"""pth-mmseg-coralscopsegformer on CPU: the cost of each stage, and fusion at a realistic load.

1. Per-stage times with the tiny models (17-class tiny SegFormer, tiny SAM with a small
   8 x 8 grid and no crop layers) on a quadrat photo at 1024 and 1920 px: semantic
   probabilities, SAM automatic masks, fusion, CVAT shapes. The random SAM's masks are
   noise whose predicted IoU is far below CoralSCoP's thresholds, so they are all filtered
   out before run-length encoding: the SAM figure is the encoder plus decoding every prompt
   (kept, such noise masks cost minutes of RLE copying that real, compact masks do not).
2. Fusion + shapes with 200 realistic masks at 1920 px: 210 star-shaped colonies of
   log-normal sizes, some overlapping, a 17-class probability map drawn from them (smooth
   noise on the logits); masks for 190 of the colonies (the other 20 are left for the
   semantic map alone) and 10 masks on background.

The tiny models' weights are random: their stage times show where the time goes around the
models (pipeline, resizing, mask decoding, probabilities at full resolution), not the real
models' compute (the guide reports 18.5 s per 1920 px image on a GPU).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from quadratseg_handlers.demo.tinymodels.sam import tiny_sam
from quadratseg_handlers.demo.tinymodels.segformer import tiny_segformer
from quadratseg_handlers.handlers.coralscop import CoralScopSegformerHandler
from quadratseg_handlers.local.bundle import blobs_image
from quadratseg_handlers.ops.fusion import MaskProposal

from .timing import interleaved, measure, median_ms, quadrat_photos

GENERA = (
    "Acanthastrea",
    "Acropora",
    "Astreopora",
    "Atrea",
    "Fungia",
    "Goniastrea",
    "Leptastrea",
    "Merulinidae",
    "Millepora",
    "Montastrea",
    "Montipora",
    "Other",
    "Pavona/Leptoseris",
    "Pocillopora",
    "Porites",
    "Psammocora",
)
CLASSES = ("background", *GENERA)
SIZES = (1024, 1920)


def load_handler(folder: Path) -> CoralScopSegformerHandler:
    """The handler on the tiny models, with a small SAM grid and CoralSCoP's thresholds."""
    segformer = tiny_segformer(folder / "segformer", CLASSES)
    handler = CoralScopSegformerHandler(
        environ={},
        segformer_config=segformer.config,
        segformer_weights=segformer.weights,
        sam_weights=tiny_sam(folder / "sam.pth"),
        sam_model_type="auto",
        sam_points_per_side=8,
        sam_crop_n_layers=0,
        device="cpu",
    )
    handler.load()
    return handler


STAGES = ("semantic", "SAM masks", "fusion", "shapes")


def stage_functions(
    handler: CoralScopSegformerHandler, image: np.ndarray
) -> tuple[list[Callable[[], object]], int, int]:
    """The four stages on one image as calls (in STAGES order), the masks and instances."""
    probabilities = handler.class_probabilities(image)
    proposals = handler.mask_proposals(image)
    instances = handler.fuse(probabilities, proposals, 0.0)
    functions: list[Callable[[], object]] = [
        lambda: handler.class_probabilities(image),
        lambda: handler.mask_proposals(image),
        lambda: handler.fuse(probabilities, proposals, 0.0),
        lambda: handler.to_shapes(instances, image),
    ]
    return functions, len(proposals), len(instances)


def stage_table(handler: CoralScopSegformerHandler) -> str:
    """Rows of per-stage medians at each size, the sizes' calls interleaved (3 rounds)."""
    functions: dict[str, Callable[[], object]] = {}
    counts: dict[int, tuple[str, int, int]] = {}
    for size in SIZES:
        photos = quadrat_photos(size)
        name, image = photos[0] if photos else ("synthetic", blobs_image(size, size, 40, 1))
        calls, masks, found = stage_functions(handler, image)
        counts[size] = (name, masks, found)
        functions |= {f"{size} {stage}": call for stage, call in zip(STAGES, calls, strict=True)}
    times = interleaved(functions, runs=3)
    rows = []
    for size, (name, masks, found) in counts.items():
        medians = [median_ms(times[f"{size} {stage}"]) for stage in STAGES]
        rows.append(
            f"| {size} x {size} ({name}) | "
            + " | ".join(f"{value:.0f}" for value in medians)
            + f" | {sum(medians):.0f} | {masks} | {found} |"
        )
    return "\n".join(rows)


def colony(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A star-shaped colony outline around (0, 0): 48 points with a wobbling radius."""
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = 1 + 0.25 * np.sin(angles * rng.integers(2, 6) + rng.uniform(0, 6.3))
    wobble *= rng.uniform(0.85, 1.15, size=angles.size)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1) * (radius * wobble)[:, None]


def realistic_scene(
    size: int = 1920, count: int = 200, seed: int = 0
) -> tuple[np.ndarray, list[MaskProposal]]:
    """A (17, size, size) probability map and ``count`` masks: ``count`` - 10 of the
    ``count`` + 10 colonies drawn, and 10 on background."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.int64)
    proposals = []
    for index in range(count + 20):
        radius = float(np.clip(rng.lognormal(np.log(45), 0.5), 12, 200))
        centre = rng.uniform(radius, size - radius, size=2)
        outline = np.clip(np.round(colony(rng, radius) + centre), 0, size - 1).astype(np.int32)
        x, y, width, height = cv2.boundingRect(outline)
        crop = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(crop, [outline - (x, y)], 1)
        labels[y : y + height, x : x + width][crop > 0] = rng.integers(1, len(CLASSES))
        if index < count - 10:
            proposals.append(MaskProposal(crop > 0, (x, y), float(rng.uniform(0.72, 0.98))))
    for _ in range(10):
        x, y = (int(v) for v in rng.integers(0, size - 120, size=2))
        patch = labels[y : y + 120, x : x + 120] == 0
        proposals.append(MaskProposal(patch, (x, y), float(rng.uniform(0.72, 0.98))))
    noise = rng.normal(0, 0.7, size=(len(CLASSES), 60, 60)).astype(np.float32)
    logits = np.stack([cv2.resize(channel, (size, size)) for channel in noise])
    logits[labels, np.arange(size)[:, None], np.arange(size)[None, :]] += 4.0
    logits = np.exp(logits - logits.max(axis=0))
    probabilities = (logits / logits.sum(axis=0)).astype(np.float32)
    return probabilities, proposals


def run() -> str:
    """Return the Markdown section."""
    with tempfile.TemporaryDirectory() as folder:
        handler = load_handler(Path(folder))
        rows = stage_table(handler)
        probabilities, proposals = realistic_scene()
        image = np.zeros((1920, 1920, 3), dtype=np.uint8)
        instances = handler.fuse(probabilities, proposals, 0.5)
        shapes = handler.to_shapes(instances, image)
        fusion_ms = median_ms(measure(lambda: handler.fuse(probabilities, proposals, 0.5), 3))
        shapes_ms = median_ms(measure(lambda: handler.to_shapes(instances, image), runs=3))
    sources = [instance.extra["source"] for instance in instances]
    return (
        "## pth-mmseg-coralscopsegformer (CPU, tiny models)\n\n"
        "Per-stage median ms (3 rounds, the two sizes' calls interleaved) with the tiny "
        "models: 17-class tiny SegFormer (512 px test resize; probabilities at full "
        "resolution), tiny SAM (64-wide encoder) with an 8 x 8 grid and no crop layers "
        "(production: 32 x 32 plus one crop layer, about 32 times the prompts and 5 encoder "
        "passes). The random SAM's masks all fall below CoralSCoP's thresholds: the SAM "
        "column is the encoder plus decoding 64 prompts up to full resolution, and fusion "
        "here only finds the semantic map's regions.\n\n"
        "| Image | Semantic | SAM masks | Fusion | Shapes | Total | Masks | Instances |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + rows + "\n\n"
        f"Fusion + shapes with {len(proposals)} realistic masks on a 1920 x 1920, 17-class "
        f"probability map: {len(instances)} instances ({sources.count('sam')} from masks, "
        f"{sources.count('semantic')} from the semantic map alone), {len(shapes)} polygons.\n\n"
        "| Step | Median ms |\n| --- | --- |\n"
        f"| fusion | {fusion_ms:.0f} |\n| shapes | {shapes_ms:.0f} |"
    )

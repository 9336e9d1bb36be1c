"""pth-mmseg-coralscopsegformer: SegFormer genus probabilities + CoralSCoP instance masks.

A SegFormer (MMSegmentation; a DINOv2 backbone in production) gives every pixel its genus
probabilities; CoralSCoP (a SAM ViT-B fine-tuned on corals) proposes class-agnostic colony
masks; :mod:`quadratseg_handlers.ops.fusion` labels each mask with its genus, gives every pixel
to one instance and turns coral the masks missed into instances of their own. Shapes come
from :class:`~quadratseg_handlers.core.instances.InstanceHandler`, like the YOLO functions'.

The request threshold (default CONF_THRESHOLD) is the lowest predicted IoU a mask may have;
the class probability is judged by MIN_THRESHOLD and UNSURE_THRESHOLD. See docs/coralscop.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from quadratseg_handlers.backends.checkpoints import trust_weights_setting
from quadratseg_handlers.backends.mmseg import SemanticModel, load_semantic_model
from quadratseg_handlers.backends.sam import MODEL_TYPES, load_sam, mask_generator, mask_proposals
from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import ConfigError, retuned, setting
from quadratseg_handlers.core.instances import Instance, InstanceHandler, SegmentationSettings
from quadratseg_handlers.ops.fusion import SOURCES, FusedInstance, FusionRules, MaskProposal, fuse

UNSURE = "unsure"
SOURCE = "source"
UNSURE_SPEC: dict[str, Any] = {
    "name": UNSURE,
    "input_type": "checkbox",
    "mutable": False,
    "values": ["false"],
    "default_value": "false",
}
"""``"true"`` on instances whose genus probability is below UNSURE_THRESHOLD: review them."""
SOURCE_SPEC: dict[str, Any] = {
    "name": SOURCE,
    "input_type": "select",
    "mutable": False,
    "values": list(SOURCES),
    "default_value": SOURCES[0],
}
"""``sam`` for a CoralSCoP mask, ``semantic`` for coral the masks missed (semantic map only)."""


@dataclass(frozen=True)
class CoralScopSettings(SegmentationSettings):
    """The common and segmentation settings (threshold 0.5: the lowest predicted IoU), the
    three model files, CoralSCoP's automatic masks and the genus rules."""

    conf_threshold: float = retuned(SegmentationSettings, "conf_threshold", 0.5)
    segformer_config: Path = setting(
        Path("/opt/nuclio/best_segformer_config.py"),
        "MMSegmentation config of the semantic model; modules it names in "
        "`custom_imports` are imported from its folder.",
        parse=cfg.existing_file,
    )
    segformer_weights: Path = setting(
        Path("/opt/nuclio/best_segformer.pth"),
        "Semantic model checkpoint; must carry its class names in "
        "`meta.dataset_meta.classes` (or the config in a dataloader's `metainfo`).",
        parse=cfg.existing_file,
    )
    sam_weights: Path = setting(
        Path("/opt/nuclio/vit_b_coralscop.pth"),
        "CoralSCoP (or vanilla SAM) state dict; CoralSCoP's extra decoder heads are "
        "dropped, every tensor SAM needs is required.",
        parse=cfg.existing_file,
    )
    sam_model_type: str = setting(
        "auto",
        "SAM encoder size: `auto` (width, depth, heads and global-attention blocks read "
        "from the checkpoint's tensor shapes: ViT-B for CoralSCoP), or `vit_b`, `vit_l`, "
        "`vit_h` to insist on one.",
        parse=cfg.choice(*MODEL_TYPES),
    )
    sam_points_per_side: int = setting(
        32,
        "SAM automatic masks: prompt points per image side (points_per_side).",
        low=1,
        high=1024,
    )
    sam_points_per_batch: int = setting(
        64,
        "SAM automatic masks: prompts decoded together (points_per_batch); each holds 3 "
        "float masks at full image size: 64 at 1920 px is 2.8 GB.",
        low=1,
        high=4096,
    )
    sam_pred_iou_thresh: float = setting(
        0.72,
        "SAM automatic masks: lowest predicted IoU kept (pred_iou_thresh; CoralSCoP's "
        "value, the guide's 0.88 is an override).",
        low=0.0,
        high=1.0,
    )
    sam_stability_score_thresh: float = setting(
        0.62,
        "SAM automatic masks: lowest stability score kept (stability_score_thresh; "
        "CoralSCoP's value, the guide's 0.92 is an override).",
        low=0.0,
        high=1.0,
    )
    sam_crop_n_layers: int = setting(
        1, "SAM automatic masks: layers of image crops run again (crop_n_layers).", low=0, high=4
    )
    sam_crop_n_points_downscale_factor: int = setting(
        2, "SAM automatic masks: points per side divided by this per crop layer.", low=1, high=64
    )
    sam_min_mask_region_area: int = setting(
        100,
        "SAM automatic masks: holes and islands smaller than this many pixels are removed "
        "(min_mask_region_area).",
        low=0,
    )
    background_classes: str = setting(
        "background",
        "Comma-separated semantic class names that are not coral: never an instance's "
        "label, not in the label spec. `none`: every class is a coral label (a checkpoint "
        "without a background class, e.g. the 16 CRIOBE genera).",
    )
    min_threshold: float = setting(
        0.05,
        "Instances whose genus probability (mean over the instance) is below this are dropped.",
        low=0.0,
        high=1.0,
    )
    unsure_threshold: float = setting(
        0.2,
        "Instances whose genus probability is below this are kept with the attribute "
        "`unsure` = `true`, for review.",
        low=0.0,
        high=1.0,
    )
    trust_weights: bool = trust_weights_setting()

    def __post_init__(self) -> None:
        """MIN_THRESHOLD may not exceed UNSURE_THRESHOLD."""
        if self.min_threshold > self.unsure_threshold:
            raise ConfigError(
                f"MIN_THRESHOLD={self.min_threshold} is above "
                f"UNSURE_THRESHOLD={self.unsure_threshold}: instances are dropped below the "
                "first and flagged unsure below the second"
            )


class CoralScopSegformerHandler(InstanceHandler):
    """Genus instances: SegFormer class probabilities fused with CoralSCoP masks."""

    function_name = "pth-mmseg-coralscopsegformer"
    settings_class = CoralScopSettings
    settings: CoralScopSettings
    extra_attributes: ClassVar[tuple[Mapping[str, object], ...]] = (UNSURE_SPEC, SOURCE_SPEC)

    semantic: SemanticModel
    sam_generator: Any
    rules: FusionRules

    def load_model(self) -> None:
        """Load the SegFormer and CoralSCoP, build the mask generator and the fusion rules."""
        settings = self.settings
        self.semantic = load_semantic_model(
            cfg.required_file("SEGFORMER_CONFIG", settings.segformer_config),
            cfg.required_file("SEGFORMER_WEIGHTS", settings.segformer_weights),
            self.device,
            trusted=settings.trust_weights,
        )
        classes = self.semantic.classes
        background = self.background_classes(classes)
        self.class_names = [name for name in classes if name not in background]
        self.rules = FusionRules(
            background=frozenset(classes.index(name) for name in background),
            min_probability=settings.min_threshold,
            unsure_below=settings.unsure_threshold,
            min_area=settings.min_area,
        )
        sam = load_sam(
            cfg.required_file("SAM_WEIGHTS", settings.sam_weights),
            settings.sam_model_type,
            self.device,
        )
        self.sam_generator = mask_generator(
            sam,
            points_per_side=settings.sam_points_per_side,
            points_per_batch=settings.sam_points_per_batch,
            pred_iou_thresh=settings.sam_pred_iou_thresh,
            stability_score_thresh=settings.sam_stability_score_thresh,
            crop_n_layers=settings.sam_crop_n_layers,
            crop_n_points_downscale_factor=settings.sam_crop_n_points_downscale_factor,
            min_mask_region_area=settings.sam_min_mask_region_area,
        )

    def background_classes(self, classes: Sequence[str]) -> list[str]:
        """The BACKGROUND_CLASSES names, each of which must be one of the model's classes."""
        value = self.settings.background_classes
        if value.lower() == "none":
            return []
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in classes]
        if unknown:
            raise ConfigError(
                f"BACKGROUND_CLASSES={value}: {', '.join(unknown)} not among the model's "
                f"classes ({', '.join(classes)}); set BACKGROUND_CLASSES to its non-coral "
                "classes, or to `none` when every class is coral"
            )
        return names

    # --- the stages, public so benchmarks and notebooks can run them one by one ----------------

    def class_probabilities(self, image: np.ndarray) -> np.ndarray:
        """(classes, H, W) genus probabilities of an RGB image from the SegFormer."""
        return self.semantic.probabilities(image)

    def mask_proposals(self, image: np.ndarray) -> list[MaskProposal]:
        """CoralSCoP's automatic masks of an RGB image, with their predicted IoU."""
        return mask_proposals(self.sam_generator, image)

    def fuse(
        self, probabilities: np.ndarray, proposals: Sequence[MaskProposal], threshold: float
    ) -> list[Instance]:
        """Instances from masks whose predicted IoU is at least ``threshold`` and the map."""
        kept = [proposal for proposal in proposals if proposal.quality >= threshold]
        return [self.instance(fused) for fused in fuse(probabilities, kept, self.rules)]

    def instance(self, fused: FusedInstance) -> Instance:
        """A fused instance as the shapes code takes it, with its review attributes."""
        return Instance(
            self.semantic.classes[fused.class_index],
            fused.mask,
            fused.score,
            origin=fused.origin,
            extra={UNSURE: "true" if fused.unsure else "false", SOURCE: fused.source},
        )

    def predict(self, images: Sequence[np.ndarray], threshold: float) -> list[list[Instance]]:
        """Semantic probabilities, mask proposals and their fusion, image by image."""
        return [
            self.fuse(self.class_probabilities(image), self.mask_proposals(image), threshold)
            for image in images
        ]

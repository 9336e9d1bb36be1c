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
from typing import Any, ClassVar

import numpy as np

from quadratseg_handlers.backends.checkpoints import TRUST_WEIGHTS
from quadratseg_handlers.backends.mmseg import SemanticModel, load_semantic_model
from quadratseg_handlers.backends.sam import MODEL_TYPES, load_sam, mask_generator, mask_proposals
from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import ConfigError, Setting
from quadratseg_handlers.core.instances import Instance, InstanceHandler
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

SAM_GENERATOR_SETTINGS: dict[str, str] = {
    "SAM_POINTS_PER_SIDE": "points_per_side",
    "SAM_POINTS_PER_BATCH": "points_per_batch",
    "SAM_PRED_IOU_THRESH": "pred_iou_thresh",
    "SAM_STABILITY_SCORE_THRESH": "stability_score_thresh",
    "SAM_CROP_N_LAYERS": "crop_n_layers",
    "SAM_CROP_N_POINTS_DOWNSCALE_FACTOR": "crop_n_points_downscale_factor",
    "SAM_MIN_MASK_REGION_AREA": "min_mask_region_area",
}
"""Setting -> ``SamAutomaticMaskGenerator`` argument."""


class CoralScopSegformerHandler(InstanceHandler):
    """Genus instances: SegFormer class probabilities fused with CoralSCoP masks."""

    function_name = "pth-mmseg-coralscopsegformer"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting(
            "SEGFORMER_CONFIG",
            cfg.existing_file,
            "/opt/nuclio/best_segformer_config.py",
            "MMSegmentation config of the semantic model; modules it names in "
            "`custom_imports` are imported from its folder.",
            "path",
        ),
        Setting(
            "SEGFORMER_WEIGHTS",
            cfg.existing_file,
            "/opt/nuclio/best_segformer.pth",
            "Semantic model checkpoint; must carry its class names in "
            "`meta.dataset_meta.classes` (or the config in a dataloader's `metainfo`).",
            "path",
        ),
        Setting(
            "SAM_WEIGHTS",
            cfg.existing_file,
            "/opt/nuclio/vit_b_coralscop.pth",
            "CoralSCoP (or vanilla SAM) state dict; CoralSCoP's extra decoder heads are "
            "dropped, every tensor SAM needs is required.",
            "path",
        ),
        Setting(
            "SAM_MODEL_TYPE",
            cfg.choice(*MODEL_TYPES),
            "auto",
            "SAM encoder size: `auto` (width, depth, heads and global-attention blocks read "
            "from the checkpoint's tensor shapes: ViT-B for CoralSCoP), or `vit_b`, `vit_l`, "
            "`vit_h` to insist on one.",
        ),
        Setting(
            "SAM_POINTS_PER_SIDE",
            cfg.number(1, 1024, integer=True),
            32,
            "SAM automatic masks: prompt points per image side (points_per_side).",
            "integer",
        ),
        Setting(
            "SAM_POINTS_PER_BATCH",
            cfg.number(1, 4096, integer=True),
            64,
            "SAM automatic masks: prompts decoded together (points_per_batch); each holds 3 "
            "float masks at full image size: 64 at 1920 px is 2.8 GB.",
            "integer",
        ),
        Setting(
            "SAM_PRED_IOU_THRESH",
            cfg.number(0.0, 1.0),
            0.72,
            "SAM automatic masks: lowest predicted IoU kept (pred_iou_thresh; CoralSCoP's "
            "value, the guide's 0.88 is an override).",
            "number",
        ),
        Setting(
            "SAM_STABILITY_SCORE_THRESH",
            cfg.number(0.0, 1.0),
            0.62,
            "SAM automatic masks: lowest stability score kept (stability_score_thresh; "
            "CoralSCoP's value, the guide's 0.92 is an override).",
            "number",
        ),
        Setting(
            "SAM_CROP_N_LAYERS",
            cfg.number(0, 4, integer=True),
            1,
            "SAM automatic masks: layers of image crops run again (crop_n_layers).",
            "integer",
        ),
        Setting(
            "SAM_CROP_N_POINTS_DOWNSCALE_FACTOR",
            cfg.number(1, 64, integer=True),
            2,
            "SAM automatic masks: points per side divided by this per crop layer.",
            "integer",
        ),
        Setting(
            "SAM_MIN_MASK_REGION_AREA",
            cfg.number(0, integer=True),
            100,
            "SAM automatic masks: holes and islands smaller than this many pixels are removed "
            "(min_mask_region_area).",
            "integer",
        ),
        Setting(
            "BACKGROUND_CLASSES",
            cfg.text,
            "background",
            "Comma-separated semantic class names that are not coral: never an instance's "
            "label, not in the label spec. `none`: every class is a coral label (a checkpoint "
            "without a background class, e.g. the 16 CRIOBE genera).",
        ),
        Setting(
            "MIN_THRESHOLD",
            cfg.number(0.0, 1.0),
            0.05,
            "Instances whose genus probability (mean over the instance) is below this are dropped.",
            "number",
        ),
        Setting(
            "UNSURE_THRESHOLD",
            cfg.number(0.0, 1.0),
            0.2,
            "Instances whose genus probability is below this are kept with the attribute "
            "`unsure` = `true`, for review.",
            "number",
        ),
        TRUST_WEIGHTS,
    )
    setting_defaults: ClassVar[Mapping[str, Any]] = {"CONF_THRESHOLD": 0.5}
    extra_attributes: ClassVar[tuple[Mapping[str, object], ...]] = (UNSURE_SPEC, SOURCE_SPEC)

    semantic: SemanticModel
    sam_generator: Any
    rules: FusionRules

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        """Parse the settings; MIN_THRESHOLD may not exceed UNSURE_THRESHOLD."""
        super().__init__(environ, **overrides)
        low, unsure = self.config["MIN_THRESHOLD"], self.config["UNSURE_THRESHOLD"]
        if low > unsure:
            raise ConfigError(
                f"MIN_THRESHOLD={low} is above UNSURE_THRESHOLD={unsure}: instances are "
                "dropped below the first and flagged unsure below the second"
            )

    def load_model(self) -> None:
        """Load the SegFormer and CoralSCoP, build the mask generator and the fusion rules."""
        self.semantic = load_semantic_model(
            cfg.required_file("SEGFORMER_CONFIG", self.config["SEGFORMER_CONFIG"]),
            cfg.required_file("SEGFORMER_WEIGHTS", self.config["SEGFORMER_WEIGHTS"]),
            self.device,
            trusted=bool(self.config["TRUST_WEIGHTS"]),
        )
        classes = self.semantic.classes
        background = self.background_classes(classes)
        self.class_names = [name for name in classes if name not in background]
        self.rules = FusionRules(
            background=frozenset(classes.index(name) for name in background),
            min_probability=float(self.config["MIN_THRESHOLD"]),
            unsure_below=float(self.config["UNSURE_THRESHOLD"]),
            min_area=int(self.config["MIN_AREA"]),
        )
        sam = load_sam(
            cfg.required_file("SAM_WEIGHTS", self.config["SAM_WEIGHTS"]),
            self.config["SAM_MODEL_TYPE"],
            self.device,
        )
        self.sam_generator = mask_generator(
            sam, **{arg: self.config[name] for name, arg in SAM_GENERATOR_SETTINGS.items()}
        )

    def background_classes(self, classes: Sequence[str]) -> list[str]:
        """The BACKGROUND_CLASSES names, each of which must be one of the model's classes."""
        value = self.config["BACKGROUND_CLASSES"]
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

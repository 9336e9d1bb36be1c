"""Segment Anything for automatic instance masks: CoralSCoP checkpoints and mask proposals.

CoralSCoP is a SAM fine-tuned on corals. Its checkpoint is a plain SAM state dict plus a
category branch in the mask decoder (:data:`CORALSCOP_HEADS`) that vanilla segment-anything
does not define. :func:`load_sam` drops exactly those tensors (and logs their names), then
requires every tensor the model needs with the model's shapes, so a truncated file or a
checkpoint of another size stops start-up with a message naming ``SAM_WEIGHTS``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg_handlers.backends.checkpoints import load_checkpoint
from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.cvat.masks import bounding_box
from quadratseg_handlers.ops.fusion import MaskProposal

log = logging.getLogger(__name__)

SETTING = "SAM_WEIGHTS"

CORALSCOP_HEADS = (
    "mask_decoder.cate_output_hypernetworks_mlps.",
    "mask_decoder.cate_feature_projection_head.",
    "mask_decoder.cate_prediction_head.",
)
"""Prefixes of CoralSCoP's extra mask-decoder tensors (its category branch)."""

MODEL_TYPES = ("vit_b", "vit_l", "vit_h", "auto")
"""segment-anything's encoder sizes, or ``auto``: the geometry read from the checkpoint."""

GLOBAL_ATTENTION_ROWS = 2 * (1024 // 16) - 1
"""Rows of a global-attention block's relative position table (64 x 64 patches)."""


@dataclass(frozen=True)
class EncoderGeometry:
    """The ViT image encoder's size: what ``segment_anything.build_sam._build_sam`` needs."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]


def encoder_geometry(state: Mapping[str, Any]) -> EncoderGeometry:
    """Read the image encoder's width, depth, heads and global-attention blocks from tensors.

    Width is the patch embedding's output channels; depth the number of blocks; heads the
    width over a relative position table's head dimension; global-attention blocks are those
    whose table spans the whole 64 x 64 patch grid (windowed blocks span 14 x 14).
    """
    try:
        embed_dim = int(state["image_encoder.patch_embed.proj.weight"].shape[0])
        blocks = sorted(
            {int(key.split(".")[2]) for key in state if key.startswith("image_encoder.blocks.")}
        )
        tables = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in blocks]
    except (KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"not a SAM image encoder: missing or odd tensor {exc}") from None
    if not blocks or blocks != list(range(len(blocks))):
        raise ValueError("not a SAM image encoder: its blocks are not numbered 0..N-1")
    head_dim = int(tables[0].shape[1])
    if head_dim <= 0 or embed_dim % head_dim:
        raise ValueError(f"width {embed_dim} is not a multiple of the head size {head_dim}")
    global_blocks = tuple(
        index
        for index, table in zip(blocks, tables, strict=True)
        if table.shape[0] == GLOBAL_ATTENTION_ROWS
    )
    return EncoderGeometry(embed_dim, len(blocks), embed_dim // head_dim, global_blocks)


def read_state_dict(path: Path) -> dict[str, Any]:
    """A checkpoint file's tensors by name, read by the restricted unpickler
    (:func:`load_checkpoint`): tensors and containers only, never pickled code."""
    import torch

    state = load_checkpoint(path, SETTING)
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ConfigError(
            f"{SETTING}={path}: expected a SAM state dict (tensor name -> tensor), as "
            "segment-anything and CoralSCoP save them"
        )
    return dict(state)


def build_model(model_type: str, state: Mapping[str, Any], path: Path) -> Any:
    """An untrained segment-anything model of ``model_type`` (``auto``: sized from ``state``)."""
    from segment_anything import sam_model_registry
    from segment_anything.build_sam import _build_sam

    if model_type != "auto":
        return sam_model_registry[model_type](checkpoint=None)
    try:
        geometry = encoder_geometry(state)
    except ValueError as exc:
        raise ConfigError(f"{SETTING}={path}: {exc}") from None
    return _build_sam(
        encoder_embed_dim=geometry.embed_dim,
        encoder_depth=geometry.depth,
        encoder_num_heads=geometry.num_heads,
        encoder_global_attn_indexes=list(geometry.global_attn_indexes),
        checkpoint=None,
    )


def _listing(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def split_state(
    state: Mapping[str, Any], expected: Mapping[str, Any], path: Path, model_type: str
) -> tuple[dict[str, Any], list[str]]:
    """The tensors the model needs, and the CoralSCoP head names dropped from ``state``.

    Raises ConfigError naming SAM_WEIGHTS for a missing tensor, a tensor of another shape,
    or an extra tensor that is not one of CoralSCoP's heads.
    """
    extra = [key for key in state if key not in expected]
    dropped = sorted(key for key in extra if key.startswith(CORALSCOP_HEADS))
    unknown = sorted(key for key in extra if not key.startswith(CORALSCOP_HEADS))
    missing = sorted(key for key in expected if key not in state)
    reshaped = sorted(
        key
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    )
    hint = (
        ""
        if model_type == "auto"
        else f" (SAM_MODEL_TYPE={model_type}; set it to the checkpoint's size, or `auto`)"
    )
    if missing:
        raise ConfigError(
            f"{SETTING}={path}: {len(missing)} tensor(s) the SAM model needs are missing: "
            f"{_listing(missing)}{hint}"
        )
    if reshaped:
        detail = ", ".join(
            f"{key} {tuple(state[key].shape)} != {tuple(expected[key].shape)}"
            for key in reshaped[:3]
        )
        raise ConfigError(
            f"{SETTING}={path}: {len(reshaped)} tensor(s) have other shapes than the model's: "
            f"{detail}{hint}"
        )
    if unknown:
        raise ConfigError(
            f"{SETTING}={path}: {len(unknown)} tensor(s) are neither SAM's nor CoralSCoP's "
            f"decoder heads: {_listing(unknown)}{hint}"
        )
    return {key: state[key] for key in expected}, dropped


def load_sam(path: Path, model_type: str, device: str) -> Any:
    """A segment-anything model with the weights of a SAM or CoralSCoP checkpoint, in eval mode."""
    state = read_state_dict(path)
    model = build_model(model_type, state, path)
    weights, dropped = split_state(state, model.state_dict(), path, model_type)
    if dropped:
        log.info(
            "%s=%s: dropped %d CoralSCoP decoder tensor(s) that segment-anything does not "
            "define: %s",
            SETTING,
            path,
            len(dropped),
            ", ".join(dropped),
        )
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval()


def mask_generator(model: Any, **settings: Any) -> Any:
    """A ``SamAutomaticMaskGenerator`` that returns run-length encoded masks.

    RLE output keeps memory at one full-image mask at a time (:func:`mask_proposals` crops
    each as it decodes); binary output would hold every mask at full size at once.

    With ``crop_n_layers`` > 0, segment-anything 1.0 fails on two kinds of image, and the
    generator returned here answers them with the masks it has: when no mask survives in
    any crop (``IndexError`` in ``box_area``: an empty crop's boxes are a 1-D tensor; here
    they are (0, 4)), and when a crop is empty because the image is narrower than the crop
    grid (PIL refuses a 0-pixel image; here such a crop has no masks).
    """
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import MaskData

    class CropSafeMaskGenerator(SamAutomaticMaskGenerator):
        def _process_crop(
            self,
            image: np.ndarray,
            crop_box: list[int],
            crop_layer_idx: int,
            orig_size: tuple[int, ...],
        ) -> Any:
            x0, y0, x1, y1 = crop_box
            if x1 <= x0 or y1 <= y0:
                return MaskData(
                    rles=[],
                    boxes=torch.zeros((0, 4)),
                    iou_preds=torch.zeros(0),
                    points=torch.zeros((0, 2)),
                    stability_score=torch.zeros(0),
                    crop_boxes=torch.zeros((0, 4)),
                )
            data = super()._process_crop(image, crop_box, crop_layer_idx, orig_size)
            data["crop_boxes"] = data["crop_boxes"].reshape(-1, 4)
            return data

    return CropSafeMaskGenerator(model, output_mode="uncompressed_rle", **settings)


def mask_proposals(generator: Any, image: np.ndarray) -> list[MaskProposal]:
    """The generator's masks for an RGB image, each cropped to its box, with predicted IoU."""
    from segment_anything.utils.amg import rle_to_mask

    proposals = []
    for record in generator.generate(image):
        full = rle_to_mask(record["segmentation"])
        box = bounding_box(full)
        if box is None:
            continue
        left, top, right, bottom = box
        crop = np.ascontiguousarray(full[top : bottom + 1, left : right + 1])
        proposals.append(MaskProposal(crop, (left, top), float(record["predicted_iou"])))
    return proposals

"""A tiny SAM saved like a CoralSCoP checkpoint: vanilla keys plus CoralSCoP's decoder heads.

segment-anything's own builder with a 64-wide, 2-block image encoder (5 M parameters; the
prompt encoder, mask decoder and 1024 px input are SAM's). CoralSCoP's released checkpoint
also holds a category branch in its mask decoder that vanilla segment-anything does not
define; :func:`coralscop_decoder_heads` adds tensors of the same names and shapes, so the
loader's "drop exactly those keys" path runs on the tiny model as on the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENCODER = {
    "encoder_embed_dim": 64,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
}
"""The tiny image encoder's geometry (``segment_anything.build_sam._build_sam`` arguments)."""

MASK_TOKENS = 4
TRANSFORMER_DIM = 256


def _mlp(prefix: str, sizes: list[int], generator: Any) -> dict[str, Any]:
    import torch

    tensors = {}
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        tensors[f"{prefix}.layers.{index}.weight"] = (
            torch.randn(fan_out, fan_in, generator=generator) / fan_in**0.5
        )
        tensors[f"{prefix}.layers.{index}.bias"] = torch.zeros(fan_out)
    return tensors


def coralscop_decoder_heads(seed: int = 0) -> dict[str, Any]:
    """Tensors named and shaped like CoralSCoP's extra mask-decoder heads (category branch).

    Per mask token a hypernetwork MLP (256 -> 256 -> 256 -> 32), a feature projection MLP
    (256 -> 256 -> 256 -> 32) and a category MLP (4096 -> 256 -> 256 -> 2).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    dim, low = TRANSFORMER_DIM, TRANSFORMER_DIM // 8
    tensors: dict[str, Any] = {}
    for token in range(MASK_TOKENS):
        tensors |= _mlp(
            f"mask_decoder.cate_output_hypernetworks_mlps.{token}", [dim, dim, dim, low], generator
        )
    tensors |= _mlp("mask_decoder.cate_feature_projection_head", [dim, dim, dim, low], generator)
    tensors |= _mlp("mask_decoder.cate_prediction_head", [4096, dim, dim, 2], generator)
    return tensors


def tiny_sam(path: str | Path, *, coralscop_heads: bool = True, seed: int = 0) -> Path:
    """Write a tiny SAM state dict (plus CoralSCoP's extra heads) to ``path``; return it."""
    import torch
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(seed)
    model = _build_sam(**ENCODER, checkpoint=None)
    state = dict(model.state_dict())
    if coralscop_heads:
        state |= coralscop_decoder_heads(seed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return target

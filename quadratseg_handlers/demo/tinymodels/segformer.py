"""A tiny SegFormer for MMSegmentation: a real config file, a custom module, a checkpoint.

The files mirror a real bundle: ``best_segformer_config.py`` names its backbone through
``custom_imports`` from a module shipped beside it (as the DINOv2 backbone is), and
``best_segformer.pth`` holds ``state_dict`` plus ``meta.dataset_meta`` (classes, palette).
0.5 M parameters: building, loading and a 512 px inference take well under a second on CPU.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

CLASSES: tuple[str, ...] = ("background", "Acropora", "Pocillopora", "Porites", "Montipora")
"""Default class names: background first, then four coral genera."""

MODULE_NAME = "tiny_coral_backbone"
"""The custom module written beside the config and named in its ``custom_imports``."""

MODULE_SOURCE = '''"""A custom backbone shipped beside the config, registered on reading it."""

from mmseg.models.backbones import MixVisionTransformer
from mmseg.registry import MODELS


@MODELS.register_module()
class TinyCoralMiT(MixVisionTransformer):
    """A Mix Transformer under a name MMSegmentation only knows through custom_imports."""
'''

CONFIG_SOURCE = '''"""SegFormer: MiT {embed_dims} wide, layers {num_layers}; SegFormer head."""

custom_imports = dict(imports=["{module}"], allow_failed_imports=False)
norm_cfg = dict(type="BN", requires_grad=True)
data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type="TinyCoralMiT",
        in_channels=3,
        embed_dims={embed_dims},
        num_stages=4,
        num_layers={num_layers},
        num_heads=[1, 2, 5, 8],
        patch_sizes=[7, 3, 3, 3],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3),
        mlp_ratio=4,
        qkv_bias=True,
    ),
    decode_head=dict(
        type="SegformerHead",
        in_channels={in_channels},
        in_index=[0, 1, 2, 3],
        channels={channels},
        dropout_ratio=0.1,
        num_classes={num_classes},
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=({scale}, {scale}), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
'''


class MiT(NamedTuple):
    """A SegFormer's size: the Mix Transformer's first width and layers per stage, the head's
    width. The stages' widths are 1, 2, 5 and 8 times the first, as in every MiT."""

    embed_dims: int
    num_layers: tuple[int, int, int, int]
    channels: int


TINY = MiT(16, (1, 1, 1, 1), 32)
"""0.5 M parameters: the tests' SegFormer."""

MIT_B2 = MiT(64, (3, 4, 6, 3), 768)
"""SegFormer-B2's size (25 M parameters): a real model's cost, for the benchmarks."""


class SegformerFiles(NamedTuple):
    """Where :func:`tiny_segformer` wrote the config and the checkpoint."""

    config: Path
    weights: Path


def palette(count: int) -> list[list[int]]:
    """``count`` distinct RGB colours."""
    return [[(97 * i) % 256, (53 * i + 80) % 256, (191 * i + 40) % 256] for i in range(count)]


def tiny_segformer(
    folder: str | Path,
    classes: Sequence[str] = CLASSES,
    *,
    class_bias: Sequence[float] | None = None,
    dataset_meta: bool = True,
    scale: int = 512,
    seed: int = 0,
    size: MiT = TINY,
) -> SegformerFiles:
    """Write ``best_segformer_config.py``, its custom module and ``best_segformer.pth``.

    ``class_bias`` makes the output deterministic: the classifier's weights are zeroed and its
    bias set to these logits, so every pixel's probabilities are ``softmax(class_bias)``.
    ``dataset_meta=False`` leaves the class names out of the checkpoint (as old or hand-made
    checkpoints do). ``scale`` is the test pipeline's resize target; ``size`` the network's.
    """
    import torch
    from mmseg.apis import init_model

    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{MODULE_NAME}.py").write_text(MODULE_SOURCE)
    config = directory / "best_segformer_config.py"
    config.write_text(
        CONFIG_SOURCE.format(
            module=MODULE_NAME,
            num_classes=len(classes),
            scale=scale,
            embed_dims=size.embed_dims,
            num_layers=list(size.num_layers),
            in_channels=[size.embed_dims * k for k in (1, 2, 5, 8)],
            channels=size.channels,
        )
    )
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    torch.manual_seed(seed)
    model = init_model(str(config), None, device="cpu")
    if class_bias is not None:
        if len(class_bias) != len(classes):
            raise ValueError(f"class_bias has {len(class_bias)} values for {len(classes)} classes")
        with torch.no_grad():
            model.decode_head.conv_seg.weight.zero_()
            model.decode_head.conv_seg.bias.copy_(torch.tensor(list(class_bias)))
    checkpoint: dict[str, object] = {"state_dict": model.state_dict(), "meta": {}}
    if dataset_meta:
        checkpoint["meta"] = {
            "dataset_meta": {"classes": list(classes), "palette": palette(len(classes))}
        }
    weights = directory / "best_segformer.pth"
    torch.save(checkpoint, weights)
    return SegformerFiles(config, weights)

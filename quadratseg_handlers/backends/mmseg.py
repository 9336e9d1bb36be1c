"""Semantic segmentation with MMSegmentation: config + checkpoint -> per-pixel probabilities.

Loading goes through MMSegmentation's own ``init_model`` and inference through
``inference_model``, with three things settled once at start-up:

- custom modules named in the config's ``custom_imports`` (a DINOv2 backbone, a dataset) are
  imported from the config's folder, which is put on ``sys.path``;
- class names come from the checkpoint's ``meta.dataset_meta`` (or old ``meta.CLASSES``), else
  from the config's dataloader ``metainfo``; without them start-up stops, where MMSegmentation
  would silently name the classes after cityscapes or another dataset of the same size;
- the test pipeline is set for array input: ``inference_model`` rewrites its first step to
  ``LoadImageFromNDArray`` the first time it sees an array, for good, so it is done here once
  and the model only ever sees arrays.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg_handlers.backends.checkpoints import load_checkpoint
from quadratseg_handlers.core.config import ConfigError
from quadratseg_handlers.core.messages import describe_error
from quadratseg_handlers.core.request import bgr_pixels

CONFIG, WEIGHTS = "SEGFORMER_CONFIG", "SEGFORMER_WEIGHTS"
DATALOADERS = ("test_dataloader", "val_dataloader", "train_dataloader")


def read_config(path: Path) -> Any:
    """The MMEngine config, its ``custom_imports`` imported with its folder on ``sys.path``."""
    from mmengine import Config

    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        config = Config.fromfile(str(path))
    except Exception as exc:
        raise ConfigError(
            f"{CONFIG}={path}: cannot read the config ({type(exc).__name__}: {exc})"
        ) from None
    if "model" not in config:
        raise ConfigError(f"{CONFIG}={path}: the config defines no `model`")
    set_array_pipeline(config, path)
    return config


def set_array_pipeline(config: Any, path: Path) -> None:
    """Make the test pipeline read arrays: no annotations, first step LoadImageFromNDArray."""
    pipeline = [dict(step) for step in config.get("test_pipeline") or []]
    steps = [step for step in pipeline if step.get("type") != "LoadAnnotations"]
    if not steps or "LoadImage" not in str(steps[0].get("type", "")):
        raise ConfigError(
            f"{CONFIG}={path}: `test_pipeline` must start with an image loading step "
            "(LoadImageFromFile)"
        )
    steps[0]["type"] = "LoadImageFromNDArray"
    config.test_pipeline = steps


def _names(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and value:
        return [str(name) for name in value]
    return None


def class_names(checkpoint: dict[str, Any], config: Any) -> list[str] | None:
    """Class names from the checkpoint's meta, else the config's dataloader metainfo."""
    meta = checkpoint.get("meta") or {}
    found = _names((meta.get("dataset_meta") or {}).get("classes")) or _names(meta.get("CLASSES"))
    if found:
        return found
    for loader in DATALOADERS:
        dataset = (config.get(loader) or {}).get("dataset") or {}
        found = _names((dataset.get("metainfo") or {}).get("classes"))
        if found:
            return found
    return None


@dataclass
class SemanticModel:
    """A loaded MMSegmentation segmentor and its class names, in output-channel order."""

    model: Any
    classes: list[str]

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """(classes, H, W) float32 class probabilities of an RGB image, at its resolution."""
        import torch
        from mmseg.apis import inference_model

        # The pipeline gets what LoadImageFromFile would give it: BGR, like mmcv.imread.
        result = inference_model(self.model, bgr_pixels(image))
        logits = result.seg_logits.data
        with torch.no_grad():
            if logits.shape[0] == 1:  # binary head: MMSegmentation already applied sigmoid
                probabilities = torch.cat([1 - logits, logits])
            else:
                probabilities = torch.softmax(logits.float(), dim=0)
        array: np.ndarray = probabilities.float().cpu().numpy()
        return array


def load_semantic_model(
    config_path: Path, weights_path: Path, device: str, *, trusted: bool = False
) -> SemanticModel:
    """Build the segmentor with ``init_model`` and load its checkpoint strictly: the file is
    read once, by :func:`load_checkpoint` (the restricted unpickler unless ``trusted``), and
    its ``state_dict`` handed to MMEngine."""
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    from mmseg.apis import init_model

    config = read_config(config_path)
    try:
        model = init_model(config, None, device=device)
    except Exception as exc:
        raise ConfigError(
            f"{CONFIG}={config_path}: cannot build the model ({type(exc).__name__}: {exc})"
        ) from None
    checkpoint = load_checkpoint(weights_path, WEIGHTS, trusted=trusted)
    if not isinstance(checkpoint, dict):
        raise ConfigError(
            f"{WEIGHTS}={weights_path}: not an MMEngine checkpoint (a dict of `state_dict` and "
            "`meta`, or a state dict)"
        )
    try:
        _load_checkpoint_to_model(model, checkpoint, strict=True)
    except Exception as exc:
        raise ConfigError(
            f"{WEIGHTS}={weights_path}: does not fit the model of {CONFIG}={config_path} "
            f"({describe_error(exc, 300)})"
        ) from None
    classes = class_names(checkpoint, config)
    if classes is None:
        raise ConfigError(
            f"{WEIGHTS}={weights_path}: the checkpoint has no class names "
            "(meta.dataset_meta.classes) and neither has the config (a dataloader's "
            "dataset.metainfo.classes); refusing to guess them. Save the checkpoint with "
            "meta={'dataset_meta': {'classes': [...]}} as MMSegmentation's runner does."
        )
    outputs = int(model.decode_head.num_classes)
    check_classes(classes, outputs, weights_path)
    model.dataset_meta = {"classes": classes, "palette": checkpoint_palette(checkpoint)}
    return SemanticModel(model, classes)


def check_classes(classes: Sequence[str], outputs: int, weights_path: Path) -> None:
    """Class names must be unique and as many as the model's outputs."""
    if len(classes) != outputs:
        raise ConfigError(
            f"{WEIGHTS}={weights_path}: {len(classes)} class names for a model with "
            f"{outputs} classes"
        )
    if len(set(classes)) != len(classes):
        raise ConfigError(f"{WEIGHTS}={weights_path}: class names are not unique: {classes}")


def checkpoint_palette(checkpoint: dict[str, Any]) -> list[Any] | None:
    """The palette saved with the class names, if any (kept for MMSegmentation's tools)."""
    meta = checkpoint.get("meta") or {}
    palette = (meta.get("dataset_meta") or {}).get("palette") or meta.get("PALETTE")
    return list(palette) if palette else None

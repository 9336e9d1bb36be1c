"""Tiny YOLO11n models (segment, detect, pose) with random weights, saved as real checkpoints.

Built from ultralytics' own ``yolo11n*.yaml`` with the class count (and, for pose, the keypoint
shape) of the caller. Random weights fire unpredictably, so the classification bias of the
head is raised until every anchor fires: predict then returns exactly ``max_det`` detections
(fewer only where non-maximum suppression leaves fewer boxes). With ``deterministic=True``
the scores and classes are also fixed, and segmentation masks fill their boxes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from quadratseg_handlers.backends.offline import configure_ultralytics

CONFIGS = {"segment": "yolo11n-seg.yaml", "detect": "yolo11n.yaml", "pose": "yolo11n-pose.yaml"}
"""The ultralytics model configuration each task is built from."""

FIRING_LOGIT = 3.0
"""Classification logit of a firing anchor: score sigmoid(3.0) = 0.9526, confidence "95"."""

DETERMINISTIC_SCORE = 0.9525741268224334
"""The score of every detection of a deterministic tiny model (sigmoid of FIRING_LOGIT)."""


def tiny_yolo(
    path: str | Path,
    task: str = "segment",
    names: Sequence[str] = ("coral",),
    deterministic: bool = True,
    *,
    imgsz: int = 640,
    kpt_shape: tuple[int, int] = (17, 3),
    seed: int = 0,
) -> Path:
    """Write a YOLO11n checkpoint for ``task`` with class ``names`` to ``path``; return the path.

    ``deterministic``: every anchor scores exactly :data:`DETERMINISTIC_SCORE` for the first
    class (and zero for the others) and a segmentation mask fills its whole box, so the
    detections' count, labels and confidences do not depend on the image. Otherwise scores,
    classes and mask shapes come from the random weights (drawn from ``seed``), still with
    every anchor firing; a randomly initialised YOLO11n barely responds to its input, so
    these vary little. ``imgsz`` is recorded as the training size (ultralytics reads it back
    as the model's default inference size); ``kpt_shape`` is (keypoints, 2 or 3) for pose.
    """
    if task not in CONFIGS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(CONFIGS)}")
    if not names:
        raise ValueError("a model needs at least one class name")
    configure_ultralytics()
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    config = {k: v for k, v in yaml_model_load(CONFIGS[task]).items() if k != "yaml_file"}
    config["nc"] = len(names)
    if task == "pose":
        config["kpt_shape"] = [int(kpt_shape[0]), int(kpt_shape[1])]
    with tempfile.TemporaryDirectory() as folder, torch.random.fork_rng():
        torch.manual_seed(seed)
        config_file = Path(folder) / CONFIGS[task]  # the name carries the scale ("n")
        config_file.write_text(yaml.safe_dump(config))
        model = YOLO(str(config_file))
    network: Any = model.model
    network.names = dict(enumerate(names))
    head = network.model[-1]
    with torch.no_grad():
        for branch in head.cv3:
            classifier = branch[-1]
            classifier.bias.fill_(FIRING_LOGIT)
            if deterministic:
                classifier.weight.zero_()
                classifier.bias[1:] = -FIRING_LOGIT
        if task == "segment" and deterministic:
            for branch in head.cv4:  # mask coefficients: all +1
                branch[-1].weight.zero_()
                branch[-1].bias.fill_(1.0)
            head.proto.cv3.conv.weight.zero_()  # prototypes: all silu(1) > 0
            head.proto.cv3.bn.bias.fill_(1.0)
    model.ckpt["train_args"] = {"task": task, "imgsz": imgsz}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save(target)
    return target


def coral_segmentation_files(folder: str | Path) -> dict[str, Path]:
    """The coral segmentation bundles' files with a tiny model: ``{"weights": .../best.pt}``.

    Its classes are the genera :mod:`quadratseg_handlers.demo.synthetic` draws.
    """
    from quadratseg_handlers.demo.synthetic import GENERA

    return {"weights": tiny_yolo(Path(folder) / "best.pt", "segment", GENERA)}


def grid_corner_files(folder: str | Path) -> dict[str, Path]:
    """pth-yolo-gridcorners' files with a tiny detect model (every box centre a point)."""
    return {"weights": tiny_yolo(Path(folder) / "best.pt", "detect", ["quadrat_corner"])}


def grid_point_files(folder: str | Path) -> dict[str, Path]:
    """pth-yolo-gridpose's files with a tiny detect model (every box centre a point)."""
    return {"weights": tiny_yolo(Path(folder) / "best.pt", "detect", ["grid_point"])}

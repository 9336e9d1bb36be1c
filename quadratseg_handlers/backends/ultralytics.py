"""YOLO models through ultralytics: their settings, and loading with a task check.

:func:`load_yolo` is what every YOLO function loads its model with (the coral segmentation
handlers and the grid detectors): it accepts a PyTorch checkpoint, an ONNX export or a
TensorRT engine, refuses a model of the wrong task at start-up, and reads the class names and
the size the model was trained (or exported) at. Its results, turned into arrays in the
photo's pixels, are :mod:`quadratseg_handlers.backends.ultralytics_results`'.
"""

from __future__ import annotations

import ast
import re
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quadratseg_handlers.backends.checkpoints import (
    UnreadableCheckpoint,
    load_checkpoint,
    trust_weights_setting,
)
from quadratseg_handlers.backends.offline import configure_ultralytics
from quadratseg_handlers.core import config as cfg
from quadratseg_handlers.core.config import ConfigError, setting
from quadratseg_handlers.core.contract import DetectorSettings
from quadratseg_handlers.core.messages import describe_error
from quadratseg_handlers.core.request import bgr_pixels

if TYPE_CHECKING:
    from ultralytics.engine.results import Results

MODEL_FORMATS: dict[str, str] = {
    ".pt": "PyTorch checkpoint",
    ".onnx": "ONNX export",
    ".engine": "TensorRT engine (CUDA only)",
}
"""File suffixes :func:`load_yolo` accepts, and what they hold."""


@dataclass(frozen=True)
class YoloSettings(DetectorSettings):
    """The settings every YOLO function reads, beside the common ones."""

    model_path: Path = setting(
        Path("/opt/nuclio/best.pt"),
        "The model file: an ultralytics `.pt` checkpoint, an `.onnx` export or a TensorRT "
        "`.engine` (CUDA only). Its task must match the function.",
        parse=cfg.existing_file,
    )
    iou_threshold: float = setting(
        0.5,
        "Non-maximum suppression: of two detections overlapping by more than this IoU, the "
        "lower-scored one is dropped.",
        low=0.0,
        high=1.0,
    )
    agnostic_nms: bool = setting(
        False,
        "`true`: non-maximum suppression across classes, so that one object answered as two "
        "classes (a colony as two genera) comes back once, as the higher-scored one. `false`: "
        "per class, as ultralytics does by default.",
    )
    imgsz: int | None = setting(
        None,
        "Inference size in pixels (longest side, rounded up to the model stride). Empty: the "
        "size the model was trained at (`.pt`) or exported at (`.onnx`, `.engine`).",
        low=32,
        high=8192,
    )
    max_det: int = setting(
        300, "Most detections kept per image (highest scores first).", low=1, high=10_000
    )
    half: bool = setting(False, "Half-precision (FP16) inference on a CUDA device; ignored on CPU.")
    scaled_decode: bool = setting(
        True,
        "`true`: a JPEG is decoded directly at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT "
        "scaling) when its long side stays at least the model's input size (IMGSZ), several "
        "times faster than a full decode; shapes are still in the photo's pixels. `false`: "
        "every image is decoded at full size.",
    )
    trust_weights: bool = trust_weights_setting()


ImageSize = int | tuple[int, int]


def _imgsz_hw(value: Any) -> tuple[int, int]:
    """An ultralytics imgsz as (height, width)."""
    imgsz = _image_size(value)
    return (imgsz, imgsz) if isinstance(imgsz, int) else imgsz


def _image_size(value: Any) -> ImageSize:
    """An ultralytics imgsz (int, [h, w], or their string form in export metadata)."""
    if isinstance(value, str):
        value = ast.literal_eval(value)
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return int(value[0])
        height, width = (int(v) for v in value)
        return height if height == width else (height, width)
    return int(value)


@dataclass
class YoloModel:
    """An ultralytics model loaded from a file, with what a handler needs to know about it."""

    model: Any
    """The ``ultralytics.YOLO`` object."""
    path: Path
    task: str
    names: list[str]
    """Class names in class-index order."""
    imgsz: ImageSize
    """The size the model was trained (``.pt``) or exported (``.onnx``, ``.engine``) at."""
    fixed_size: bool
    """Whether the input size is baked into the file (a static export)."""
    options: dict[str, Any] = field(default_factory=dict)
    """ultralytics predict arguments fixed at start-up by :meth:`configure`."""
    decode_side: int | None = None
    """The long side images may be decoded at (the network input's, stride included); None:
    full resolution (SCALED_DECODE=false). Set by :meth:`configure`."""
    family: str | None = None
    """The architecture as ultralytics names it (``YOLO11n-seg``); None when the file does
    not say."""

    def configure(self, settings: YoloSettings, device: str) -> None:
        """Fix the predict arguments from the YOLO settings, then warm the model up.

        The warm-up prediction builds ultralytics' predictor (and an ONNX or TensorRT
        session) at start-up rather than on the first request.
        """
        imgsz = self.imgsz if settings.imgsz is None else settings.imgsz
        if self.fixed_size and _image_size(imgsz) != self.imgsz:
            raise ConfigError(
                f"IMGSZ={imgsz}: MODEL_PATH={self.path} was exported with a fixed input size "
                f"{self.imgsz}; leave IMGSZ empty or export again with that size (or dynamic=True)"
            )
        if self.path.suffix.lower() == ".engine" and not device.startswith("cuda"):
            raise ConfigError(
                f"MODEL_PATH={self.path}: a TensorRT engine runs only on a CUDA device, "
                f"DEVICE resolved to {device!r}"
            )
        self.options = {
            "imgsz": imgsz,
            "iou": settings.iou_threshold,
            "agnostic_nms": settings.agnostic_nms,
            "max_det": settings.max_det,
            "device": device,
            **precision_options(settings.half and device.startswith("cuda")),
        }
        height, width = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
        self.predict([np.zeros((height, width, 3), dtype=np.uint8)], conf=1.0)
        if settings.scaled_decode:
            self.decode_side = max(_imgsz_hw(self.model.predictor.imgsz))

    def predict(self, images: Sequence[np.ndarray], conf: float) -> list[Results]:
        """One ultralytics result per RGB image, all images in one batch."""
        bgr = [bgr_pixels(image) for image in images]
        results: list[Results] = self.model.predict(
            bgr, conf=conf, batch=len(bgr), verbose=False, **self.options
        )
        self.forget_last_batch()
        return results

    def forget_last_batch(self) -> None:
        """Drop ultralytics' references to the last batch (its images, tensors and results).

        The predictor keeps them until the next predict: after one 100-megapixel request a
        worker would hold its 300 MB image (and a batch's, four times that) while idle.
        """
        predictor = getattr(self.model, "predictor", None)
        for name in ("dataset", "batch", "results"):
            if predictor is not None and hasattr(predictor, name):
                setattr(predictor, name, None)


def precision_options(half: bool) -> dict[str, Any]:
    """The predict arguments for FP16 (``half``) or FP32 inference, as the installed
    ultralytics names them: ``quantize=16`` where its configuration has ``quantize`` (recent
    releases, which log a deprecation warning on every predict given ``half``), else ``half``.
    """
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if "quantize" in DEFAULT_CFG_DICT:
        return {"quantize": 16} if half else {}
    return {"half": half}


_HANDING_OVER = threading.Lock()


def yolo_checkpoint(path: Path, variable: str) -> dict[str, Any]:
    """An ultralytics ``.pt`` read by :func:`load_checkpoint`'s restricted unpickler: a dict
    whose ``model`` (or ``ema``) is a rebuilt model. A quantization-aware (``modelopt``)
    checkpoint is refused: ultralytics would install and run NVIDIA ModelOpt on its state."""
    import torch

    where = f"{variable}={path}"
    try:
        checkpoint = load_checkpoint(path, variable)
    except UnreadableCheckpoint as exc:
        raise ConfigError(f"{where}: not a model ultralytics can load ({exc.reason})") from None
    if not isinstance(checkpoint, dict):
        checkpoint = {}
    model = checkpoint.get("ema") or checkpoint.get("model")
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{where}: not an ultralytics checkpoint (a dict with its `model`)")
    if checkpoint.get("modelopt"):
        raise ConfigError(f"{where}: a quantization-aware (ModelOpt) checkpoint is not supported")
    return checkpoint


@contextmanager
def handed_over(path: Path, checkpoint: dict[str, Any] | None) -> Iterator[None]:
    """While ultralytics builds a ``YOLO`` of ``path``, its checkpoint reader returns
    ``checkpoint`` (already read) instead of unpickling the file again, and refuses any other
    file. The reader is ultralytics' ``torch_safe_load``, which ``YOLO(path)`` reaches through
    ``load_checkpoint``; it is put back on exit, one load at a time. None: nothing replaced
    (TRUST_WEIGHTS: ultralytics reads the file as it always does)."""
    if checkpoint is None:
        yield
        return
    from ultralytics.nn import tasks

    def torch_safe_load(weight: Any, safe_only: Any = None) -> tuple[dict[str, Any], str]:
        if Path(weight) != path:
            raise ConfigError(f"ultralytics asked for {weight} while loading {path}")
        return checkpoint, str(path)

    with _HANDING_OVER:
        original = tasks.torch_safe_load
        tasks.torch_safe_load = torch_safe_load
        try:
            yield
        finally:
            tasks.torch_safe_load = original


def load_yolo(
    path: str | Path,
    expected_tasks: Collection[str],
    *,
    variable: str = "MODEL_PATH",
    trusted: bool = False,
) -> YoloModel:
    """Load a `.pt`, `.onnx` or `.engine` model with ultralytics and check its task.

    A `.pt` is read once, by :func:`yolo_checkpoint` (the restricted unpickler), and handed
    to ultralytics (:func:`handed_over`); ``trusted`` (TRUST_WEIGHTS): ultralytics reads it.
    Every problem (missing file, unknown suffix, a `.pt` whose pickle names or calls code real
    checkpoints do not, unreadable model, wrong task) raises
    ConfigError naming ``variable``, the file and, for a wrong task, the model's task.
    """
    path = cfg.required_file(variable, path)
    where = f"{variable}={path}"
    suffix = path.suffix.lower()
    if suffix not in MODEL_FORMATS:
        raise ConfigError(
            f"{where}: unsupported model file {suffix or '(no suffix)'!r}; expected one of "
            + ", ".join(f"{s} ({kind})" for s, kind in MODEL_FORMATS.items())
        )
    checkpoint = yolo_checkpoint(path, variable) if suffix == ".pt" and not trusted else None
    configure_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.backends.base import BaseBackend

    metadata: dict[str, Any] = {}
    try:
        if suffix == ".pt":
            with handed_over(path, checkpoint):
                model = YOLO(str(path))
        else:
            metadata = BaseBackend.read_metadata(path)
            if not metadata.get("task"):
                raise ConfigError(
                    f"{where}: no ultralytics metadata in this export (task unknown); export it "
                    "with ultralytics (`YOLO('best.pt').export(...)`)"
                )
            model = YOLO(str(path), task=str(metadata["task"]))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{where}: not a model ultralytics can load ({describe_error(exc)})"
        ) from exc
    task = str(model.task)
    if task not in expected_tasks:
        raise ConfigError(
            f"{where}: the model's task is {task!r}, this function needs "
            + " or ".join(repr(t) for t in sorted(expected_tasks))
        )
    if suffix == ".pt":
        imgsz = _image_size(model.overrides.get("imgsz", 640))
        fixed = False
    else:
        imgsz = _image_size(metadata.get("imgsz", 640))
        export_args = metadata.get("args", {})
        if isinstance(export_args, str):
            export_args = ast.literal_eval(export_args)
        fixed = not export_args.get("dynamic", False)
    try:
        names = model.names  # an export's runtime opens it here (ONNX Runtime checks side files)
    except Exception as exc:
        raise ConfigError(
            f"{where}: not a model ultralytics can load ({describe_error(exc)})"
        ) from exc
    found = YoloModel(model, path, task, [str(names[i]) for i in sorted(names)], imgsz, fixed)
    found.family = model_family(model, metadata)
    return found


def model_family(model: Any, metadata: Mapping[str, Any]) -> str | None:
    """``YOLO11n-seg``: a checkpoint's architecture file (``yolo11n-seg.yaml``), or an
    export's metadata description (``Ultralytics YOLO11n-seg model trained on ...``)."""
    description = str(metadata.get("description", ""))
    match = re.match(r"Ultralytics (\S+) model", description)
    if match:
        return match.group(1)
    architecture = getattr(getattr(model, "model", None), "yaml", None)
    yaml_file = architecture.get("yaml_file") if isinstance(architecture, dict) else None
    if not yaml_file:
        return None
    return re.sub(r"^yolo", "YOLO", Path(str(yaml_file)).stem, flags=re.IGNORECASE)


def load_configured_yolo(settings: YoloSettings, tasks: Collection[str], device: str) -> YoloModel:
    """The :class:`YoloSettings`' model: MODEL_PATH loaded (a `.pt` by the restricted
    unpickler unless TRUST_WEIGHTS), its task checked against ``tasks``, the predict settings
    fixed and the model warmed up."""
    model = load_yolo(settings.model_path, tasks, trusted=settings.trust_weights)
    model.configure(settings, device)
    return model

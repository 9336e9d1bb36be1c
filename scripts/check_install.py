"""Fail the install if a pinned package was replaced or a model library does not import."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import sys

EXPECTED = {"torch": "2.13.0", "torchvision": "0.28.0", "mmcv": "2.1.0"}


def main() -> int:
    """Check exact versions (no local +cpu torch) and that each model library imports."""
    from quadratseg_handlers.backends.offline import configure_ultralytics

    configure_ultralytics()
    problems = []
    for name, version in EXPECTED.items():
        found = metadata.version(name)
        if found != version:
            problems.append(f"{name} {found} installed, {version} pinned")
    for module in (
        "torchvision.ops",
        "ultralytics",
        "segment_anything",
        "mmcv.ops",
        "mmseg.apis",
        "simple_lama_inpainting",
        "nuclio_sdk",
        "onnxruntime",
    ):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - report any import failure
            problems.append(f"import {module} failed: {type(exc).__name__}: {exc}")
    import torch
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
    kept = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    if kept.tolist() != [0]:
        problems.append(f"torchvision.ops.nms gave {kept.tolist()}")
    for problem in problems:
        print(f"check_install: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"check_install: torch {torch.__version__}, torchvision {torchvision.__version__}: ok"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

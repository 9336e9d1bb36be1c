"""The deployment guide's table on a GPU: every function, one 1920 x 1920 request end to end.

The guide gives each function's time per 1920 x 1920 image on its GPU. Here each function runs
in a fresh process on ``BENCH_DEVICE``, started through real Nuclio objects (``init_context``:
load and warm-up), then answers a 1920 x 1920 JPEG of what its stage sees (a held-out seed)
RUNS times after one uncounted request; the median is set beside the guide's figure.

Models: the trained demo models where there is one (YOLO11n coral segmentation, corners and
grid points, served with their demo settings); otherwise real-size architectures with random
weights: YOLO11m-seg for the second coral function, SAM ViT-B (CoralSCoP's size) with a
SegFormer-B2-size model for CoralSCoP, big-lama's architecture for LaMa. Random weights cost
what trained ones do per pass, but find nothing, so their answers hold few or no shapes.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .timing import (
    bench_device,
    in_fresh_process,
    stage_input,
    stage_view,
    started_function,
    timed_requests,
)

DEVICES = ("cuda",)
SIZE = 1920
RUNS = 5


class GuideRow(NamedTuple):
    """One row of the guide's table and the model we measure in its place."""

    guide: str
    seconds: float
    models: str


GUIDE: dict[str, GuideRow] = {
    "pth-yolo-coralsegv4": GuideRow("YOLO-11n-seg", 4.2, "demo YOLO11n-seg (trained)"),
    "pth-yolo-coralsegbanggai": GuideRow("YOLO-11m-seg", 7.4, "YOLO11m-seg (random)"),
    "pth-mmseg-coralscopsegformer": GuideRow(
        "DINOv2 + CoralSCoP", 18.5, "SAM ViT-B + SegFormer-B2 size (random)"
    ),
    "pth-yolo-gridcorners": GuideRow("GridCorners", 1.1, "demo YOLO11n (trained)"),
    "pth-yolo-gridpose": GuideRow("GridPose", 2.3, "demo YOLO11n (trained)"),
    "pth-lama": GuideRow("LaMa", 6.8, "big-lama architecture (random)"),
}
"""Our function for each row of the guide's table (its order)."""

DEMO = {
    "pth-yolo-coralsegv4": "coralseg",
    "pth-yolo-gridcorners": "gridcorners",
    "pth-yolo-gridpose": "gridpose",
}
"""Functions served with a trained demo model."""

STAGES = {"pth-yolo-gridcorners": "gridcorners", "pth-yolo-gridpose": "gridpose"}
"""The stage each grid function sees; the coral functions see the quadrat without its grid."""


def demo_env(model: str) -> dict[str, str]:
    """A trained demo model's weights and the settings the demo serves it with."""
    from quadratseg_handlers.demo.training import DEFAULT_FOLDER, MODELS, verified_models

    root = Path(__file__).resolve().parent.parent
    weights = verified_models(root / DEFAULT_FOLDER)[model]
    return {"MODEL_PATH": str(weights), **MODELS[model].settings}


def yolo11m_env(folder: Path) -> dict[str, str]:
    """YOLO11m-seg with ultralytics' own random initialisation, the synthetic genera as classes."""
    from quadratseg_handlers.backends.offline import configure_ultralytics
    from quadratseg_handlers.demo.synthetic import GENERA

    configure_ultralytics()
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolo11m-seg.yaml")
    network: Any = model.model
    network.names = dict(enumerate(GENERA))
    model.ckpt["train_args"] = {"task": "segment", "imgsz": 640}
    path = folder / "yolo11m-seg.pt"
    model.save(path)
    return {"MODEL_PATH": str(path)}


def coralscop_env(folder: Path) -> dict[str, str]:
    """SAM ViT-B saved as a CoralSCoP checkpoint, and a SegFormer-B2-size model."""
    import torch
    from segment_anything import sam_model_registry

    from quadratseg_handlers.demo.tinymodels.sam import coralscop_decoder_heads
    from quadratseg_handlers.demo.tinymodels.segformer import MIT_B2, tiny_segformer

    torch.manual_seed(0)
    state = dict(sam_model_registry["vit_b"](checkpoint=None).state_dict())
    sam = folder / "vit_b_coralscop.pth"
    torch.save(state | coralscop_decoder_heads(), sam)
    segformer = tiny_segformer(folder / "segformer", scale=1024, size=MIT_B2)
    return {
        "SAM_WEIGHTS": str(sam),
        "SAM_MODEL_TYPE": "vit_b",
        "SEGFORMER_WEIGHTS": str(segformer.weights),
        "SEGFORMER_CONFIG": str(segformer.config),
    }


def lama_env(folder: Path) -> dict[str, str]:
    """big-lama's architecture (51 M parameters) as TorchScript, random weights."""
    from quadratseg_handlers.demo.tinymodels.lama import save_lama

    return {"LAMA_MODEL": str(save_lama(folder / "big-lama.pt"))}


BUILDERS: dict[str, Callable[[Path], dict[str, str]]] = {
    "pth-yolo-coralsegbanggai": yolo11m_env,
    "pth-mmseg-coralscopsegformer": coralscop_env,
    "pth-lama": lama_env,
}


def request_body(name: str) -> dict[str, Any]:
    """The 1920 x 1920 request of ``name``'s stage: the photo (corners), the warped quadrat
    (grid points; with its grid points, grid removal), the quadrat without its grid (corals)."""
    from quadratseg_handlers.core.request import encode_image

    if name == "pth-lama":
        view = stage_view(SIZE)
        return {
            "image": encode_image(view.image, "JPEG", 90),
            "keypoints": view.grid_points.tolist(),
        }
    stage = STAGES.get(name, "coralseg")
    return {"image": encode_image(stage_input(stage, (SIZE, SIZE)), "JPEG", 90)}


def answer_size(body: Any) -> str:
    """What an answer holds: shapes (points for a skeleton), or an image's size in bytes."""
    answer = json.loads(body)
    if isinstance(answer, list):
        if answer and "elements" in answer[0]:
            return f"{len(answer[0]['elements'])} points"
        return f"{len(answer)} shapes"
    return "an image"


def measure(name: str) -> dict[str, Any]:
    """One function's start, median request time at SIZE, answer and peak GPU memory."""
    import torch

    from quadratseg_handlers.deploy.catalog import find
    from quadratseg_handlers.local.harness import make_event

    device = bench_device()
    function = find(name)
    with tempfile.TemporaryDirectory(prefix="bench-guide-") as folder:
        env = dict(function.env)
        env.update(demo_env(DEMO[name]) if name in DEMO else BUILDERS[name](Path(folder)))
        env["DEVICE"] = device
        client, start_s = started_function(name, env)
        times, response = timed_requests(client, make_event(request_body(name)), RUNS)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    return {
        "start_s": start_s,
        "median_s": statistics.median(times),
        "answer": answer_size(response.body),
        "gpu_mib": peak,
    }


def run() -> str:
    """Return the Markdown section (one fresh process per function)."""

    rows = []
    for name, row in GUIDE.items():
        result = in_fresh_process("bench_guide", name)
        if result is None:
            rows.append(f"| {row.guide} | `{name}` | {row.models} | {row.seconds} | failed |")
            continue
        seconds = result["median_s"]
        rows.append(
            f"| {row.guide} | `{name}` | {row.models} | {row.seconds:.1f} | {seconds:.3f} | "
            f"{row.seconds / seconds:.0f} x | {60 / seconds:.0f} | {result['answer']} | "
            f"{result['start_s']:.1f} | {result['gpu_mib']:.0f} |"
        )
    return (
        "## The deployment guide's table, measured\n\n"
        f"Each function in a fresh process on the GPU, one {SIZE} x {SIZE} JPEG of what its "
        f"stage sees (held-out seed) end to end through real Nuclio objects (base64, decoding, "
        f"the model, shapes, JSON): median of {RUNS} after one uncounted. Guide: the guide's "
        "seconds per image on its GPU; ours / guide is how many times faster ours answers. "
        "Start: `init_context` (loading and the warm-up predict). GPU MiB: torch's peak "
        "allocation. The trained demo models answer with what a real quadrat holds; the "
        "random-weight models cost a real model's passes but find little, so their rows hold "
        "the model and our fixed steps, not shape building (the 11n row has that).\n\n"
        "| Guide row | Function | Model | Guide s | Ours s | Guide / ours | Images / min | "
        "Answer | Start s | GPU MiB |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows)
    )


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))

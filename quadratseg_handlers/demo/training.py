"""The demo models: how each is trained (YOLO, on the data sets of
:mod:`~quadratseg_handlers.demo.datasets`), and their manifest.

Three YOLO11n models are trained from scratch (no pretrained weights can be downloaded) on
:func:`~quadratseg_handlers.demo.synthetic.quadrat_image` photos, each on what its stage sees
in the pipeline:

- ``gridcorners`` (detect, one class): the whole photo; a box around each frame corner.
- ``gridpose`` (detect, one class): the quadrat warped upright (:func:`warp_quadrat`) from
  slightly wrong corners, as a corner detector leaves them; a box around each grid point.
- ``coralseg`` (segment, one class per genus): the warped quadrat with the grid string painted
  out (OpenCV inpainting of the string mask), as grid removal leaves it; one polygon a colony.

Seeds are disjoint by construction: model ``k`` draws its training photos from
``SEED_BASE * (k + 1)`` on and validation photos from ``SEED_BASE * (k + 1) + VALIDATION_OFFSET``
on; tests and the demo use seeds from :data:`TEST_SEEDS` on, never drawn for training.
The trained weights and ``manifest.json`` (how each was trained, validation metrics, SHA-256)
live in ``demo-models/`` at the repository root, outside the library's wheel.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from quadratseg_handlers.demo.datasets import REEF_DRAWN_SHARE, write_dataset
from quadratseg_handlers.demo.reef_photos import HELD_OUT_SOURCES, ReefTextures
from quadratseg_handlers.demo.synthetic import GENERA

SEED_BASE = 1_000_000
"""Training photos of model k come from seeds SEED_BASE * (k + 1) on."""

VALIDATION_OFFSET = 500_000
"""Validation photos of model k come from seeds SEED_BASE * (k + 1) + VALIDATION_OFFSET on."""

TEST_SEEDS = 900_000_000
"""Seeds from here on are for tests and the demo only: never drawn for training."""

MANIFEST = "manifest.json"
MANIFEST_HELP = (
    "for a lab's own models write manifest.json next to them: "
    '{"models": {"gridcorners": {"file": "gridcorners.pt", "sha256": "<sha256sum of it>"}, '
    '"gridpose": {...}, "coralseg": {...}}} (docs/demo.md); the demo\'s own are restored by '
    "`git checkout demo-models` or retrained by `make demo-models` (about 6 hours)"
)
"""What a folder without the demo models' manifest needs (``demo --models FOLDER``)."""
"""The manifest's file name inside the demo-models folder."""

DEFAULT_FOLDER = Path("demo-models")
"""Where `make demo-models` writes and `make demo` reads, relative to the repository root."""


HARD_FRAMES: tuple[str, ...] = ("criobe",) * 4 + ("painted", "taped") * 2 + ("metal", "pvc")
"""The frames of gridcorners' last run: painted and taped bars, which it missed most, a fifth
each instead of an eighth; CRIOBE's frame two in five, metal and PVC one in ten each."""


@dataclass(frozen=True)
class Refinement:
    """A further training run from a model's best weights so far.

    A low rate without mosaic sharpens where boxes sit (grid points); a larger image size with
    mosaic teaches corners cut by the photo's edge and sees small colonies better; more photos
    show more corners hidden under a colony or cut by the edge.
    """

    epochs: int
    lr: float
    """ultralytics' lr0 (AdamW, no warm-up)."""
    imgsz: int | None = None
    """Training size of this run; None: the model's. The weights then serve at it by default."""
    mosaic: float = 0.0
    images: int | None = None
    """Training photos of this run (the model's training seeds, continued); None: the model's.
    The validation photos stay the model's."""
    reef: bool = False
    """Photos of this run drawn over real reef (:mod:`~quadratseg_handlers.demo.reef`, the
    training sources only; one in REEF_DRAWN_SHARE from the drawn world); skipped without
    reef textures."""
    val_images: int | None = None
    """Validation photos of this run; None: the model's."""
    frames: tuple[str, ...] | None = None
    """Frames of this run's photos over real reef, one drawn at random per photo (a frame named
    twice comes twice as often); None: :func:`reef_quadrat`'s mix, CRIOBE's one time in two.
    More of the frames a model misses, without leaving out the others."""

    def data_model(self, model: DemoModel) -> DemoModel:
        """``model`` with this run's training and validation photos."""
        if self.images is not None:
            model = replace(model, train_images=self.images)
        return model if self.val_images is None else replace(model, val_images=self.val_images)

    def args(self, imgsz: int) -> dict[str, Any]:
        """The ultralytics arguments this run changes from TRAIN_ARGS."""
        return {**REFINE_ARGS, "lr0": self.lr, "mosaic": self.mosaic, "imgsz": self.imgsz or imgsz}


REFINE_ARGS: dict[str, Any] = {"optimizer": "AdamW", "warmup_epochs": 0}
"""What every refining run changes from TRAIN_ARGS, besides its rate, mosaic and size
(ultralytics' automatic choice for the first run is AdamW at 0.002 for one class, 0.001 for six)."""


@dataclass(frozen=True)
class DemoModel:
    """How one demo model is trained: its task, classes, image size, data set size, epochs."""

    name: str
    task: str
    names: tuple[str, ...]
    imgsz: int
    train_images: int
    val_images: int
    epochs: int
    index: int
    """k in the seed ranges (see the module docstring)."""
    function: str
    """The catalogue function that serves it."""
    refinements: tuple[Refinement, ...] = ()
    """Further runs, each from the previous run's best weights (see :class:`Refinement`)."""
    serve_env: tuple[str, ...] = ()
    """Settings the demo packages the model with (``NAME=VALUE``, chosen on held-out photos)."""
    init_from: str | None = None
    """A demo model whose trained weights this one starts from (the layers of the same shape):
    four corners a photo teach a network from scratch too slowly, 117 grid points do not."""

    @property
    def settings(self) -> dict[str, str]:
        """:attr:`serve_env` as a mapping of setting names to values."""
        return dict(setting.split("=", 1) for setting in self.serve_env)

    @property
    def train_seeds(self) -> range:
        """The seeds of the training photos."""
        start = SEED_BASE * (self.index + 1)
        return range(start, start + self.train_images)

    @property
    def val_seeds(self) -> range:
        """The seeds of the validation photos."""
        start = SEED_BASE * (self.index + 1) + VALIDATION_OFFSET
        return range(start, start + self.val_images)

    @property
    def file(self) -> str:
        """The weights' file name in the demo-models folder."""
        return f"{self.name}.pt"


MODELS: dict[str, DemoModel] = {
    model.name: model
    for model in (
        DemoModel(
            "gridpose", "detect", ("point",), 320, 160, 30, 15, 1, "pth-yolo-gridpose",
            refinements=(
                Refinement(8, 0.0002),
                Refinement(5, 0.0005, images=240, reef=True, val_images=40),
                Refinement(8, 0.0003, images=480, reef=True, val_images=40),
                Refinement(8, 0.0003, images=960, reef=True, val_images=40),
            ),
            serve_env=("IMGSZ=352", "WARPED_INPUT=true"),
        ),
        DemoModel(
            "gridcorners", "detect", ("corner",), 320, 160, 30, 10, 0, "pth-yolo-gridcorners",
            init_from="gridpose",
            refinements=(
                Refinement(12, 0.001),
                Refinement(20, 0.001, imgsz=416, mosaic=1.0),
                Refinement(10, 0.0005, imgsz=416, mosaic=1.0, images=320),
                Refinement(6, 0.001, imgsz=416, mosaic=1.0, images=400, reef=True, val_images=60),
                Refinement(5, 0.0007, imgsz=416, mosaic=1.0, images=400, reef=True, val_images=60),
                Refinement(6, 0.0007, imgsz=416, mosaic=1.0, images=480, reef=True, val_images=60),
                Refinement(6, 0.0005, imgsz=416, mosaic=1.0, images=480, reef=True, val_images=60),
                Refinement(12, 0.0005, imgsz=416, mosaic=1.0, images=960, reef=True, val_images=60),
                Refinement(8, 0.0005, imgsz=416, mosaic=1.0, images=1440, reef=True, val_images=60,
                           frames=HARD_FRAMES),
            ),
            serve_env=(
                "CONF_THRESHOLD=0.1",
                "REFINE_CORNERS=true",
                "FIT_FRAME_BARS=true",
                "RETRY_THRESHOLD=0.01",
            ),
        ),
        DemoModel(
            "coralseg", "segment", GENERA, 320, 160, 30, 10, 2, "pth-yolo-coralsegv4",
            init_from="gridpose",
            refinements=(
                Refinement(25, 0.001, mosaic=1.0),
                Refinement(6, 0.0005, mosaic=1.0, images=320),
            ),
            serve_env=("CONF_THRESHOLD=0.4",),
        ),
    )
}  # fmt: skip
"""The demo models, in training order."""


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


TRAIN_ARGS: dict[str, Any] = {
    "batch": 4,
    "nbs": 4,
    "workers": 2,
    "device": "cpu",
    "seed": 0,
    "deterministic": True,
    "pretrained": False,
    "amp": False,
    "plots": False,
    "close_mosaic": 5,
    "patience": 1000,
    "degrees": 0.0,
    "cache": "ram",
    "verbose": False,
}
"""Arguments every demo model is trained with (besides data, epochs and imgsz).

``nbs`` (ultralytics' nominal batch) equals ``batch``: with its default of 64, gradients would be
accumulated over 64 images, and 160 photos an epoch would make 2.5 optimizer steps; a network
trained from scratch learned nothing in 15 such epochs. Batches of 4 give 40 steps an epoch.
"""


def train_model(
    model: DemoModel,
    work: Path,
    output: Path,
    *,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Draw the data set, train ``model``, copy its best.pt; return its manifest entry."""
    from ultralytics import YOLO

    from quadratseg_handlers.backends.offline import configure_ultralytics
    from quadratseg_handlers.demo.tinymodels.yolo import CONFIGS

    start = output / MODELS[model.init_from].file if model.init_from else None
    if start is not None and not start.is_file():
        raise ValueError(f"{model.name} starts from {start}: train {model.init_from} first")
    configure_ultralytics()
    data = write_dataset(model, work / model.name / "data", log)
    started = time.perf_counter()
    yolo = YOLO(CONFIGS[model.task])
    epochs = model.epochs if epochs is None else epochs
    yolo.train(
        data=str(data),
        epochs=epochs,
        imgsz=model.imgsz,
        project=str(work / model.name),
        name="run",
        exist_ok=True,
        **{**TRAIN_ARGS, "pretrained": str(start) if start else False},
    )
    seconds = time.perf_counter() - started
    best = work / model.name / "run" / "weights" / "best.pt"
    target = output / model.file
    output.mkdir(parents=True, exist_ok=True)
    target.write_bytes(best.read_bytes())
    summary = _validate(target, data, model.imgsz)
    log(f"{model.name}: trained {epochs} epochs in {seconds / 60:.1f} min; {summary}")
    return {
        "file": model.file,
        "function": model.function,
        "task": model.task,
        "architecture": CONFIGS[model.task],
        "names": list(model.names),
        "imgsz": model.imgsz,
        "epochs": epochs,
        "train_seeds": [model.train_seeds.start, model.train_seeds.stop - 1],
        "val_seeds": [model.val_seeds.start, model.val_seeds.stop - 1],
        "train_args": TRAIN_ARGS,
        "initialised_from": (
            {"file": start.name, "sha256": sha256(start)} if start else "random (from scratch)"
        ),
        "train_minutes": round(seconds / 60, 1),
        "validation": summary,
        "sha256": sha256(target),
        "bytes": target.stat().st_size,
    }


def refine_model(
    model: DemoModel,
    step: int,
    work: Path,
    output: Path,
    log: Callable[[str], None] = print,
    reef: ReefTextures | None = None,
) -> dict[str, Any]:
    """Run ``model``'s refinement ``step`` from its weights in ``output``; replace them and
    return its updated manifest entry (the run appended to its ``refinements``). A run over
    real reef draws from ``reef``'s training sources (the held-out ones never)."""
    from ultralytics import YOLO

    from quadratseg_handlers.demo.tinymodels.yolo import CONFIGS

    refinement = model.refinements[step]
    args = refinement.args(model.imgsz)
    target = output / model.file
    entry: dict[str, Any] = read_manifest(output)["models"][model.name]
    drawn = refinement.data_model(model)
    folder = "data" if drawn is model else f"data-{drawn.train_images}"
    textures = None
    if refinement.reef:
        if reef is None:
            raise ValueError(f"{model.name} run {step + 1} draws over real reef: no textures")
        textures = reef.training()
        folder = f"data-reef{step + 1}-{drawn.train_images}"
    start = {"file": target.name, "sha256": sha256(target)}
    data = write_dataset(drawn, work / model.name / folder, log, textures, refinement.frames)
    started = time.perf_counter()
    YOLO(CONFIGS[model.task]).train(
        data=str(data),
        epochs=refinement.epochs,
        project=str(work / model.name),
        name=f"refine{step + 1}",
        exist_ok=True,
        **{**TRAIN_ARGS, **args, "pretrained": str(target)},
    )
    seconds = time.perf_counter() - started
    best = work / model.name / f"refine{step + 1}" / "weights" / "best.pt"
    target.write_bytes(best.read_bytes())
    summary = _validate(target, data, int(args["imgsz"]))
    log(f"{model.name}: refined {refinement.epochs} epochs in {seconds / 60:.1f} min; {summary}")
    runs = entry.get("refinements", [])[:step]
    run: dict[str, Any] = {
        "epochs": refinement.epochs,
        "train_images": drawn.train_images,
        "args": args,
        "minutes": round(seconds / 60, 1),
        "validation_before": entry["validation"],
    }
    if textures is not None:
        run.update(
            world=f"over real reef; 1 in {REEF_DRAWN_SHARE} photos from the drawn world",
            initialised_from=start,
            val_images=drawn.val_images,
            train_seeds=[drawn.train_seeds.start, drawn.train_seeds.stop - 1],
            val_seeds=[drawn.val_seeds.start, drawn.val_seeds.stop - 1],
        )
        if refinement.frames:
            run["frames"] = list(refinement.frames)
        entry["real_photos"] = {
            "textures": "XL-SHAO/CoralConditionDataset coral_images (MIT), commit 5e9295b69ec2",
            "sources_seen": list(textures.sources),
            "sources_held_out": list(HELD_OUT_SOURCES),
        }
    runs.append(run)
    entry.update(refinements=runs, validation=summary, sha256=sha256(target))
    entry["bytes"] = target.stat().st_size
    return entry


def _validate(weights: Path, data: Path, imgsz: int) -> dict[str, float]:
    """ultralytics' validation metrics of ``weights`` on the data set's val split."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(
        data=str(data), imgsz=imgsz, device="cpu", plots=False, verbose=False, workers=0
    )
    return {key: round(float(value), 4) for key, value in metrics.results_dict.items()}


def _record(output: Path, name: str, entry: dict[str, Any]) -> Path:
    """Write one model's entry into the manifest (re-read first: runs may overlap)."""
    path = output / MANIFEST
    manifest = read_manifest(output) if path.exists() else {"models": {}}
    manifest["models"][name] = entry
    manifest["machine"] = f"{platform.machine()}, {_cpu_count()} CPU cores, no GPU"
    manifest["test_seeds_from"] = TEST_SEEDS
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def train_demo_models(
    output: Path = DEFAULT_FOLDER,
    work: Path | None = None,
    *,
    only: list[str] | None = None,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
    reef: Path | None = None,
) -> Path:
    """Train the demo models (``only`` some of them) into ``output``; update its manifest.
    Runs over real reef need the ``reef`` textures folder; without it they are skipped."""
    import tempfile

    names = only or list(MODELS)
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise ValueError(f"unknown demo model {unknown[0]!r}; expected one of {', '.join(MODELS)}")
    manifest_path = output / MANIFEST
    textures = ReefTextures.from_folder(reef) if reef else None
    with tempfile.TemporaryDirectory(prefix="quadratseg-train-") as temporary:
        folder = Path(work) if work else Path(temporary)
        for name in names:
            model = MODELS[name]
            _record(output, name, train_model(model, folder, output, epochs=epochs, log=log))
            for step in range(len(model.refinements) if epochs is None else 0):
                if model.refinements[step].reef and textures is None:
                    log(f"{name}: run {step + 1} skipped: it draws over real reef (no textures)")
                    continue
                entry = refine_model(model, step, folder, output, log, textures)
                _record(output, name, entry)
    return manifest_path


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class DemoModelsError(RuntimeError):
    """The demo models are missing or do not match their manifest."""


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, parsed."""
    path = folder / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise DemoModelsError(f"{path}: no manifest; {MANIFEST_HELP}") from None
    except (OSError, ValueError) as error:
        raise DemoModelsError(f"{path}: not a readable manifest ({error})") from None
    return manifest


def verified_models(folder: Path = DEFAULT_FOLDER) -> dict[str, Path]:
    """Each demo model's weights file, checked against the manifest's SHA-256."""
    manifest = read_manifest(folder)
    found = {}
    for name in MODELS:
        entry = manifest.get("models", {}).get(name)
        if entry is None:
            raise DemoModelsError(f"{folder / MANIFEST}: no entry for {name}; {MANIFEST_HELP}")
        path = folder / entry["file"]
        if not path.is_file():
            raise DemoModelsError(f"{path}: missing; {MANIFEST_HELP}")
        if sha256(path) != entry["sha256"]:
            raise DemoModelsError(f"{path}: SHA-256 differs from {MANIFEST}; retrain or restore it")
        found[name] = path
    return found

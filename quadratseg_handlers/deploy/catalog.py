"""The function catalogue: every deployable Nuclio function, described as data.

One :class:`FunctionSpec` per function says everything the packager, the function.yaml
renderer, the bundle runner and the tests need: the handler class, the files the deployment
guide's ``deploy_as_zip.sh`` takes (in its positional order) with their standard names in the
bundle, fixed environment values, resources, images and install steps. Nothing here imports a
model library; handlers are named by import path.

Adding a function is one entry in :data:`FUNCTIONS`; ``scripts/update_functions.py`` then
writes its ``functions/<name>/`` folder. :func:`find` looks a function up by either name and
:func:`handler_class` imports its handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from quadratseg_handlers.core.messages import plural
from quadratseg_handlers.core.references import module_file, resolve, split_reference
from quadratseg_handlers.deploy.function_yaml import EVENT_TIMEOUT

if TYPE_CHECKING:
    from quadratseg_handlers.core.config import Setting
    from quadratseg_handlers.core.contract import ModelHandler

FunctionKind = Literal["detector", "inpainter"]
"""``detector``: CVAT's request (an image) and a shape list back, the spec from the weights.
``inpainter``: an image and a mask in, an image back (``{"image": b64}``), no labels."""

CPU_BASE_IMAGE = "python:3.11-bookworm"
"""Python 3.11 with a C compiler (mmcv builds from source); the runtime is ``python:3.11``."""

GPU_BASE_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
"""CUDA user space and Python 3.11 with pip; its torch is replaced by the pinned torch."""

BIG_LAMA_URL = (
    "https://github.com/enesmsahin/simple-lama-inpainting/releases/download/v0.1.0/big-lama.pt"
)
"""Where simple-lama-inpainting itself downloads big-lama.pt from."""


@dataclass(frozen=True)
class BundleFile:
    """One file a function needs, as the user gives it and as the bundle holds it."""

    argument: str
    """Name on the command line: the positional slot and the ``--<argument>`` option."""

    filename: str
    """Standard name in the bundle; a file with another allowed suffix keeps this stem."""

    env: str
    """The setting (environment variable) that points the handler at the file."""

    suffixes: tuple[str, ...]
    """Allowed file name extensions, lower case, the first one being the standard name's."""

    help: str
    """What the file is, for usage lines and error messages."""

    default: str | None = None
    """``module:relative/path`` of a file shipped with the library, used when none is given."""

    fetch_url: str | None = None
    """Downloaded into the image at build time when no file is given."""

    unused_when: tuple[tuple[str, str], ...] = ()
    """Settings (name, value) with which the function never reads this file: a bundle
    packaged with one of them neither holds nor fetches it unless it is given."""

    refused: tuple[tuple[str, str], ...] = ()
    """Suffixes the setting accepts but a bundle cannot hold, each with the reason."""

    @property
    def required(self) -> bool:
        """Whether the user must give this file (no shipped default, nothing to fetch)."""
        return self.default is None and self.fetch_url is None

    @property
    def metavar(self) -> str:
        """The positional argument as usage lines write it: ``SEGFORMER_WEIGHTS``."""
        return self.argument.upper().replace("-", "_")

    def bundle_name(self, suffix: str | None = None) -> str:
        """The file's name in the bundle for a given (allowed) suffix."""
        stem = Path(self.filename).stem
        return f"{stem}{(suffix or self.suffixes[0]).lower()}"

    def default_path(self) -> Path:
        """The shipped default file (``default`` resolved next to its module)."""
        if self.default is None:
            raise ValueError(f"{self.argument} has no shipped default")
        return module_file(self.default)


@dataclass(frozen=True)
class PipStep:
    """A pip install that cannot be part of the pinned requirements (own flags or order)."""

    packages: tuple[str, ...]
    """Requirements as written; a package pinned in constraints.txt takes that pin."""

    options: tuple[str, ...] = ()
    """pip options, e.g. ``--no-deps`` or ``--no-build-isolation``."""

    env: str = ""
    """Environment assignments for the command, e.g. ``MMCV_WITH_OPS=1``."""


@dataclass(frozen=True)
class FunctionSpec:
    """One deployable function: handler, files, environment and image, as plain data."""

    name: str
    """Nuclio function name, e.g. ``pth-yolo-coralsegv4``."""

    model: str
    """Short name the command line and the guide's scripts use, e.g. ``coralsegv4``."""

    handler: str
    """``module:Class`` of the handler."""

    title: str
    """Human name CVAT shows (``metadata.annotations.name``)."""

    description: str
    """One sentence for ``spec.description`` (CVAT lists it)."""

    framework: str
    """``metadata.annotations.framework``."""

    extra: str | None
    """The library's pip extra the function installs (None: the core only)."""

    files: tuple[BundleFile, ...] = ()
    """Files in the guide's positional order."""

    env: tuple[tuple[str, str], ...] = ()
    """Fixed environment values written into function.yaml (settings of the handler)."""

    kind: FunctionKind = "detector"
    event_timeout: str = EVENT_TIMEOUT
    """``spec.eventTimeout``: the longest request, above the slowest measured CPU call."""
    memory: str = "8Gi"
    """``resources.requests.memory``."""

    apt_packages: tuple[str, ...] = ()
    """System packages the image needs (e.g. libGL for opencv-python)."""

    pip_steps: tuple[PipStep, ...] = ()
    """Installs run after the pinned requirements, in order."""

    gpu_base_image: str = GPU_BASE_IMAGE
    cpu_base_image: str = CPU_BASE_IMAGE

    cpu_warning: str | None = None
    """Why a CPU bundle of this function is not usable from CVAT (printed when packaging one)."""

    weights_title: str | None = None
    """The name CVAT lists a packaged function under, from its weights: a format string of
    ``{family}`` (the architecture, :meth:`ModelHandler.model_family`), ``{count}`` and
    ``{names}`` (its labels); None: ``title`` whatever the weights."""
    weights_description: str | None = None
    """``spec.description`` from the weights, the same fields; None: ``description``."""

    def described_by(self, names: Sequence[str], family: str | None) -> FunctionSpec:
        """This function named and described from its weights' labels and architecture (the
        catalogue's ``title`` is the reference model's: a lab's own weights differ)."""
        if not names:
            return self
        fields = {
            "family": family or self.framework,
            "count": plural(len(names), "label"),
            "names": ", ".join(names) if len(names) <= 8 else ", ".join(names[:8]) + ", ...",
        }
        return replace(
            self,
            title=self.weights_title.format(**fields) if self.weights_title else self.title,
            description=(
                self.weights_description.format(**fields)
                if self.weights_description
                else self.description
            ),
        )

    @property
    def module_name(self) -> str:
        """The module that holds the handler class."""
        return split_reference(self.handler)[0]

    @property
    def class_name(self) -> str:
        """The handler's class name."""
        return split_reference(self.handler)[1]

    def file(self, argument: str) -> BundleFile:
        """The file with this argument name (KeyError when the function has none)."""
        for bundle_file in self.files:
            if bundle_file.argument == argument:
                return bundle_file
        raise KeyError(argument)

    def usage(self) -> str:
        """The positional usage: ``coralscopsegformer SEGFORMER_WEIGHTS SEGFORMER_CONFIG ...``."""
        words = [self.model]
        for bundle_file in self.files:
            metavar = bundle_file.metavar
            words.append(metavar if bundle_file.required else f"[{metavar}]")
        return " ".join(words)


YOLO_IMAGE_PACKAGES = ("libgl1", "libglib2.0-0")
"""ultralytics depends on opencv-python (not headless), which needs libGL and GLib."""


TENSORRT_REFUSED = (
    "a TensorRT engine is not packaged: it runs only on the GPU model and TensorRT version "
    "that built it, and the bundle's image installs no TensorRT; package best.pt, or the "
    ".onnx export with --gpu (onnxruntime-gpu)"
)


def _yolo_weights(help_text: str) -> BundleFile:
    return BundleFile(
        "weights",
        "best.pt",
        "MODEL_PATH",
        (".pt", ".onnx"),
        help_text,
        refused=((".engine", TENSORRT_REFUSED),),
    )


def _template(filename: str, points: int) -> BundleFile:
    return BundleFile(
        "template",
        filename,
        "TEMPLATE_PATH",
        (".npy",),
        f"keypoint template, ({points}, 2) normalised coordinates",
        default=f"quadratseg_handlers:data/{filename}",
    )


def _coral_segmentation(
    model: str, handler: str, title: str, description: str, stem: str, what: str
) -> FunctionSpec:
    """A YOLO coral-segmentation function: the two differ only by name and weights; a
    bundle's name and description (``stem``, ``what``) come from its weights."""
    return FunctionSpec(
        name=f"pth-yolo-{model}",
        model=model,
        handler=f"quadratseg_handlers.handlers.yolo:{handler}",
        title=title,
        description=description,
        weights_title=f"{stem} ({{family}}, {{count}})",
        weights_description=f"{what} with {{family}}: {{count}} ({{names}})",
        framework="pytorch",
        extra="yolo",
        files=(_yolo_weights("YOLO segmentation weights"),),
        env=(("CONF_THRESHOLD", "0.25"), ("IOU_THRESHOLD", "0.5"), ("CONVERT_TO_POLYLINE", "true")),
        apt_packages=YOLO_IMAGE_PACKAGES,
    )


FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        _coral_segmentation(
            "coralsegv4",
            "CoralSegV4Handler",
            "CoralSeg v4 (YOLO11-seg, CRIOBE genera)",
            "Coral genus instance segmentation of CRIOBE quadrats with YOLO11-seg",
            "CoralSeg v4",
            "Coral instance segmentation",
        ),
        _coral_segmentation(
            "coralsegbanggai",
            "CoralSegBanggaiHandler",
            "CoralSeg Banggai (YOLO11-seg, Banggai classes)",
            "Coral instance segmentation of Banggai quadrats with YOLO11-seg",
            "CoralSeg Banggai",
            "Coral instance segmentation",
        ),
        FunctionSpec(
            name="pth-mmseg-coralscopsegformer",
            model="coralscopsegformer",
            handler="quadratseg_handlers.handlers.coralscop:CoralScopSegformerHandler",
            title="CoralSCoP + SegFormer (DINOv2 genera, SAM instances)",
            description="Coral instances from CoralSCoP (SAM ViT-B) labelled by a DINOv2 SegFormer",
            weights_title="CoralSCoP + SegFormer ({count}, SAM instances)",
            weights_description=(
                "Coral instances from CoralSCoP (SAM ViT-B) labelled by a SegFormer: "
                "{count} ({names})"
            ),
            framework="pytorch",
            extra="mmseg",
            files=(
                BundleFile(
                    "segformer-weights",
                    "best_segformer.pth",
                    "SEGFORMER_WEIGHTS",
                    (".pth",),
                    "SegFormer checkpoint (MMSegmentation)",
                ),
                BundleFile(
                    "segformer-config",
                    "best_segformer_config.py",
                    "SEGFORMER_CONFIG",
                    (".py",),
                    "SegFormer config (MMSegmentation)",
                ),
                BundleFile(
                    "sam-weights",
                    "vit_b_coralscop.pth",
                    "SAM_WEIGHTS",
                    (".pth",),
                    "CoralSCoP (SAM ViT-B) checkpoint",
                ),
            ),
            env=(("CONF_THRESHOLD", "0.5"),),
            # 338 s measured for one 1024 px photo on CPU at the shipped SAM settings
            # (docs/coralscop.md); QUADRATSEG's bridge waits 900 s.
            event_timeout="900s",
            memory="16Gi",
            cpu_warning=(
                "a CPU bundle of coralscopsegformer needs about ten minutes per quadrat (SAM ViT-B "
                "everything mode), longer than CVAT's 120 s timeout: package it with --gpu for "
                "CVAT, keep this one for local tests (docs/cvat.md)"
            ),
            apt_packages=(*YOLO_IMAGE_PACKAGES, "build-essential"),
            pip_steps=(
                PipStep(("setuptools<80", "wheel", "ninja")),
                PipStep(("mmcv",), ("--no-build-isolation",), "MMCV_WITH_OPS=1 MAX_JOBS=4"),
            ),
        ),
        FunctionSpec(
            name="pth-yolo-gridcorners",
            model="gridcorners",
            handler="quadratseg_handlers.handlers.grid:GridCornersHandler",
            title="Quadrat corners (YOLO, 4-point skeleton)",
            description="The 4 corners of the quadrat frame as one skeleton, template-matched",
            framework="pytorch",
            extra="yolo",
            files=(
                _yolo_weights("YOLO detection (or pose) weights"),
                _template("kp_template_corners.npy", 4),
            ),
            env=(("USE_TEMPLATE_MATCHING", "true"),),
            apt_packages=YOLO_IMAGE_PACKAGES,
        ),
        FunctionSpec(
            name="pth-yolo-gridpose",
            model="gridpose",
            handler="quadratseg_handlers.handlers.grid:GridPoseHandler",
            title="Quadrat grid points (YOLO, 117-point skeleton)",
            description="The 117 grid-string intersections as one skeleton, template-matched",
            framework="pytorch",
            extra="yolo",
            files=(
                _yolo_weights("YOLO detection (or pose) weights"),
                _template("kp_template.npy", 117),
            ),
            env=(("USE_TEMPLATE_MATCHING", "true"),),
            apt_packages=YOLO_IMAGE_PACKAGES,
        ),
        FunctionSpec(
            name="pth-lama",
            model="lama",
            handler="quadratseg_handlers.handlers.lama:LamaHandler",
            title="Grid removal (LaMa inpainting)",
            description="Paints the grid string out of a quadrat image with big-lama",
            framework="pytorch",
            extra="lama",
            kind="inpainter",
            files=(
                BundleFile(
                    "lama-model",
                    "big-lama.pt",
                    "LAMA_MODEL",
                    (".pt",),
                    "big-lama TorchScript model",
                    fetch_url=BIG_LAMA_URL,
                    unused_when=(("INPAINT_BACKEND", "opencv"),),
                ),
            ),
            env=(("GRID_LINE_WIDTH", "8"),),
            pip_steps=(PipStep(("simple-lama-inpainting==0.1.2",), ("--no-deps",)),),
        ),
        FunctionSpec(
            name="example-blobs",
            model="blobs",
            handler="quadratseg_handlers.handlers.blobs:BlobHandler",
            title="Example blobs (bright regions, no weights)",
            description="Bright regions as polygons: the example function, needs no weights",
            framework="opencv",
            extra=None,
            memory="512Mi",
        ),
    )
}
"""Function name -> its spec."""


def find(name: str) -> FunctionSpec:
    """A function by short model name or full function name (KeyError lists valid names)."""
    for spec in FUNCTIONS.values():
        if name in (spec.model, spec.name):
            return spec
    raise KeyError(
        f"unknown model {name!r}; valid: {', '.join(spec.model for spec in FUNCTIONS.values())}"
    )


def handler_class(name: str) -> type[ModelHandler]:
    """Import the handler class of a function, by short or full name (KeyError lists both)."""
    handler: type[ModelHandler] = resolve(find(name).handler)
    return handler


def declared_settings() -> dict[str, list[Setting]]:
    """Every catalogued function's settings, by function name (imports each handler module)."""
    return {name: handler_class(name).declared_settings() for name in FUNCTIONS}

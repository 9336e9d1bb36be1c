"""The torch builds a bundle's image can install: CPU, PyPI's CUDA build, or one CUDA build of
PyTorch's wheel index (``quadratseg package --cuda 12.6``) for hosts whose NVIDIA driver is
older than PyPI's build needs.

The CUDA builds PyTorch publishes for each torch release are recorded here (no network at
packaging or test time). Source: PyTorch's release compatibility matrix, RELEASE.md, as added
for 2.13 in https://github.com/pytorch/pytorch/pull/187075 (stable CUDA 12.6 and 13.0,
experimental 13.2; CUDA 12.8 left the matrix in 2.12, pytorch/pytorch#178665). The drivers are
NVIDIA's: with minor-version compatibility a CUDA 12.x build runs on a Linux driver >= 525.60.13
and a 13.x build on >= 580 (https://docs.nvidia.com/deploy/cuda-compatibility/
minor-version-compatibility.html); the driver each toolkit ships with gives every feature.
"""

from __future__ import annotations

from dataclasses import dataclass

TORCH_WHEEL_INDEX = "https://download.pytorch.org/whl"
"""PyTorch's wheel index; ``/cpu``, ``/cu126``... below it hold one build each."""
TORCH_PACKAGES = ("torch", "torchvision")
"""The packages PyTorch builds per CUDA version (pinned at ``==VERSION+cu126``)."""


@dataclass(frozen=True)
class CudaBuild:
    """One CUDA build of torch on PyTorch's index, and the NVIDIA drivers it runs on."""

    cuda: str
    """``12.6``: the CUDA version ``--cuda`` takes."""
    min_driver: str
    """The oldest Linux driver that runs it (minor-version compatibility)."""
    toolkit_driver: str
    """The driver the CUDA toolkit ships with: every feature (e.g. PTX JIT) works from it."""
    experimental: bool = False

    @property
    def label(self) -> str:
        """The wheels' local version label and the index folder: ``cu126``."""
        return "cu" + self.cuda.replace(".", "")

    @property
    def index_url(self) -> str:
        """The wheel index that holds this build."""
        return f"{TORCH_WHEEL_INDEX}/{self.label}"


PUBLISHED_CUDA: dict[str, tuple[CudaBuild, ...]] = {
    "2.13.0": (
        CudaBuild("12.6", min_driver="525.60.13", toolkit_driver="560.35.05"),
        CudaBuild("13.0", min_driver="580.65.06", toolkit_driver="580.95.05"),
        CudaBuild("13.2", min_driver="580.65.06", toolkit_driver="595.58.03", experimental=True),
    ),
}
"""torch version -> the CUDA builds PyTorch publishes for it on its wheel index."""

PYPI_CUDA = {"2.13.0": "13.0"}
"""torch version -> the CUDA version of PyPI's torch wheel (what ``--gpu`` alone installs)."""


def cuda_build(torch_version: str, cuda: str) -> CudaBuild:
    """The recorded CUDA build ``cuda`` of ``torch_version``; ValueError naming those that
    exist when PyTorch publishes no such build."""
    builds = PUBLISHED_CUDA.get(torch_version)
    if builds is None:
        raise ValueError(
            f"--cuda {cuda}: no record of the CUDA builds of torch {torch_version} "
            f"(recorded: torch {', '.join(PUBLISHED_CUDA)}; "
            "add them to quadratseg_handlers/deploy/torch_builds.py)"
        )
    for build in builds:
        if build.cuda == cuda:
            return build
    published = ", ".join(build.cuda for build in builds)
    raise ValueError(
        f"--cuda {cuda}: torch {torch_version} has no CUDA {cuda} build on "
        f"{TORCH_WHEEL_INDEX} (published: {published}); a CUDA 12 driver "
        f"(>= {builds[0].min_driver}) runs --cuda {builds[0].cuda}"
    )


def requested_build(torch_version: str | None, cuda: str | None) -> CudaBuild | None:
    """The CUDA build of the pinned torch that ``--cuda`` asks for (None without it);
    ValueError when PyTorch publishes none such or constraints.txt pins no torch."""
    if cuda is None:
        return None
    if torch_version is None:
        raise ValueError(f"--cuda {cuda}: constraints.txt pins no torch version")
    return cuda_build(torch_version, cuda)


def cuda_choices() -> list[str]:
    """Every CUDA version recorded for any torch release (the ``--cuda`` choices)."""
    return sorted({build.cuda for builds in PUBLISHED_CUDA.values() for build in builds})


def is_cuda_runtime_package(name: str) -> bool:
    """A CUDA library torch pins per build (``nvidia-cublas``, ``cuda-toolkit``...): its pin
    in constraints.txt belongs to PyPI's build, and another build brings its own."""
    return (name.startswith("nvidia-") and name != "nvidia-ml-py") or name.startswith("cuda-")

"""Instance segmentation handlers: instances (label, mask, score) -> CVAT polygons or masks.

The YOLO segmentation functions, the SegFormer + CoralSCoP function and the example blob
handler all produce instances; this base turns them into CVAT shapes the same way, with the
same settings, so the mask/polygon/confidence rules live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from quadratseg_handlers import cvat
from quadratseg_handlers.core.config import setting
from quadratseg_handlers.core.contract import BaseHandler, DetectorSettings
from quadratseg_handlers.cvat.shapes import Shape
from quadratseg_handlers.cvat.spec import LabelSpec


@dataclass
class Instance:
    """One detected object: its label, its mask (or a crop of it at ``origin``), its score."""

    label: str
    mask: np.ndarray
    score: float
    origin: tuple[int, int] = (0, 0)
    """(x, y) of the mask's top-left pixel in the image, when ``mask`` is a crop."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Further attributes for the shape (declared in the label spec)."""


@dataclass(frozen=True)
class SegmentationSettings(DetectorSettings):
    """How instances become shapes: every instance segmentation function reads these."""

    convert_to_polyline: bool = setting(
        True,
        "`true`: one CVAT polygon per connected part of each instance; `false`: CVAT mask "
        "shapes (holes kept) that also carry the outline polygon.",
    )
    polygon_tolerance: float = setting(
        1.0,
        "Polygon simplification tolerance in pixels (Douglas-Peucker); 0 keeps every contour "
        "point.",
        low=0.0,
        high=100.0,
    )
    min_area: int = setting(10, "Connected parts smaller than this many pixels are dropped.", low=0)


class InstanceHandler(BaseHandler[list[Instance]]):
    """A handler whose predictions are lists of :class:`Instance`; labels are ``class_names``."""

    settings_class = SegmentationSettings
    settings: SegmentationSettings
    extra_attributes: ClassVar[tuple[Mapping[str, object], ...]] = ()
    """Attribute specs added to every label after the confidence attribute."""

    class_names: list[str]
    """The labels this model can return, in class-index order (set by ``load_model``)."""

    @property
    def as_mask(self) -> bool:
        """Whether shapes are CVAT masks (CONVERT_TO_POLYLINE=false) rather than polygons."""
        return not self.settings.convert_to_polyline

    def to_shapes(self, prediction: list[Instance], image: np.ndarray) -> list[Shape]:
        """One shape per connected part of each instance; parts of one instance share a group."""
        shapes: list[Shape] = []
        for group, instance in enumerate(prediction, start=1):
            shapes += cvat.instance_shapes(
                instance.label,
                instance.mask,
                instance.score,
                as_mask=self.as_mask,
                origin=instance.origin,
                tolerance=self.settings.polygon_tolerance,
                min_area=self.settings.min_area,
                group_id=group,
                extra=instance.extra,
            )
        return shapes

    def labels(self) -> list[LabelSpec]:
        """A polygon (or mask) label with the confidence attribute per class name."""
        kind = "mask" if self.as_mask else "polygon"
        attributes = (cvat.CONFIDENCE_SPEC, *self.extra_attributes)
        return [cvat.label_spec(name, kind, attributes) for name in self.class_names]

"""Drawing a function's CVAT shapes on the image, so people can see whether the model is right.

Polygons, rectangles and masks are filled translucently in one colour per label and outlined;
skeleton nodes are drawn as numbered points joined by the edges of the label's svg (the
lattice of the grid functions); every scored shape shows its confidence; a legend lists the
labels with their counts, placed where it covers no caption and the least of the shapes
(captions are drawn last, over everything). The result has the input's size;
:func:`save_png` writes it atomically.
"""

from __future__ import annotations

import colorsys
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from quadratseg_handlers.cvat.masks import MaskValues
from quadratseg_handlers.cvat.shapes import Shape
from quadratseg_handlers.cvat.spec import LabelSpec, skeleton_label_edges
from quadratseg_handlers.deploy.archive import write_atomically

RGB = tuple[int, int, int]

PALETTE: tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip
"""Twenty colours that stay distinguishable on photographs (Trubetskoy's list)."""

FILL_ALPHA = 100

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def hashed_colour(name: str) -> RGB:
    """A stable bright colour for a label the spec does not list."""
    hue = (zlib.crc32(name.encode("utf-8")) % 360) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def label_colours(names: Iterable[str]) -> dict[str, RGB]:
    """One colour per label name, in spec order: the palette first, then hashed colours."""
    colours: dict[str, RGB] = {}
    for name in names:
        if name not in colours:
            index = len(colours)
            colours[name] = PALETTE[index] if index < len(PALETTE) else hashed_colour(name)
    return colours


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError, ValueError):
        return ImageFont.load_default()


def _xy(points: Any) -> list[tuple[float, float]]:
    """(x, y) pairs from a flat coordinate list; empty when it is not one."""
    if not isinstance(points, list) or len(points) < 2 or len(points) % 2:
        return []
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in points):
        return []
    return [(float(points[i]), float(points[i + 1])) for i in range(0, len(points), 2)]


def mask_bitmap(shape: Mapping[str, Any]) -> tuple[np.ndarray, tuple[int, int]] | None:
    """A CVAT mask shape's 0/1 bitmap and the (x, y) of its top-left pixel; None if malformed."""
    data = shape.get("mask")
    if isinstance(data, MaskValues):
        return data.crop.astype(np.uint8), (data.box[0], data.box[1])
    if not isinstance(data, list) or len(data) < 5:
        return None
    xtl, ytl, xbr, ybr = (int(v) for v in data[-4:])
    width, height = xbr - xtl + 1, ybr - ytl + 1
    if width <= 0 or height <= 0 or len(data) - 4 != width * height:
        return None
    return np.asarray(data[:-4], dtype=np.uint8).reshape(height, width), (xtl, ytl)


def confidence_text(shape: Mapping[str, Any]) -> str:
    """The shape's confidence as people read it ("87%"), or its raw value when malformed."""
    value = shape.get("confidence")
    if value is None:
        for attribute in shape.get("attributes") or []:
            if isinstance(attribute, dict) and attribute.get("name") == "confidence":
                value = attribute.get("value")
    if value is None:
        return ""
    if isinstance(value, str) and value.isnumeric():
        return f"{value}%"
    return repr(value)


class _Canvas:
    """The image being drawn on: a translucent fill layer and an opaque line/text layer."""

    def __init__(self, image: np.ndarray) -> None:
        self.base = Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("RGBA")
        self.fill = Image.new("RGBA", self.base.size, (0, 0, 0, 0))
        self.lines = Image.new("RGBA", self.base.size, (0, 0, 0, 0))
        self.fill_draw = ImageDraw.Draw(self.fill)
        self.draw = ImageDraw.Draw(self.lines)
        short = min(self.base.size)
        self.width = max(1, round(short / 400))
        self.radius = max(2, round(short / 180))
        self.font = _font(max(10, round(short / 55)))
        self.small_font = _font(max(8, round(short / 75)))
        self.captions: list[tuple[tuple[float, float, float, float], str, RGB, Font]] = []
        """Captions to draw last (box, text, colour, font): nothing drawn later hides them."""

    def text(self, xy: tuple[float, float], text: str, colour: RGB, small: bool = False) -> None:
        """Text on a dark box, kept inside the image (drawn by :meth:`draw_captions`)."""
        font = self.small_font if small else self.font
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=font)
        width, height = right - left + 4, bottom - top + 4
        x = min(max(0.0, xy[0]), self.base.width - width)
        y = min(max(0.0, xy[1] - height), self.base.height - height)
        self.captions.append(((x, y, x + width, y + height), text, colour, font))

    def draw_captions(self) -> None:
        """Draw the captions, over the shapes and the legend."""
        for (x, y, x2, y2), text, colour, font in self.captions:
            left, top, _, _ = self.draw.textbbox((0, 0), text, font=font)
            self.draw.rectangle((x, y, x2, y2), fill=(0, 0, 0, 170))
            self.draw.text((x + 2 - left, y + 2 - top), text, fill=(*colour, 255), font=font)

    def result(self) -> np.ndarray:
        image = Image.alpha_composite(Image.alpha_composite(self.base, self.fill), self.lines)
        return np.asarray(image.convert("RGB"))


def _shape_caption(shape: Mapping[str, Any]) -> str:
    confidence = confidence_text(shape)
    return f"{shape.get('label')} {confidence}".strip()


def _draw_region(canvas: _Canvas, shape: Mapping[str, Any], colour: RGB) -> bool:
    kind = shape.get("type")
    points = _xy(shape.get("points"))
    fill = (*colour, FILL_ALPHA)
    outline = (*colour, 255)
    if kind == "mask":
        decoded = mask_bitmap(shape)
        if decoded is None:
            return False
        bitmap, origin = decoded
        stencil = Image.fromarray(bitmap * 255)
        canvas.fill.paste(Image.new("RGBA", stencil.size, fill), origin, stencil)
        if len(points) >= 3:
            canvas.draw.polygon(points, outline=outline, width=canvas.width)
        anchor = (float(origin[0]), float(origin[1]))
    elif kind == "rectangle" and len(points) == 2:
        (x1, y1), (x2, y2) = points
        box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        canvas.fill_draw.rectangle(box, fill=fill)
        canvas.draw.rectangle(box, outline=outline, width=canvas.width)
        anchor = (box[0], box[1])
    elif kind == "polygon" and len(points) >= 3:
        canvas.fill_draw.polygon(points, fill=fill)
        canvas.draw.polygon(points, outline=outline, width=canvas.width)
        anchor = (min(p[0] for p in points), min(p[1] for p in points))
    elif kind == "polyline" and len(points) >= 2:
        canvas.draw.line(points, fill=outline, width=canvas.width * 2, joint="curve")
        anchor = points[0]
    elif kind == "points" and points:
        for x, y in points:
            r = canvas.radius
            canvas.draw.ellipse((x - r, y - r, x + r, y + r), fill=outline, outline=(0, 0, 0, 255))
        anchor = points[0]
    else:
        return False
    canvas.text(anchor, _shape_caption(shape), colour)
    return True


def _draw_skeleton(
    canvas: _Canvas, shape: Mapping[str, Any], colour: RGB, edges: Sequence[tuple[str, str]]
) -> bool:
    nodes: dict[str, tuple[float, float]] = {}
    scores = []
    for element in shape.get("elements") or []:
        if not isinstance(element, dict) or element.get("outside"):
            continue
        points = _xy(element.get("points"))
        if len(points) == 1:
            nodes[str(element.get("label"))] = points[0]
            text = confidence_text(element)
            if text.endswith("%"):
                scores.append(int(text[:-1]))
    if not nodes:
        return False
    line = (*colour, 255)
    for a, b in edges:
        if a in nodes and b in nodes:
            canvas.draw.line((nodes[a], nodes[b]), fill=line, width=canvas.width)
    r = canvas.radius
    for name, (x, y) in nodes.items():
        canvas.draw.ellipse((x - r, y - r, x + r, y + r), fill=line, outline=(0, 0, 0, 255))
        canvas.draw.text(
            (x + r + 1, y + r + 1), name, fill=(255, 255, 255, 255), font=canvas.small_font,
            stroke_width=1, stroke_fill=(0, 0, 0, 255),
        )  # fmt: skip
    caption = _shape_caption(shape)
    if not confidence_text(shape) and scores:
        caption = f"{shape.get('label')} mean {sum(scores) / len(scores):.0f}%"
    xs, ys = zip(*nodes.values(), strict=True)
    canvas.text((min(xs), min(ys) - r), caption, colour)
    return True


def _emptiest_corner(canvas: _Canvas, width: int, height: int) -> tuple[float, float]:
    """Where along the image's border a legend of this size covers no caption and hides the
    least of the shapes (fills, lines and points): the corners first, then the edges."""
    alpha = np.asarray(canvas.fill.getchannel("A"), dtype=np.uint32)
    alpha = alpha + np.asarray(canvas.lines.getchannel("A"), dtype=np.uint32)
    rows, cols = alpha.shape
    margin = 6
    right, bottom = max(0, cols - width - margin), max(0, rows - height - margin)
    spots = [(margin, margin), (right, margin), (margin, bottom), (right, bottom)]
    for step in range(1, 8):
        x, y = right * step // 8, bottom * step // 8
        spots += [(x, margin), (x, bottom), (margin, y), (right, y)]

    def caption_overlap(spot: tuple[int, int]) -> float:
        x, y = spot
        return sum(
            max(0.0, min(x + width, x2) - max(x, x1)) * max(0.0, min(y + height, y2) - max(y, y1))
            for (x1, y1, x2, y2), *_ in canvas.captions
        )

    def covered(spot: tuple[int, int]) -> tuple[float, int]:
        x, y = max(0, spot[0]), max(0, spot[1])
        return caption_overlap(spot), int(alpha[y : y + height + 1, x : x + width + 1].sum())

    x, y = min(spots, key=covered)
    return float(max(0, x)), float(max(0, y))


def _draw_legend(
    canvas: _Canvas, counts: Counter[str], colours: Mapping[str, RGB], lines: Sequence[str]
) -> None:
    font = canvas.font
    rows = [(name, f"{name} ({count})") for name, count in counts.items()]
    texts = list(lines) + [text for _, text in rows]
    if not texts:
        return
    boxes = [canvas.draw.textbbox((0, 0), text, font=font) for text in texts]
    line_height = max(b[3] - b[1] for b in boxes) + 6
    swatch = line_height - 6
    width = max(b[2] - b[0] for b in boxes) + swatch + 16
    height = line_height * len(texts) + 8
    x0, y0 = _emptiest_corner(canvas, int(width), int(height))
    canvas.draw.rectangle((x0, y0, x0 + width, y0 + height), fill=(0, 0, 0, 180))
    y = y0 + 4
    for text in lines:
        canvas.draw.text((x0 + 6, y), text, fill=(255, 255, 255, 255), font=font)
        y += line_height
    for name, text in rows:
        colour = colours.get(name, hashed_colour(name))
        canvas.draw.rectangle((x0 + 6, y + 2, x0 + 6 + swatch, y + 2 + swatch), fill=(*colour, 255))
        canvas.draw.text((x0 + swatch + 12, y), text, fill=(255, 255, 255, 255), font=font)
        y += line_height


def draw_shapes(
    image: np.ndarray,
    shapes: Sequence[Shape],
    spec: Sequence[LabelSpec] | None = None,
    *,
    title: str | None = None,
) -> np.ndarray:
    """The image (RGB, same size) with ``shapes`` drawn on it and a legend.

    ``spec`` gives the label order (hence colours) and the skeleton edges; without it,
    colours follow the order labels appear in and skeletons are drawn without edges. Shapes
    that cannot be drawn (malformed geometry) are left out.
    """
    labels = {str(label.get("name")): label for label in spec or []}
    colours = label_colours(
        [*labels, *(str(s.get("label")) for s in shapes if isinstance(s, dict))]
    )
    canvas = _Canvas(image)
    counts: Counter[str] = Counter()
    tags: list[str] = []
    for shape in shapes:
        if not isinstance(shape, dict):
            continue
        name = str(shape.get("label"))
        colour = colours[name]
        if shape.get("type") == "tag":
            tags.append(f"tag: {_shape_caption(shape)}")
            continue
        if shape.get("type") == "skeleton":
            edges = skeleton_label_edges(labels.get(name, {}))
            drawn = _draw_skeleton(canvas, shape, colour, edges)
        else:
            drawn = _draw_region(canvas, shape, colour)
        if drawn:
            counts[name] += 1
    header = [title] if title else []
    _draw_legend(canvas, counts, colours, header + tags)
    canvas.draw_captions()
    return canvas.result()


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB array as PNG atomically (a temporary file in the folder, then renamed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(np.ascontiguousarray(image))
    write_atomically(target, lambda temporary: picture.save(temporary, format="PNG"), force=True)
    return target

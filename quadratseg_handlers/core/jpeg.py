"""Decoding a JPEG strictly: a file whose data is damaged or cut short is refused, not drawn.

OpenCV and PIL decode a JPEG whose scan ends early (an end marker written after a few bytes,
a header that claims 12000 x 8000 pixels over 600 bytes of data) by filling the missing part
with grey, and say nothing. libjpeg-turbo reports it as a warning; simplejpeg turns its
warnings into errors (``strict=True``). The decode is libjpeg-turbo's with OpenCV's settings
(accurate DCT, fancy upsampling), so its pixels are OpenCV's, byte for byte
(tests/core/test_decoding.py), and it is faster.
"""

from __future__ import annotations

import numpy as np
import simplejpeg

from quadratseg_handlers.core.messages import first_line

DAMAGED_WARNINGS = ("premature end", "bad huffman code", "bad arithmetic code", "instead of rst")
"""libjpeg's warnings (lower case) that mean pixels are missing from the file: the decoder
would fill them with grey and carry on. A JPEG that draws one is refused; other warnings
(extraneous bytes before a marker, which some cameras write) are decoded as before."""


class DamagedJpeg(ValueError):
    """A JPEG whose data is damaged or cut short: libjpeg's warning, one line."""


def has_end_marker(data: bytes) -> bool:
    """Whether the file ends with the JPEG end marker (trailing zero padding allowed)."""
    return data.rstrip(b"\0").endswith(b"\xff\xd9")


def strict_decode(data: bytes, factor: int, colorspace: str = "RGB") -> np.ndarray | None:
    """A JPEG's pixels (``colorspace``: RGB, or CMYK) at 1/``factor`` (1, 2, 4 or 8);
    DamagedJpeg when its data is damaged or cut short; None when libjpeg-turbo cannot read
    the file (another decoder decides) or gives another reduction than the one asked for."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    size_hw = (-(-height // factor), -(-width // factor))
    for strict in (True, False):
        try:
            pixels = simplejpeg.decode_jpeg(
                data, colorspace, min_height=size_hw[0], min_width=size_hw[1],
                min_factor=factor, strict=strict,
            )  # fmt: skip
        except ValueError as exc:
            if strict and any(words in str(exc).lower() for words in DAMAGED_WARNINGS):
                raise DamagedJpeg(first_line(exc, 120)) from None
            continue
        return pixels if pixels.shape[:2] == size_hw else None
    return None

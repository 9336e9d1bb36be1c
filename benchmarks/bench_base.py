"""The base handler's own cost: request decoding and response encoding at 1920 x 1920.

The example blob handler has a trivial model, so its end-to-end time is almost all base
overhead: base64 + JPEG decode, shapes, JSON. Compared side by side with a bare JPEG decode.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from quadratseg_handlers.blobs import BlobHandler
from quadratseg_handlers.synthetic import blobs_image
from quadratseg_handlers.testing import FunctionClient, make_event

from .timing import interleaved, jpeg_bytes, median_ms, quadrat_photos


def run() -> str:
    """Return the Markdown section."""
    images = quadrat_photos(1920) or [("synthetic", blobs_image(1920, 1920, count=40, seed=1))]
    name, image = images[0]
    data = jpeg_bytes(image)
    body = {"image": base64.b64encode(data).decode()}
    client = FunctionClient(BlobHandler)
    client.start()
    event = make_event(body)
    times = interleaved(
        {
            "bare JPEG decode (PIL)": lambda: np.asarray(
                Image.open(io.BytesIO(data)).convert("RGB")
            ),
            "handler end to end": lambda: client.call(event),
        },
        runs=10,
    )
    rows = "\n".join(f"| {label} | {median_ms(t):.1f} |" for label, t in times.items())
    return (
        "## Base handler overhead\n\n"
        f"Example blob handler on a 1920 x 1920 JPEG ({name}, {len(data) / 1e6:.1f} MB), "
        "median of 10 interleaved runs.\n\n"
        "| Step | Median ms |\n| --- | --- |\n" + rows
    )

"""The base handler's own cost at 1920 x 1920: request decoding, shapes, JSON, response.

The example blob handler stands in for a model; each step is timed side by side with the
whole request through real Nuclio objects, so the base's share is read off one run.
"""

from __future__ import annotations

import base64
import json

from quadratseg_handlers.handlers.blobs import BlobHandler
from quadratseg_handlers.local.bundle import blobs_image
from quadratseg_handlers.local.harness import FunctionClient, make_event

from .timing import interleaved, jpeg_bytes, median_ms, quadrat_photos


def run() -> str:
    """Return the Markdown section."""
    images = quadrat_photos(1920) or [("synthetic", blobs_image(1920, 1920, count=40, seed=1))]
    name, image = images[0]
    data = jpeg_bytes(image)
    body = {"image": base64.b64encode(data).decode()}
    client = FunctionClient(BlobHandler)
    handler = client.start()
    event = make_event(body)
    request = handler.parse_request(body)
    prediction = handler.predict(request.images, request.threshold)
    shapes = handler.to_shapes(prediction[0], request.images[0])
    times = interleaved(
        {
            "decode request (base64 + JPEG + checks)": lambda: handler.parse_request(body),
            "predict (blob model)": lambda: handler.predict(request.images, request.threshold),
            "instances -> CVAT shapes": lambda: handler.to_shapes(prediction[0], request.images[0]),
            "JSON encode": lambda: json.dumps(shapes),
            "whole request through Nuclio objects": lambda: client.call(event),
        },
        runs=10,
    )
    medians = {label: median_ms(t) for label, t in times.items()}
    rows = "\n".join(f"| {label} | {ms:.1f} |" for label, ms in medians.items())
    whole = medians["whole request through Nuclio objects"]
    base = medians["decode request (base64 + JPEG + checks)"] + medians["JSON encode"]
    return (
        "## Base handler overhead\n\n"
        f"Example blob handler on a 1920 x 1920 JPEG ({name}, {len(data) / 1e6:.1f} MB, "
        f"{len(shapes)} shapes), median of 10 interleaved runs.\n\n"
        "| Step | Median ms |\n| --- | --- |\n" + rows + "\n\n"
        f"The base's own steps (decode + JSON) take {base:.0f} ms of the {whole:.0f} ms request "
        f"({base / whole:.0%}); the rest is the model's predict and shapes."
    )

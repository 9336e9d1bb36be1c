"""Every packageable function, one request end to end, at 1024 and 1920 px, on this CPU.

Each function runs in a fresh process on its tiny models (``demo/tinymodels``), through real
Nuclio objects, so the figures are the function's own time and the process's peak memory
(the library, its model library and the model loaded). Tiny models say what the handler and
the model library cost around a model, not what the real weights cost: the deployment guide's
GPU figures and the model-size notes of the other sections are the ones to plan with.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from .timing import in_fresh_process, started_function, timed_requests

SIZES = (1024, 1920)
RUNS = 3
SOURCE_BUILT = ("pth-mmseg-coralscopsegformer",)
"""Functions without a TINY_MODELS entry (their bundle needs --source) measured here with
``coralscop_files``: its custom module lies beside the config, on the import path."""

SAM_PROMPTS = {"SAM_POINTS_PER_SIDE": "8", "SAM_CROP_N_LAYERS": "0", "SAM_MODEL_TYPE": "auto"}
"""CoralSCoP with the tiny SAM: an 8 x 8 prompt grid without crops (its defaults, 32 x 32 and
a crop layer, are 20 to 80 times the prompts)."""


def measure(name: str) -> dict[str, object]:
    """One function's median request time per size, and the process's peak memory (MiB)."""
    from quadratseg_handlers.core.request import cvat_request, encode_image
    from quadratseg_handlers.demo.synthetic import quadrat_image
    from quadratseg_handlers.demo.tinymodels import TINY_MODELS, tiny_model_files
    from quadratseg_handlers.demo.tinymodels.coralscop import coralscop_files
    from quadratseg_handlers.deploy.catalog import find
    from quadratseg_handlers.local.harness import make_event

    function = find(name)
    with tempfile.TemporaryDirectory(prefix="bench-functions-") as folder:
        if function.name in SOURCE_BUILT:
            files = coralscop_files(Path(folder))
        elif function.name in TINY_MODELS:
            files = tiny_model_files(function.name, Path(folder))
        else:
            files = {}
        env = {f.env: str(files[f.argument]) for f in function.files if f.argument in files}
        env.update(dict(function.env))
        env["DEVICE"] = "cpu"
        if function.model == "coralscopsegformer":
            env.update(SAM_PROMPTS)
        client, start_s = started_function(name, env)
        seconds: dict[str, float] = {}
        for size in SIZES:
            drawn = quadrat_image(size, seed=1)
            if function.kind == "inpainter":
                body = {"image": encode_image(drawn.image), "keypoints": drawn.grid_points.tolist()}
            else:
                body = cvat_request(drawn.image)
            times, _ = timed_requests(client, make_event(body), RUNS)
            seconds[str(size)] = statistics.median(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"start_s": start_s, "seconds": seconds, "peak_mib": peak}


def run() -> str:
    """Return the Markdown section (one fresh process per function)."""
    from quadratseg_handlers.demo.tinymodels import TINY_MODELS
    from quadratseg_handlers.deploy.catalog import FUNCTIONS

    rows = []
    for spec in FUNCTIONS.values():
        if spec.files and not (spec.name in TINY_MODELS or spec.name in SOURCE_BUILT):
            continue
        result = in_fresh_process("bench_functions", spec.model)
        if result is None:
            raise RuntimeError(f"{spec.name} failed: its error output is above")
        times = " | ".join(f"{result['seconds'][str(size)]:.2f}" for size in SIZES)
        rows.append(
            f"| `{spec.name}` | {result['start_s']:.1f} | {times} | {result['peak_mib']:.0f} |"
        )
    return (
        "## Every function on this CPU, tiny models\n\n"
        "One request end to end through real Nuclio objects (decode, predict, shapes, JSON), "
        f"median of {RUNS} after one uncounted, on a drawn quadrat JPEG; each function in a "
        "fresh process on its tiny models, `DEVICE=cpu`. Peak memory is the process's (Python, "
        "the model library, the model, the request). `pth-lama` gets the 117 grid points and "
        "uses its tiny LaMa; `pth-mmseg-coralscopsegformer` runs an 8 x 8 SAM prompt grid "
        "without crops (its defaults are 32 x 32 plus a crop layer: about 20 to 80 times the "
        "prompts, and SAM's decoder is full size even in the tiny model). Start is "
        "`init_context` (load and warm-up; the tiny-model builder has imported the model "
        "library already). On 2 shared cores, rows differ by noise of a few seconds. Real "
        "weights cost more: see the other sections and "
        "[cvat.md](cvat.md#per-function-resources).\n\n"
        "| Function | Start s | 1024 px s | 1920 px s | Peak MiB |\n"
        "| --- | --- | --- | --- | --- |\n" + "\n".join(rows)
    )


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))

"""Run benchmarks and update their sections of docs/performance.md.

``python -m benchmarks`` runs every ``bench_*.py`` module; ``python -m benchmarks base yolo``
runs only those. Each module has ``run() -> str`` returning a Markdown section; the section
replaces the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (appended when
absent), so one benchmark can be re-run without touching the others' figures.

``BENCH_DEVICE`` (``cpu`` by default, ``auto``, ``cuda``, ``cuda:N``) is where the benchmarks
that name ``"cuda"`` in their module's ``DEVICES`` run their models; on a CUDA device their
sections are written as ``NAME-gpu``, beside the CPU ones. The others always measure the CPU,
and one whose ``DEVICES`` holds only ``"cuda"`` is skipped without a GPU.
"""

from __future__ import annotations

import importlib
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "performance.md"
HEADER = """# Performance

Figures written by `make bench` (`python -m benchmarks`). Machines here are shared and noisy:
compare ratios measured side by side in one run, not absolute times across runs. Each section
names the machine it ran on.
"""


def available() -> list[str]:
    """Benchmark names, from the bench_*.py modules beside this file."""
    return sorted(p.stem[len("bench_") :] for p in Path(__file__).parent.glob("bench_*.py"))


def machine() -> str:
    """A one-line description of the machine the figures come from."""
    import os

    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, "
        f"Python {platform.python_version()}"
    )


def update(report: str, name: str, section: str) -> str:
    """Replace (or append) the section of benchmark ``name`` in the report text."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{section.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(report):
        return pattern.sub(lambda _: block, report)
    return report.rstrip() + "\n\n" + block + "\n"


def main(argv: list[str]) -> int:
    """Run the named benchmarks (default: all) and rewrite their report sections."""
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(
            f"benchmarks: unknown {', '.join(unknown)}; valid: {', '.join(available())}",
            file=sys.stderr,
        )
        return 2
    from quadratseg_handlers.core.config import ConfigError

    from .timing import on_gpu

    try:
        gpu = on_gpu()
    except ConfigError as error:
        print(f"benchmarks: {error}", file=sys.stderr)
        return 2
    report = REPORT.read_text() if REPORT.exists() else HEADER
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        devices = getattr(module, "DEVICES", ("cpu",))
        if not gpu and "cpu" not in devices:
            skipped = f"benchmarks: {name} skipped: it needs BENCH_DEVICE=auto on a GPU machine"
            print(skipped, file=sys.stderr, flush=True)
            continue
        started = time.perf_counter()
        print(f"benchmarks: running {name} ...", file=sys.stderr, flush=True)
        section = module.run()
        if gpu and "cuda" in devices:
            name = f"{name}-gpu"
        stamp = (
            f"\n\n_Run on {time.strftime('%Y-%m-%d')}, {machine()}, "
            f"{time.perf_counter() - started:.0f} s._"
        )
        report = update(report, name, section + stamp)
        REPORT.write_text(report)
        print(f"benchmarks: {name} done", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

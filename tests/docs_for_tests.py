"""The docs test's machinery: the shell and Python blocks of a Markdown page, the stand-in
files they run on, and one run of a page's blocks in order.

A fenced block in ``bash``/``sh``/``shell`` or ``python`` runs unless an HTML comment just
before it says why not: ``<!-- docs-test: skip (needs nuctl and a Nuclio host) -->``. A page
may hold hidden Python set-up that runs, in page order, before the blocks after it, for names
a snippet takes as given (an RGB array, a detector's output):
``<!-- docs-test: setup`` newline, code, ``-->``. Each page runs in its own temporary folder
holding the stand-ins below; its Python blocks share one namespace, as cells of a notebook;
each shell block is one ``bash -e -o pipefail`` with the interpreter's folder first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LANGUAGES = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python", "py": "python"}
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(.*?)-->\s*\Z", re.S)
_SETUP = re.compile(r"^<!--\s*docs-test:\s*setup[ \t]*\n(.*?)^-->", re.S | re.M)


@dataclass(frozen=True)
class Block:
    """One runnable snippet of a page: where it starts, its language, its code, and why it
    is skipped (None: it runs)."""

    page: str
    line: int
    language: str
    code: str
    skip: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """The shell, Python and hidden set-up blocks of a page, in page order."""
    text = path.read_text() if text is None else text
    found: list[tuple[int, Block]] = []
    for match in _FENCE.finditer(text):
        language = LANGUAGES.get(match.group(1))
        if language is None:
            continue
        before = text[max(0, match.start() - 300) : match.start()]
        marker = _SKIP.search(before)
        skip = marker.group(1).strip() if marker else None
        line = text.count("\n", 0, match.start()) + 1
        found.append((match.start(), Block(path.name, line, language, match.group(2), skip)))
    for match in _SETUP.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((match.start(), Block(path.name, line, "python", match.group(1))))
    return [block for _, block in sorted(found, key=lambda item: item[0])]


def make_stand_ins(folder: Path) -> Path:
    """The files the docs name, with tiny real models: photos, weights, configs, bundles."""
    import numpy as np
    from PIL import Image

    from quadratseg_handlers.demo.synthetic import quadrat_image
    from quadratseg_handlers.demo.tinymodels.coralscop import coralscop_files, source
    from quadratseg_handlers.demo.tinymodels.lama import tiny_lama
    from quadratseg_handlers.demo.tinymodels.yolo import coral_segmentation_files, tiny_yolo

    folder.mkdir(parents=True, exist_ok=True)
    photo = quadrat_image(640, seed=3).image
    Image.fromarray(np.asarray(photo)).save(folder / "quadrat.jpg", quality=90)
    samples = folder / "data" / "test_samples"
    samples.mkdir(parents=True)
    for seed in (1, 2):
        sample = np.asarray(quadrat_image(480, seed=seed).image)
        Image.fromarray(sample).save(samples / f"quadrat{seed}.jpg", quality=90)
    shutil.copy(folder / "quadrat.jpg", folder / "test_image.jpg")
    weights = coral_segmentation_files(folder / "stand-ins")["weights"]
    for run in (
        "runs/train/weights",
        "runs/v2",
        "runs/yolov11_criobe_finegrained_annotated/train/weights",
    ):
        (folder / run).mkdir(parents=True, exist_ok=True)
        shutil.copy(weights, folder / run / "best.pt")
    (folder / "runs/gridpose/weights").mkdir(parents=True)
    tiny_yolo(folder / "runs/gridpose/weights/best.pt", "detect", ["grid_point"])
    tiny_lama(folder / "big-lama.pt")
    files = coralscop_files(folder / "stand-ins" / "coralscop")
    shutil.copy(files["segformer-weights"], folder / "best_segformer.pth")
    shutil.copy(files["segformer-config"], folder / "best_segformer_config.py")
    shutil.copy(files["sam-weights"], folder / "vit_b_coralscop.pth")
    shutil.copy(source(files), folder)
    shutil.rmtree(folder / "stand-ins")
    return folder


DRIVER = r"""
import json, os, subprocess, sys, traceback
namespace = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1])):
    where = f"{block['page']}:{block['line']}"
    if block["language"] == "python":
        try:
            exec(compile(block["code"], where, "exec"), namespace)
        except BaseException:
            print(f"{where}: the Python block failed", file=sys.stderr)
            traceback.print_exc()
            raise SystemExit(1)
    else:
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block["code"]])
        if done.returncode != 0:
            print(f"{where}: the shell block exited {done.returncode}", file=sys.stderr)
            raise SystemExit(1)
"""


def run_page(
    page: Path, stand_ins: Path, workspace: Path, timeout: float = 600, text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a page's runnable blocks in order in ``workspace`` (a copy of the stand-ins)."""
    shutil.copytree(stand_ins, workspace)
    # README's `. .venv/bin/activate` runs from the repository's folder: here the environment
    # running the tests stands in for the repository's .venv
    if sys.prefix != sys.base_prefix:
        (workspace / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    runnable = [block.__dict__ for block in blocks(page, text) if block.skip is None]
    script = workspace.parent / f"{workspace.name}-blocks.json"
    script.write_text(json.dumps(runnable))
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH")] if p),
        "MPLBACKEND": "Agg",
    }
    return subprocess.run(
        [sys.executable, "-c", DRIVER, str(script)],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

"""The commands docs/cvat-sdk.md shows are cvat-cli's, and the Nuclio path stays without cvat-sdk.

Each ``cvat-cli`` command of the page is checked against ``cvat-cli ... --help`` (run here;
the commands themselves need a CVAT server): its subcommand exists and lists every option the
page gives it, and each ``--function-module`` names a module of this library with ``create``.
"""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "cvat-sdk.md"
GLOBAL_WITH_VALUE = {"--server-host", "--auth", "--server-port", "--organization", "--org"}


def page_commands() -> list[list[str]]:
    """The ``cvat-cli`` command lines of the page's shell blocks, as words."""
    text = PAGE.read_text()
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            while "cvat-cli" in words:
                words = words[words.index("cvat-cli") + 1 :]
                end = words.index("|") if "|" in words else len(words)
                commands.append(words[:end])
                words = words[end:]
    return commands


def split_command(words: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(global options, the subcommand's two words, its options) of one command line."""
    found_global, index = [], 0
    while words[index].startswith("-"):
        found_global.append(words[index])
        index += 2 if words[index] in GLOBAL_WITH_VALUE else 1
    subcommand = words[index : index + 2]
    options = [word for word in words[index + 2 :] if word.startswith("-")]
    return found_global, subcommand, options


def cli_help(*words: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cvat_cli", *words, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def lists(help_text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text) is not None


def test_the_page_shows_each_route():
    subcommands = {tuple(split_command(words)[1]) for words in page_commands()}
    assert {
        ("task", "auto-annotate"),
        ("task", "create"),
        ("function", "create-native"),
        ("function", "run-agent"),
    } <= subcommands


def test_every_function_module_of_the_page_has_create():
    modules = set(
        re.findall(r"--function-module (quadratseg_handlers\.sdk\.\w+)", PAGE.read_text())
    )
    assert len(modules) == 7
    for module in modules:
        assert callable(importlib.import_module(module).create)


@pytest.mark.slow
def test_cvat_cli_lists_every_option_the_page_uses():
    top = cli_help()
    helps: dict[tuple[str, ...], str] = {}
    missing = []
    for words in page_commands():
        found_global, subcommand, options = split_command(words)
        key = tuple(subcommand)
        if key not in helps:
            helps[key] = cli_help(*subcommand)
        missing += [f"cvat-cli {option}" for option in found_global if not lists(top, option)]
        missing += [
            f"cvat-cli {' '.join(key)} {option}"
            for option in options
            if not lists(helps[key], option)
        ]
    assert ("task", "auto-annotate") in helps
    for option in ("--function-module", "-p", "--conf-threshold", "--conv-mask-to-poly"):
        assert lists(helps["task", "auto-annotate"], option)
    assert missing == []


@pytest.mark.slow
def test_the_nuclio_path_imports_no_cvat_sdk():
    """A bundle's main.py imports the runtime and a handler; the local server, the packager
    and the command line neither: none of them loads cvat-sdk or cvat-cli."""
    code = (
        "import sys\n"
        "import quadratseg_handlers.core.runtime, quadratseg_handlers.handlers.grid\n"
        "import quadratseg_handlers.handlers.yolo, quadratseg_handlers.handlers.coralscop\n"
        "import quadratseg_handlers.handlers.blobs, quadratseg_handlers.handlers.lama\n"
        "import quadratseg_handlers.deploy.packager, quadratseg_handlers.local.server\n"
        "import quadratseg_handlers.cli.main\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('cvat_sdk', 'cvat_cli'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    with_sdk = subprocess.run(
        [
            sys.executable,
            "-c",
            code.replace("import sys\n", "import sys, quadratseg_handlers.sdk.blobs\n"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "'cvat_sdk'" in with_sdk.stdout  # the check sees an import when there is one

"""The docs stay true to the code: the settings table is generated from the handlers, every
module a page names exists, and every shell and Python snippet runs (or says why it cannot)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from docs_for_tests import PAGES, blocks, make_stand_ins, run_page

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_settings_table_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_docs.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_readme_has_exactly_the_two_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the tests run outside a virtual env")
def test_a_fresh_shell_following_readme_runs_quadratseg(tmp_path):
    """README's activation line, as written, in a shell whose PATH lacks the environment (a new
    terminal after `make demo`), puts `quadratseg` on the PATH: "command not found" before it."""
    readme = ROOT / "README.md"
    activation = [
        line.split("#")[0].strip()
        for block in blocks(readme)
        if block.language == "shell" and block.skip is None
        for line in block.code.splitlines()
        if "activate" in line
    ]
    assert activation == [". .venv/bin/activate"]
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {"PATH": path, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def shell(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    assert shell("command -v quadratseg").returncode != 0
    done = shell(f"{activation[0]}\nquadratseg settings coralsegv4")
    assert done.returncode == 0, done.stderr
    assert "MODEL_PATH" in done.stdout
    done = shell(f"{activation[0]}\npython -c 'import quadratseg_handlers'")
    assert done.returncode == 0, done.stderr


def test_every_module_the_docs_name_exists():
    """After a move, no page points at a module that is gone (dotted names or file paths)."""
    pages = [ROOT / "README.md", ROOT / "functions" / "README.md", *(ROOT / "docs").glob("*.md")]
    missing = []
    for page in pages:
        text = page.read_text()
        for dotted in re.findall(r"quadratseg_handlers(?:\.[a-z_][a-z_0-9]*)+", text):
            parts = dotted.split(".")
            # the longest prefix that is a module; the rest must be its attributes
            while len(parts) > 1 and not _is_module(".".join(parts)):
                parts.pop()
            module = importlib.import_module(".".join(parts))
            rest = dotted.split(".")[len(parts) :]
            target = module
            for name in rest:
                if not hasattr(target, name):
                    missing.append(f"{page.name}: {dotted}")
                    break
                target = getattr(target, name)
        for path in re.findall(r"quadratseg_handlers/[\w/]+\.py", text):
            if not (ROOT / path).is_file():
                missing.append(f"{page.name}: {path}")
    assert missing == []


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is a module, not a package
        return False


# --- every shell and Python snippet of README.md and docs/ runs -------------------------------


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory) -> Path:
    return make_stand_ins(tmp_path_factory.mktemp("docs") / "stand-ins")


@pytest.mark.slow
@pytest.mark.parametrize(
    "page",
    [page for page in PAGES if any(block.skip is None for block in blocks(page))],
    ids=lambda page: page.name,
)
def test_every_runnable_snippet_of_the_page_runs(page, stand_ins, tmp_path):
    """The page's shell and Python blocks, in order, in a folder of stand-in files (tiny
    models under the names the docs use); blocks that need Docker, Nuclio or CVAT say so."""
    result = run_page(page, stand_ins, tmp_path / "workspace")
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.slow
def test_a_snippet_that_breaks_fails_the_page(tmp_path):
    """The runner is not a formality: a broken shell or Python block fails the run, a set-up
    comment runs before the blocks after it, and a skipped block does not run."""
    page = tmp_path / "page.md"
    (tmp_path / "empty").mkdir()
    text = (
        "<!-- docs-test: setup\nanswer = 42\n-->\n\n"
        "```python\nassert answer == 42\n```\n\n"
        "<!-- docs-test: skip (needs a Nuclio host) -->\n```bash\nexit 3\n```\n\n"
        "```bash\ntest -f absent.txt\n```\n"
    )
    assert [(b.line, b.language, b.skip) for b in blocks(page, text)] == [
        (1, "python", None),
        (5, "python", None),
        (10, "shell", "(needs a Nuclio host)"),
        (14, "shell", None),
    ]
    result = run_page(page, tmp_path / "empty", tmp_path / "run", text=text)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "page.md:14: the shell block exited 1"
    broken = text.replace("answer == 42", "answer == 41")
    result = run_page(page, tmp_path / "empty", tmp_path / "run2", text=broken)
    assert "page.md:5: the Python block failed" in result.stderr


def test_every_skipped_snippet_says_why():
    unexplained = [
        block.where
        for page in PAGES
        for block in blocks(page)
        if block.skip is not None and not re.fullmatch(r"\(.{8,}\)", block.skip)
    ]
    assert unexplained == []

"""The layout's rules, read from the import graph (ast): layers import downwards only, no
handler imports another, no cycles. docs/architecture.md describes the layers.

The graph holds every ``import`` statement (top level, in functions, under TYPE_CHECKING) and
every string reference to a package module, since a string resolved at run time
(``core.references.resolve``, ``importlib``) imports as surely as a statement. A string is a
reference when the whole constant is ``M`` or ``M:attribute``, or an f-string's literal head is
``M:`` (the attribute formatted in), where ``M`` is ``quadratseg_handlers.<module>...`` naming
an existing module of the package and ``attribute`` a dotted Python name. Not references: prose
(docstrings and messages are never exactly a path), the bare package name (a logger's name),
names of modules that do not exist, and package-data paths (``module:relative/file``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = "quadratseg_handlers"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

LAYERS = (
    "cvat", "core", "ops", "backends", "handlers", "deploy", "sdk", "local", "evaluate", "demo",
    "cli",
)  # fmt: skip
"""Bottom to top: a module may import its own layer and the layers before it."""

FACADE = {PACKAGE, f"{PACKAGE}.__main__"}
"""Top-level modules: the public names and ``python -m``."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The package module ``name`` refers to (itself, or its closest importable parent)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


REFERENCE = re.compile(rf"({PACKAGE}(?:\.\w+)+)(?::[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?")
"""A whole string naming a module below the package, optionally with ``:attribute``."""

FORMATTED_REFERENCE = re.compile(rf"({PACKAGE}(?:\.\w+)+):")
"""An f-string's literal head naming a module whose attribute is formatted in."""


def string_reference(node: ast.AST) -> str | None:
    """The package module a string constant or f-string names, if it names one exactly."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        match = REFERENCE.fullmatch(node.value)
    elif isinstance(node, ast.JoinedStr) and node.values:
        head = node.values[0]
        text = head.value if isinstance(head, ast.Constant) else None
        match = FORMATTED_REFERENCE.fullmatch(text) if isinstance(text, str) else None
    else:
        return None
    return match.group(1) if match and match.group(1) in MODULES else None


def imports_of(module: str) -> set[str]:
    """The package modules a module imports (anywhere: top level, functions, TYPE_CHECKING),
    or names in a string (see the module's docstring)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        reference = string_reference(node)
        if reference is not None:
            if reference != module:
                found.add(reference)
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == PACKAGE:
                resolved = resolve(target)
                if resolved is not None and resolved != module:
                    found.add(resolved)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lives_in_a_layer():
    loose = sorted(m for m in MODULES if layer(m) is None and m not in FACADE)
    assert loose == [], f"modules outside the layers: {loose}"


def test_imports_point_down_the_layers():
    wrong = []
    for module, targets in GRAPH.items():
        if module in FACADE:
            continue
        rank = LAYERS.index(layer(module) or "")
        for target in targets:
            if target in FACADE:
                wrong.append(f"{module} imports the top-level package ({target})")
            elif LAYERS.index(layer(target) or "") > rank:
                wrong.append(f"{module} ({layer(module)}) imports {target} ({layer(target)})")
    assert wrong == []


def test_no_handler_imports_another_handler():
    handlers = f"{PACKAGE}.handlers."
    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.startswith(handlers)
        for target in targets
        if target.startswith(handlers)
    ]
    assert wrong == []


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from quadratseg_handlers.core.config import Setting",
            {"quadratseg_handlers.core.config"},
        ),
        ("from quadratseg_handlers import cvat", {"quadratseg_handlers.cvat"}),
        ("import quadratseg_handlers.local.harness", {"quadratseg_handlers.local.harness"}),
        ("from ..core import config as cfg", {"quadratseg_handlers.core.config"}),
        ("from .ultralytics import load_yolo", {"quadratseg_handlers.backends.ultralytics"}),
        ('NAME = "quadratseg_handlers.ops.fusion"', {"quadratseg_handlers.ops.fusion"}),
        (
            'f("quadratseg_handlers.core.references:resolve")',
            {"quadratseg_handlers.core.references"},
        ),
        (
            'X = "quadratseg_handlers.core.runtime:respond"',
            {"quadratseg_handlers.core.runtime"},
        ),
        ('X = f"quadratseg_handlers.cvat.shapes:{name}"', {"quadratseg_handlers.cvat.shapes"}),
        ('X = "see quadratseg_handlers.cvat.shapes for the shapes"', set()),
        ('X = "quadratseg_handlers"', set()),
        ('X = "quadratseg_handlers.yolo"', set()),
        ('X = "quadratseg_handlers:data/kp_template.npy"', set()),
        ('X = f"quadratseg_handlers:data/{name}"', set()),
        ('X = "quadratseg_handlers.cvat.shapes:"', set()),
        ('X = f"quadratseg_handlers.handlers.{family}:Handler"', set()),
    ],
)
def test_the_graph_reader_sees_each_import_form(tmp_path, monkeypatch, source, expected):
    """The rules above are only as good as the reader: each import form is resolved."""
    monkeypatch.setitem(MODULES, "quadratseg_handlers.backends.probe", tmp_path / "probe.py")
    (tmp_path / "probe.py").write_text(source + "\n")
    assert imports_of("quadratseg_handlers.backends.probe") == expected


def test_a_violation_is_reported(monkeypatch):
    """An upward import (a handler importing the local harness) fails the layer rule."""
    monkeypatch.setitem(
        GRAPH,
        "quadratseg_handlers.handlers.blobs",
        {*GRAPH["quadratseg_handlers.handlers.blobs"], "quadratseg_handlers.local.harness"},
    )
    with pytest.raises(AssertionError, match="handlers.blobs \\(handlers\\) imports"):
        test_imports_point_down_the_layers()


def test_an_upward_string_reference_is_reported(tmp_path, monkeypatch):
    """A lower layer naming a higher one's builder by string (as the catalogue once named the
    tiny models) is an upward import, found by the graph reader and the layer rule."""
    module = "quadratseg_handlers.deploy.probe"
    monkeypatch.setitem(MODULES, module, tmp_path / "probe.py")
    (tmp_path / "probe.py").write_text(
        'BUILDER = "quadratseg_handlers.demo.tinymodels.yolo:grid_corner_files"\n'
    )
    monkeypatch.setitem(GRAPH, module, imports_of(module))
    with pytest.raises(AssertionError, match="deploy.probe \\(deploy\\) imports .*demo"):
        test_imports_point_down_the_layers()


MAX_MODULE_LINES = 600
MAX_HANDLER_BEHAVIOUR = 100
"""A handler class reads as a short description of its model: at most this many lines of
behaviour (code lines; docstrings, comments and blank lines do not count)."""


def test_no_module_is_over_600_lines():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def behaviour_lines(node: ast.ClassDef, lines: list[str]) -> int:
    """Code lines of a class: its docstrings, comments and blank lines left out."""
    docstrings: set[int] = set()
    for sub in ast.walk(node):
        is_text = isinstance(sub, ast.Expr) and isinstance(sub.value, ast.Constant)
        if is_text and isinstance(sub.value.value, str):
            docstrings.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return sum(
        1
        for number in range(node.lineno, (node.end_lineno or node.lineno) + 1)
        if number not in docstrings
        and lines[number - 1].strip()
        and not lines[number - 1].strip().startswith("#")
    )


def test_no_handler_class_is_over_100_lines_of_behaviour():
    long = {}
    for name, path in MODULES.items():
        if layer(name) not in ("core", "handlers"):
            continue
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Handler"):
                count = behaviour_lines(node, source.splitlines())
                if count > MAX_HANDLER_BEHAVIOUR:
                    long[f"{name}.{node.name}"] = count
    assert long == {}


def test_the_behaviour_count_leaves_docstrings_out():
    source = (
        'class A:\n    """Doc\n    string."""\n\n    # note\n'
        '    def f(self):\n        """Doc."""\n        return 1\n'
    )
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.ClassDef)
    assert behaviour_lines(node, source.splitlines()) == 3

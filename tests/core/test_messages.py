"""One-line messages and module:attribute references, shared by every layer."""

from __future__ import annotations

import pytest

from quadratseg_handlers.core.messages import describe_error, first_line, last_line, plural
from quadratseg_handlers.core.references import module_file, resolve, split_reference


def test_first_line_of_an_exception_or_a_text():
    assert first_line(ValueError("bad value\nsecond line")) == "bad value"
    assert first_line("  padded\nmore") == "padded"
    assert first_line(ValueError("x" * 500), limit=10) == "x" * 10
    assert first_line(ValueError()) == ""
    assert first_line(KeyError(), empty="KeyError") == "KeyError"


def test_describe_error_names_the_type_and_the_first_line():
    assert describe_error(RuntimeError("broken\ntrace")) == "RuntimeError: broken"


@pytest.mark.parametrize(("count", "text"), [(0, "0 shapes"), (1, "1 shape"), (2, "2 shapes")])
def test_plural(count, text):
    assert plural(count, "shape") == text


def test_resolve_imports_a_module_attribute():
    from quadratseg_handlers.handlers.blobs import BlobHandler

    assert resolve("quadratseg_handlers.handlers.blobs:BlobHandler") is BlobHandler
    assert resolve("quadratseg_handlers.handlers.blobs:BlobHandler.function_name") == (
        "example-blobs"
    )


@pytest.mark.parametrize("reference", ["no_colon", ":attribute", "module:", ""])
def test_a_malformed_reference_is_refused(reference):
    with pytest.raises(ValueError, match="expected 'module:attribute'"):
        split_reference(reference)


def test_module_file_is_next_to_the_module():
    path = module_file("quadratseg_handlers:data/kp_template.npy")
    assert path.is_file()
    assert path.parent.name == "data"


def test_last_line_of_a_tool_output():
    assert last_line("building\nerror: no compiler\n") == "error: no compiler"
    assert last_line("") == "no output"
    assert last_line("  ", empty="(empty body)") == "(empty body)"

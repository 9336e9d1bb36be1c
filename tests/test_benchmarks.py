"""The benchmark runner: report sections, the device they ran on, and its bad settings."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import __main__ as runner
from benchmarks.bench_guide import GUIDE, answer_size
from quadratseg_handlers.deploy.catalog import FUNCTIONS


def test_a_section_is_replaced_in_place_and_a_new_one_appended():
    report = "# Performance\n\n<!-- bench:a -->\nold\n<!-- /bench:a -->\n\ntail\n"
    replaced = runner.update(report, "a", "new")
    assert replaced == "# Performance\n\n<!-- bench:a -->\nnew\n<!-- /bench:a -->\n\ntail\n"
    appended = runner.update(replaced, "a-gpu", "on the GPU")
    assert appended.endswith("tail\n\n<!-- bench:a-gpu -->\non the GPU\n<!-- /bench:a-gpu -->\n")
    assert "<!-- bench:a -->\nnew\n" in appended


@pytest.fixture
def report(tmp_path, monkeypatch):
    path = tmp_path / "performance.md"
    path.write_text("# Performance\n")
    monkeypatch.setattr(runner, "REPORT", path)
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the run without a GPU")
def test_a_gpu_only_benchmark_is_skipped_without_a_gpu(report, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_DEVICE", "auto")
    assert runner.main(["guide"]) == 0
    assert report.read_text() == "# Performance\n"
    assert "guide skipped: it needs BENCH_DEVICE=auto on a GPU machine" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value, message",
    [("tpu", "BENCH_DEVICE='tpu': expected auto, cpu, cuda or cuda:N"), ("cuda:7", "cuda:7")],
)
def test_a_bad_bench_device_is_one_line_and_exit_2(report, monkeypatch, capsys, value, message):
    if value == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    monkeypatch.setenv("BENCH_DEVICE", value)
    assert runner.main(["guide"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmarks: BENCH_DEVICE=") and message in err
    assert err.count("\n") == 1
    assert report.read_text() == "# Performance\n"


def test_an_unknown_benchmark_is_refused(report, capsys):
    assert runner.main(["nope"]) == 2
    assert "benchmarks: unknown nope; valid: " in capsys.readouterr().err


def test_the_guide_table_names_every_function_that_serves_a_model():
    served = {name for name, spec in FUNCTIONS.items() if spec.model != "blobs"}
    assert set(GUIDE) == served


def test_an_answer_is_summed_up_by_what_it_holds():
    skeleton = [{"type": "skeleton", "elements": [{"points": [1, 2]}] * 117}]
    assert answer_size(json.dumps(skeleton)) == "117 points"
    assert answer_size(json.dumps([{"type": "polygon"}] * 6)) == "6 shapes"
    assert answer_size(json.dumps([])) == "0 shapes"
    assert answer_size(json.dumps({"image": "..."})) == "an image"

"""The HTML report: self-contained, names the plan's float layers, renders in headless
Chromium; the ``torchquant report`` and ``torchquant calibrate --report`` commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from analysis_toy import ToyMLP, calibrate_minmax
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from torchquant.analysis import (
    Analysis,
    QuantPlan,
    analyze,
    auto_fallback,
    output_sqnr_metric,
    write_report,
)
from torchquant.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CALS = ["minmax", "percentile"]


@pytest.fixture(scope="module")
def analysis_and_plan() -> tuple[Analysis, QuantPlan]:
    """Analysis and SQNR-target plan of the toy MLP (computed once for the module)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ToyMLP().eval()
    batches = [torch.randn(32, 16, generator=gen) ** 3 for _ in range(4)]
    calibrate_minmax(model, batches)
    analysis = analyze(model, batches, calibrators=CALS)
    plan = auto_fallback(
        model, analysis, batches, output_sqnr_metric(batches), min_metric=30.0, max_float_layers=2
    )
    return analysis, plan


def test_report_is_self_contained(
    analysis_and_plan: tuple[Analysis, QuantPlan], tmp_path: Path
) -> None:
    analysis, plan = analysis_and_plan
    text = write_report(tmp_path / "r.html", analysis, plan, title="toy").read_text()
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", text)  # nothing fetched
    # Sensitivity bars, SQNR heat map, legend and one histogram per tensor, all inline.
    assert text.count("src='data:image/png;base64,") == 3 + len(analysis.tensors)
    assert plan.float_layers and all(f"<b>{n}</b>" in text for n in plan.float_layers)
    for t in analysis.tensors:
        assert f"<figcaption>{t.name}</figcaption>" in text


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
)
def test_report_renders_in_headless_chromium(
    analysis_and_plan: tuple[Analysis, QuantPlan], tmp_path: Path
) -> None:
    from PIL import Image

    analysis, plan = analysis_and_plan
    page = write_report(tmp_path / "report.html", analysis, plan)
    shot = tmp_path / "shot.png"
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}"]
    flags += ["--window-size=1200,2000", page.resolve().as_uri()]
    subprocess.run([CHROMIUM, *flags], capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "Chromium wrote no screenshot"
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 2000)
    pixels = np.asarray(image)
    assert (pixels < 200).mean() > 0.02  # text, bars and histograms, not a blank page
    assert len(np.unique(pixels)) > 50


def test_report_command(analysis_and_plan: tuple[Analysis, QuantPlan], tmp_path: Path) -> None:
    analysis, plan = analysis_and_plan
    analysis.save(tmp_path / "a.json")
    plan.save(tmp_path / "p.json")
    out = tmp_path / "r.html"
    args = ["report", str(tmp_path / "a.json"), "--plan", str(tmp_path / "p.json"), "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert plan.float_layers[0] in out.read_text()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "missing.json"), "-o", str(out)])
    assert result.exit_code == 2 and "missing.json" in result.output


def _onnx_model(path: Path) -> Path:
    """x (N, 4) -> Gemm -> Relu -> Gemm -> y."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((3, 6)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_calibrate_report_for_onnx(tmp_path: Path) -> None:
    model = _onnx_model(tmp_path / "m.onnx")
    np.save(
        tmp_path / "d.npy", np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
    )
    out = tmp_path / "calib.html"
    args = ["calibrate", str(model), "--data", str(tmp_path / "d.npy"), "--batch-size", "4"]
    result = CliRunner().invoke(main, [*args, "--no-progress", "--report", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    # The Gemm inputs (x, r) and weights (w1, w2) calibrated, each with its histogram.
    for name in ("x", "r", "w1", "w2"):
        assert f"<figcaption>{name}</figcaption>" in text
    assert "entropy" in text and "hfmg" in text

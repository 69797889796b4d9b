"""Automatic fixes: the digits CNN at 4 bits (acceptance, fast variant), plans as JSON,
re-applied to a freshly prepared model, and the wider-bits fallback."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from analysis_toy import ToyMLP
from digits_cnn import evaluate, load_data, train_fp32
from torch import Tensor, nn

from torchquant._api import quantize
from torchquant._auto import PrepareConfig
from torchquant._calibrate import calibrate
from torchquant.analysis import (
    QuantPlan,
    analyze,
    apply_plan,
    auto_fallback,
    output_sqnr_metric,
    quantizer_groups,
    render_report,
)
from torchquant.config import QConfig, QuantizerConfig
from torchquant.errors import ConfigError, FileFormatError
from torchquant.quant.quantizer import Quantizer, iter_quantizers
from torchquant.quant.spec import QuantSpec

# 4-bit TensorRT-style PTQ: symmetric activations (entropy), per-channel narrow weights.
QCONFIG_4BIT = QConfig(
    activation=QuantizerConfig(QuantSpec(bits=4), calibrator="entropy"),
    weight=QuantizerConfig(QuantSpec(bits=4, axis=0, narrow_range=True), calibrator="minmax"),
)
CALS = ["minmax", "percentile", "mse"]


def _prepare(model: nn.Module, calib: list[Tensor]) -> nn.Module:
    prepared = quantize(model, PrepareConfig(qconfig=QCONFIG_4BIT), (calib[0][:8],))
    return calibrate(prepared, calib, progress=False)


def test_digits_4bit_fallback_within_one_point(tmp_path: Path) -> None:
    # Fast variant of benchmarks/digits_fallback.py: a narrower CNN trained for 4 epochs,
    # which 4-bit PTQ hurts by about 3 points (the full model loses less than 1).
    data = load_data()
    model = train_fp32(data, epochs=4, width=16)
    calib = [data[0][i : i + 128] for i in range(0, 512, 128)]
    x_test, y_test = data[2], data[3]

    def accuracy(m: nn.Module) -> float:
        return evaluate(m, x_test, y_test)

    fp32 = accuracy(model)
    prepared = _prepare(model, calib)
    assert accuracy(prepared) < fp32 - 1.0  # plain 4-bit PTQ misses the target
    analysis = analyze(prepared, calib[:2], calibrators=CALS)
    plan = auto_fallback(
        prepared, analysis, calib, accuracy, max_drop=1.0, metric_name="accuracy (%)"
    )
    assert plan.target_met and len(plan.float_layers) <= 2
    assert plan.float_metric == fp32
    assert accuracy(prepared) == plan.final_metric >= fp32 - 1.0
    for layer in plan.float_layers:  # float layers hold no quantizer any more
        assert layer not in quantizer_groups(prepared)
    html = render_report(analysis, plan)
    assert all(f"<b>{layer}</b>" in html for layer in plan.float_layers)

    # The plan is data: saved, loaded and re-applied to a freshly prepared model.
    plan.save(tmp_path / "plan.json")
    loaded = QuantPlan.load(tmp_path / "plan.json")
    assert loaded == plan
    fresh = quantize(model, PrepareConfig(qconfig=QCONFIG_4BIT), (calib[0][:8],))
    apply_plan(fresh, loaded, calib)
    assert accuracy(fresh) == plan.final_metric
    with torch.no_grad():
        assert torch.equal(fresh(x_test), prepared(x_test))


def test_fallback_bits_and_sqnr_target(toy: tuple[ToyMLP, list[Tensor]]) -> None:
    model, batches = toy
    analysis = analyze(model, batches, calibrators=CALS)
    metric = output_sqnr_metric(batches)
    before = metric(model)
    plan = auto_fallback(
        model,
        analysis,
        batches,
        metric,
        min_metric=before + 6.0,
        fallback_bits=8,
        criterion=None,
        max_float_layers=3,
        search_width=1,
    )
    assert plan.calibrators == {} and plan.fallback_bits == 8
    assert plan.quantized_metric == pytest.approx(before)
    assert plan.final_metric is not None and plan.final_metric > before
    assert [h[0] for h in plan.history][: len(plan.float_layers) + 1] == [
        tuple(plan.float_layers[:k]) for k in range(len(plan.float_layers) + 1)
    ]
    for layer in plan.float_layers:  # re-quantized at 8 bits, calibrated, fake-quantizing
        for name in quantizer_groups(model)[layer]:
            q = model.get_submodule(name)
            assert isinstance(q, Quantizer) and q.spec.bits == 8 and q.has_qparams
            assert q.fake_quant_enabled and not q.observer_enabled


def test_apply_plan_swaps_calibrators(toy: tuple[ToyMLP, list[Tensor]]) -> None:
    model, batches = toy
    fresh = copy.deepcopy(model)
    plan = QuantPlan(calibrators={"fc2.input_quantizer": "percentile"}, float_layers=("fc3",))
    apply_plan(fresh, plan, batches)
    quantizers = dict(iter_quantizers(fresh))
    assert quantizers["fc2.input_quantizer"].config.calibrator == "percentile"
    assert quantizers["fc2.input_quantizer"].name == "fc2.input_quantizer"
    assert "fc3.input_quantizer" not in quantizers and fresh.fc3.input_quantizer is None
    with torch.no_grad():
        assert not torch.equal(fresh(batches[0]), model(batches[0]))


def test_plan_errors(toy: tuple[ToyMLP, list[Tensor]], tmp_path: Path) -> None:
    model, batches = toy
    with pytest.raises(ConfigError, match="'fc9'"):
        apply_plan(model, QuantPlan(float_layers=("fc9",)))
    with pytest.raises(ConfigError, match=r"'fc1\.nope'"):
        apply_plan(model, QuantPlan(calibrators={"fc1.nope": "mse"}))
    with pytest.raises(ConfigError, match="fallback_bits"):
        QuantPlan(fallback_bits=1)
    with pytest.raises(ConfigError, match="unknown QuantPlan field"):
        QuantPlan.from_dict({"layers": []})
    (tmp_path / "p.json").write_text("[")
    with pytest.raises(FileFormatError, match=r"p\.json"):
        QuantPlan.load(tmp_path / "p.json")
    analysis = analyze(model, batches[:1], calibrators=CALS)
    with pytest.raises(ConfigError, match="exactly one"):
        auto_fallback(model, analysis, batches, output_sqnr_metric(batches))

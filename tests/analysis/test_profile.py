"""`TensorProfiler`: SQNR against a slow reference, candidates, JSON round trip."""

from __future__ import annotations

import json
import math

import pytest
import torch

from torchquant.analysis import TensorProfile, TensorProfiler, sqnr_db
from torchquant.calib import create_calibrator
from torchquant.errors import ConfigError, EmptyCalibrationError, NonFiniteError
from torchquant.quant.fake import fake_quantize_reference
from torchquant.quant.spec import QuantSpec


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(64, 8, generator=gen) ** 3 for _ in range(3)]


def test_sqnr_db_matches_numeric_suite_formula() -> None:
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    y = x + 0.01 * torch.randn(1000, generator=torch.Generator().manual_seed(1))
    # PyTorch Numeric Suite's compute_sqnr: 20 log10(||x|| / ||x - y||).
    expected = 20 * math.log10(float(x.norm() / (x - y).norm()))
    got = sqnr_db(float(x.double().square().sum()), float((x - y).double().square().sum()))
    assert got == pytest.approx(expected, rel=1e-6)
    assert sqnr_db(1.0, 0.0) == math.inf


@pytest.mark.parametrize(
    "spec", [QuantSpec(bits=4), QuantSpec(bits=8, signed=False, symmetric=False)]
)
def test_candidate_sqnr_matches_reference(spec: QuantSpec) -> None:
    data = _batches()
    cals = ["minmax", "percentile", "mse"]
    prof = TensorProfiler("t", spec, calibrators=cals)
    for x in data:
        prof.observe(x)
    for x in data:
        prof.evaluate(x)
    result = prof.result()
    everything = torch.cat(data)
    for name in cals:
        ref = create_calibrator(name, spec, tensor_name="t")
        for x in data:
            ref.observe(x)
        scale, zp = ref.compute()
        xq = fake_quantize_reference(everything, scale, zp, spec)
        expected = 10 * math.log10(
            float(everything.square().sum() / (everything - xq).square().sum())
        )
        assert result.sqnr_db[name] == pytest.approx(expected, rel=1e-4)
        lo, hi = ref.range()
        assert result.ranges[name] == (pytest.approx(float(lo)), pytest.approx(float(hi)))
    assert result.best() == max(cals, key=lambda c: result.sqnr_db[c])
    assert sum(result.counts) == everything.numel()
    assert result.hist_lo == float(everything.min()) and result.hist_hi == float(everything.max())


def test_loss_and_current_sqnr() -> None:
    data = _batches()
    prof = TensorProfiler(
        "t", QuantSpec(), calibrators=["minmax"], loss=lambda x, q: (x - q).abs().max()
    )
    for x in data:
        prof.observe(x)
    for x in data:
        prof.evaluate(x, quantized=x)
    result = prof.result(current="minmax", group="layer")
    assert result.current_sqnr_db == math.inf  # the "quantizer" returned x unchanged
    assert result.loss["minmax"] > 0.0 and result.best("loss") == "minmax"
    assert result.group == "layer"


def test_per_channel_skips_per_tensor_only_calibrators() -> None:
    prof = TensorProfiler("w", QuantSpec(axis=0, narrow_range=True))
    assert "minmax" in prof.calibrators and "entropy" not in prof.calibrators


def test_errors_name_the_tensor() -> None:
    with pytest.raises(ConfigError, match=r"'t'.*nope"):
        TensorProfiler("t", QuantSpec(), calibrators=["nope"])
    prof = TensorProfiler("act7", QuantSpec(), calibrators=["minmax"])
    with pytest.raises(EmptyCalibrationError, match="act7"):
        prof.result()
    with pytest.raises(NonFiniteError, match="act7"):
        prof.observe(torch.tensor([1.0, float("nan")]))
    prof.observe(torch.ones(3))
    prof.evaluate(torch.ones(3))
    with pytest.raises(ConfigError, match="act7"):
        prof.observe(torch.ones(3))
    with pytest.raises(EmptyCalibrationError, match=r"act7.*loss"):
        prof.result().best("loss")


def test_json_round_trip() -> None:
    prof = TensorProfiler("t", QuantSpec(bits=4), calibrators=["minmax", "percentile"])
    for x in _batches():
        prof.observe(x)
    for x in _batches():
        prof.evaluate(x)
    prof_result = prof.result(current="minmax")
    again = TensorProfile.from_dict(json.loads(json.dumps(prof_result.to_dict())))
    assert again == prof_result

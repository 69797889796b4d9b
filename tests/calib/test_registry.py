"""Contract every registered calibrator keeps: streaming, state, merge, determinism, errors."""

from __future__ import annotations

import io
import math

import pytest
import torch

from torchquant.calib import Calibrator, create_calibrator, list_calibrators
from torchquant.errors import ConfigError, EmptyCalibrationError, NonFiniteError
from torchquant.quant.spec import QuantSpec

SPECS = [QuantSpec(), QuantSpec(symmetric=False)]
SPEC_IDS = ["symmetric", "affine"]


def gaussian_batches(count: int = 6, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 16, 32, generator=gen) * 1.5 + 0.2 for _ in range(count)]


def calibrated(name: str, spec: QuantSpec, data: list[torch.Tensor]) -> Calibrator:
    cal = create_calibrator(name, spec, tensor_name=f"{name}.probe")
    for x in data:
        cal.observe(x)
    return cal


_BASELINES: dict[tuple[str, QuantSpec], tuple[Calibrator, tuple[torch.Tensor, torch.Tensor]]] = {}


def baseline(name: str, spec: QuantSpec) -> tuple[Calibrator, tuple[torch.Tensor, torch.Tensor]]:
    """One calibration on `gaussian_batches()` and its qparams, shared by the tests below
    (some searches take seconds on a CPU)."""
    key = (name, spec)
    if key not in _BASELINES:
        cal = calibrated(name, spec, gaussian_batches())
        _BASELINES[key] = (cal, cal.compute())
    return _BASELINES[key]


def test_known_names() -> None:
    names = list_calibrators()
    assert names == sorted(names)
    for name in ("minmax", "ema_minmax", "entropy", "percentile", "mse", "ifmr", "hfmg"):
        assert name in names
    with pytest.raises(ConfigError, match="unknown calibrator"):
        create_calibrator("nope", QuantSpec())


@pytest.mark.parametrize("name", list_calibrators())
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_scale_is_finite_and_positive(name: str, spec: QuantSpec) -> None:
    cal, (scale, zero_point) = baseline(name, spec)
    assert cal.name == name and cal.num_batches == 6
    assert scale.dtype == torch.float32 and zero_point.dtype == torch.int32
    assert scale.shape == zero_point.shape == ()
    assert 0.0 < float(scale) < math.inf
    assert spec.qmin <= int(zero_point) <= spec.qmax
    lo, hi = cal.range()
    assert float(lo) <= float(hi)


@pytest.mark.parametrize("name", list_calibrators())
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_state_dict_round_trip_is_bit_exact(name: str, spec: QuantSpec) -> None:
    cal, qparams = baseline(name, spec)
    buffer = io.BytesIO()
    torch.save(cal.state_dict(), buffer)  # tensors and plain values only
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = create_calibrator(name, spec, tensor_name=f"{name}.probe")
    fresh.load_state_dict(state)
    assert fresh.num_batches == cal.num_batches
    for got, want in zip(fresh.compute(), qparams, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", list_calibrators())
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_merge_of_two_halves(name: str, spec: QuantSpec) -> None:
    data = gaussian_batches()
    left, right = calibrated(name, spec, data[:3]), calibrated(name, spec, data[3:])
    left.merge(right)
    assert left.num_batches == 6
    scale, _ = left.compute()
    assert 0.0 < float(scale) < math.inf
    single, _ = baseline(name, spec)[1]
    # Not every algorithm merges exactly (growing histograms re-bin), but all stay close.
    assert float(scale) == pytest.approx(float(single), rel=0.25)


@pytest.mark.parametrize("name", list_calibrators())
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_deterministic(name: str, spec: QuantSpec) -> None:
    again = calibrated(name, spec, gaussian_batches()).compute()
    for a, b in zip(again, baseline(name, spec)[1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", list_calibrators())
def test_nan_names_the_tensor(name: str) -> None:
    cal = create_calibrator(name, QuantSpec(), tensor_name="block2.conv.input")
    cal.observe(torch.randn(64))
    bad = torch.randn(64)
    bad[5] = float("nan")
    with pytest.raises(NonFiniteError, match=r"block2\.conv\.input"):
        cal.observe(bad)


@pytest.mark.parametrize("name", list_calibrators())
def test_compute_before_observe(name: str) -> None:
    cal = create_calibrator(name, QuantSpec(), tensor_name="head.out")
    with pytest.raises(EmptyCalibrationError, match=r"head\.out"):
        cal.compute()
    with pytest.raises(EmptyCalibrationError):
        cal.observe(torch.empty(0, 4))


@pytest.mark.parametrize("name", list_calibrators())
def test_per_channel_is_supported_or_refused(name: str) -> None:
    spec = QuantSpec(axis=0)
    cls = type(create_calibrator(name, QuantSpec()))
    if not cls.supports_per_channel:
        with pytest.raises(ConfigError, match="per-tensor only"):
            create_calibrator(name, spec)
        return
    cal = calibrated(name, spec, gaussian_batches(count=2))
    scale, zero_point = cal.compute()
    assert scale.shape == zero_point.shape == (8,)
    assert bool(((scale > 0) & torch.isfinite(scale)).all())

"""Affine arithmetic: scale/zero point from a range (hand-computed), quantize, dequantize."""

from __future__ import annotations

import pytest
import torch

from torchquant.errors import ConfigError, EmptyCalibrationError, NonFiniteError
from torchquant.quant.affine import (
    FLT_EPSILON,
    check_finite,
    dequantize,
    integer_dtype,
    qparams_from_range,
    quantize,
    reshape_for_axis,
)
from torchquant.quant.spec import QuantSpec


def _qp(lo: float, hi: float, spec: QuantSpec) -> tuple[float, int]:
    scale, zero_point = qparams_from_range(torch.tensor(lo), torch.tensor(hi), spec)
    assert scale.dtype == torch.float32 and zero_point.dtype == torch.int32
    return float(scale), int(zero_point)


def test_symmetric_int8_threshold_over_127() -> None:
    scale, zp = _qp(-2.0, 3.0, QuantSpec())
    assert scale == pytest.approx(3.0 / 127, rel=1e-7) and zp == 0
    # The threshold is max(|lo|, |hi|), whichever side it comes from.
    scale, zp = _qp(-5.0, 1.0, QuantSpec())
    assert scale == pytest.approx(5.0 / 127, rel=1e-7) and zp == 0
    scale, _ = _qp(-5.0, 1.0, QuantSpec(narrow_range=True))
    assert scale == pytest.approx(5.0 / 127, rel=1e-7)


@pytest.mark.parametrize(("bits", "divisor"), [(4, 7), (6, 31), (7, 63), (16, 32767)])
def test_symmetric_other_widths(bits: int, divisor: int) -> None:
    scale, zp = _qp(-1.0, 2.0, QuantSpec(bits=bits))
    assert scale == pytest.approx(2.0 / divisor, rel=1e-7) and zp == 0


def test_amct_rule_divides_by_128_when_negative_dominates() -> None:
    spec = QuantSpec(scale_rule="amct")
    assert _qp(-4.0, 1.0, spec)[0] == pytest.approx(4.0 / 128, rel=1e-7)
    # Positive side dominates, or a tie: /127 as usual.
    assert _qp(-1.0, 4.0, spec)[0] == pytest.approx(4.0 / 127, rel=1e-7)
    assert _qp(-4.0, 4.0, spec)[0] == pytest.approx(4.0 / 127, rel=1e-7)
    assert _qp(-4.0, 1.0, QuantSpec(bits=4, scale_rule="amct"))[0] == pytest.approx(0.5)


def test_symmetric_unsigned_zero_point_at_centre() -> None:
    # PyTorch's symmetric quint8: s = T / ((255 - 0) / 2), z = 128.
    scale, zp = _qp(-1.0, 2.0, QuantSpec(signed=False))
    assert scale == pytest.approx(2.0 / 127.5, rel=1e-7) and zp == 128


def test_affine_uint8() -> None:
    # [-1, 3]: s = 4 / 255, z = 0 - round(-1 / s) = round(63.75) = 64.
    scale, zp = _qp(-1.0, 3.0, QuantSpec(signed=False, symmetric=False))
    assert scale == pytest.approx(4.0 / 255, rel=1e-7) and zp == 64
    # A positive-only range is widened to include 0: [0, 2] -> z = 0.
    scale, zp = _qp(0.5, 2.0, QuantSpec(signed=False, symmetric=False))
    assert scale == pytest.approx(2.0 / 255, rel=1e-7) and zp == 0
    # A negative-only range: [-2, 0] -> z = 255.
    scale, zp = _qp(-2.0, -0.5, QuantSpec(signed=False, symmetric=False))
    assert scale == pytest.approx(2.0 / 255, rel=1e-7) and zp == 255


def test_affine_int8_matches_amct_offset() -> None:
    # AMCT: offset = round(-128 - mn / s); [-1, 3]: round(-128 + 63.75) = -64.
    scale, zp = _qp(-1.0, 3.0, QuantSpec(symmetric=False))
    assert scale == pytest.approx(4.0 / 255, rel=1e-7) and zp == -64
    scale, zp = _qp(0.0, 1.0, QuantSpec(symmetric=False))
    assert zp == -128
    scale, zp = _qp(-2.0, 6.0, QuantSpec(bits=4, symmetric=False))
    # s = 8 / 15, z = -8 - round(-3.75) = -4.
    assert scale == pytest.approx(8.0 / 15, rel=1e-7) and zp == -4


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(),
        QuantSpec(narrow_range=True),
        QuantSpec(signed=False),
        QuantSpec(symmetric=False),
        QuantSpec(signed=False, symmetric=False),
        QuantSpec(scale_rule="amct"),
    ],
)
@pytest.mark.parametrize("value", [0.0, 1e-9, -3e-8, 2.5, -7.0])
def test_degenerate_ranges_get_finite_positive_scale(spec: QuantSpec, value: float) -> None:
    lo, hi = min(value, 0.0), max(value, 0.0)
    if abs(value) < 1.0:
        scale, zp = _qp(lo, hi, spec)
        assert scale == 1.0
        assert spec.qmin <= zp <= spec.qmax
    # A constant tensor c has range [c, c]: the scale stays finite and positive.
    scale, zp = _qp(value, value, spec)
    assert 0.0 < scale < float("inf") and spec.qmin <= zp <= spec.qmax


def test_degenerate_affine_zero_point_is_qmin() -> None:
    # AMCT: s = 1 and offset -2^(b-1) when asymmetric.
    assert _qp(0.0, 0.0, QuantSpec(symmetric=False)) == (1.0, -128)
    assert _qp(0.0, 0.0, QuantSpec(signed=False, symmetric=False)) == (1.0, 0)
    assert torch.finfo(torch.float32).eps == FLT_EPSILON


def test_per_channel_vectors() -> None:
    lo = torch.tensor([-1.0, -4.0, 0.0, 0.0])
    hi = torch.tensor([2.0, 1.0, 0.0, 3.0])
    scale, zp = qparams_from_range(lo, hi, QuantSpec(axis=0))
    torch.testing.assert_close(scale, torch.tensor([2.0, 4.0, 127.0, 3.0]) / 127)
    assert zp.tolist() == [0, 0, 0, 0]
    scale, zp = qparams_from_range(lo, hi, QuantSpec(axis=0, signed=False, symmetric=False))
    torch.testing.assert_close(scale, torch.tensor([3.0, 5.0, 255.0, 3.0]) / 255)
    assert zp.tolist() == [85, 204, 0, 0]  # round(1 / (3/255)) = 85, round(4 / (5/255)) = 204


def test_bad_ranges() -> None:
    with pytest.raises(ConfigError, match="shape"):
        qparams_from_range(torch.zeros(3), torch.zeros(2), QuantSpec(axis=0))
    with pytest.raises(ConfigError, match="lo > hi"):
        qparams_from_range(torch.tensor(1.0), torch.tensor(0.0), QuantSpec())


def test_round_half_to_even() -> None:
    spec = QuantSpec()
    one, zero = torch.tensor(1.0), torch.tensor(0, dtype=torch.int32)
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, 3.51])
    assert quantize(x, one, zero, spec).tolist() == [0, 2, 2, 0, -2, -2, 3, 4]
    # With a zero point, the tie is broken before the shift: round(x / s) + z.
    z3 = torch.tensor(3, dtype=torch.int32)
    assert quantize(x, one, z3, spec).tolist() == [3, 5, 5, 3, 1, 1, 6, 7]


def test_clamping_and_dtypes() -> None:
    x = torch.tensor([-1000.0, -1.0, 0.0, 1.0, 1000.0])
    one, zero = torch.tensor(1.0), torch.tensor(0, dtype=torch.int32)
    q = quantize(x, one, zero, QuantSpec())
    assert q.dtype == torch.int8 and q.tolist() == [-128, -1, 0, 1, 127]
    q = quantize(x, one, zero, QuantSpec(narrow_range=True))
    assert q.tolist() == [-127, -1, 0, 1, 127]
    q = quantize(x, one, zero, QuantSpec(signed=False, symmetric=False))
    assert q.dtype == torch.uint8 and q.tolist() == [0, 0, 0, 1, 255]
    q = quantize(x, one, zero, QuantSpec(bits=4))
    assert q.dtype == torch.int8 and q.tolist() == [-8, -1, 0, 1, 7]
    q = quantize(x * 100, one, zero, QuantSpec(bits=16))
    assert q.dtype == torch.int16 and q.tolist() == [-32768, -100, 0, 100, 32767]
    assert integer_dtype(QuantSpec(bits=16, signed=False)) == torch.int32
    assert integer_dtype(QuantSpec(bits=12)) == torch.int16


def test_dequantize_hand_computed() -> None:
    spec = QuantSpec(signed=False, symmetric=False)
    q = torch.tensor([0, 64, 255], dtype=torch.uint8)
    out = dequantize(q, torch.tensor(0.5), torch.tensor(64, dtype=torch.int32), spec)
    assert out.dtype == torch.float32 and out.tolist() == [-32.0, 0.0, 95.5]


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_channel_quantize_matches_loop(axis: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, generator=gen) * 3
    channels = x.shape[axis]
    scale = torch.linspace(0.01, 0.05, channels)
    zp = torch.arange(channels, dtype=torch.int32) - 1
    spec = QuantSpec(axis=axis)
    q = quantize(x, scale, zp, spec)
    out = dequantize(q, scale, zp, spec)
    for c in range(channels):
        xc = x.select(axis, c)
        qc = torch.clamp(torch.round(xc / scale[c]) + zp[c], -128, 127)
        assert torch.equal(q.select(axis, c), qc.to(torch.int8))
        torch.testing.assert_close(out.select(axis, c), (qc - zp[c]) * scale[c])


def test_reshape_for_axis() -> None:
    t = torch.arange(4.0)
    assert reshape_for_axis(t, 3, 1).shape == (1, 4, 1)
    assert reshape_for_axis(t, 3, -1).shape == (1, 1, 4)
    assert reshape_for_axis(t, 3, None) is t
    assert reshape_for_axis(torch.tensor(2.0), 3, 0).shape == ()


def test_check_finite_names_the_tensor() -> None:
    with pytest.raises(NonFiniteError, match=r"'conv1.input'.*1 NaN and 0 Inf"):
        check_finite(torch.tensor([1.0, float("nan")]), "conv1.input")
    with pytest.raises(NonFiniteError, match=r"'w'.*0 NaN and 2 Inf"):
        check_finite(torch.tensor([float("inf"), -float("inf")]), "w")
    with pytest.raises(EmptyCalibrationError, match="'e'"):
        check_finite(torch.zeros(0, 3), "e")
    check_finite(torch.tensor([1, 2]), "ints")

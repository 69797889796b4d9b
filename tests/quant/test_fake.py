"""Fake quantization: values, straight-through gradients, LSQ and learnable-range gradients."""

from __future__ import annotations

import math

import pytest
import torch

from torchquant.quant.affine import dequantize, qparams_from_range, quantize
from torchquant.quant.fake import (
    fake_quantize,
    fake_quantize_learnable_range,
    fake_quantize_lsq,
    fake_quantize_reference,
    lsq_grad_factor,
)
from torchquant.quant.spec import QuantSpec

SPECS = [
    QuantSpec(),
    QuantSpec(bits=4),
    QuantSpec(bits=16),
    QuantSpec(narrow_range=True),
    QuantSpec(symmetric=False),
    QuantSpec(bits=4, signed=False, symmetric=False),
]


def _data(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def _per_tensor_qparams(x: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    # Clip at 80% of the range so some elements fall outside the grid.
    return qparams_from_range(0.8 * x.min(), 0.8 * x.max(), spec)


def _away_from_ties(x: torch.Tensor, scale: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Mask of elements whose x / s is not within 1e-3 of a rounding tie."""
    s = scale if axis is None else scale.reshape([-1 if d == axis else 1 for d in range(x.dim())])
    frac = torch.frac((x / s).abs())
    return (frac - 0.5).abs() > 1e-3


@pytest.mark.parametrize("spec", SPECS)
def test_per_tensor_equals_dequantize_quantize(spec: QuantSpec) -> None:
    x = _data(64, 33)
    scale, zp = _per_tensor_qparams(x, spec)
    want = dequantize(quantize(x, scale, zp, spec), scale, zp, spec)
    keep = _away_from_ties(x, scale, None)
    for fq in (fake_quantize, fake_quantize_reference):
        got = fq(x, scale, zp, spec)
        assert got.dtype == torch.float32 and got.shape == x.shape
        torch.testing.assert_close(got[keep], want[keep], rtol=0, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize(
    "spec", [QuantSpec(), QuantSpec(narrow_range=True, bits=4), QuantSpec(symmetric=False)]
)
def test_per_channel_equals_dequantize_quantize(axis: int, spec: QuantSpec) -> None:
    spec = spec.with_(axis=axis)
    x = _data(6, 5, 7)
    flat = x.movedim(axis, 0).reshape(x.shape[axis], -1)
    scale, zp = qparams_from_range(0.8 * flat.amin(1), 0.8 * flat.amax(1), spec)
    want = dequantize(quantize(x, scale, zp, spec), scale, zp, spec)
    keep = _away_from_ties(x, scale, axis)
    kernel = fake_quantize(x, scale, zp, spec)
    reference = fake_quantize_reference(x, scale, zp, spec)
    torch.testing.assert_close(kernel[keep], want[keep], rtol=0, atol=1e-6)
    torch.testing.assert_close(reference[keep], want[keep], rtol=0, atol=1e-6)


def test_kernel_and_reference_agree_everywhere_but_ties() -> None:
    spec = QuantSpec()
    x = _data(10_000, seed=3)
    scale, zp = _per_tensor_qparams(x, spec)
    diff = (fake_quantize(x, scale, zp, spec) - fake_quantize_reference(x, scale, zp, spec)).abs()
    # At most one level apart, and only on (near-)ties.
    assert float(diff.max()) <= float(scale) * (1 + 1e-6)
    assert int((diff > 0).sum()) <= 2


def test_hand_computed_values_and_gradients() -> None:
    # int4 signed [-8, 7], s = 0.5: inside values round half to even, outside clamp.
    spec = QuantSpec(bits=4)
    scale, zp = torch.tensor(0.5), torch.tensor(0, dtype=torch.int32)
    values = [0.3, 0.25, 0.75, -4.0, -4.3, 3.5, 3.7, 10.0]
    want = [0.5, 0.0, 1.0, -4.0, -4.0, 3.5, 3.5, 3.5]
    # -4.3 / 0.5 = -8.6 rounds to -9 < qmin: outside, gradient 0; 3.7 / 0.5 = 7.4 -> 7 inside.
    want_grad = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    for fq in (fake_quantize, fake_quantize_reference):
        x = torch.tensor(values, requires_grad=True)
        y = fq(x, scale, zp, spec)
        (y * torch.arange(1.0, 9.0)).sum().backward()
        assert y.tolist() == want
        assert x.grad is not None
        assert x.grad.tolist() == [g * w for g, w in zip(want_grad, range(1, 9), strict=True)]


@pytest.mark.parametrize("axis", [0, 1])
def test_per_channel_gradient_mask(axis: int) -> None:
    spec = QuantSpec(axis=axis)
    x = _data(4, 6, seed=5).requires_grad_(True)
    scale = torch.linspace(0.005, 0.02, x.shape[axis])
    zp = torch.zeros(x.shape[axis], dtype=torch.int32)
    for fq in (fake_quantize, fake_quantize_reference):
        x.grad = None
        fq(x, scale, zp, spec).sum().backward()
        s = scale.reshape([-1 if d == axis else 1 for d in range(2)])
        q = torch.round(x.detach() / s)
        assert x.grad is not None
        assert torch.equal(x.grad, ((q >= -128) & (q <= 127)).to(torch.float32))
        assert 0 < int(x.grad.sum()) < x.numel()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_use_reference(dtype: torch.dtype) -> None:
    spec = QuantSpec()
    x = _data(100).to(dtype)
    scale, zp = _per_tensor_qparams(x.float(), spec)
    out = fake_quantize(x, scale, zp, spec)
    assert out.dtype == dtype
    want = fake_quantize_reference(x.float(), scale, zp, spec)
    if dtype == torch.float64:
        keep = _away_from_ties(x.float(), scale, None)
        torch.testing.assert_close(out.float()[keep], want[keep], rtol=0, atol=1e-6)
    else:
        # Half precision computes x / s and the levels in its own rounding: one level apart
        # at most, plus the representation error of the output.
        err = (out.float() - want).abs()
        assert bool((err <= float(scale) + 1e-2 * want.abs()).all())


def _lsq_scale_grad(x: list[float], s: float, z: int, qmin: int, qmax: int) -> float:
    """LSQ (Esser et al. 2020, eq. 3) d out / d s summed over elements, written out."""
    total = 0.0
    for v in x:
        q = round(v / s) + z  # Python rounds half to even too
        if q < qmin:
            total += qmin - z
        elif q > qmax:
            total += qmax - z
        else:
            total += (q - z) - v / s
    return total


def test_lsq_scale_gradient_per_tensor() -> None:
    spec = QuantSpec(bits=4)
    values = [0.3, 1.26, -2.0, 5.0, -5.0, 0.9]
    x = torch.tensor(values, requires_grad=True)
    scale = torch.tensor(0.5, requires_grad=True)
    y = fake_quantize_lsq(x, scale, torch.tensor(0, dtype=torch.int32), spec)
    y.sum().backward()
    factor = 1.0 / math.sqrt(len(values) * 7)
    assert lsq_grad_factor(x, spec) == pytest.approx(factor)
    assert scale.grad is not None
    want = factor * _lsq_scale_grad(values, 0.5, 0, -8, 7)
    assert float(scale.grad) == pytest.approx(want, rel=1e-5)
    assert x.grad is not None
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]


def test_lsq_scale_gradient_per_channel_and_zero_point() -> None:
    spec = QuantSpec(bits=4, symmetric=False, axis=0)
    rows = [[0.3, 1.26, -2.0], [5.0, -5.0, 0.9]]
    x = torch.tensor(rows, requires_grad=True)
    scale = torch.tensor([0.5, 1.0], requires_grad=True)
    zp = torch.tensor([1, -2], dtype=torch.int32)
    fake_quantize_lsq(x, scale, zp, spec, grad_factor=1.0).sum().backward()
    assert scale.grad is not None
    want = [
        _lsq_scale_grad(r, s, z, -8, 7) for r, s, z in zip(rows, [0.5, 1.0], [1, -2], strict=True)
    ]
    torch.testing.assert_close(scale.grad, torch.tensor(want), rtol=1e-5, atol=1e-5)
    assert lsq_grad_factor(x, spec) == pytest.approx(1.0 / math.sqrt(3 * 7))


def test_lsq_per_tensor_negative_zero_point() -> None:
    # torch._fake_quantize_learnable_per_tensor_affine's backward reads z = -64 as -63;
    # fake_quantize_lsq must not inherit that.
    spec = QuantSpec(symmetric=False)
    # With s = 1, z = -64: x = 191 sits exactly on level 127 (inside, d/ds = 0), x = -64 on
    # level -128 (inside, d/ds = 0).
    x = torch.tensor([191.0, -64.0, 10.3], requires_grad=True)
    scale = torch.tensor(1.0, requires_grad=True)
    zp = torch.tensor(-64, dtype=torch.int32)
    fake_quantize_lsq(x, scale, zp, spec, grad_factor=1.0).sum().backward()
    assert x.grad is not None and scale.grad is not None
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    assert float(scale.grad) == pytest.approx(
        _lsq_scale_grad([191.0, -64.0, 10.3], 1.0, -64, -128, 127), rel=1e-5
    )


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(signed=False, symmetric=False),
        QuantSpec(symmetric=False),
    ],
)
def test_learnable_range_affine_gradients(spec: QuantSpec) -> None:
    values = [-1.3, -0.2, 0.05, 0.7, 2.9, 3.4]
    x = torch.tensor(values)
    clip_min = torch.tensor(-1.0, requires_grad=True)
    clip_max = torch.tensor(3.0, requires_grad=True)
    y = fake_quantize_learnable_range(x, clip_min, clip_max, spec).detach()
    y_sum = fake_quantize_learnable_range(x, clip_min, clip_max, spec).sum()
    y_sum.backward()
    s = 4.0 / 255
    z = spec.qmin - round(-1.0 / s)
    # The clipped values read back the grid's end points.
    assert float(y[0]) == pytest.approx((spec.qmin - z) * s, rel=1e-5)
    assert float(y[-1]) == pytest.approx((spec.qmax - z) * s, rel=1e-5)
    d_out_d_s = _lsq_scale_grad(values, s, z, spec.qmin, spec.qmax)
    assert clip_min.grad is not None and clip_max.grad is not None
    # s = (clip_max - clip_min) / 255: ds/dclip_max = 1/255, ds/dclip_min = -1/255.
    assert float(clip_max.grad) == pytest.approx(d_out_d_s / 255, rel=1e-4)
    assert float(clip_min.grad) == pytest.approx(-d_out_d_s / 255, rel=1e-4)
    assert float(clip_max.grad) != 0.0


def test_learnable_range_symmetric_gradient_to_clip_max() -> None:
    spec = QuantSpec()
    values = [-3.0, -0.4, 0.33, 1.0, 2.5]
    x = torch.tensor(values)
    clip_min = torch.tensor(-1.0, requires_grad=True)
    clip_max = torch.tensor(2.0, requires_grad=True)
    fake_quantize_learnable_range(x, clip_min, clip_max, spec).sum().backward()
    s = 2.0 / 127
    assert clip_max.grad is not None
    want = _lsq_scale_grad(values, s, 0, -128, 127) / 127
    assert float(clip_max.grad) == pytest.approx(want, rel=1e-4)
    # Symmetric grids learn clip_max only.
    assert clip_min.grad is None or float(clip_min.grad) == 0.0

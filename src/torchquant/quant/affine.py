"""Pure arithmetic of affine quantization: scale and zero point from a range, quantize,
dequantize.

``q = clamp(round(x / s) + z, qmin, qmax)``, ``x' = (q - z) * s``, rounding half to even
(what ``torch.round``, ONNX ``QuantizeLinear`` and TensorRT do). Scales are float32, zero
points int32. Source: ../shared/specs/algorithms.md sections 1 and 5 (AMCT scale rules).
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchquant.errors import ConfigError, EmptyCalibrationError, NonFiniteError
from torchquant.quant.spec import QuantSpec

__all__ = [
    "FLT_EPSILON",
    "check_finite",
    "dequantize",
    "integer_dtype",
    "qparams_from_range",
    "quantize",
    "reshape_for_axis",
]

# float32 machine epsilon: AMCT replaces any scale below it by 1 (degenerate range).
FLT_EPSILON = 1.1920928955078125e-07


def check_finite(x: Tensor, name: str) -> tuple[Tensor, Tensor] | None:
    """Raise `NonFiniteError` naming ``name`` if ``x`` holds NaN or Inf, and
    `EmptyCalibrationError` if it has no elements.

    Returns ``x``'s ``(min, max)`` (0-dim tensors on its device) when ``x`` is floating
    point, so that callers need no second pass for the range; None otherwise.
    """
    if x.numel() == 0:
        raise EmptyCalibrationError(f"tensor {name!r} is empty (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        return None
    # One reduction pass: NaN propagates into aminmax and Inf shows as a bound.
    lo, hi = torch.aminmax(x)
    if not bool(torch.isfinite(torch.stack([lo, hi])).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise NonFiniteError(
            f"tensor {name!r} (shape {tuple(x.shape)}) holds {n_nan} NaN and {n_inf} Inf values"
        )
    return lo, hi


def reshape_for_axis(t: Tensor, ndim: int, axis: int | None) -> Tensor:
    """View a per-channel vector ``t`` (C,) so it broadcasts along ``axis`` of an
    ``ndim``-dimensional tensor; per-tensor values pass through."""
    if axis is None or t.dim() == 0:
        return t
    shape = [1] * ndim
    shape[axis] = -1
    return t.reshape(shape)


def qparams_from_range(lo: Tensor, hi: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """Scale (float32) and zero point (int32) that map the range ``[lo, hi]`` onto
    ``spec``'s grid; ``lo``/``hi`` are scalars or per-channel vectors (C,).

    Symmetric: ``T = max(|lo|, |hi|)``, ``s = T / (2^(b-1) - 1)`` (``scale_rule="amct"``:
    ``/ 2^(b-1)`` when ``|hi| < |lo|``), zero point at the grid centre.
    Affine: ``s = (max(hi,0) - min(lo,0)) / (qmax - qmin)``, ``z = qmin - round(lo / s)``.
    A scale below FLT_EPSILON becomes 1, as AMCT does, so constant and all-zero tensors
    get a finite, positive scale.
    """
    lo = torch.as_tensor(lo).to(torch.float32)
    hi = torch.as_tensor(hi).to(torch.float32)
    if lo.shape != hi.shape:
        raise ConfigError(f"range bounds differ in shape: {tuple(lo.shape)} vs {tuple(hi.shape)}")
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise NonFiniteError(f"range [{lo.tolist()}, {hi.tolist()}] is not finite")
    if bool((lo > hi).any()):
        raise ConfigError("range has lo > hi")
    half_levels = 2 ** (spec.bits - 1)
    if spec.symmetric:
        threshold = torch.maximum(lo.abs(), hi.abs())
        if spec.signed:
            divisor = torch.full_like(threshold, half_levels - 1)
            if spec.scale_rule == "amct":
                divisor = divisor + (hi.abs() < lo.abs()).to(torch.float32)
            zero_point = torch.zeros_like(threshold, dtype=torch.int32)
        else:
            divisor = torch.full_like(threshold, (spec.qmax - spec.qmin) / 2)
            zero_point = torch.full_like(threshold, half_levels, dtype=torch.int32)
        scale = threshold / divisor
        scale = torch.where(scale < FLT_EPSILON, torch.ones_like(scale), scale)
        return scale, zero_point
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    scale = (hi - lo) / float(spec.qmax - spec.qmin)
    scale = torch.where(scale < FLT_EPSILON, torch.ones_like(scale), scale)
    zero_point = torch.clamp(spec.qmin - torch.round(lo / scale), spec.qmin, spec.qmax)
    return scale, zero_point.to(torch.int32)


def integer_dtype(spec: QuantSpec) -> torch.dtype:
    """Smallest torch integer dtype that holds ``spec``'s grid."""
    if spec.bits <= 8:
        return torch.int8 if spec.signed else torch.uint8
    if spec.bits <= 16 and spec.signed:
        return torch.int16
    return torch.int32


def quantize(x: Tensor, scale: Tensor, zero_point: Tensor, spec: QuantSpec) -> Tensor:
    """Integer tensor ``clamp(round(x / s) + z, qmin, qmax)`` in `integer_dtype(spec)`.

    Divides (rather than multiplying by 1/s) to match ONNX ``QuantizeLinear`` bit for bit.
    """
    s = reshape_for_axis(scale, x.dim(), spec.axis)
    z = reshape_for_axis(zero_point, x.dim(), spec.axis)
    q = torch.clamp(torch.round(x / s) + z, spec.qmin, spec.qmax)
    return q.to(integer_dtype(spec))


def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor, spec: QuantSpec) -> Tensor:
    """Float32 tensor ``(q - z) * s``."""
    s = reshape_for_axis(scale, q.dim(), spec.axis)
    z = reshape_for_axis(zero_point, q.dim(), spec.axis)
    return (q.to(torch.float32) - z.to(torch.float32)) * s

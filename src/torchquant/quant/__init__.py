"""Quantization arithmetic: grids (`QuantSpec`), scale/zero point, (fake) quantization,
and the stateful `Quantizer` module that applies it inside models."""

from torchquant.quant.affine import (
    FLT_EPSILON,
    check_finite,
    dequantize,
    integer_dtype,
    qparams_from_range,
    quantize,
    reshape_for_axis,
)
from torchquant.quant.fake import (
    fake_quantize,
    fake_quantize_learnable_range,
    fake_quantize_lsq,
    fake_quantize_reference,
    lsq_grad_factor,
)
from torchquant.quant.spec import QuantSpec

__all__ = [
    "FLT_EPSILON",
    "QuantSpec",
    "check_finite",
    "dequantize",
    "fake_quantize",
    "fake_quantize_learnable_range",
    "fake_quantize_lsq",
    "fake_quantize_reference",
    "integer_dtype",
    "lsq_grad_factor",
    "qparams_from_range",
    "quantize",
    "reshape_for_axis",
]

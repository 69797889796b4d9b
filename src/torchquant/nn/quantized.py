"""Converted (deployable) modules: integer weights, computed the way an engine computes.

`convert` turns each QAT module into one of these. The weight, with any BatchNorm folded in
(Krishnamoorthi 2018, section 3.2), is stored as an integer tensor (``int8`` for 8-bit
grids) with the weight quantizer's per-channel scale and zero point, so a converted model's
state_dict is about 4x smaller than the float one. The forward is what an ONNX
QuantizeLinear/DequantizeLinear graph or TensorRT computes:
``output_quantizer(relu?(op(input_quantizer(x), dequantize(w_int), bias)))``, where the
(frozen) quantizers round ``x / s`` like ONNX ``QuantizeLinear``.

state_dict keys (stable): ``weight`` (integer), ``bias`` (float, BN folded),
``weight_quantizer.*`` (its ``scale``/``zero_point`` dequantize ``weight``),
``input_quantizer.*``, ``output_quantizer.*``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchquant.errors import UnsupportedModelError
from torchquant.nn.qat import QuantizedWeightModule
from torchquant.quant.affine import quantize
from torchquant.quant.quantizer import Quantizer

__all__ = [
    "QuantizedConv1d",
    "QuantizedConv2d",
    "QuantizedConv3d",
    "QuantizedConvTranspose2d",
    "QuantizedLinear",
    "QuantizedModule",
    "quantized_from_qat",
]


class QuantizedModule(nn.Module):
    """Base of the converted modules; build them with `from_qat`."""

    weight: Tensor
    bias: Tensor | None
    weight_quantizer: Quantizer
    input_quantizer: Quantizer | None
    output_quantizer: Quantizer | None

    def __init__(self, qat: QuantizedWeightModule) -> None:
        super().__init__()
        quantizer = qat.weight_quantizer
        assert quantizer is not None and quantizer.has_qparams
        weight, bias = qat.folded_weight_bias()
        with torch.no_grad():
            w_int = quantize(weight, quantizer.scale, quantizer.zero_point, quantizer.spec)
        self.register_buffer("weight", w_int)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.weight_quantizer = quantizer
        self.input_quantizer = qat.input_quantizer
        self.output_quantizer = qat.output_quantizer
        self.relu = qat._relu

    @classmethod
    def from_qat(cls, qat: QuantizedWeightModule) -> QuantizedModule:
        """The converted module of a QAT module whose weight quantizer has qparams."""
        return cls(qat)

    def dequantized_weight(self) -> Tensor:
        """``(w_int - z) * s``: the float weight the engine computes with."""
        return self.weight_quantizer.dequantize_integer(self.weight)

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        w = self.dequantized_weight()
        if w.dtype != x.dtype:  # only then: a no-op cast would sit between DQ and Conv in ONNX
            w = w.to(x.dtype)
        y = self._op(x, w, self.bias)
        if self.relu:
            y = F.relu(y)
        return y if self.output_quantizer is None else self.output_quantizer(y)

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)} {self.weight.dtype}, relu={self.relu}"


class _QuantizedConv(QuantizedModule):
    """Converted ConvNd: keeps the conv hyper-parameters and calls ``F.conv{n}d``."""

    _conv: ClassVar[Callable[..., Tensor]]

    def __init__(self, qat: QuantizedWeightModule) -> None:
        super().__init__(qat)
        conv: Any = qat
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.padding_mode = conv.padding_mode
        self._reversed_padding = conv._reversed_padding_repeated_twice

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            # As nn.ConvNd does: explicit padding first, then an unpadded convolution.
            x = F.pad(x, self._reversed_padding, mode=self.padding_mode)
            padding = 0
        return type(self)._conv(x, weight, bias, self.stride, padding, self.dilation, self.groups)


class QuantizedConv1d(_QuantizedConv):
    """Converted Conv1d (also from Conv1d+BN(+ReLU))."""

    _conv = F.conv1d


class QuantizedConv2d(_QuantizedConv):
    """Converted Conv2d (also from Conv2d+BN(+ReLU))."""

    _conv = F.conv2d


class QuantizedConv3d(_QuantizedConv):
    """Converted Conv3d (also from Conv3d+BN(+ReLU))."""

    _conv = F.conv3d


class QuantizedConvTranspose2d(QuantizedModule):
    """Converted ConvTranspose2d (also from ConvTranspose2d+BN); weight axis 1 per channel.
    The output padding is the module's fixed ``output_padding``."""

    def __init__(self, qat: QuantizedWeightModule) -> None:
        super().__init__(qat)
        conv: Any = qat
        self.stride, self.padding = conv.stride, conv.padding
        self.output_padding, self.dilation = conv.output_padding, conv.dilation
        self.groups = conv.groups

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.conv_transpose2d(
            x, weight, bias, self.stride, self.padding, self.output_padding, self.groups,
            self.dilation,
        )  # fmt: skip


class QuantizedLinear(QuantizedModule):
    """Converted Linear (also from Linear+ReLU)."""

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)


_BY_FLOAT: list[tuple[type[nn.Module], type[QuantizedModule]]] = [
    (nn.Conv1d, QuantizedConv1d),
    (nn.Conv2d, QuantizedConv2d),
    (nn.Conv3d, QuantizedConv3d),
    (nn.ConvTranspose2d, QuantizedConvTranspose2d),
    (nn.Linear, QuantizedLinear),
]


def quantized_from_qat(qat: QuantizedWeightModule) -> QuantizedModule:
    """The converted module for a QAT module (chosen by its float base class)."""
    for float_type, converted in _BY_FLOAT:
        if isinstance(qat, float_type):
            return converted.from_qat(qat)
    raise UnsupportedModelError(f"no converted module for {type(qat).__name__}")

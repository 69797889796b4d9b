"""QAT modules: float Conv/Linear layers whose weight goes through a `Quantizer`.

Like PyTorch's eager QAT modules (``torch.ao.nn.qat``, ``torch.ao.nn.intrinsic.qat``): each
is a subclass of its float module (so ``isinstance(m, nn.Conv2d)`` holds and the float
parameters are shared with the module it was made from), computing
``output_quantizer(op(input_quantizer(x), weight_quantizer(weight), bias))``:

- ``weight_quantizer``: per-channel on axis 0 (axis 1 for ConvTranspose) when the qconfig's
  weight spec is per-channel; ``None`` when the qconfig has no weight config (float weight).
- ``input_quantizer``: optional, TensorRT-style quantization of the layer input (the
  automatic path).
- ``output_quantizer``: optional, quantization of the layer output (the eager path, like
  PyTorch's ``activation_post_process``); applied after the fused ReLU.

state_dict keys (stable): ``weight``, ``bias``, ``weight_quantizer.*``, ``input_quantizer.*``,
``output_quantizer.*`` (the float module's keys plus the quantizers').
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from torchquant.config import QConfig, QuantizerConfig
from torchquant.nn import fused
from torchquant.quant.quantizer import Quantizer

__all__ = [
    "QConv1d",
    "QConv2d",
    "QConv3d",
    "QConvReLU1d",
    "QConvReLU2d",
    "QConvReLU3d",
    "QConvTranspose2d",
    "QLinear",
    "QLinearReLU",
    "QuantizedWeightModule",
    "activation_quantizer",
]


def activation_quantizer(qconfig: QConfig) -> Quantizer | None:
    """A quantizer for an activation from ``qconfig`` (``None`` if it has none)."""
    return None if qconfig.activation is None else Quantizer(qconfig.activation)


def _weight_config(qconfig: QConfig, axis: int) -> QuantizerConfig | None:
    cfg = qconfig.weight
    if cfg is None or not cfg.spec.per_channel:
        return cfg
    return cfg.with_(spec={"axis": axis})


def _conv_kwargs(conv: nn.Module) -> dict[str, Any]:
    """Constructor arguments that rebuild ``conv`` (a Conv or ConvTranspose module)."""
    assert isinstance(conv, nn.modules.conv._ConvNd)
    kwargs: dict[str, Any] = {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "dilation": conv.dilation,
        "groups": conv.groups,
        "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
        "device": conv.weight.device,
        "dtype": conv.weight.dtype,
    }
    if conv.transposed:
        kwargs["output_padding"] = conv.output_padding
    return kwargs


class QuantizedWeightModule(nn.Module):
    """Mixin of every QAT module with a weight: quantizer set-up, ``from_float`` and the
    forward ``output_quantizer(relu?(op(input_quantizer(x), weight_quantizer(w), b)))``.

    Subclasses set ``_weight_axis``, ``_relu`` and implement `_op`.
    """

    _weight_axis: ClassVar[int] = 0
    _relu: ClassVar[bool] = False
    weight: Tensor
    bias: Any  # Tensor | None, typed as the float module types it
    weight_quantizer: Quantizer | None
    input_quantizer: Quantizer | None
    output_quantizer: Quantizer | None

    def _init_quantizers(self, qconfig: QConfig, input_quant: bool, output_quant: bool) -> None:
        self.qconfig = qconfig
        weight_cfg = _weight_config(qconfig, self._weight_axis)
        self.weight_quantizer = None if weight_cfg is None else Quantizer(weight_cfg)
        self.input_quantizer = activation_quantizer(qconfig) if input_quant else None
        self.output_quantizer = activation_quantizer(qconfig) if output_quant else None
        for quantizer in (self.weight_quantizer, self.input_quantizer, self.output_quantizer):
            if quantizer is not None:
                quantizer.to(self.weight.device)

    @classmethod
    def _float_parts(cls, mod: nn.Module) -> nn.Module:
        """The float layer inside ``mod`` (a float layer or a fused container)."""
        return mod[0] if isinstance(mod, fused.FusedModule) else mod

    @classmethod
    def _layer_kwargs(cls, layer: nn.Module) -> dict[str, Any]:
        """Constructor arguments that rebuild the float ``layer``."""
        if not isinstance(layer, nn.Linear):
            return _conv_kwargs(layer)
        return {
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "bias": layer.bias is not None,
            "device": layer.weight.device,
            "dtype": layer.weight.dtype,
        }

    @classmethod
    def from_float(
        cls,
        mod: nn.Module,
        qconfig: QConfig,
        *,
        input_quant: bool = False,
        output_quant: bool = False,
    ) -> QuantizedWeightModule:
        """The QAT version of ``mod`` (a float layer or a fused container), sharing its
        parameters."""
        layer: Any = cls._float_parts(mod)
        kwargs = cls._layer_kwargs(layer)
        new = cls(**kwargs, qconfig=qconfig, input_quant=input_quant, output_quant=output_quant)
        new.weight = layer.weight
        new.bias = layer.bias
        new.train(mod.training)
        return new

    def folded_weight_bias(self) -> tuple[Tensor, Tensor | None]:
        """The weight and bias a deployment engine uses (BN folded where there is one)."""
        return self.weight, self.bias

    def _op(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, output_size: list[int] | None = None
    ) -> Tensor:
        """The float layer's computation with the given weight (``output_size``: only
        ConvTranspose uses it)."""
        raise NotImplementedError

    def _quant_weight(self, w: Tensor) -> Tensor:
        return w if self.weight_quantizer is None else self.weight_quantizer(w)

    def _finish(self, y: Tensor) -> Tensor:
        if self._relu:
            y = F.relu(y)
        return y if self.output_quantizer is None else self.output_quantizer(y)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return self._finish(self._op(x, self._quant_weight(self.weight), self.bias))


class _QConv(QuantizedWeightModule):
    """Shared ``__init__`` and ``_op`` of the QAT convolutions."""

    out_channels: int

    def __init__(
        self,
        *args: Any,
        qconfig: QConfig,
        input_quant: bool = False,
        output_quant: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._init_quantizers(qconfig, input_quant, output_quant)

    def _op(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, output_size: list[int] | None = None
    ) -> Tensor:
        out: Tensor = self._conv_forward(x, weight, bias)  # type: ignore[operator]
        return out


class QConv1d(_QConv, nn.Conv1d):
    """QAT Conv1d."""


class QConv2d(_QConv, nn.Conv2d):
    """QAT Conv2d."""


class QConv3d(_QConv, nn.Conv3d):
    """QAT Conv3d."""


class QConvReLU1d(QConv1d):
    """QAT Conv1d + ReLU (from `torchquant.nn.ConvReLU1d`)."""

    _relu = True


class QConvReLU2d(QConv2d):
    """QAT Conv2d + ReLU (from `torchquant.nn.ConvReLU2d`)."""

    _relu = True


class QConvReLU3d(QConv3d):
    """QAT Conv3d + ReLU (from `torchquant.nn.ConvReLU3d`)."""

    _relu = True


class QConvTranspose2d(_QConv, nn.ConvTranspose2d):
    """QAT ConvTranspose2d; per-channel weights on axis 1 (the output channels)."""

    _weight_axis = 1

    def _op(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, output_size: list[int] | None = None
    ) -> Tensor:
        # Same computation as nn.ConvTranspose2d.forward, with the given weight.
        padding: Any = self.padding  # a tuple: ConvTranspose takes no "same"/"valid"
        stride, dilation = list(self.stride), list(self.dilation)
        output_padding = self._output_padding(
            x, output_size, stride, list(padding), list(self.kernel_size), 2, dilation
        )
        return F.conv_transpose2d(
            x, weight, bias, stride, padding, output_padding, self.groups, dilation
        )

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        w = self._quant_weight(self.weight)
        return self._finish(self._op(x, w, self.bias, output_size))


class QLinear(QuantizedWeightModule, nn.Linear):
    """QAT Linear."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        qconfig: QConfig,
        input_quant: bool = False,
        output_quant: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_features, out_features, bias, **kwargs)
        self._init_quantizers(qconfig, input_quant, output_quant)

    def _op(
        self, x: Tensor, weight: Tensor, bias: Tensor | None, output_size: list[int] | None = None
    ) -> Tensor:
        return F.linear(x, weight, bias)


class QLinearReLU(QLinear):
    """QAT Linear + ReLU (from `torchquant.nn.LinearReLU`)."""

    _relu = True

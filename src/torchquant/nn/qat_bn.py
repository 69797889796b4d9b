"""QAT Conv+BatchNorm modules with BN folded into the quantized weight during training.

The forward is PyTorch's ``_ConvBnNd._forward_approximate`` (torch.ao.nn.intrinsic.qat),
itself Krishnamoorthi 2018 ("Quantizing deep convolutional networks for efficient
inference: A whitepaper", section 3.2, arXiv:1806.08342):

1. ``f = gamma / sqrt(running_var + eps)`` per output channel;
2. ``y = conv(x, weight_quantizer(weight * f))``, the weight a deployment engine will use;
3. ``y = y / f + bias``, which undoes the scaling, so that
4. ``bn(y)`` normalises with the batch statistics in training (and updates the running
   statistics exactly as ``nn.BatchNorm`` does) and with the running statistics in eval,
   where steps 2-4 equal the folded conv ``conv(x, q(w f)) + (bias - mean) f + beta``.

``freeze_bn_stats()`` (or `freeze_bn` on a model) stops the statistics updates and makes
training use the running statistics too, as PyTorch's QAT recipe does after a few epochs.
``train()``/``eval()`` switch the BN like any module unless it is frozen.

state_dict keys (stable): ``weight``, ``bias``, ``bn.weight``, ``bn.bias``,
``bn.running_mean``, ``bn.running_var``, ``bn.num_batches_tracked``, ``weight_quantizer.*``,
``input_quantizer.*``, ``output_quantizer.*``: PyTorch's QAT ConvBn keys plus torchquant's
quantizers.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from torchquant.config import QConfig
from torchquant.errors import UnsupportedModelError
from torchquant.nn import fused
from torchquant.nn.qat import (
    QConv1d,
    QConv2d,
    QConv3d,
    QConvTranspose2d,
    QuantizedWeightModule,
    _QConv,
    activation_quantizer,
)
from torchquant.quant.quantizer import Quantizer

__all__ = [
    "QBnReLU2d",
    "QConvBn1d",
    "QConvBn2d",
    "QConvBn3d",
    "QConvBnReLU1d",
    "QConvBnReLU2d",
    "QConvBnReLU3d",
    "QConvTransposeBn2d",
    "freeze_bn",
    "unfreeze_bn",
]


def _channel_shape(ndim: int, axis: int) -> list[int]:
    """Shape that broadcasts a per-channel vector along ``axis`` of an ``ndim`` tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return shape


class _BnStatsMixin(nn.Module):
    """``freeze_bn_stats``/``update_bn_stats`` and a ``train`` that respects them."""

    bn_frozen: bool = False
    _mode: bool = True  # the mode last asked for with train()/eval()

    def _set_bn_training(self, flag: bool) -> None:
        raise NotImplementedError

    def train(self, mode: bool = True) -> Any:
        super().train(mode)
        self._mode = mode
        if self.bn_frozen:
            self._set_bn_training(False)
        return self

    def freeze_bn_stats(self) -> Any:
        """Use (and stop updating) the running statistics, also in training."""
        self.bn_frozen = True
        self._set_bn_training(False)
        return self

    def update_bn_stats(self) -> Any:
        """Undo `freeze_bn_stats`: training normalises with batch statistics again."""
        self.bn_frozen = False
        self._set_bn_training(self._mode)
        return self


class _QConvBn(_BnStatsMixin, _QConv):
    """Shared code of the QAT Conv+BN modules (BN in ``self.bn``)."""

    _bn_type: ClassVar[type[_BatchNorm]]
    bn: _BatchNorm

    def __init__(
        self,
        *args: Any,
        qconfig: QConfig,
        input_quant: bool = False,
        output_quant: bool = False,
        eps: float = 1e-5,
        momentum: float = 0.1,
        freeze_bn: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args, qconfig=qconfig, input_quant=input_quant, output_quant=output_quant, **kwargs
        )
        w = self.weight
        self.bn = self._bn_type(
            self.out_channels, eps=eps, momentum=momentum, device=w.device, dtype=w.dtype
        )
        if freeze_bn:
            self.freeze_bn_stats()

    def _set_bn_training(self, flag: bool) -> None:
        self.bn.train(flag)

    @classmethod
    def from_float(
        cls,
        mod: nn.Module,
        qconfig: QConfig,
        *,
        input_quant: bool = False,
        output_quant: bool = False,
    ) -> QuantizedWeightModule:
        """The QAT module of a fused ``ConvBn*``/``ConvBnReLU*`` container, sharing its conv
        parameters and its BatchNorm module."""
        if not isinstance(mod, fused.FusedModule):
            raise UnsupportedModelError(f"{cls.__name__} is made from a fused container")
        conv, bn = mod[0], mod[1]
        if not isinstance(bn, _BatchNorm) or bn.running_var is None:
            raise UnsupportedModelError(
                f"{cls.__name__}: the BatchNorm must track running statistics to be folded"
            )
        if conv.transposed and conv.groups != 1:
            raise UnsupportedModelError(
                f"{cls.__name__}: grouped ConvTranspose + BatchNorm is not supported"
            )
        new = super().from_float(mod, qconfig, input_quant=input_quant, output_quant=output_quant)
        assert isinstance(new, _QConvBn)
        new.bn = bn
        new.train(mod.training)
        return new

    def _bn_scale(self) -> Tensor:
        """``gamma / sqrt(running_var + eps)``, (C_out,)."""
        bn = self.bn
        assert bn.running_var is not None
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
        return gamma / std

    def folded_weight_bias(self) -> tuple[Tensor, Tensor | None]:
        """BN folded with the running statistics: ``w f`` and ``(bias - mean) f + beta``."""
        bn = self.bn
        assert bn.running_mean is not None
        f = self._bn_scale()
        weight = self.weight * f.reshape(_channel_shape(self.weight.dim(), self._weight_axis))
        bias = self.bias if self.bias is not None else torch.zeros_like(bn.running_mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        return weight, (bias - bn.running_mean) * f + beta

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        f = self._bn_scale()
        w_shape = _channel_shape(self.weight.dim(), self._weight_axis)
        w = self._quant_weight(self.weight * f.reshape(w_shape))
        y = self._op(x, w, None, output_size)  # (N, C_out, ...)
        shape = _channel_shape(y.dim(), 1)
        if self.bias is None:
            y = y / f.reshape(shape)
        else:  # bias + y / f in one pass over the activation
            y = torch.addcdiv(self.bias.reshape(shape), y, f.reshape(shape))
        return self._finish(self.bn(y))


class QConvBn1d(_QConvBn, QConv1d):
    """QAT Conv1d + BatchNorm1d (from `torchquant.nn.ConvBn1d`)."""

    _bn_type = nn.BatchNorm1d


class QConvBn2d(_QConvBn, QConv2d):
    """QAT Conv2d + BatchNorm2d (from `torchquant.nn.ConvBn2d`)."""

    _bn_type = nn.BatchNorm2d


class QConvBn3d(_QConvBn, QConv3d):
    """QAT Conv3d + BatchNorm3d (from `torchquant.nn.ConvBn3d`)."""

    _bn_type = nn.BatchNorm3d


class QConvBnReLU1d(QConvBn1d):
    """QAT Conv1d + BatchNorm1d + ReLU."""

    _relu = True


class QConvBnReLU2d(QConvBn2d):
    """QAT Conv2d + BatchNorm2d + ReLU."""

    _relu = True


class QConvBnReLU3d(QConvBn3d):
    """QAT Conv3d + BatchNorm3d + ReLU."""

    _relu = True


class QConvTransposeBn2d(_QConvBn, QConvTranspose2d):
    """QAT ConvTranspose2d + BatchNorm2d; weight (C_in, C_out, kh, kw) scaled on axis 1
    (ungrouped only)."""

    _bn_type = nn.BatchNorm2d


class QBnReLU2d(_BnStatsMixin, nn.BatchNorm2d):
    """BatchNorm2d + ReLU with an optional input and output quantizer (no weight to
    quantize: a deployment engine runs it as a per-channel scale and shift).

    state_dict keys: the BatchNorm's, ``input_quantizer.*``, ``output_quantizer.*``.
    """

    def __init__(
        self,
        num_features: int,
        *args: Any,
        qconfig: QConfig,
        input_quant: bool = False,
        output_quant: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_features, *args, **kwargs)
        self.qconfig = qconfig
        self.input_quantizer: Quantizer | None = (
            activation_quantizer(qconfig) if input_quant else None
        )
        self.output_quantizer: Quantizer | None = (
            activation_quantizer(qconfig) if output_quant else None
        )

    def _set_bn_training(self, flag: bool) -> None:
        # The module is its own BN: only its own flag changes; its quantizers follow train().
        self.training = flag

    @classmethod
    def from_float(
        cls,
        mod: nn.Module,
        qconfig: QConfig,
        *,
        input_quant: bool = False,
        output_quant: bool = False,
    ) -> QBnReLU2d:
        """The QAT module of a `torchquant.nn.BnReLU2d`, sharing its parameters and
        statistics."""
        if not isinstance(mod, fused.BnReLU2d):
            raise UnsupportedModelError(f"{cls.__name__} is made from a BnReLU2d")
        bn = mod[0]
        assert isinstance(bn, nn.BatchNorm2d)
        new = cls(
            bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
            qconfig=qconfig, input_quant=input_quant, output_quant=output_quant,
            device=bn.running_mean.device if bn.running_mean is not None else None,
        )  # fmt: skip
        for name in ("weight", "bias"):
            setattr(new, name, getattr(bn, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(new, name, getattr(bn, name))
        new.train(mod.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        y = F.relu(super().forward(x))
        return y if self.output_quantizer is None else self.output_quantizer(y)


def freeze_bn(model: nn.Module) -> None:
    """`freeze_bn_stats` on every QAT BatchNorm module of ``model``."""
    for m in model.modules():
        if isinstance(m, _BnStatsMixin):
            m.freeze_bn_stats()


def unfreeze_bn(model: nn.Module) -> None:
    """`update_bn_stats` on every QAT BatchNorm module of ``model``."""
    for m in model.modules():
        if isinstance(m, _BnStatsMixin):
            m.update_bn_stats()

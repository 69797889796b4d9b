"""`convert`: from a prepared (calibrated or QAT-trained) model to a deployable one.

For models prepared by either path (eager `prepare`/`prepare_qat` or the automatic one):

1. every QAT module with a weight quantizer becomes a `torchquant.nn.QuantizedModule`: BN
   folded with its running statistics (Krishnamoorthi 2018, section 3.2), the weight stored
   as an integer tensor with the weight quantizer's scale and zero point;
2. every `Quantizer` anywhere in the model is frozen with the qparams it has (computed from
   its calibrator first if it only observed, as after PTQ calibration), switched to ONNX
   ``QuantizeLinear`` rounding (``x / s``), and its calibrator state dropped (it is not
   needed any more and would bloat the state_dict).

The converted model computes what the prepared model computed in eval mode (the QAT-trained
qparams are kept, not re-observed), up to rounding ties of ``x / s`` versus PyTorch's
``x * (1 / s)``. Like PyTorch, convert does not change train/eval mode; call ``eval()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchquant._api import quantize, register_quantize_handler
from torchquant.errors import ConfigError, EmptyCalibrationError
from torchquant.nn.qat import QuantizedWeightModule
from torchquant.nn.quantized import quantized_from_qat
from torchquant.quant.quantizer import Quantizer, iter_quantizers

__all__ = ["ConvertConfig", "convert"]


@dataclass(frozen=True)
class ConvertConfig:
    """Convert a prepared model to integer weights and frozen quantizers (no options)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON recipes."""
        return {}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvertConfig:
        """Inverse of `to_dict`."""
        if data:
            raise ConfigError(f"unknown ConvertConfig field(s): {sorted(data)}")
        return cls()


def _weight_qparams(module: QuantizedWeightModule) -> None:
    """Make sure the weight quantizer has qparams: observe the (folded) weight if it never
    saw it (a layer no calibration batch reached)."""
    quantizer = module.weight_quantizer
    assert quantizer is not None
    if quantizer.has_qparams:
        return
    if quantizer.calibrator.num_batches == 0:
        with torch.no_grad():
            quantizer.calibrator.observe(module.folded_weight_bias()[0])
    quantizer.compute_qparams()


def _freeze(quantizer: Quantizer, name: str) -> None:
    if not quantizer.has_qparams:
        if quantizer.calibrator.num_batches == 0:
            raise EmptyCalibrationError(
                f"quantizer {name!r} saw no data: run calibration batches (after prepare) or "
                "training steps (after prepare_qat) through it before convert"
            )
        quantizer.compute_qparams()
    quantizer.freeze()
    quantizer.exact_rounding = True
    quantizer.calibrator.reset()


def _convert_modules(module: nn.Module, prefix: str) -> None:
    for child_name, child in list(module.named_children()):
        name = f"{prefix}{child_name}"
        if isinstance(child, QuantizedWeightModule) and child.weight_quantizer is not None:
            _weight_qparams(child)
            for q_name, quantizer in iter_quantizers(child):
                _freeze(quantizer, f"{name}.{q_name}")
            setattr(module, child_name, quantized_from_qat(child))
        else:
            _convert_modules(child, f"{name}.")


@register_quantize_handler(ConvertConfig)
def _convert(model: nn.Module, config: ConvertConfig, example_inputs: Any = None) -> nn.Module:
    """Convert ``model`` in place (see the module docstring)."""
    _convert_modules(model, "")
    for name, quantizer in iter_quantizers(model):
        if not quantizer.exact_rounding:
            _freeze(quantizer, name)
    return model


def convert(model: nn.Module, inplace: bool = False) -> nn.Module:
    """PyTorch's eager ``convert``: integer weights, BN folded, quantizers frozen."""
    return quantize(model, ConvertConfig(), inplace=inplace)

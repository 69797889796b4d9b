"""Eager-mode preparation, PyTorch-compatible: `prepare` (PTQ) and `prepare_qat` (QAT).

Semantics of PyTorch's eager ``torch.quantization.prepare``/``prepare_qat``, driven by the
user's markers:

- the ``qconfig`` attribute (a torchquant `QConfig`, e.g. from `get_default_qconfig` or
  `get_default_qat_qconfig`) applies to a module and, unless they set their own, to its
  children; ``qconfig = None`` leaves a subtree float;
- supported layers (`torchquant.nn.QAT_MODULE_MAPPINGS`: Conv1d/2d/3d, ConvTranspose2d,
  Linear and the fused containers of `fuse_modules`) become QAT modules with a weight
  quantizer and an ``output_quantizer`` (PyTorch's ``activation_post_process``);
- `QuantStub` and `QFunctional` (``FloatFunctional``) get an ``output_quantizer``;
  `DeQuantStub` stays an identity; other modules stay float.

`prepare_qat` leaves every quantizer in QAT mode (observe, refresh qparams, fake-quantize in
training); `prepare` leaves them in calibration mode (observe only) for PTQ: run calibration
data, then `convert`. Both are thin names over `torchquant.quantize` with an
`EagerPrepareConfig`, the same door as the automatic path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from torchquant._api import quantize, register_quantize_handler
from torchquant.config import QConfig
from torchquant.errors import ConfigError
from torchquant.nn import QAT_MODULE_MAPPINGS, QFunctional, QuantStub
from torchquant.nn.qat import activation_quantizer
from torchquant.quant.quantizer import name_quantizers, set_calibration_mode

__all__ = ["EagerPrepareConfig", "prepare", "prepare_qat"]


@dataclass(frozen=True)
class EagerPrepareConfig:
    """Eager-mode preparation from the model's ``qconfig`` attributes.

    Attributes:
        qat: True for quantization-aware training (quantizers in QAT mode), False for
            post-training calibration (quantizers observe only).
    """

    qat: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.qat, bool):
            raise ConfigError(f"EagerPrepareConfig.qat must be a bool, got {self.qat!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON recipes."""
        return {"qat": self.qat}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EagerPrepareConfig:
        """Inverse of `to_dict`."""
        unknown = set(data) - {"qat"}
        if unknown:
            raise ConfigError(f"unknown EagerPrepareConfig field(s): {sorted(unknown)}")
        return cls(**data)


def _qconfig_of(module: nn.Module, inherited: QConfig | None, name: str) -> QConfig | None:
    """The module's own ``qconfig`` if it has one (None included), else the inherited one."""
    qconfig = getattr(module, "qconfig", inherited)
    if qconfig is not None and not isinstance(qconfig, QConfig):
        raise ConfigError(
            f"module {name or '<root>'!r}: qconfig must be a torchquant QConfig (e.g. "
            f"torchquant.get_default_qat_qconfig(backend)) or None, got {type(qconfig).__name__}"
        )
    return qconfig


def _swap_children(module: nn.Module, inherited: QConfig | None, prefix: str) -> None:
    for child_name, child in list(module.named_children()):
        name = f"{prefix}{child_name}"
        qconfig = _qconfig_of(child, inherited, name)
        qat_type = QAT_MODULE_MAPPINGS.get(type(child))
        if qconfig is not None and qat_type is not None:
            new = qat_type.from_float(child, qconfig, output_quant=qconfig.activation is not None)
            setattr(module, child_name, new)
        elif qconfig is not None and isinstance(child, (QuantStub, QFunctional)):
            child.output_quantizer = activation_quantizer(qconfig)
        else:
            _swap_children(child, qconfig, f"{name}.")


@register_quantize_handler(EagerPrepareConfig)
def _prepare_eager(
    model: nn.Module, config: EagerPrepareConfig, example_inputs: Any = None
) -> nn.Module:
    """Swap and instrument ``model`` in place (see the module docstring)."""
    _swap_children(model, _qconfig_of(model, None, ""), "")
    name_quantizers(model)
    if not config.qat:
        set_calibration_mode(model)
    return model


def prepare(model: nn.Module, inplace: bool = False) -> nn.Module:
    """PyTorch's eager ``prepare``: quantizers that observe calibration data (PTQ)."""
    return quantize(model, EagerPrepareConfig(qat=False), inplace=inplace)


def prepare_qat(model: nn.Module, inplace: bool = False) -> nn.Module:
    """PyTorch's eager ``prepare_qat``: QAT modules whose quantizers train with the model."""
    return quantize(model, EagerPrepareConfig(qat=True), inplace=inplace)

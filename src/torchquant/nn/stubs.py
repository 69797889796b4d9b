"""Eager-mode markers: `QuantStub`, `DeQuantStub` and `QFunctional` (``FloatFunctional``).

As in PyTorch's eager mode (``torch.ao.quantization.QuantStub``, ``DeQuantStub``,
``torch.ao.nn.quantized.FloatFunctional``), the user marks where the quantized region starts
and ends, and routes tensor arithmetic (``+``, ``torch.cat``, ...) through a `QFunctional`
so that its result gets a quantizer. Before `prepare`/`prepare_qat` they are identities
(plain float ops); preparation attaches an ``output_quantizer`` from the module's qconfig.
Fake-quantized tensors are floats, so `DeQuantStub` stays an identity.

state_dict keys (stable): ``output_quantizer.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchquant.config import QConfig
from torchquant.quant.quantizer import Quantizer

__all__ = ["DeQuantStub", "FloatFunctional", "QFunctional", "QuantStub"]


class QuantStub(nn.Module):
    """Start of the quantized region: quantizes its input once prepared.

    Args:
        qconfig: optional qconfig for this stub only (PyTorch's signature).
    """

    def __init__(self, qconfig: QConfig | None = None) -> None:
        super().__init__()
        if qconfig is not None:
            self.qconfig = qconfig
        self.output_quantizer: Quantizer | None = None

    def forward(self, x: Tensor) -> Tensor:
        return x if self.output_quantizer is None else self.output_quantizer(x)


class DeQuantStub(nn.Module):
    """End of the quantized region (an identity: fake-quantized values are floats)."""

    def __init__(self, qconfig: QConfig | None = None) -> None:
        super().__init__()
        if qconfig is not None:
            self.qconfig = qconfig

    def forward(self, x: Tensor) -> Tensor:
        return x


class QFunctional(nn.Module):
    """Tensor arithmetic whose result is quantized once prepared.

    ``add``, ``add_relu``, ``cat``, ``mul`` and ``matmul`` pass their result through
    ``output_quantizer``; ``add_scalar`` and ``mul_scalar`` do not, as in PyTorch (an
    engine derives their output scale from the input's).
    """

    def __init__(self) -> None:
        super().__init__()
        self.output_quantizer: Quantizer | None = None

    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError(
            "QFunctional is not called directly; use its add, add_relu, cat, mul, "
            "matmul, add_scalar or mul_scalar methods"
        )

    def _out(self, y: Tensor) -> Tensor:
        return y if self.output_quantizer is None else self.output_quantizer(y)

    def add(self, x: Tensor, y: Tensor) -> Tensor:
        """``x + y``, quantized."""
        return self._out(torch.add(x, y))

    def add_relu(self, x: Tensor, y: Tensor) -> Tensor:
        """``relu(x + y)``, quantized."""
        return self._out(F.relu(torch.add(x, y)))

    def mul(self, x: Tensor, y: Tensor) -> Tensor:
        """``x * y``, quantized."""
        return self._out(torch.mul(x, y))

    def matmul(self, x: Tensor, y: Tensor) -> Tensor:
        """``x @ y``, quantized."""
        return self._out(torch.matmul(x, y))

    def cat(self, tensors: list[Tensor] | tuple[Tensor, ...], dim: int = 0) -> Tensor:
        """``torch.cat(tensors, dim)``, quantized."""
        return self._out(torch.cat(tensors, dim=dim))

    def add_scalar(self, x: Tensor, y: float) -> Tensor:
        """``x + y`` for a Python number ``y`` (not quantized)."""
        return torch.add(x, y)

    def mul_scalar(self, x: Tensor, y: float) -> Tensor:
        """``x * y`` for a Python number ``y`` (not quantized)."""
        return torch.mul(x, y)


# PyTorch's name, so that code written for torch.ao runs unchanged.
FloatFunctional = QFunctional

"""A tiny MLP whose layers hold hand-placed quantizers (independent of the automatic
preparation), calibrated with min/max: the analysis tests' model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchquant.config import QuantizerConfig
from torchquant.quant.quantizer import Quantizer, iter_quantizers
from torchquant.quant.spec import QuantSpec


class QLin(nn.Module):
    """A linear layer with an input and a per-channel weight quantizer."""

    def __init__(self, n_in: int, n_out: int, bits: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        spec = QuantSpec(bits=bits, axis=0, narrow_range=True)
        self.input_quantizer: Quantizer | None = Quantizer(QuantizerConfig(QuantSpec(bits=bits)))
        self.weight_quantizer: Quantizer | None = Quantizer(QuantizerConfig(spec))

    def forward(self, x: Tensor) -> Tensor:
        # A quantizer set to None leaves its tensor float, as in torchquant.nn's modules.
        w = self.linear.weight
        w = w if self.weight_quantizer is None else self.weight_quantizer(w)
        x = x if self.input_quantizer is None else self.input_quantizer(x)
        return F.linear(x, w, self.linear.bias)


class ToyMLP(nn.Module):
    """Three quantized linear layers; ``fc1`` sees heavy-tailed inputs."""

    def __init__(self, bits: int = 4) -> None:
        super().__init__()
        self.fc1 = QLin(16, 32, bits)
        self.fc2 = QLin(32, 32, bits)
        self.fc3 = QLin(32, 8, bits)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def calibrate_minmax(model: nn.Module, batches: list[Tensor]) -> None:
    """Plain PTQ: observe with quantization off, then compute qparams and switch on."""
    for _, q in iter_quantizers(model):
        q.enable_observer(True).enable_fake_quant(False)
    with torch.no_grad():
        for b in batches:
            model(b)
    for name, q in iter_quantizers(model):
        q.name = name
        q.compute_qparams()
        q.enable_observer(False).enable_fake_quant(True)

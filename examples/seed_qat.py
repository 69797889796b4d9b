"""The user's PyTorch eager QAT workflow (../shared/seeds/000_57e5b988db597572.txt), run
with torchquant.

What changed from the seed, exactly: ``import torchquant as quantization`` instead of using
``torch.quantization``, so every ``torch.quantization.X`` reads ``quantization.X``; the code
sits in ``main(backend)`` (the seed leaves ``backend`` undefined), seeds the RNG and returns
the converted model; ``loss_fn`` is a ``def`` instead of a lambda assignment (ruff E731).
Everything else is the seed's code.

Run: ``python examples/seed_qat.py [backend]`` with backend one of tensorrt, ascend,
onnxruntime, x86, fbgemm, qnnpack.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

import torchquant as quantization


def main(backend: str = "fbgemm") -> nn.Module:
    """Build, fuse, prepare, train 10 steps, convert; returns the converted model."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(2, 64, 8),
        nn.ReLU(),
        nn.Conv2d(64, 128, 8),
        nn.ReLU(),
    )
    quantization.fuse_modules(m, ["0", "1"], inplace=True)  # fuse first Conv-ReLU pair
    quantization.fuse_modules(m, ["2", "3"], inplace=True)  # fuse second Conv-ReLU pair
    m = nn.Sequential(quantization.QuantStub(), *m, quantization.DeQuantStub())

    """Prepare"""
    m.train()
    m.qconfig = quantization.get_default_qconfig(backend)
    quantization.prepare_qat(m, inplace=True)

    """Training Loop"""
    n_epochs = 10
    opt = torch.optim.SGD(m.parameters(), lr=0.1)

    def loss_fn(out: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return torch.pow(tgt - out, 2).mean()

    for _epoch in range(n_epochs):
        x = torch.rand(10, 2, 24, 24)
        out = m(x)
        loss = loss_fn(out, torch.rand_like(out))
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(loss)

    """Convert"""
    m.eval()
    quantization.convert(m, inplace=True)
    return m


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))

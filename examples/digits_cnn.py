"""A small CNN for scikit-learn's bundled handwritten digits, the proof model of torchquant's
automatic path (`benchmarks/accuracy_digits.py`, `tests/test_digits.py`).

Data: `sklearn.datasets.load_digits`, 1,797 real 8x8 scans (UCI "Optical Recognition of
Handwritten Digits", pixel values 0..16), bundled with scikit-learn, so nothing is
downloaded. Fixed stratified split: 1,257 training and 540 test images (``random_state=0``).

`DigitsCNN` is written the usual way, with its residual add as ``+`` in ``forward``;
torchquant prepares it unmodified. `DigitsCNNForAO` is the same network rewritten the way
PyTorch's eager ``torch.ao.quantization`` needs (QuantStub/DeQuantStub, a FloatFunctional
for the add, fusion groups); it has the same parameter names, so it loads a `DigitsCNN`
state dict.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

__all__ = [
    "AO_FUSION_GROUPS",
    "DigitsCNN",
    "DigitsCNNForAO",
    "batches",
    "evaluate",
    "load_data",
    "train",
    "train_fp32",
]

# torch.ao's eager fusion needs the groups spelled out; torchquant finds them itself.
AO_FUSION_GROUPS = [
    ["conv1", "bn1", "relu1"],
    ["conv2", "bn2", "relu2"],
    ["conv3", "bn3"],
    ["conv4", "bn4", "relu4"],
]


def load_data(device: str | torch.device = "cpu") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train (1257, 1, 8, 8), y_train (1257,), x_test (540, 1, 8, 8), y_test (540,))``,
    pixels scaled from 0..16 to 0..1, float32; labels int64."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    y = torch.tensor(digits.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        list(range(len(y))), test_size=540, random_state=0, stratify=digits.target
    )
    tr, te = torch.tensor(idx_train), torch.tensor(idx_test)
    return x[tr].to(device), y[tr].to(device), x[te].to(device), y[te].to(device)


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU stem, a residual block (add in forward code), max-pool, a wider
    Conv-BN-ReLU, global average pooling and a linear classifier. About 38k parameters for
    ``width=32``."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = (
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.conv2, self.bn2, self.relu2 = (
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.conv3, self.bn3 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv4, self.bn4 = nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width)
        self.relu4 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))  # (B, w, 8, 8)
        y = self.relu2(self.bn2(self.conv2(x)))
        y = self.bn3(self.conv3(y))
        x = self.relu3(y + x)  # residual add
        x = self.pool(x)  # (B, w, 4, 4)
        x = self.relu4(self.bn4(self.conv4(x)))  # (B, 2w, 4, 4)
        return self.fc(torch.flatten(self.gap(x), 1))  # (B, 10) logits


class DigitsCNNForAO(DigitsCNN):
    """`DigitsCNN` with the edits eager ``torch.ao.quantization`` requires: quant/dequant
    stubs at the boundaries and a ``FloatFunctional`` for the residual add."""

    def __init__(self, width: int = 32) -> None:
        super().__init__(width)
        self.quant = torch.ao.quantization.QuantStub()
        self.dequant = torch.ao.quantization.DeQuantStub()
        self.skip_add = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.bn1(self.conv1(self.quant(x))))
        y = self.relu2(self.bn2(self.conv2(x)))
        y = self.bn3(self.conv3(y))
        x = self.relu3(self.skip_add.add(y, x))
        x = self.pool(x)
        x = self.relu4(self.bn4(self.conv4(x)))
        return self.dequant(self.fc(torch.flatten(self.gap(x), 1)))


def batches(
    x: Tensor, y: Tensor, batch_size: int, *, seed: int | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Mini-batches in order, or shuffled by a generator seeded with ``seed``."""
    n = x.shape[0]
    order = torch.arange(n)
    if seed is not None:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    order = order.to(x.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    on_step: Callable[[float], None] | None = None,
) -> nn.Module:
    """Adam with cosine decay and cross-entropy; ``on_step`` gets each step's seconds
    (forward, backward and update, synchronised on CUDA)."""
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((x.shape[0] + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for epoch in range(epochs):
        for xb, yb in batches(x, y, batch_size, seed=seed * 1000 + epoch):
            start = time.perf_counter()
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if xb.is_cuda:
                torch.cuda.synchronize()
            if on_step is not None:
                on_step(time.perf_counter() - start)
            sched.step()
    return model


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent."""
    model.eval()
    correct = 0
    for xb, yb in batches(x, y, batch_size):
        correct += int((model(xb).argmax(1) == yb).sum())
    return 100.0 * correct / x.shape[0]


def train_fp32(
    data: tuple[Tensor, Tensor, Tensor, Tensor], *, epochs: int = 15, seed: int = 0, width: int = 32
) -> DigitsCNN:
    """A trained float `DigitsCNN` (deterministic for a given seed on one device)."""
    torch.manual_seed(seed)
    model = DigitsCNN(width).to(data[0].device)
    train(model, data[0], data[1], epochs=epochs, lr=3e-3, seed=seed)
    return copy.deepcopy(model).eval()


if __name__ == "__main__":
    d = load_data()
    m = train_fp32(d)
    print(f"FP32 test accuracy: {evaluate(m, d[2], d[3]):.2f}%")

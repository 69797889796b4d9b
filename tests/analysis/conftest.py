"""Fixtures of the analysis tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from analysis_toy import ToyMLP, calibrate_minmax
from torch import Tensor


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and on a busy 2-core machine extra
    threads only contend (measured: analysis of the digits CNN 37 s with 2, 8 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy() -> tuple[ToyMLP, list[Tensor]]:
    """A calibrated 4-bit `ToyMLP` and four batches of heavy-tailed data."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ToyMLP().eval()
    batches = [torch.randn(32, 16, generator=gen) ** 3 for _ in range(4)]
    calibrate_minmax(model, batches)
    return model, batches

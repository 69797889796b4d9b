"""The digits proof in small: a briefly trained `DigitsCNN` keeps its accuracy under
torchquant's automatic PTQ int8 (the full table: benchmarks/accuracy_digits.py)."""

from __future__ import annotations

import pytest
import torch
from digits_cnn import batches, evaluate, load_data, train_fp32

from torchquant._api import quantize
from torchquant._auto import PrepareConfig
from torchquant._calibrate import calibrate


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], float]:
    data = load_data()
    fp32 = train_fp32(data, epochs=4, seed=0, width=16)
    return fp32, data, evaluate(fp32, data[2], data[3])


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_ptq_int8_stays_close_to_fp32(
    trained: tuple[torch.nn.Module, tuple[torch.Tensor, ...], float], method: str
) -> None:
    fp32, data, fp32_acc = trained
    assert fp32_acc > 90.0
    model = quantize(fp32, PrepareConfig(), (data[0][:2],))
    calib = [xb for xb, _ in batches(data[0], data[1], 64)][:4]
    calibrate(model, calib, method, progress=False)
    assert abs(evaluate(model, data[2], data[3]) - fp32_acc) <= 2.0

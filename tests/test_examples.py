"""The examples run in-process."""

from __future__ import annotations

import re

import pytest
import torch

import torchquant

_SEED_NAMES = (
    "fuse_modules",
    "QuantStub",
    "DeQuantStub",
    "get_default_qconfig",
    "prepare_qat",
    "convert",
)


@pytest.mark.skipif(
    not all(hasattr(torchquant, n) for n in _SEED_NAMES),
    reason="torchquant does not export the eager names yet",
)
def test_seed_qat(capsys: pytest.CaptureFixture[str]) -> None:
    import seed_qat

    # onnxruntime's presets use min/max calibrators: the fastest of the five backends.
    model = seed_qat.main("onnxruntime")
    losses = [float(v) for v in re.findall(r"tensor\(([0-9.e+-]+)", capsys.readouterr().out)]
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert model[1].weight.dtype == torch.int8 and model[3].weight.dtype == torch.int8
    out = model(torch.rand(2, 2, 24, 24))
    assert out.shape == (2, 128, 10, 10) and bool(torch.isfinite(out).all())

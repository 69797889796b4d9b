"""`calibrate`: PTQ calibration of an automatically prepared model, over every calibrator."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchquant._api import quantize
from torchquant._auto import PrepareConfig
from torchquant._calibrate import calibrate, is_weight_quantizer
from torchquant.calib import list_calibrators
from torchquant.errors import EmptyCalibrationError, NonFiniteError
from torchquant.quant.quantizer import iter_quantizers


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = (
            nn.Conv2d(2, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)) + x)
        return self.fc(x.mean((2, 3)))


def _data(n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, 2, 6, 6, generator=g) for _ in range(n)]


def _prepared() -> nn.Module:
    torch.manual_seed(0)
    return quantize(Small().eval(), PrepareConfig(), (_data(1)[0],))


@pytest.mark.parametrize("method", list_calibrators())
def test_every_calibrator_calibrates_close_to_float(method: str) -> None:
    torch.manual_seed(0)
    ref = Small().eval()
    model = calibrate(_prepared(), _data(), method, progress=False)
    for name, q in iter_quantizers(model):
        assert q.has_qparams and q.fake_quant_enabled and not q.observer_enabled
        assert bool(torch.isfinite(q.scale).all()) and bool((q.scale > 0).all())
        assert q.config.calibrator == ("minmax" if is_weight_quantizer(name) else method)
    with torch.no_grad():
        x = _data(5)[-1]
        err = (model(x) - ref(x)).norm() / ref(x).norm()
    assert err < 0.2, f"{method}: relative error {float(err):.3f}"


def test_layer_methods_override_per_layer_and_weights_only_by_name() -> None:
    model = calibrate(
        _prepared(),
        _data(),
        "minmax",
        layer_methods={"fc": "percentile", "conv1.weight_quantizer": "ema_minmax"},
        progress=False,
    )
    assert model.fc.input_quantizer.config.calibrator == "percentile"
    assert model.fc.weight_quantizer.config.calibrator == "minmax"
    assert model.conv1.weight_quantizer.config.calibrator == "ema_minmax"
    assert model.conv2.input_quantizer.config.calibrator == "minmax"


def test_without_method_keeps_the_configured_calibrators() -> None:
    model = calibrate(_prepared(), _data(2), progress=False)
    assert model.conv1.input_quantizer.config.calibrator == "entropy"  # the TensorRT preset


def test_dataloader_batches_and_num_batches() -> None:
    x = torch.cat(_data())
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=8)
    model = calibrate(_prepared(), loader, "minmax", num_batches=3, progress=False)
    assert model.conv1.input_quantizer.calibrator.num_batches == 3


def test_empty_data_raises() -> None:
    with pytest.raises(EmptyCalibrationError, match="empty"):
        calibrate(_prepared(), [], progress=False)


def test_nan_activation_names_the_quantizer_and_batch() -> None:
    data = _data(2)
    data[1][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"batch 1.*conv1\.input_quantizer"):
        calibrate(_prepared(), data, "minmax", progress=False)


def test_method_options_apply_when_the_calibrator_is_unchanged() -> None:
    """Re-calibrating with the quantizers' own calibrator but new options uses the options."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    x = torch.randn(64, 8)
    prepared = quantize(model, PrepareConfig(), (x[:4],))
    calibrate(prepared, [x], method="percentile", progress=False)
    calibrate(
        prepared, [x], method="percentile", method_options={"percentile": 90.0}, progress=False
    )
    acts = [q for n, q in iter_quantizers(prepared) if not n.endswith("weight_quantizer")]
    assert acts and all(q.config.calibrator_options == {"percentile": 90.0} for q in acts)
    assert all(getattr(q.calibrator, "percentile", None) == 90.0 for q in acts)

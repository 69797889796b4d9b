"""Eager-mode prepare/prepare_qat: qconfig propagation, swaps, QAT training, state_dict
round trip, every backend's presets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchquant import nn as tqnn
from torchquant._api import quantize
from torchquant._eager import EagerPrepareConfig, prepare, prepare_qat
from torchquant._fuse import fuse_modules
from torchquant.config import BACKENDS, get_default_qat_qconfig, get_default_qconfig
from torchquant.errors import ConfigError
from torchquant.quant.quantizer import Quantizer, iter_quantizers


class Net(nn.Module):
    """Conv-BN-ReLU, a residual add through QFunctional, a linear head, stubs."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = tqnn.QuantStub()
        self.conv1, self.bn1, self.relu1 = (
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.add = tqnn.QFunctional()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)
        self.dequant = tqnn.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(self.quant(x))))
        x = self.add.add_relu(self.bn2(self.conv2(x)), x)
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))


def _fused(train: bool = True) -> Net:
    torch.manual_seed(0)
    model = Net().train(train)
    return fuse_modules(model, [["conv1", "bn1", "relu1"], ["conv2", "bn2"]])  # type: ignore[return-value]


def _data(n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 1, 6, 6, generator=g), torch.randint(0, 3, (16,), generator=g))
        for _ in range(n)
    ]


def _train(model: nn.Module, steps: int = 12) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    data = _data()
    for i in range(steps):
        x, y = data[i % len(data)]
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_prepare_qat_swaps_and_instruments() -> None:
    model = _fused()
    model.qconfig = get_default_qat_qconfig("tensorrt")
    prepared = prepare_qat(model)
    assert prepared is not model and isinstance(model.conv1, tqnn.ConvBnReLU2d)
    assert type(prepared.conv1) is tqnn.QConvBnReLU2d and type(prepared.conv2) is tqnn.QConvBn2d
    assert type(prepared.fc) is tqnn.QLinear
    assert prepared.quant.output_quantizer is not None and prepared.add.output_quantizer is not None
    assert prepared.conv1.output_quantizer is not None and prepared.conv1.input_quantizer is None
    names = {q.name for _, q in iter_quantizers(prepared)}
    assert {"quant.output_quantizer", "conv1.weight_quantizer", "add.output_quantizer"} <= names
    assert isinstance(prepared.relu1, nn.Identity) and isinstance(
        prepared.pool, nn.AdaptiveAvgPool2d
    )


def test_same_door_as_quantize() -> None:
    model = _fused()
    model.qconfig = get_default_qat_qconfig("tensorrt")
    via_door = quantize(model, EagerPrepareConfig(qat=True))
    assert type(via_door.conv1) is tqnn.QConvBnReLU2d
    assert EagerPrepareConfig.from_dict(EagerPrepareConfig(qat=True).to_dict()).qat


def test_qconfig_none_leaves_subtree_float_and_rejects_foreign_qconfig() -> None:
    model = _fused()
    model.qconfig = get_default_qat_qconfig("tensorrt")
    model.fc.qconfig = None
    prepared = prepare_qat(model)
    assert type(prepared.fc) is nn.Linear
    model.qconfig = torch.ao.quantization.get_default_qat_qconfig("x86")
    with pytest.raises(ConfigError, match="root"):
        prepare_qat(model)


def test_qat_trains_and_state_dict_round_trips() -> None:
    model = _fused()
    model.qconfig = get_default_qat_qconfig("tensorrt")
    prepared = prepare_qat(model)
    losses = _train(prepared)
    assert losses[-1] < losses[0]
    fresh = _fused()
    fresh.qconfig = get_default_qat_qconfig("tensorrt")
    fresh = prepare_qat(fresh)
    fresh.load_state_dict(prepared.state_dict())
    x = _data(1)[0][0]
    prepared.eval()
    fresh.eval()
    assert torch.equal(prepared(x), fresh(x))


def test_prepare_is_calibration_mode() -> None:
    model = _fused(train=False)
    model.qconfig = get_default_qconfig("onnxruntime")
    prepared = prepare(model)
    assert type(prepared.conv1) is tqnn.QConvReLU2d and type(prepared.conv2) is tqnn.QConv2d
    x = _data(1)[0][0]
    float_out = model(x)
    torch.testing.assert_close(prepared(x), float_out, rtol=1e-5, atol=1e-5)
    for _, q in iter_quantizers(prepared):
        assert q.observer_enabled and not q.fake_quant_enabled


@pytest.mark.parametrize(
    "preset", [get_default_qat_qconfig, get_default_qconfig], ids=["qat", "ptq"]
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_prepares_trains_and_converts(backend: str, preset: object) -> None:
    from torchquant._convert import convert

    model = _fused()
    model.qconfig = preset(backend)  # type: ignore[operator]
    prepared = prepare_qat(model)
    losses = _train(prepared, steps=4)
    assert all(torch.isfinite(torch.tensor(losses)))
    converted = convert(prepared.eval())
    x = _data(1)[0][0]
    torch.testing.assert_close(converted(x), prepared(x), rtol=0, atol=0.05)
    assert isinstance(converted.conv1, tqnn.QuantizedConv2d)
    assert all(isinstance(q, Quantizer) and q.exact_rounding for _, q in iter_quantizers(converted))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_prepares_trains_and_converts() -> None:
    from torchquant._convert import convert

    model = _fused().cuda()
    model.qconfig = get_default_qat_qconfig("tensorrt")
    prepared = prepare_qat(model)
    x, y = (t.cuda() for t in _data(1)[0])
    nn.functional.cross_entropy(prepared(x), y).backward()
    converted = convert(prepared.eval())
    assert converted.conv1.weight.is_cuda and converted.conv1.output_quantizer.scale.is_cuda
    torch.testing.assert_close(converted(x), prepared(x), rtol=0, atol=0.05)

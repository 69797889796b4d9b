"""convert: integer weights, a ~4x smaller state_dict, outputs equal to the prepared model's
eval outputs, PTQ flow, and models from the automatic path (input quantizers, free
quantizers)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from torchquant import nn as tqnn
from torchquant._api import quantize
from torchquant._convert import ConvertConfig, convert
from torchquant._eager import prepare, prepare_qat
from torchquant._fuse import fuse_modules
from torchquant.config import get_default_qat_qconfig, get_default_qconfig
from torchquant.errors import EmptyCalibrationError
from torchquant.quant.quantizer import Quantizer, iter_quantizers


def _model(train: bool = True) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        tqnn.QuantStub(),
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 36, 64),
        tqnn.DeQuantStub(),
    ).train(train)
    return fuse_modules(model, [["1", "2", "3"], ["4", "5"]])


def _qat_trained(backend: str = "tensorrt") -> nn.Module:
    model = _model()
    model.qconfig = get_default_qat_qconfig(backend)
    prepared = prepare_qat(model)
    opt = torch.optim.SGD(prepared.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        loss = prepared(torch.randn(8, 3, 6, 6, generator=g)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return prepared.eval()


def _size(model: nn.Module) -> int:
    """Bytes of the saved state_dict."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _tensor_bytes(model: nn.Module) -> int:
    return sum(t.nbytes for t in model.state_dict().values() if isinstance(t, torch.Tensor))


def test_integer_weights_smaller_state_and_same_output() -> None:
    prepared = _qat_trained()
    converted = convert(prepared)
    assert converted is not prepared
    for name in ("1", "4", "7"):
        assert converted.get_submodule(name).weight.dtype == torch.int8
    assert isinstance(converted[1], tqnn.QuantizedConv2d) and converted[1].relu
    assert _tensor_bytes(_model()) / _tensor_bytes(converted) > 3.8
    assert _size(_model()) / _size(converted) > 3.5
    x = torch.randn(4, 3, 6, 6)
    step = converted[7].output_quantizer.scale
    diff = (converted(x) - prepared(x)).abs().max()
    assert diff <= step + 1e-6
    # the converted weight dequantizes to the folded, fake-quantized QAT weight
    w_qat = prepared[1].weight_quantizer(prepared[1].folded_weight_bias()[0])
    torch.testing.assert_close(converted[1].dequantized_weight(), w_qat, rtol=0, atol=1e-6)


def test_converted_state_dict_loads_into_converted_model() -> None:
    converted = convert(_qat_trained())
    twin = convert(_qat_trained())
    twin.load_state_dict(converted.state_dict())
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(twin(x), converted(x))
    keys = set(converted.state_dict())
    assert {"1.weight", "1.bias", "1.weight_quantizer.scale", "1.output_quantizer.scale"} <= keys


def test_ptq_flow_prepare_calibrate_convert() -> None:
    model = _model(train=False)
    model.qconfig = get_default_qconfig("onnxruntime")
    prepared = prepare(model)
    for _ in range(3):
        prepared(torch.randn(8, 3, 6, 6))
    converted = quantize(prepared, ConvertConfig())
    x = torch.randn(4, 3, 6, 6)
    torch.testing.assert_close(converted(x), model(x), rtol=0, atol=0.1)
    assert all(q.has_qparams and not q.observer_enabled for _, q in iter_quantizers(converted))


def test_convert_without_data_names_the_quantizer() -> None:
    model = _model(train=False)
    model.qconfig = get_default_qconfig("onnxruntime")
    with pytest.raises(EmptyCalibrationError, match=r"'1\.output_quantizer' saw no data"):
        convert(prepare(model))


def test_automatic_path_modules_and_free_quantizers() -> None:
    # What the automatic path builds: QAT modules with an input quantizer and Quantizers
    # for functional ops held elsewhere in the model.
    qconfig = get_default_qat_qconfig("tensorrt")
    torch.manual_seed(0)

    class Auto(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = tqnn.QConv2d.from_float(nn.Conv2d(3, 4, 3), qconfig, input_quant=True)
            self.quantizers = nn.ModuleDict({"add": Quantizer(qconfig.activation, name="add")})  # type: ignore[arg-type]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.quantizers["add"](y + y)

    model = Auto().train()
    model(torch.randn(2, 3, 5, 5))
    model.eval()
    converted = convert(model)
    assert isinstance(converted.conv, tqnn.QuantizedConv2d)
    assert (
        converted.conv.input_quantizer is not None and converted.conv.input_quantizer.exact_rounding
    )
    free = converted.quantizers["add"]
    assert free.exact_rounding and not free.observer_enabled
    x = torch.randn(2, 3, 5, 5)
    assert (converted(x) - model(x)).abs().max() <= free.scale + 1e-6

"""ONNX QDQ export of PyTorch models (torchquant.export.torch_onnx), checked in ONNX Runtime."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from digits_cnn import evaluate, load_data, train, train_fp32
from torch import nn

import torchquant as tq
from torchquant.export import (
    read_amct_record,
    read_calibration_cache,
    write_amct_record,
    write_calibration_cache,
)
from torchquant.export.torch_onnx import amct_records_from_model, strip_qdq, tensorrt_scales


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    return load_data()


@pytest.fixture(scope="module")
def fp32(digits: tuple[torch.Tensor, ...]) -> nn.Module:
    torch.manual_seed(0)
    return train_fp32(digits, epochs=4, width=16)


def _onnx_logits(proto: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def _accuracy(logits: np.ndarray, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y.numpy()).mean() * 100)


@pytest.mark.parametrize("path", ["ptq", "qat"])
def test_digits_qdq_matches_torchquant(
    path: str, fp32: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path: object
) -> None:
    x_train, y_train, x_test, y_test = digits
    example = (x_train[:4],)
    if path == "ptq":
        model = tq.quantize(fp32, tq.PrepareConfig(), example)
        tq.calibrate(model, x_train[:256].split(64), progress=False)
    else:
        model = tq.quantize(fp32, tq.PrepareConfig(qat=True), example)
        train(model, x_train[:512], y_train[:512], epochs=1, lr=3e-4)
    model.eval()
    acc_torch = evaluate(model, x_test, y_test)
    result = tq.export_onnx(
        copy.deepcopy(model), example, profile="tensorrt", check_inputs=[x_test[:200]]
    )
    assert result.check is not None and max(result.check.max_steps) <= 1.0
    ops = {n.op_type for n in result.model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    acc_onnx = _accuracy(_onnx_logits(result.model, x_test), y_test)
    assert abs(acc_onnx - acc_torch) <= 0.2
    # Every weight is an integer constant behind a per-channel DequantizeLinear.
    for node in result.model.graph.node:
        if node.op_type == "Conv":
            producer = next(n for n in result.model.graph.node if node.input[1] in n.output)
            assert producer.op_type == "DequantizeLinear"
            assert any(a.name == "axis" and a.i == 0 for a in producer.attribute)


def test_cache_and_record_from_export(
    fp32: nn.Module, digits: tuple[torch.Tensor, ...], tmp_path: object
) -> None:
    import pathlib

    out = pathlib.Path(str(tmp_path))
    x_train = digits[0]
    model = tq.quantize(fp32, tq.PrepareConfig(), (x_train[:4],))
    tq.calibrate(model, x_train[:128].split(64), progress=False)
    result = tq.export_onnx(copy.deepcopy(model), (x_train[:4],), out / "m.onnx")
    plain = strip_qdq(result.model)
    onnx.checker.check_model(plain)
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in plain.graph.node}
    names = {t for n in plain.graph.node for t in n.input}
    scales = tensorrt_scales(result, model)
    assert scales and set(scales) <= names  # cache names are tensors of the FP32 graph
    write_calibration_cache(out / "m.cache", scales)
    assert read_calibration_cache(out / "m.cache") == {
        k: float(np.float32(v)) for k, v in scales.items()
    }
    # The FP32 graph computes what the float model computes.
    ref = fp32(x_train[:16]).detach().numpy()
    np.testing.assert_allclose(_onnx_logits(plain, x_train[:16]), ref, rtol=0.2, atol=0.5)
    records = amct_records_from_model(model)
    assert records and all(r.offset_w and set(r.offset_w) == {0} for r in records.values())
    write_amct_record(out / "m.record", records)
    assert read_amct_record(out / "m.record") == records


def test_export_errors(fp32: nn.Module, digits: tuple[torch.Tensor, ...]) -> None:
    x = digits[0][:4]
    prepared = tq.quantize(fp32, tq.PrepareConfig(), (x,))
    with pytest.raises(tq.ExportError, match="calibrate"):
        tq.export_onnx(prepared, (x,))
    onnxrt = tq.quantize(
        fp32, tq.PrepareConfig(qconfig=tq.get_default_qconfig("onnxruntime")), (x,)
    )
    tq.calibrate(onnxrt, [x], progress=False)
    with pytest.raises(tq.ExportError, match="tensorrt profile"):
        tq.export_onnx(onnxrt, (x,), profile="tensorrt")
    result = tq.export_onnx(onnxrt, (x,))  # asymmetric uint8 is fine for ONNX Runtime
    assert result.check is not None and max(result.check.max_steps) <= 1.0

"""ONNX QDQ insertion: placement per profile, checker, ONNX Runtime vs a simulation."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper, version_converter
from onnx.reference import ReferenceEvaluator
from torch import nn

from torchquant.errors import ExportError
from torchquant.export import (
    Profile,
    calibrate_onnx,
    default_activation_spec,
    insert_qdq,
    select_tensors,
)
from torchquant.quant import QuantSpec, dequantize, quantize


class TinyResNet(nn.Module):
    """conv-bn-relu, maxpool, a residual block, global pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        y = self.conv2(torch.relu(self.conv1(x)))
        y = torch.relu(y + x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


@pytest.fixture(scope="module")
def fp32_model() -> onnx.ModelProto:
    torch.manual_seed(0)
    model = TinyResNet().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, folded by the export
        model.stem[1].running_mean.uniform_(-0.5, 0.5)
        model.stem[1].running_var.uniform_(0.5, 2.0)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.randn(1, 3, 16, 16),),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
        )
    return onnx.load_from_string(buf.getvalue())


def _data(n_batches: int = 3, batch: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {"x": rng.standard_normal((batch, 3, 16, 16), dtype=np.float32)} for _ in range(n_batches)
    ]


def _producer_ops(model: onnx.ModelProto) -> dict[str, str]:
    return {o: n.op_type for n in model.graph.node for o in n.output}


def test_tensorrt_placement(fp32_model: onnx.ModelProto) -> None:
    sel = select_tensors(fp32_model, "tensorrt")
    producer = _producer_ops(fp32_model)
    for node in fp32_model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            assert node.input[0] in sel.activations
            assert node.input[1] in sel.weights
    add = next(n for n in fp32_model.graph.node if n.op_type == "Add")
    conv_in, shortcut = (
        (add.input[0], add.input[1]) if producer[add.input[0]] == "Conv" else add.input[::-1]
    )
    assert shortcut in sel.activations
    assert conv_in not in sel.activations  # lets TensorRT fuse the Add into the Conv
    assert sel.shared == {}
    axes = {n.input[1]: 0 for n in fp32_model.graph.node if n.op_type in ("Conv", "Gemm")}
    assert sel.weights == axes  # Gemm exported with transB=1: axis 0


def test_onnxruntime_placement_matches_quantize_static(
    fp32_model: onnx.ModelProto, tmp_path: Path
) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(_data(1))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    src, dst = tmp_path / "fp32.onnx", tmp_path / "ort_qdq.onnx"
    onnx.save(fp32_model, src)
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    theirs = {n.input[0] for n in onnx.load(dst).graph.node if n.op_type == "QuantizeLinear"}
    # ONNX Runtime quantizes the graph output too (renamed "<output>_QuantizeLinear_Input");
    # torchquant keeps graph outputs in float.
    theirs = {t for t in theirs if not t.endswith("_QuantizeLinear_Input")}
    sel = select_tensors(fp32_model, "onnxruntime")
    ours = set(sel.activations) | set(sel.shared)
    # ONNX Runtime renames a Relu-fed tensor when it drops the Relu; compare through the Relu.
    relu_in = {n.input[0]: n.output[0] for n in fp32_model.graph.node if n.op_type == "Relu"}
    assert {relu_in.get(t, t) for t in theirs} == ours


@pytest.mark.parametrize("profile", ["tensorrt", "onnxruntime"])
def test_qdq_model_runs_and_matches_simulation(
    fp32_model: onnx.ModelProto, profile: Profile, tmp_path: Path
) -> None:
    result = calibrate_onnx(fp32_model, _data(), method="minmax", profile=profile, progress=False)
    qdq = insert_qdq(fp32_model, result.qdq_activations(), result.qdq_weights(), profile)
    onnx.checker.check_model(qdq, full_check=True)
    ops = [n.op_type for n in qdq.graph.node]
    n_act = len(result.qdq_activations())
    assert ops.count("QuantizeLinear") == n_act
    # Weights are stored as integers in the narrow range, exactly torchquant.quantize's output.
    inits = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    fp_inits = {t.name: numpy_helper.to_array(t) for t in fp32_model.graph.initializer}
    for name, (scale, zp, spec) in result.qdq_weights().items():
        q = inits[f"{name}_quantized"]
        assert q.dtype == np.int8 and q.min() >= -127
        expected = quantize(
            torch.from_numpy(fp_inits[name].copy()),
            torch.as_tensor(scale),
            torch.as_tensor(zp),
            spec,
        )
        np.testing.assert_array_equal(q, expected.numpy())
    x = _data(1, 8)[0]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    got = ort.InferenceSession(
        qdq.SerializeToString(), options, providers=["CPUExecutionProvider"]
    ).run(None, x)[0]
    # numpy simulation: float math on dequantized values (onnx.reference has Q/DQ from opset 19).
    want = ReferenceEvaluator(version_converter.convert_version(qdq, 19)).run(None, x)[0]
    step = (want.max() - want.min()) / 255.0
    assert np.abs(got - want).max() <= step
    fp32 = ort.InferenceSession(
        fp32_model.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, x)[0]
    assert np.abs(fp32 - want).max() < 0.25 * np.abs(fp32).max()
    if profile == "onnxruntime":  # the placement lets ONNX Runtime run int8 kernels
        fused = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
        assert fused.count("QLinearConv") == 3 and "Conv" not in fused
        assert "QLinearAdd" in fused


def _single_conv(op: str = "Conv", opset: int = 17) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    shape = (6, 4, 3, 3) if op == "Conv" else (4, 6, 3, 3)
    w = numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "w", "b"], ["y"], name="layer", pads=[1, 1, 1, 1])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 5, 5])],
        [w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_single_layer_matches_torch_simulation(op: str) -> None:
    model = _single_conv(op)
    x = np.random.default_rng(4).standard_normal((2, 4, 5, 5)).astype(np.float32)
    result = calibrate_onnx(model, [{"x": x}], method="minmax", progress=False)
    axis = 0 if op == "Conv" else 1
    assert select_tensors(model, "tensorrt").weights == {"w": axis}
    qdq = insert_qdq(model, result.qdq_activations(), result.qdq_weights(), "tensorrt")
    onnx.checker.check_model(qdq, full_check=True)
    dq_w = next(n for n in qdq.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "w")
    assert helper.get_attribute_value(dq_w.attribute[0]) == axis
    got = ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    # Simulation in torch: fake-quantize x and w with the calibrated qparams, then the layer.
    sx, zx, spec_x = result.qdq_activations()["x"]
    sw, zw, spec_w = result.qdq_weights()["w"]
    w = torch.from_numpy(numpy_helper.to_array(model.graph.initializer[0]).copy())
    b = torch.from_numpy(numpy_helper.to_array(model.graph.initializer[1]).copy())
    xt = torch.from_numpy(x)
    sx, zx, sw, zw = (torch.as_tensor(v) for v in (sx, zx, sw, zw))
    xq = dequantize(quantize(xt, sx, zx, spec_x), sx, zx, spec_x)
    wq = dequantize(quantize(w, sw, zw, spec_w), sw, zw, spec_w)
    layer = F.conv2d if op == "Conv" else F.conv_transpose2d
    want = layer(xq, wq, b, padding=1).numpy()
    step = float(np.abs(want).max()) / 127.0
    assert np.abs(got - want).max() <= step
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()  # same arithmetic, float order only


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_weight_axis_follows_trans_b(trans_b: int) -> None:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 7) if trans_b else (7, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=trans_b)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sel = select_tensors(model, "tensorrt")
    assert sel.weights == {"w": 0 if trans_b else 1}
    assert sel.layers[0].name == "fc"
    x = rng.standard_normal((4, 7)).astype(np.float32)
    result = calibrate_onnx(model, [{"x": x}], method="minmax", progress=False)
    assert result.weights["w"].scale.shape == (3,)  # one scale per output feature
    qdq = insert_qdq(model, result.qdq_activations(), result.qdq_weights(), "tensorrt")
    onnx.checker.check_model(qdq, full_check=True)
    got = ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    want = x @ (w.T if trans_b else w)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_tensorrt_profile_rejects_zero_points_and_asymmetric_specs() -> None:
    model = _single_conv()
    w_qp = (
        torch.full((6,), 0.01),
        torch.zeros(6, dtype=torch.int32),
        QuantSpec(narrow_range=True, axis=0),
    )
    with pytest.raises(ExportError, match=r"'x'.*zero points 0"):
        insert_qdq(model, {"x": (0.1, 3, QuantSpec())}, {"w": w_qp}, "tensorrt")
    with pytest.raises(ExportError, match=r"'x'.*signed symmetric"):
        insert_qdq(model, {"x": (0.1, 128, default_activation_spec("onnxruntime"))}, {}, "tensorrt")
    qdq = insert_qdq(
        model, {"x": (0.1, 128, default_activation_spec("onnxruntime"))}, {"w": w_qp}, "onnxruntime"
    )
    onnx.checker.check_model(qdq, full_check=True)


def test_insert_qdq_errors() -> None:
    with pytest.raises(ExportError, match="opset >= 13"):
        insert_qdq(_single_conv(opset=11), {"x": (0.1, 0, QuantSpec())}, {}, "tensorrt")
    with pytest.raises(ExportError, match="'nope'"):
        insert_qdq(_single_conv(), {"nope": (0.1, 0, QuantSpec())}, {}, "tensorrt")
    with pytest.raises(ExportError, match="8-bit"):
        insert_qdq(_single_conv(), {"x": (0.1, 0, QuantSpec(bits=4))}, {}, "tensorrt")
    with pytest.raises(ExportError, match="scales must be finite"):
        insert_qdq(_single_conv(), {"x": (0.0, 0, QuantSpec())}, {}, "tensorrt")
    with pytest.raises(ExportError, match="profile"):
        select_tensors(_single_conv(), "openvino")  # type: ignore[arg-type]

"""QuantizeLinear/DequantizeLinear (QDQ) insertion into an FP32 ONNX model.

Two placement profiles (../shared/specs/algorithms.md section 4):

``tensorrt``
    Explicit quantization for TensorRT: symmetric int8 only (zero points 0). Q/DQ on both
    inputs of Conv/ConvTranspose/Gemm/MatMul (constant weights as int8 initializers +
    DequantizeLinear, per channel) and on the shortcut input of residual Adds, so TensorRT
    fuses the Add into the convolution (TensorRT developer guide, "Q/DQ layer placement
    recommendations"; NVIDIA pytorch-quantization's ResNet ``residual_quantizer``).

``onnxruntime``
    The placement ``onnxruntime.quantization.quantize_static(quant_format=QuantFormat.QDQ)``
    produces, so ONNX Runtime fuses each ``DQ -> op -> Q`` group into QLinearConv, QGemm,
    QLinearMatMul, QLinearAdd, ...: inputs AND outputs of the compute ops are quantized; an
    output read only by a Relu is quantized after the Relu (ONNX Runtime then drops the Relu,
    as its zero point is the grid minimum); data-movement ops (MaxPool, Reshape, Flatten, ...)
    reuse their input's scale; Conv/Gemm biases become int32 with scale ``s_x * s_w``.
    uint8 or int8 activations with zero points.

Graph outputs are not quantized, so the model's results keep full precision. Weight
tensors keep their names (the DequantizeLinear node outputs the original name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import Tensor

from torchquant.errors import ExportError
from torchquant.quant.affine import quantize
from torchquant.quant.spec import QuantSpec

__all__ = [
    "PROFILES",
    "Profile",
    "QParams",
    "QuantLayer",
    "TensorSelection",
    "check_profile_spec",
    "insert_qdq",
    "select_tensors",
]

Profile: TypeAlias = Literal["tensorrt", "onnxruntime"]
PROFILES: tuple[Profile, ...] = ("tensorrt", "onnxruntime")
# (scale, zero_point, spec): scalars or per-channel vectors along ``spec.axis``.
QParams: TypeAlias = tuple[Tensor | float, Tensor | int, QuantSpec]

_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Ops ONNX Runtime runs as QLinear*/QGemm kernels when wrapped in DQ ... Q.
_ORT_COMPUTE_OPS = (*_LAYER_OPS, "Add", "Mul", "Concat", "GlobalAveragePool", "AveragePool")
# Ops that only move or select values: their output reuses the input's scale (ONNX Runtime's
# "Direct8BitOp"s), so int8 flows through them without a requantization.
_ORT_SHARED_OPS = ("MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")


@dataclass(frozen=True)
class QuantLayer:
    """A Conv/ConvTranspose/Gemm/MatMul node with a constant weight.

    Attributes:
        name: the ONNX node name (its first output's name when the node has none); the
            key of Ascend AMCT records.
        op_type: ONNX operator.
        input: the activation tensor the layer reads.
        weight: the weight initializer.
        axis: the weight's output-channel axis (Conv 0, ConvTranspose 1, Gemm 0 with
            ``transB=1`` else 1, MatMul the last axis).
        bias: the bias initializer, if any.
    """

    name: str
    op_type: str
    input: str
    weight: str
    axis: int
    bias: str | None


@dataclass(frozen=True)
class TensorSelection:
    """Which tensors a profile quantizes.

    Attributes:
        profile: the placement profile.
        activations: tensors to calibrate and wrap in Q/DQ, in graph order.
        shared: tensor -> tensor whose qparams it reuses (``onnxruntime`` data-movement ops).
        weights: weight initializer -> output-channel axis.
        layers: the Conv/Gemm/MatMul layers with constant weights, in graph order.
        extra: further float tensors calibrated only for a TensorRT cache (which needs a
            range for every tensor); empty unless ``all_activations`` was asked for.
    """

    profile: Profile
    activations: tuple[str, ...]
    shared: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    layers: tuple[QuantLayer, ...] = ()
    extra: tuple[str, ...] = ()

    @property
    def calibrated(self) -> tuple[str, ...]:
        """Every activation tensor that needs a calibrator: ``activations + extra``."""
        return self.activations + self.extra


class _Graph:
    """Lookup tables over a graph: constants, producers, consumers, float tensors."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.graph = graph
        input_names = {i.name for i in graph.input}
        self.initializers = {t.name: t for t in graph.initializer if t.name not in input_names}
        self.constants = set(self.initializers)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            if node.op_type == "Constant":
                self.constants.update(node.output)
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                self.consumers.setdefault(inp, []).append(node)
        self.outputs = {o.name for o in graph.output}
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # inference is optional: types then count as float
            inferred = graph
        self.elem_type = {
            v.name: v.type.tensor_type.elem_type
            for v in (*inferred.input, *inferred.value_info, *inferred.output)
        }

    def is_activation(self, name: str) -> bool:
        """A non-constant float tensor (an unknown type counts as float)."""
        if not name or name in self.constants:
            return False
        return self.elem_type.get(name, TensorProto.FLOAT) in (TensorProto.FLOAT, 0)


def _node_name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _weight_axis(node: onnx.NodeProto, weight: onnx.TensorProto) -> int | None:
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return len(weight.dims) - 1 if len(weight.dims) >= 2 else None


def _find_layers(g: _Graph) -> tuple[QuantLayer, ...]:
    layers: list[QuantLayer] = []
    axes: dict[str, int] = {}
    for node in g.graph.node:
        if node.op_type not in _LAYER_OPS or len(node.input) < 2:
            continue
        weight = g.initializers.get(node.input[1])
        if weight is None or not g.is_activation(node.input[0]):
            continue
        axis = _weight_axis(node, weight)
        if axis is None:
            continue
        if axes.setdefault(weight.name, axis) != axis:
            raise ExportError(
                f"weight {weight.name!r} is read with channel axis {axes[weight.name]} and "
                f"{axis} (node {_node_name(node)!r}); per-channel quantization needs one axis"
            )
        bias = node.input[2] if len(node.input) > 2 and node.input[2] in g.initializers else None
        if bias is not None and len(g.initializers[bias].dims) != 1:
            bias = None
        layers.append(
            QuantLayer(_node_name(node), node.op_type, node.input[0], weight.name, axis, bias)
        )
    return tuple(layers)


def _residual_shortcut(g: _Graph, node: onnx.NodeProto) -> str | None:
    """The shortcut input of an Add fed by a convolution, else None."""
    if len(node.input) != 2 or not all(g.is_activation(i) for i in node.input):
        return None
    from_layer = [
        g.producer.get(i) is not None and g.producer[i].op_type in _LAYER_OPS for i in node.input
    ]
    if not any(from_layer):
        return None
    # The input not computed by a convolution; when both are (a downsampling shortcut),
    # input 1, the operand PyTorch's `out += identity` exports second.
    if from_layer[0] and not from_layer[1]:
        return node.input[1]
    if from_layer[1] and not from_layer[0]:
        return node.input[0]
    return node.input[1]


def _select_tensorrt(g: _Graph) -> list[str]:
    chosen: list[str] = []
    for node in g.graph.node:
        if node.op_type in _LAYER_OPS:
            chosen.extend(i for i in node.input[:2] if g.is_activation(i))
        elif node.op_type == "Add":
            shortcut = _residual_shortcut(g, node)
            if shortcut is not None:
                chosen.append(shortcut)
    return chosen


def _select_onnxruntime(g: _Graph) -> tuple[list[str], dict[str, str]]:
    chosen: list[str] = []
    for node in g.graph.node:
        if node.op_type not in _ORT_COMPUTE_OPS:
            continue
        inputs = [i for i in node.input if i]
        if node.op_type in ("Add", "Mul", "Concat") and not all(g.is_activation(i) for i in inputs):
            continue  # an op with a constant operand stays float: it would not fuse
        chosen.extend(i for i in inputs[:2] if g.is_activation(i))
        if node.op_type == "Concat":
            chosen.extend(inputs[2:])
        out = node.output[0]
        readers = g.consumers.get(out, [])
        if len(readers) == 1 and readers[0].op_type == "Relu" and out not in g.outputs:
            out = readers[0].output[0]
        if out not in g.outputs and g.is_activation(out):
            chosen.append(out)
    selected = set(chosen)
    shared: dict[str, str] = {}
    for node in g.graph.node:
        if node.op_type not in _ORT_SHARED_OPS or not node.input:
            continue
        src, out = node.input[0], node.output[0]
        if (src in selected or src in shared) and out not in g.outputs and g.is_activation(out):
            shared[out] = shared.get(src, src)
    return [t for t in chosen if t not in shared], shared


def select_tensors(
    model: onnx.ModelProto, profile: Profile, *, all_activations: bool = False
) -> TensorSelection:
    """The tensors ``profile`` quantizes in ``model`` (see the module docstring).

    With ``all_activations`` every other float tensor (graph inputs, node outputs) is listed
    in ``extra`` as well, for a TensorRT calibration cache.
    """
    if profile not in PROFILES:
        raise ExportError(f"unknown QDQ profile {profile!r}; known: {list(PROFILES)}")
    g = _Graph(model)
    layers = _find_layers(g)
    shared: dict[str, str] = {}
    if profile == "tensorrt":
        chosen = _select_tensorrt(g)
    else:
        chosen, shared = _select_onnxruntime(g)
    activations = tuple(dict.fromkeys(chosen))
    extra: tuple[str, ...] = ()
    if all_activations:
        everything = [i.name for i in g.graph.input] + [o for n in g.graph.node for o in n.output]
        taken = set(activations) | set(shared)
        extra = tuple(t for t in dict.fromkeys(everything) if g.is_activation(t) and t not in taken)
    weights = {layer.weight: layer.axis for layer in layers}
    return TensorSelection(profile, activations, shared, weights, layers, extra)


def check_profile_spec(
    spec: QuantSpec, profile: Profile, tensor: str, *, weight: bool = False
) -> None:
    """Raise `ExportError` naming ``tensor`` if ``spec`` cannot be expressed in ``profile``.

    Activations need 8-bit full-range grids (QuantizeLinear saturates to int8/uint8);
    ``tensorrt`` needs signed symmetric grids (zero point 0) everywhere; weights need
    <= 8 bits.
    """
    kind = "weight" if weight else "activation"
    if weight and spec.bits > 8:
        raise ExportError(f"{kind} {tensor!r}: {spec.bits}-bit weights do not fit int8 storage")
    if not weight and (spec.bits != 8 or spec.narrow_range):
        raise ExportError(
            f"{kind} {tensor!r}: QuantizeLinear needs an 8-bit full-range grid, got "
            f"bits={spec.bits}, narrow_range={spec.narrow_range}"
        )
    if profile == "tensorrt" and not (spec.signed and spec.symmetric):
        raise ExportError(
            f"{kind} {tensor!r}: the tensorrt profile needs signed symmetric int8 (zero point 0), "
            f"got signed={spec.signed}, symmetric={spec.symmetric}"
        )


def _qparams_arrays(
    name: str, qparams: QParams, profile: Profile, *, weight: bool
) -> tuple[Tensor, Tensor, QuantSpec]:
    scale_in, zp_in, spec = qparams
    check_profile_spec(spec, profile, name, weight=weight)
    scale = torch.as_tensor(scale_in, dtype=torch.float32).detach().cpu()
    zero_point = torch.as_tensor(zp_in).detach().cpu().to(torch.int32)
    if not bool(torch.isfinite(scale).all()) or bool((scale <= 0).any()):
        raise ExportError(f"tensor {name!r}: scales must be finite and > 0, got {scale.tolist()}")
    if scale.dim() > 1 or zero_point.shape != scale.shape:
        raise ExportError(
            f"tensor {name!r}: scale {tuple(scale.shape)} and zero point {tuple(zero_point.shape)} must be equal scalars or vectors"
        )
    if (scale.dim() == 1) != spec.per_channel:
        raise ExportError(
            f"tensor {name!r}: per-channel spec (axis={spec.axis}) needs vector scales and per-tensor scalars"
        )
    if profile == "tensorrt" and bool((zero_point != 0).any()):
        raise ExportError(
            f"tensor {name!r}: the tensorrt profile needs zero points 0, got {zero_point.tolist()}"
        )
    return scale, zero_point, spec


class _Builder:
    """Accumulates new initializers and Q/DQ nodes with collision-free names."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.used = {t.name for t in model.graph.initializer} | {i.name for i in model.graph.input}
        self.used |= {o for n in model.graph.node for o in n.output} | {
            n.name for n in model.graph.node
        }
        self.initializers: list[onnx.TensorProto] = []
        self.removed: set[str] = set()  # float initializers replaced by a DequantizeLinear

    def name(self, base: str) -> str:
        candidate, k = base, 1
        while candidate in self.used:
            candidate, k = f"{base}_{k}", k + 1
        self.used.add(candidate)
        return candidate

    def constant(self, base: str, array: np.ndarray) -> str:
        name = self.name(base)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def dq(self, q_name: str, scale: str, zp: str, out: str, axis: int | None) -> onnx.NodeProto:
        kwargs: dict[str, Any] = {} if axis is None else {"axis": axis}
        return helper.make_node(
            "DequantizeLinear",
            [q_name, scale, zp],
            [out],
            name=self.name(f"{out}_DequantizeLinear"),
            **kwargs,
        )


def _zp_dtype(spec: QuantSpec) -> type[np.generic]:
    return np.int8 if spec.signed else np.uint8


def insert_qdq(
    model: onnx.ModelProto,
    activations: Mapping[str, QParams],
    weights: Mapping[str, QParams],
    profile: Profile = "tensorrt",
) -> onnx.ModelProto:
    """A copy of ``model`` with Q/DQ pairs on ``activations`` and int8 ``weights``.

    Args:
        model: FP32 model, default-domain opset >= 13.
        activations: tensor name -> ``(scale, zero_point, spec)``; each tensor's readers get
            ``DequantizeLinear(QuantizeLinear(t))`` (per channel with the ``axis`` attribute).
        weights: initializer name -> ``(scale, zero_point, spec)``; the initializer is
            replaced by its integer values (``torchquant.quantize`` with ``spec``, e.g. the
            narrow range [-127, 127]) and a DequantizeLinear that outputs the original name.
        profile: ``tensorrt`` or ``onnxruntime``; ``onnxruntime`` also turns the float bias of
            a layer whose input and weight are both quantized into int32 with scale
            ``s_x * s_w``, which ONNX Runtime needs to fuse QLinearConv/QGemm.

    Raises:
        ExportError: opset < 13, an unknown tensor, a spec the profile cannot express (e.g. a
            non-zero zero point for ``tensorrt``), non-positive scales.
    """
    if profile not in PROFILES:
        raise ExportError(f"unknown QDQ profile {profile!r}; known: {list(PROFILES)}")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ExportError(
            f"QDQ needs default-domain opset >= 13 (per-channel axis); model has {opset}"
        )
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = _Graph(out)
    b = _Builder(out)
    head: list[onnx.NodeProto] = []  # DQ of constants and Q/DQ of graph inputs
    after: dict[str, list[onnx.NodeProto]] = {}  # tensor -> Q/DQ placed after its producer
    rewire: dict[str, str] = {}
    graph_inputs = {i.name for i in out.graph.input}
    for name, qp in activations.items():
        if name not in g.producer and name not in graph_inputs:
            raise ExportError(f"activation {name!r} is not a tensor computed by the graph")
        pair = _activation_qdq(b, name, _qparams_arrays(name, qp, profile, weight=False))
        (after.setdefault(name, []) if name in g.producer else head).extend(pair)
        rewire[name] = pair[1].output[0]
    replaced: dict[str, tuple[Tensor, QuantSpec]] = {}
    for name, qp in weights.items():
        if name not in g.initializers:
            raise ExportError(f"weight {name!r} is not an initializer of the model")
        scale, zp, spec = _qparams_arrays(name, qp, profile, weight=True)
        w = torch.from_numpy(numpy_helper.to_array(g.initializers[name]).astype(np.float32))
        if spec.axis is not None and not (
            -w.dim() <= spec.axis < w.dim() and w.shape[spec.axis] == scale.numel()
        ):
            raise ExportError(
                f"weight {name!r} of shape {tuple(w.shape)}: {scale.numel()} scales do not match axis {spec.axis}"
            )
        q_arr = quantize(w, scale, zp, spec).numpy().astype(_zp_dtype(spec))
        head.append(
            _replace_initializer(
                b, name, q_arr, scale, zp.numpy().astype(_zp_dtype(spec)), spec.axis
            )
        )
        replaced[name] = (scale, spec)
    if profile == "onnxruntime":
        head.extend(_quantize_biases(b, g, activations, replaced))
    nodes: list[onnx.NodeProto] = list(head)
    for node in out.graph.node:
        for k, inp in enumerate(node.input):
            if inp in rewire:
                node.input[k] = rewire[inp]
        nodes.append(node)
        for o in node.output:
            nodes.extend(after.get(o, []))
    # Rebuilt in topological order: constants' DQ first, each Q/DQ right after its producer.
    new_nodes = [onnx.NodeProto() for _ in nodes]
    for dst, src in zip(new_nodes, nodes, strict=True):
        dst.CopyFrom(src)
    out.graph.ClearField("node")
    out.graph.node.extend(new_nodes)
    for i in reversed(range(len(out.graph.initializer))):
        if out.graph.initializer[i].name in b.removed:
            del out.graph.initializer[i]
    out.graph.initializer.extend(b.initializers)
    return out


def _activation_qdq(
    b: _Builder, name: str, qparams: tuple[Tensor, Tensor, QuantSpec]
) -> list[onnx.NodeProto]:
    """QuantizeLinear and DequantizeLinear of tensor ``name`` (readers take the DQ output)."""
    scale, zp, spec = qparams
    s_name = b.constant(f"{name}_scale", scale.numpy())
    z_name = b.constant(f"{name}_zero_point", zp.numpy().astype(_zp_dtype(spec)))
    q_out = b.name(f"{name}_QuantizeLinear_Output")
    kwargs: dict[str, Any] = {} if spec.axis is None else {"axis": spec.axis}
    q = helper.make_node(
        "QuantizeLinear",
        [name, s_name, z_name],
        [q_out],
        name=b.name(f"{name}_QuantizeLinear"),
        **kwargs,
    )
    dq_out = b.name(f"{name}_DequantizeLinear_Output")
    return [q, b.dq(q_out, s_name, z_name, dq_out, spec.axis)]


def _replace_initializer(
    b: _Builder, name: str, q: np.ndarray, scale: Tensor, zp: np.ndarray, axis: int | None
) -> onnx.NodeProto:
    """Swap float initializer ``name`` for integer ``q`` + a DequantizeLinear named ``name``."""
    b.removed.add(name)
    q_name = b.constant(f"{name}_quantized", q)
    s_name = b.constant(f"{name}_scale", scale.numpy())
    z_name = b.constant(f"{name}_zero_point", zp)
    return b.dq(q_name, s_name, z_name, name, axis if scale.dim() == 1 else None)


def _quantize_biases(
    b: _Builder,
    g: _Graph,
    activations: Mapping[str, QParams],
    weights: Mapping[str, tuple[Tensor, QuantSpec]],
) -> list[onnx.NodeProto]:
    """int32 biases (scale ``s_x * s_w``, zero point 0) of layers with quantized x and w."""
    nodes: list[onnx.NodeProto] = []
    done: set[str] = set()
    for layer in _find_layers(g):
        if (
            layer.bias is None
            or layer.bias in done
            or layer.input not in activations
            or layer.weight not in weights
        ):
            continue
        s_x = torch.as_tensor(activations[layer.input][0], dtype=torch.float32).cpu()
        s_w = weights[layer.weight][0]
        bias = torch.from_numpy(
            numpy_helper.to_array(g.initializers[layer.bias]).astype(np.float32)
        )  # (C,)
        if s_x.dim() != 0 or (s_w.dim() == 1 and s_w.numel() != bias.numel()):
            continue
        scale = (s_x * s_w).expand(bias.shape).contiguous()  # (C,)
        limit = float(2**31 - 1)
        q = torch.clamp(torch.round(bias / scale), -limit, limit).to(torch.int32)
        zp = np.zeros(bias.shape, dtype=np.int32)
        nodes.append(_replace_initializer(b, layer.bias, q.numpy(), scale, zp, 0))
        done.add(layer.bias)
    return nodes

"""Export a quantized PyTorch model (prepared and calibrated, QAT-trained or converted) to
an ONNX QDQ model, and check it against ONNX Runtime.

PyTorch's exporters cannot express torchquant's quantizers (narrow-range and per-channel
fake-quant are rejected by the TorchScript exporter, and the dynamo exporter does not convert
fake-quant ops: ../shared/specs/algorithms.md section 4). So during export every `Quantizer`
emits the ONNX nodes itself, through an autograd function with a ``symbolic`` method
(TorchScript exporter of torch 2.13, ``dynamo=False``):

- activations: ``QuantizeLinear -> DequantizeLinear`` with the quantizer's scale and zero
  point (grids under 8 bits add a ``Clip`` to ``[qmin, qmax]`` between them);
- weights: the model is converted first (`torchquant.convert`: BN folded, integer weights
  on the weight quantizer's grid), and each integer weight becomes an initializer followed
  by ``DequantizeLinear`` (per-channel with ``axis``).

Activation ``QuantizeLinear`` nodes are named ``<quantizer name>/QuantizeLinear``, in the
order the quantizers ran, so the ONNX tensor each quantizer guards is known: that gives the
TensorRT calibration cache its tensor names (`tensorrt_scales`) for the FP32 graph that
`strip_qdq` recovers (same tensor names).

`export_onnx` then runs the ONNX model in ONNX Runtime on the example inputs and compares
with the PyTorch model's own quantized forward (`ExportCheck`): the difference is reported in
quantization steps of each output (the scale of the quantizer that produced it, or
``max|y| / 127`` for a float output) and an `ExportError` is raised past ``tolerance_steps``.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from torchquant._convert import convert
from torchquant.errors import ExportError
from torchquant.export.ascend import AmctRecord
from torchquant.export.tensorrt import amax_to_scale
from torchquant.nn.qat import QuantizedWeightModule
from torchquant.quant.affine import dequantize
from torchquant.quant.fake import fake_quantize
from torchquant.quant.quantizer import Quantizer, iter_quantizers

__all__ = [
    "ExportCheck",
    "ExportResult",
    "amct_records_from_model",
    "export_onnx",
    "strip_qdq",
    "tensorrt_scales",
]

_OPSET = 17


# Quantizers being exported, by id, with copies of their qparams made before tracing:
# autograd-function symbolics take only constants besides tensors, so the functions get the
# key; and the tracer fails on module buffers read inside an autograd function's forward.
_EXPORTING: dict[int, tuple[Quantizer, Tensor, Tensor]] = {}


def _fake_quant_copy(x: Tensor, key: int) -> Tensor:
    quantizer, scale, zero_point = _EXPORTING[key]
    return fake_quantize(x, scale, zero_point, quantizer.spec)


class _QuantDequant(torch.autograd.Function):
    """Forward: the quantizer's own forward; export: Q -> (Clip) -> DQ."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, key: int) -> Tensor:
        return _fake_quant_copy(x, key)

    @staticmethod
    def symbolic(g: Any, x: Any, key: int) -> Any:
        quantizer = _EXPORTING[key][0]
        spec = quantizer.spec
        scale, zp = _onnx_qparams(quantizer)
        s = g.op("Constant", value_t=scale)
        z = g.op("Constant", value_t=zp)
        kw = {} if spec.axis is None else {"axis_i": spec.axis}
        q = g.op("QuantizeLinear", x, s, z, **kw)
        if (spec.qmin, spec.qmax) not in ((-128, 127), (0, 255)):
            lo = g.op("Constant", value_t=torch.tensor(spec.qmin, dtype=zp.dtype))
            hi = g.op("Constant", value_t=torch.tensor(spec.qmax, dtype=zp.dtype))
            q = g.op("Clip", q, lo, hi)
        return g.op("DequantizeLinear", q, s, z, **kw)


class _DequantizeWeight(torch.autograd.Function):
    """Forward: ``(q - z) * s`` of an integer weight; export: ``DequantizeLinear(q)``."""

    @staticmethod
    def forward(ctx: Any, qweight: Tensor, key: int) -> Tensor:
        quantizer, scale, zero_point = _EXPORTING[key]
        return dequantize(qweight, scale, zero_point, quantizer.spec)

    @staticmethod
    def symbolic(g: Any, qweight: Any, key: int) -> Any:
        quantizer = _EXPORTING[key][0]
        scale, zp = _onnx_qparams(quantizer)
        kw = {} if quantizer.spec.axis is None else {"axis_i": quantizer.spec.axis}
        s = g.op("Constant", value_t=scale)
        z = g.op("Constant", value_t=zp)
        return g.op("DequantizeLinear", qweight, s, z, **kw)


def _onnx_qparams(quantizer: Quantizer) -> tuple[Tensor, Tensor]:
    """float32 scale and int8/uint8 zero point tensors as ONNX wants them."""
    spec = quantizer.spec
    if spec.bits > 8:
        raise ExportError(
            f"quantizer {quantizer.name!r}: {spec.bits}-bit grids need ONNX opset 21 (int16 "
            "QuantizeLinear); export supports up to 8 bits"
        )
    dtype = torch.int8 if spec.signed else torch.uint8
    scale = quantizer.scale.detach().to("cpu", torch.float32).clone()
    zp = quantizer.zero_point.detach().to("cpu").to(dtype).clone()
    return scale, zp


def _is_weight_quantizer(name: str) -> bool:
    return name.rsplit(".", 1)[-1] == "weight_quantizer"


class _ExportingQuantizer(Quantizer):
    """What a `Quantizer` becomes while a converted model is traced for export (its class is
    swapped, then restored): activations emit Q/DQ nodes and record the order in which the
    quantizers run; integer weights emit ``DequantizeLinear``; no extra state (the
    TorchScript tracer reads every state_dict entry as a tensor)."""

    get_extra_state = nn.Module.get_extra_state
    _order: list[str]

    def forward(self, x: Tensor) -> Tensor:
        if not self.fake_quant_enabled:  # left float on purpose
            return x
        self._order.append(self.name)
        out: Tensor = _QuantDequant.apply(x, id(self))
        return out

    def dequantize_integer(self, q: Tensor) -> Tensor:
        out: Tensor = _DequantizeWeight.apply(q, id(self))
        return out


@contextmanager
def _export_mode(model: nn.Module) -> Iterator[list[str]]:
    """Make every quantizer of a converted model emit ONNX nodes while it is traced; yields
    the names of the activation quantizers in the order they run."""
    quantizers = list(iter_quantizers(model))
    order: list[str] = []
    classes = {id(q): type(q) for _, q in quantizers}
    names = {id(q): q.name for _, q in quantizers}
    try:
        for name, q in quantizers:
            q.__class__ = _ExportingQuantizer
            q.name = name
            vars(q)["_order"] = order
            copies = (q.scale.detach().clone(), q.zero_point.detach().clone())
            _EXPORTING[id(q)] = (q, *copies)
        yield order
    finally:
        for _, q in quantizers:
            _EXPORTING.pop(id(q), None)
            q.__class__ = classes[id(q)]
            q.name = names[id(q)]
            q.__dict__.pop("_order", None)


def _deployable(model: nn.Module) -> nn.Module:
    """A converted copy of ``model`` (BN folded, integer weights, frozen quantizers): what
    the engine runs, and what is traced; refuses quantizers still calibrating."""
    for name, q in iter_quantizers(model):
        if q.observer_enabled and not q.fake_quant_enabled:
            raise ExportError(
                f"quantizer {name!r} is still in calibration mode: calibrate() the model "
                "(or call set_quantized_mode) before export"
            )
        if q.fake_quant_enabled and not q.has_qparams:
            raise ExportError(f"quantizer {name!r} has no scale yet: calibrate or train first")
    converted = convert(copy.deepcopy(model))
    converted.eval()
    for _, q in iter_quantizers(converted):
        q.sync_qparams()
    for name, module in converted.named_modules():
        if isinstance(module, QuantizedWeightModule):
            raise ExportError(f"layer {name!r} was not converted ({type(module).__name__})")
    return converted


@dataclass(frozen=True)
class ExportCheck:
    """ONNX Runtime vs PyTorch on the same inputs, per output.

    ``max_abs_diff``: float units; ``max_steps``: the same in quantization steps;
    ``step``: the step used (output quantizer scale, or ``max|y| / 127``).
    """

    output_names: tuple[str, ...]
    max_abs_diff: tuple[float, ...]
    step: tuple[float, ...]
    max_steps: tuple[float, ...]

    def __str__(self) -> str:
        rows = [
            f"{n}: max |onnxruntime - torch| = {d:.3g} = {s:.3f} steps of {st:.3g}"
            for n, d, st, s in zip(self.output_names, self.max_abs_diff, self.step, self.max_steps)
        ]
        return "\n".join(rows)


@dataclass(frozen=True)
class ExportResult:
    """An exported QDQ model: its path and proto, the ONNX tensor each activation quantizer
    guards (quantizer name -> tensor name), and the ONNX Runtime check (None if skipped)."""

    path: str | None
    model: onnx.ModelProto
    activation_tensors: dict[str, str]
    check: ExportCheck | None


def _as_tuple(example_inputs: Any) -> tuple[Any, ...]:
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def export_onnx(
    model: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    profile: str | None = None,
    check: bool = True,
    check_inputs: Sequence[Any] = (),
    tolerance_steps: float = 1.0,
    opset: int = _OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
) -> ExportResult:
    """Export a quantized model to an ONNX QDQ file and (by default) check it in ONNX Runtime.

    Args:
        model: a calibrated, QAT-trained or converted torchquant model (quantizers with
            scales); a converted copy (BN folded, integer weights) is what is traced and
            checked, ``model`` itself is left as it is.
        example_inputs: a tensor or tuple of tensors for tracing (and for the check).
        path: where to save the model (``None``: keep it in memory only).
        profile: ``"tensorrt"`` rejects any zero point other than 0 and any grid other than
            int8 (what TensorRT's explicit quantization accepts); ``None`` accepts all.
        check: compare ONNX Runtime with the PyTorch forward on ``example_inputs`` and
            ``check_inputs``; raise `ExportError` past ``tolerance_steps``.
        opset: ONNX opset (>= 13 for per-channel QDQ).
        dynamic_batch: make dimension 0 of every input and output dynamic.
    """
    if opset < 13:
        raise ExportError(f"QDQ export needs opset >= 13 (per-channel axis), got {opset}")
    inputs = _as_tuple(example_inputs)
    model = _deployable(model)
    if profile == "tensorrt":
        _check_tensorrt(model)
    n_in = len(inputs)
    in_names = list(input_names or ([f"input_{i}" for i in range(n_in)] if n_in > 1 else ["input"]))
    with torch.no_grad():
        reference = model(*inputs)
    n_out = len(reference) if isinstance(reference, (tuple, list)) else 1
    out_names = list(
        output_names or ([f"output_{i}" for i in range(n_out)] if n_out > 1 else ["output"])
    )
    axes = {n: {0: "batch"} for n in in_names + out_names} if dynamic_batch else None
    with (
        tempfile.TemporaryDirectory() as tmp,
        _export_mode(model) as order,
        warnings.catch_warnings(),
    ):
        traced = os.path.join(tmp, "model.onnx")
        # The TorchScript exporter is the one that runs autograd-function symbolics.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                inputs,
                traced,
                dynamo=False,
                opset_version=opset,
                input_names=in_names,
                output_names=out_names,
                dynamic_axes=axes,
            )
        except Exception as exc:  # the exporter raises many types; name the model
            raise ExportError(f"ONNX export of {type(model).__name__} failed: {exc}") from exc
        proto = onnx.load(traced)
    tensors = _name_quantize_nodes(proto, order)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported model fails onnx.checker: {exc}") from exc
    result_check = None
    if check:
        result_check = _check_with_onnxruntime(
            model, proto, [inputs, *map(_as_tuple, check_inputs)], out_names
        )
        worst = max(result_check.max_steps)
        if worst > tolerance_steps:
            raise ExportError(
                f"ONNX Runtime disagrees with torchquant's simulation by {worst:.2f} steps "
                f"(tolerance {tolerance_steps}):\n{result_check}"
            )
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return ExportResult(
        path=None if path is None else os.fspath(path),
        model=proto,
        activation_tensors=tensors,
        check=result_check,
    )


def _check_tensorrt(model: nn.Module) -> None:
    for name, q in iter_quantizers(model):
        if not q.fake_quant_enabled:
            continue
        if q.spec.bits != 8 or not q.spec.signed or not q.spec.symmetric:
            raise ExportError(
                f"quantizer {name!r}: the tensorrt profile needs symmetric signed int8, got {q.spec}"
            )


def _name_quantize_nodes(proto: onnx.ModelProto, order: list[str]) -> dict[str, str]:
    """Name activation QuantizeLinear nodes after their quantizers (trace order) and return
    quantizer name -> guarded tensor name."""
    q_nodes = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    if len(q_nodes) != len(order):
        raise ExportError(
            f"expected {len(order)} activation QuantizeLinear nodes, found {len(q_nodes)}"
        )
    tensors: dict[str, str] = {}
    seen: dict[str, int] = {}
    for node, qname in zip(q_nodes, order):
        k = seen.get(qname, 0)
        seen[qname] = k + 1
        node.name = f"{qname}/QuantizeLinear" + (f"_{k}" if k else "")
        tensors.setdefault(qname, node.input[0])
    return tensors


def _output_steps(proto: onnx.ModelProto) -> list[float | None]:
    """Per graph output: the scale of the DequantizeLinear that produces it, if any."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    steps: list[float | None] = []
    for out in proto.graph.output:
        node = producers.get(out.name)
        if node is not None and node.op_type == "DequantizeLinear" and node.input[1] in consts:
            steps.append(float(np.max(consts[node.input[1]])))
        else:
            steps.append(None)
    return steps


def _check_with_onnxruntime(
    model: nn.Module, proto: onnx.ModelProto, batches: list[tuple[Any, ...]], out_names: list[str]
) -> ExportCheck:
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed_names = [i.name for i in session.get_inputs()]
    quantized_steps = _output_steps(proto)
    n = len(out_names)
    diffs, steps, step_sizes = [0.0] * n, [0.0] * n, [0.0] * n
    for inputs in batches:
        with torch.no_grad():
            ref = model(*inputs)
        refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
        feed = {name: t.detach().cpu().numpy() for name, t in zip(feed_names, inputs)}
        for k, (r, o) in enumerate(zip(refs, session.run(None, feed))):
            r_np = r.detach().cpu().numpy()
            # A float output has no grid: measure in int8 steps of its own range.
            step = quantized_steps[k] or max(float(np.abs(r_np).max(initial=0.0)) / 127.0, 1e-12)
            diff = float(np.abs(r_np - o).max(initial=0.0))
            diffs[k] = max(diffs[k], diff)
            step_sizes[k] = step
            steps[k] = max(steps[k], diff / step)
    return ExportCheck(tuple(out_names), tuple(diffs), tuple(step_sizes), tuple(steps))


def strip_qdq(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 graph of a QDQ model: QuantizeLinear/Clip/DequantizeLinear chains removed,
    integer weights dequantized into float initializers; tensor names are kept, so a
    TensorRT calibration cache written for the QDQ model's activations applies to it."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    rename: dict[str, str] = {}
    new_inits: list[onnx.TensorProto] = []
    keep: list[onnx.NodeProto] = []
    producers = {o: n for n in graph.node for o in n.output}
    for n in graph.node:
        if n.op_type == "DequantizeLinear":
            src = n.input[0]
            chain = producers.get(src)
            while chain is not None and chain.op_type in ("Clip", "QuantizeLinear"):
                src = chain.input[0]
                if chain.op_type == "QuantizeLinear":
                    break
                chain = producers.get(src)
            if src in consts:  # a weight: dequantize it now
                q = consts[src].astype(np.float32)
                s = consts[n.input[1]].astype(np.float32)
                z = consts[n.input[2]].astype(np.float32) if len(n.input) > 2 else np.float32(0)
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                if s.ndim == 1:
                    shape = [1] * q.ndim
                    shape[axis] = -1
                    s, z = s.reshape(shape), z.reshape(shape)
                new_inits.append(
                    numpy_helper.from_array(((q - z) * s).astype(np.float32), n.output[0])
                )
            else:
                rename[n.output[0]] = src
            continue
        if n.op_type in ("QuantizeLinear", "Clip") and _feeds_only_qdq(graph, n):
            continue
        keep.append(n)
    for n in keep:
        for i, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[i] = name
    for o in graph.output:
        while o.name in rename:
            o.name = rename[o.name]
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(new_inits)
    _drop_unused(graph)
    return out


def _feeds_only_qdq(graph: onnx.GraphProto, node: onnx.NodeProto) -> bool:
    out = node.output[0]
    users = [n for n in graph.node if out in n.input]
    return bool(users) and all(u.op_type in ("Clip", "DequantizeLinear") for u in users)


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove Constant nodes and initializers nothing reads any more."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def tensorrt_scales(result: ExportResult, model: nn.Module) -> dict[str, float]:
    """TensorRT cache entries (ONNX tensor name -> scale = amax/127) for every symmetric
    int8 activation quantizer of an exported model."""
    quantizers = dict(iter_quantizers(model))
    scales: dict[str, float] = {}
    for qname, tensor in result.activation_tensors.items():
        q = quantizers[qname]
        if q.spec.axis is not None or not q.spec.symmetric or q.spec.bits != 8:
            continue
        amax = float(q.scale) * 127.0
        scales[tensor] = amax_to_scale(amax)
    return scales


def amct_records_from_model(model: nn.Module) -> dict[str, AmctRecord]:
    """AMCT record entries (layer name -> factors) for every layer that has both an input
    and a weight quantizer with scales."""
    records: dict[str, AmctRecord] = {}
    for name, module in model.named_modules():
        act = getattr(module, "input_quantizer", None)
        wq = getattr(module, "weight_quantizer", None)
        if not isinstance(act, Quantizer) or not isinstance(wq, Quantizer):
            continue
        if not (act.has_qparams and wq.has_qparams):
            continue
        act.sync_qparams()
        wq.sync_qparams()
        records[name] = AmctRecord(
            scale_d=float(act.scale.reshape(-1)[0]),
            offset_d=int(act.zero_point.reshape(-1)[0]),
            scale_w=tuple(float(s) for s in wq.scale.reshape(-1)),
            offset_w=tuple(int(z) for z in wq.zero_point.reshape(-1)),
        )
    return records

"""Layer-wise analysis of a prepared, calibrated model: which tensors and layers lose the
most to quantization.

A *layer* (quantizer group) is the set of `Quantizer` modules with the same parent module:
a QAT layer's ``input_quantizer`` and ``weight_quantizer``, or the operands of one functional
call site (``torchquant_functional.sites.<site>.input0`` / ``input1``). For every group the
analysis measures the SQNR (dB) of the model's output against the float model's output

- when only that group is quantized (its *sensitivity*: low SQNR = sensitive layer), and
- when only that group is left float (how much leaving it float would recover),

which is AIMET QuantAnalyzer's per-layer "quantize one" / "disable one" analysis, measured
with the output SQNR of PyTorch Numeric Suite (``torch.ao.ns.fx.utils.compute_sqnr``) on a
few batches instead of a full evaluation per layer. For every quantizer it profiles the
float tensor it sees with every candidate calibrator (`TensorProfiler`): ranges, histogram,
SQNR of each calibrator's qparams, and the SQNR of the quantizer's own output.

Cost, in forward passes over the analysis batches, for G groups: one float pass (reference
outputs, calibrator candidates), G "only this group quantized" passes (which also measure
every candidate's SQNR: with everything upstream float, the group's quantizers see float
tensors), G "only this group float" passes and one all-quantized pass, ``2G + 2 <= 3G``
for G >= 2 (with G = 1 the last two coincide with the float and the first pass).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from torchquant.analysis._json_file import load_json, save_json
from torchquant.analysis.profile import TensorLoss, TensorProfile, TensorProfiler, sqnr_db
from torchquant.errors import ConfigError, EmptyCalibrationError
from torchquant.quant.quantizer import Quantizer, iter_quantizers

__all__ = [
    "Analysis",
    "LayerSensitivity",
    "OutputFn",
    "analyze",
    "first_tensor",
    "output_sqnr",
    "quantizer_groups",
    "run_batch",
]

OutputFn = Callable[[Any], Tensor]


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer (quantizer group) and the model-output SQNR (dB) toggling it gives.

    Attributes:
        name: the group's module path (what `QuantPlan.float_layers` names).
        quantizers: qualified names of its quantizers.
        only_quantized_db: output SQNR with only this layer quantized (low = sensitive).
        only_float_db: output SQNR with every layer but this one quantized.
    """

    name: str
    quantizers: tuple[str, ...]
    only_quantized_db: float
    only_float_db: float


@dataclass(frozen=True)
class Analysis:
    """Result of `analyze` (or of an ONNX calibration profile, with no layers).

    Attributes:
        tensors: one profile per quantizer, in model order.
        layers: one entry per quantizer group, in model order.
        all_quantized_db: output SQNR with every quantizer on (``None`` if not measured).
        num_batches: analysis batches.
        forward_passes: forward passes over the batches that the analysis ran.
    """

    tensors: tuple[TensorProfile, ...]
    layers: tuple[LayerSensitivity, ...] = ()
    all_quantized_db: float | None = None
    num_batches: int = 0
    forward_passes: int = 0

    def tensor(self, name: str) -> TensorProfile:
        """The profile of tensor ``name``."""
        for t in self.tensors:
            if t.name == name:
                return t
        raise ConfigError(f"analysis has no tensor {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON."""
        return {
            "tensors": [t.to_dict() for t in self.tensors],
            "layers": [{**vars(g), "quantizers": list(g.quantizers)} for g in self.layers],
            "all_quantized_db": self.all_quantized_db,
            "num_batches": self.num_batches,
            "forward_passes": self.forward_passes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Analysis:
        """Inverse of `to_dict`."""
        layers = tuple(
            LayerSensitivity(**{**g, "quantizers": tuple(g["quantizers"])})
            for g in data.get("layers", ())
        )
        return cls(
            tensors=tuple(TensorProfile.from_dict(t) for t in data["tensors"]),
            layers=layers,
            all_quantized_db=data.get("all_quantized_db"),
            num_batches=int(data.get("num_batches", 0)),
            forward_passes=int(data.get("forward_passes", 0)),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON (``Infinity`` stands for a lossless SQNR, as Python's json does)."""
        save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Analysis:
        """Read a file written by `save`; a malformed one is a `FileFormatError` naming it."""
        result: Analysis = load_json(path, "analysis", cls.from_dict)
        return result


def quantizer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Layer (parent module path) -> qualified names of its quantizers, in model order."""
    groups: dict[str, list[str]] = {}
    for name, _ in iter_quantizers(model):
        groups.setdefault(name.rpartition(".")[0], []).append(name)
    return groups


def first_tensor(output: Any) -> Tensor:
    """The first tensor in a model output: the tensor itself, the first value of a mapping
    (a Hugging Face ``ModelOutput``'s ``last_hidden_state`` / ``logits``) or sequence."""
    if isinstance(output, Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output
    if isinstance(values, Iterable) and not isinstance(values, (str, bytes)):
        for v in values:
            if isinstance(v, Tensor):
                return v
    raise ConfigError(f"model output of type {type(output).__name__} holds no tensor")


def run_batch(model: nn.Module, batch: Any) -> Any:
    """Call ``model`` on a batch: a tensor, a tuple/list of positional inputs or a mapping
    of keyword inputs."""
    if isinstance(batch, Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    raise ConfigError(f"a batch must be a tensor, tuple, list or mapping, got {type(batch)}")


@contextmanager
def _preserved(model: nn.Module) -> Iterator[dict[str, Quantizer]]:
    """Yield the quantizers by name in eval mode with observers off; restore all flags."""
    quantizers = dict(iter_quantizers(model))
    flags = {n: (q.observer_enabled, q.fake_quant_enabled) for n, q in quantizers.items()}
    training = {n: m.training for n, m in model.named_modules()}
    model.eval()
    for q in quantizers.values():
        q.enable_observer(False)
    try:
        yield quantizers
    finally:
        for n, m in model.named_modules():
            m.training = training.get(n, m.training)
        for n, (obs, fq) in flags.items():
            quantizers[n].enable_observer(obs).enable_fake_quant(fq)


def analyze(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    calibrators: Sequence[str] | None = None,
    tensor_loss: TensorLoss | None = None,
    output_fn: OutputFn = first_tensor,
    bins: int = 128,
) -> Analysis:
    """Profile every quantizer and measure every layer's sensitivity (see module doc).

    Args:
        model: a prepared model whose quantizers have qparams (calibrated); left as found.
        batches: a few batches (each as `run_batch` takes it); kept in a list.
        calibrators: candidate calibrators per tensor (default: all post-training ones).
        tensor_loss: optional ``loss(x, x_quantized) -> scalar`` recorded per candidate.
        output_fn: picks the tensor to compare from the model output.
        bins: histogram bins per tensor.
    """
    data = list(batches)
    if not data:
        raise EmptyCalibrationError("analyze() got no batches")
    groups = quantizer_groups(model)
    if not groups:
        raise ConfigError("analyze(): the model holds no Quantizer; prepare it first")
    with _preserved(model) as quantizers, torch.no_grad():
        missing = [n for n, q in quantizers.items() if not q.has_qparams]
        if missing:
            raise EmptyCalibrationError(f"quantizer(s) without qparams, calibrate first: {missing}")
        profilers = {
            n: TensorProfiler(
                n,
                q.spec,
                calibrators=calibrators,
                options={q.config.calibrator: q.config.calibrator_options},
                bins=bins,
                loss=tensor_loss,
            )
            for n, q in quantizers.items()
        }
        probe = _Probe(profilers)
        handles = [q.register_forward_hook(probe.hook(n)) for n, q in quantizers.items()]
        passes = 0

        def run(enabled: set[str]) -> list[Tensor]:
            nonlocal passes
            for n, q in quantizers.items():
                q.enable_fake_quant(n in enabled)
            passes += 1
            return [output_fn(run_batch(model, b)).detach().float() for b in data]

        try:
            probe.mode = "observe"
            reference = run(set())
            probe.mode = "evaluate"
            only_q: dict[str, float] = {}
            for g, names in groups.items():
                probe.active = set(names)
                only_q[g] = output_sqnr(reference, run(set(names)))
            probe.mode = "off"
            only_f: dict[str, float] = {}
            everything = set(quantizers)
            for g, names in groups.items():
                only_f[g] = (
                    output_sqnr(reference, run(everything - set(names)))
                    if len(groups) > 1
                    else math.inf
                )
            all_db = (
                output_sqnr(reference, run(everything))
                if len(groups) > 1
                else next(iter(only_q.values()))
            )
        finally:
            for h in handles:
                h.remove()
    group_of = {n: g for g, names in groups.items() for n in names}
    tensors = tuple(
        p.result(current=quantizers[n].config.calibrator, group=group_of[n])
        for n, p in profilers.items()
        if p.histogram.counts is not None
    )
    layers = tuple(
        LayerSensitivity(g, tuple(names), only_q[g], only_f[g]) for g, names in groups.items()
    )
    return Analysis(tensors, layers, all_db, len(data), passes)


class _Probe:
    """Forward hooks on the quantizers: feed the profilers in the current pass's mode."""

    def __init__(self, profilers: Mapping[str, TensorProfiler]) -> None:
        self.profilers = profilers
        self.mode = "off"
        self.active: set[str] = set()

    def hook(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], Tensor], None]:
        def record(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            if self.mode == "observe":
                self.profilers[name].observe(args[0])
            elif self.mode == "evaluate" and name in self.active:
                self.profilers[name].evaluate(args[0], output)

        return record


def output_sqnr(reference: Sequence[Tensor], outputs: Sequence[Tensor]) -> float:
    """SQNR (dB) of ``outputs`` against ``reference``, energies summed over batches."""
    signal = sum(float(r.double().square().sum()) for r in reference)
    noise = sum(
        float((r - o).double().square().sum()) for r, o in zip(reference, outputs, strict=True)
    )
    return sqnr_db(signal, noise)

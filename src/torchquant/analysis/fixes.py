"""Automatic fixes from a layer-wise `Analysis`: the best calibrator per tensor, and float
(or wider) fallback for the most sensitive layers until a target is met.

- `best_calibrators`: per quantizer, the candidate with the highest SQNR on its float
  tensor (or the lowest user loss), as AIMET's QuantAnalyzer compares encodings per
  quantizer and TensorRT users compare calibrators per network.
- `auto_fallback`: ranks the layers by the analysis (default: the output SQNR reached when
  only that layer is left float, highest first; or by sensitivity, lowest "only this layer
  quantized" SQNR first), then greedily leaves layers float (or at ``fallback_bits``), one
  more per step, trying the next few in rank order at each step, until the metric is within
  ``max_drop`` of the float model's or at least ``min_metric``, with at most
  ``max_float_layers`` layers. This is the "layer-wise fallback" of TensorRT users and
  AIMET (mixed precision by exclusion); the analysis only orders the search, the user's
  metric decides, because a few-batch output SQNR does not predict accuracy exactly.
- `QuantPlan`: the result, a frozen dataclass saved to / loaded from JSON; `apply_plan`
  re-applies it to a freshly prepared model (and calibrates what it changed).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from torchquant.analysis._json_file import load_json, save_json
from torchquant.analysis.layerwise import (
    Analysis,
    OutputFn,
    first_tensor,
    output_sqnr,
    quantizer_groups,
    run_batch,
)
from torchquant.errors import ConfigError, EmptyCalibrationError
from torchquant.quant.quantizer import Quantizer, iter_quantizers

__all__ = [
    "Metric",
    "QuantPlan",
    "apply_plan",
    "auto_fallback",
    "best_calibrators",
    "output_sqnr_metric",
    "rank_layers",
]

Metric = Callable[[nn.Module], float]


@dataclass(frozen=True)
class QuantPlan:
    """What to change in a prepared model, and what it achieved.

    Attributes:
        calibrators: quantizer name -> calibrator name.
        float_layers: layers (quantizer groups, see `quantizer_groups`) left unquantized.
        fallback_bits: ``None``: ``float_layers`` are float; else they are quantized with
            this many bits instead.
        metric: what the metric values measure (e.g. ``"accuracy (%)"``).
        float_metric, quantized_metric, final_metric: the metric of the float model, of the
            quantized model before the fallback (after the calibrator choice), and with the
            plan.
        target: the target in words; target_met: whether the plan reached it.
        history: ``(float layers, metric)`` of each step the search evaluated.
    """

    calibrators: Mapping[str, str] = field(default_factory=dict)
    float_layers: tuple[str, ...] = ()
    fallback_bits: int | None = None
    metric: str = ""
    float_metric: float | None = None
    quantized_metric: float | None = None
    final_metric: float | None = None
    target: str = ""
    target_met: bool = True
    history: tuple[tuple[tuple[str, ...], float], ...] = ()

    def __post_init__(self) -> None:
        bits = self.fallback_bits
        if bits is not None and (not isinstance(bits, int) or not 2 <= bits <= 16):
            raise ConfigError(f"QuantPlan.fallback_bits must be None or 2..16, got {bits!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON."""
        d = asdict(self)
        d["calibrators"] = dict(self.calibrators)
        d["float_layers"] = list(self.float_layers)
        d["history"] = [[list(layers), value] for layers, value in self.history]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantPlan:
        """Inverse of `to_dict`; unknown fields are an error naming them."""
        d = dict(data)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown QuantPlan field(s): {sorted(unknown)}")
        d["float_layers"] = tuple(d.get("float_layers", ()))
        d["history"] = tuple((tuple(layers), float(v)) for layers, v in d.get("history", ()))
        return cls(**d)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON."""
        save_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QuantPlan:
        """Read a file written by `save`; a malformed one is a `FileFormatError` naming it."""
        result: QuantPlan = load_json(path, "plan", cls.from_dict)
        return result


def best_calibrators(analysis: Analysis, criterion: str = "sqnr") -> dict[str, str]:
    """Quantizer name -> its best candidate calibrator (`TensorProfile.best`)."""
    return {t.name: t.best(criterion) for t in analysis.tensors}


def rank_layers(analysis: Analysis, by: str = "fallback") -> list[str]:
    """Layers in fallback order. ``"fallback"``: highest output SQNR with only that layer
    float first; ``"sensitivity"``: lowest output SQNR with only that layer quantized first.
    Ties keep model order."""
    layers = list(analysis.layers)
    if by == "fallback":
        layers.sort(key=lambda g: -g.only_float_db)
    elif by == "sensitivity":
        layers.sort(key=lambda g: g.only_quantized_db)
    else:
        raise ConfigError(f"rank_layers: by must be 'fallback' or 'sensitivity', got {by!r}")
    return [g.name for g in layers]


def output_sqnr_metric(batches: Iterable[Any], output_fn: OutputFn = first_tensor) -> Metric:
    """A metric for `auto_fallback`: SQNR (dB) of the model's output against the same model
    with every quantizer off, on ``batches``."""
    data = list(batches)

    def metric(model: nn.Module) -> float:
        with torch.no_grad():
            with _quantizers_off(model):
                reference = [output_fn(run_batch(model, b)).float() for b in data]
            outputs = [output_fn(run_batch(model, b)).float() for b in data]
        return output_sqnr(reference, outputs)

    return metric


def apply_plan(model: nn.Module, plan: QuantPlan, data: Iterable[Any] | None = None) -> nn.Module:
    """Apply ``plan`` to a prepared model, in place, and return it.

    Quantizers whose calibrator changes are replaced by fresh ones (same spec, the new
    calibrator with its default options); the quantizers of ``float_layers`` are removed
    (so later calibration and export leave them float) or replaced by fresh ones at
    ``fallback_bits``. With ``data`` (batches as `run_batch` takes them) every quantizer
    without qparams, the fresh ones and those of an uncalibrated model, is calibrated on it
    (float data flow, eval mode) and switched to fake quantization; without it, calibrate
    the model afterwards.
    """
    quantizers = dict(iter_quantizers(model))
    groups = quantizer_groups(model)
    for layer in plan.float_layers:
        if layer not in groups:
            raise ConfigError(f"plan names layer {layer!r}, which has no quantizers here")
    for name in plan.calibrators:
        if name not in quantizers:
            raise ConfigError(f"plan names quantizer {name!r}, which this model does not have")
    in_float = {n for layer in plan.float_layers for n in groups[layer]}
    for name, cal in plan.calibrators.items():
        q = quantizers[name]
        if name not in in_float and cal != q.config.calibrator:
            _swap(model, name, Quantizer(q.config.with_(calibrator=cal, calibrator_options={})))
    for name in sorted(in_float):
        q = quantizers[name]
        if plan.fallback_bits is None:
            _remove(model, name)
        else:
            cal = plan.calibrators.get(name, q.config.calibrator)
            options = q.config.calibrator_options if cal == q.config.calibrator else {}
            config = q.config.with_(
                spec={"bits": plan.fallback_bits}, calibrator=cal, calibrator_options=options
            )
            _swap(model, name, Quantizer(config))
    if data is not None:
        _calibrate_pending(model, data)
    return model


def auto_fallback(
    model: nn.Module,
    analysis: Analysis,
    calibration_data: Iterable[Any],
    metric: Metric,
    *,
    max_drop: float | None = None,
    min_metric: float | None = None,
    max_float_layers: int = 2,
    criterion: str | None = "sqnr",
    rank_by: str = "fallback",
    search_width: int = 3,
    fallback_bits: int | None = None,
    metric_name: str = "metric",
) -> QuantPlan:
    """Choose calibrators and fallback layers for a calibrated model, apply them in place,
    and return the plan (see module doc).

    Args:
        model: the prepared, calibrated model `analyze` looked at.
        analysis: its `Analysis`.
        calibration_data: batches to calibrate changed quantizers on (kept in a list).
        metric: ``metric(model) -> float``, higher is better (accuracy, mean cosine, or
            `output_sqnr_metric`).
        max_drop: target: ``float metric - metric <= max_drop``.
        min_metric: target: ``metric >= min_metric``. Exactly one target is required.
        max_float_layers: at most this many layers fall back.
        criterion: ``"sqnr"`` / ``"loss"`` to pick each tensor's calibrator
            (`best_calibrators`), ``None`` to keep the model's.
        rank_by: layer order, see `rank_layers`.
        search_width: each step tries the next ``search_width`` layers in that order (on top
            of the layers chosen so far) and keeps the best; 1 is the plain ranked prefix.
            At most ``max_float_layers * search_width`` evaluations.
        fallback_bits: ``None`` leaves the chosen layers float; else re-quantizes them wider.
        metric_name: what the metric measures, for the plan and the report.
    """
    if (max_drop is None) == (min_metric is None):
        raise ConfigError("auto_fallback: give exactly one of max_drop and min_metric")
    if max_float_layers < 0 or search_width < 1:
        raise ConfigError(
            f"need max_float_layers >= 0 and search_width >= 1, got {max_float_layers} "
            f"and {search_width}"
        )
    data = list(calibration_data)
    if not data:
        raise EmptyCalibrationError("auto_fallback() got no calibration batches")
    calibrators = best_calibrators(analysis, criterion) if criterion is not None else {}
    apply_plan(model, QuantPlan(calibrators=calibrators), data)
    with _quantizers_off(model):
        float_metric = metric(model)
    if max_drop is not None:
        threshold = float_metric - max_drop
        target = f"drop <= {max_drop:g} from float ({float_metric:.4g})"
    else:
        assert min_metric is not None
        threshold, target = min_metric, f"{metric_name} >= {min_metric:g}"
    quantized = metric(model)
    history: list[tuple[tuple[str, ...], float]] = [((), quantized)]
    best: tuple[tuple[str, ...], float] = ((), quantized)
    order = rank_layers(analysis, rank_by)
    chosen: tuple[str, ...] = ()
    for _ in range(max_float_layers):
        candidates = [g for g in order if g not in chosen][:search_width]
        if best[1] >= threshold or not candidates:
            break
        step: tuple[tuple[str, ...], float] | None = None
        for layer in candidates:
            trial = copy.deepcopy(model)
            layers = (*chosen, layer)
            apply_plan(trial, QuantPlan(float_layers=layers, fallback_bits=fallback_bits), data)
            value = metric(trial)
            history.append((layers, value))
            if step is None or value > step[1]:
                step = (layers, value)
            if value >= threshold:
                break
        assert step is not None
        chosen = step[0]
        if step[1] > best[1]:
            best = step
    plan = QuantPlan(
        calibrators=calibrators,
        float_layers=best[0],
        fallback_bits=fallback_bits,
        metric=metric_name,
        float_metric=float_metric,
        quantized_metric=quantized,
        final_metric=best[1],
        target=target,
        target_met=best[1] >= threshold,
        history=tuple(history),
    )
    apply_plan(model, replace(plan, calibrators={}), data)
    return plan


# -- model surgery ---------------------------------------------------------------------
def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, module)


def _remove(model: nn.Module, name: str) -> None:
    """Leave quantizer ``name``'s tensor float: a QAT layer's quantizer attribute becomes
    ``None`` (how `torchquant.nn` modules mark an unquantized tensor, which calibration and
    export then skip); a call site's operand leaves its `nn.ModuleDict`."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    if isinstance(parent, nn.ModuleDict):
        del parent[attr]
    else:
        setattr(parent, attr, None)


def _swap(model: nn.Module, name: str, new: Quantizer) -> None:
    """Put ``new`` where quantizer ``name`` was, on its device, with its name."""
    old = model.get_submodule(name)
    assert isinstance(old, Quantizer)
    new.name = old.name or name
    _set_module(model, name, new.to(old.zero_point.device))


@contextmanager
def _quantizers_off(model: nn.Module) -> Iterator[None]:
    """Every quantizer passes data through unchanged (the float model) inside."""
    quantizers = [q for _, q in iter_quantizers(model)]
    flags = [(q.observer_enabled, q.fake_quant_enabled) for q in quantizers]
    for q in quantizers:
        q.enable_observer(False).enable_fake_quant(False)
    try:
        yield
    finally:
        for q, (obs, fq) in zip(quantizers, flags, strict=True):
            q.enable_observer(obs).enable_fake_quant(fq)


def _calibrate_pending(model: nn.Module, data: Iterable[Any]) -> None:
    """Calibrate the quantizers that have no qparams yet on float data (eval mode)."""
    quantizers = [q for _, q in iter_quantizers(model)]
    pending = [q for q in quantizers if not q.has_qparams]
    if not pending:
        return
    training = {m: m.training for m in model.modules()}
    model.eval()
    with _quantizers_off(model), torch.no_grad():
        for q in pending:
            q.calibrator.reset()
            q.enable_observer(True)
        for batch in data:
            run_batch(model, batch)
    for q in pending:
        q.compute_qparams()
        q.enable_observer(False).enable_fake_quant(True)
    for m, flag in training.items():
        m.training = flag

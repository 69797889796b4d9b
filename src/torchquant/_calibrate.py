"""`calibrate`: post-training calibration of a prepared model.

Runs the model in eval mode without gradients over calibration batches while every
`Quantizer` observes (fake quantization off), then computes every quantizer's qparams and
switches the model to quantized mode (observers off, fake quantization on). This is the
"run FP32 inference over a calibration set and collect activation statistics" step of
TensorRT's calibration (../shared/specs/algorithms.md section 2) and PyTorch's
``prepare`` -> calibrate -> ``convert`` flow, with the calibration algorithm chosen by
registry name (`torchquant.calib.list_calibrators`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from torchquant.distributed import sync_calibrators
from torchquant.errors import ConfigError, EmptyCalibrationError, NonFiniteError
from torchquant.quant.quantizer import (
    Quantizer,
    iter_quantizers,
    set_calibration_mode,
    set_quantized_mode,
)

__all__ = ["calibrate", "is_weight_quantizer"]

# Attribute names under which QAT modules keep weight quantizers (torchquant.nn).
_WEIGHT_QUANTIZER_NAMES = ("weight_quantizer",)


def is_weight_quantizer(name: str) -> bool:
    """True for a weight quantizer's qualified name (``conv1.weight_quantizer``)."""
    return name.rsplit(".", 1)[-1] in _WEIGHT_QUANTIZER_NAMES


def _matches(name: str, pattern: str) -> bool:
    """A layer name or glob matches the quantizer itself or anything under it."""
    return name == pattern or name.startswith(pattern + ".") or fnmatch.fnmatchcase(name, pattern)


def _choose_method(name: str, method: str | None, layer_methods: Mapping[str, str]) -> str | None:
    """Calibrator for quantizer ``name`` (None: keep the configured one): the longest
    matching ``layer_methods`` key wins; weights follow only keys naming them explicitly."""
    matches = [p for p in layer_methods if _matches(name, p)]
    weight = is_weight_quantizer(name)
    if weight:
        matches = [p for p in matches if p == name or fnmatch.fnmatchcase(name, p)]
    if matches:
        return layer_methods[max(matches, key=len)]
    return None if weight else method


def _replace(model: nn.Module, name: str, old: Quantizer, calibrator: str, options: Any) -> None:
    """Swap in a fresh quantizer with another calibrator (same grid and learning mode)."""
    config = old.config.with_(calibrator=calibrator, calibrator_options=dict(options))
    new = Quantizer(config, name=old.name or name).to(old.zero_point.device)
    new.train(old.training)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, new)


def _as_args(batch: Any) -> tuple[Any, ...]:
    """A calibration batch as positional model inputs: a tensor is one input; a tuple or
    list is the inputs (labels in a ``(x, y)`` DataLoader batch are dropped when the model
    takes one input, see `calibrate`)."""
    if isinstance(batch, Tensor):
        return (batch,)
    if isinstance(batch, (tuple, list)):
        return tuple(batch)
    raise ConfigError(
        f"a calibration batch must be a tensor, tuple or list, got {type(batch).__name__}"
    )


def calibrate(
    prepared_model: nn.Module,
    data: Iterable[Any],
    method: str | None = None,
    *,
    layer_methods: Mapping[str, str] | None = None,
    method_options: Mapping[str, Any] | None = None,
    num_batches: int | None = None,
    num_inputs: int | None = None,
    progress: bool = True,
) -> nn.Module:
    """Calibrate ``prepared_model`` in place on ``data`` and return it in quantized mode.

    Args:
        prepared_model: a model from ``quantize(model, PrepareConfig(...), example_inputs)``
            (or any model holding `Quantizer` modules).
        data: calibration batches: tensors, or tuples/lists of model inputs, or a
            DataLoader yielding either.
        method: calibrator name (`list_calibrators`) for every activation quantizer;
            ``None`` keeps each quantizer's configured calibrator. Weights keep theirs.
        layer_methods: per-layer overrides, ``{name or glob: calibrator}``; a layer name
            covers the activation quantizers under it, a weight quantizer's full name
            (``"conv1.weight_quantizer"``) overrides that weight. The longest match wins.
        method_options: keyword options for the calibrators chosen by ``method`` or
            ``layer_methods`` (e.g. ``{"percentile": 99.99}``).
        num_batches: stop after this many batches (``None``: all of ``data``).
        num_inputs: how many leading items of a tuple batch are model inputs; ``None``
            passes them all, except that a 2-tuple whose second item is an integer tensor
            (a DataLoader's ``(x, labels)``) passes only ``x``.
        progress: show a tqdm progress bar.

    Raises:
        EmptyCalibrationError: ``data`` yielded no batch, or a quantizer saw no data (its
            layer never ran); names it.
        NonFiniteError: NaN or Inf reached a quantizer; names the quantizer and the batch.
    """
    layer_methods = dict(layer_methods or {})
    options = dict(method_options or {})
    quantizers = list(iter_quantizers(prepared_model))
    if not quantizers:
        raise ConfigError("calibrate() needs a prepared model; this one holds no Quantizer")
    for name, q in quantizers:
        chosen = _choose_method(name, method, layer_methods)
        if chosen is not None and (
            chosen != q.config.calibrator or dict(q.config.calibrator_options) != options
        ):
            _replace(prepared_model, name, q, chosen, options)
        else:
            q.calibrator.reset()
            q.has_qparams = False
    prepared_model.eval()
    set_calibration_mode(prepared_model)
    seen = 0
    bar = tqdm(data, total=num_batches, desc="calibrating", unit="batch", disable=not progress)
    with torch.no_grad():
        for batch in bar:
            if num_batches is not None and seen >= num_batches:
                break
            args = _as_args(batch)
            if num_inputs is not None:
                args = args[:num_inputs]
            elif len(args) == 2 and isinstance(args[1], Tensor) and not args[1].is_floating_point():
                args = args[:1]
            try:
                prepared_model(*args)
            except NonFiniteError as exc:
                raise NonFiniteError(f"calibration batch {seen}: {exc}") from exc
            seen += 1
    bar.close()
    # Under torch.distributed, merge every rank's statistics before any scale is computed
    # (a no-op otherwise); before the emptiness checks, so that no rank leaves the collective.
    sync_calibrators(prepared_model)
    if seen == 0:
        raise EmptyCalibrationError("calibrate() got no batches: the calibration data is empty")
    for name, q in iter_quantizers(prepared_model):
        if q.calibrator.num_batches == 0:
            raise EmptyCalibrationError(
                f"quantizer {name!r} observed nothing in {seen} calibration batches: its layer "
                "never ran on this data (a branch the data does not take?)"
            )
        q.compute_qparams()
    set_quantized_mode(prepared_model)
    return prepared_model

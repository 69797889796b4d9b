"""Streaming calibration of an FP32 ONNX model with ONNX Runtime and torchquant calibrators.

The tensors a QDQ profile quantizes (`select_tensors`) become extra graph outputs; ONNX
Runtime runs the model batch by batch and each output goes to its calibrator at once
(``observe(torch.from_numpy(arr))``), so peak memory is one batch of activations plus the
calibrators' state, whatever the data set size. (ONNX Runtime's own ``calibrate.py`` keeps
every intermediate output of every batch before computing ranges; onnx/onnx issue 4091.)
Weights are calibrated once with min/max (per output channel by default; AMCT's ARQ).

The result gives what the deployment files need: TensorRT cache scales (``amax / 127`` of the
symmetric range, ../shared/specs/algorithms.md section 3), the QDQ model's qparams
(section 4) and, through `torchquant.export.ascend`, AMCT records (section 5).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import Tensor
from tqdm import tqdm

from torchquant.calib._base import Calibrator, create_calibrator
from torchquant.errors import ConfigError, EmptyCalibrationError, FileFormatError
from torchquant.export.calib_data import model_inputs
from torchquant.export.onnx_qdq import (
    Profile,
    QParams,
    TensorSelection,
    check_profile_spec,
    select_tensors,
)
from torchquant.export.tensorrt import amax_to_scale
from torchquant.quant.affine import qparams_from_range
from torchquant.quant.spec import QuantSpec

__all__ = [
    "CalibrationResult",
    "CalibratorChoice",
    "TensorCalibration",
    "calibrate_onnx",
    "default_activation_spec",
    "load_onnx_model",
]


@dataclass(frozen=True)
class CalibratorChoice:
    """How one tensor is calibrated: a registered calibrator, its options and its grid."""

    method: str
    spec: QuantSpec
    options: Mapping[str, Any] = field(default_factory=dict)

    def create(self, tensor_name: str) -> Calibrator:
        """A fresh calibrator for ``tensor_name``."""
        return create_calibrator(self.method, self.spec, tensor_name=tensor_name, **self.options)


@dataclass(frozen=True)
class TensorCalibration:
    """Calibration of one tensor: clip range ``[lo, hi]`` and its ``(scale, zero_point)``.

    ``scale``/``zero_point``/``lo``/``hi`` are scalars, or (C,) vectors along ``spec.axis``.
    """

    name: str
    method: str
    spec: QuantSpec
    scale: Tensor
    zero_point: Tensor
    lo: Tensor
    hi: Tensor

    @property
    def qparams(self) -> QParams:
        """``(scale, zero_point, spec)`` as `insert_qdq` takes them."""
        return self.scale, self.zero_point, self.spec

    @property
    def amax(self) -> Tensor:
        """Symmetric threshold ``max(|lo|, |hi|)``."""
        return torch.maximum(self.lo.abs(), self.hi.abs())


@dataclass(frozen=True)
class CalibrationResult:
    """Everything calibration found, keyed by ONNX tensor / initializer name.

    Attributes:
        selection: the tensors the profile quantizes.
        activations: every calibrated activation (QDQ points, shared ones and cache-only).
        weights: every calibrated weight initializer.
        num_samples: samples seen.
        timings: seconds spent in ``inference`` (ONNX Runtime), ``statistics`` (observe),
            ``compute`` (ranges from the statistics) and ``weights``.
    """

    selection: TensorSelection
    activations: dict[str, TensorCalibration]
    weights: dict[str, TensorCalibration]
    num_samples: int
    timings: dict[str, float]

    def qdq_activations(self) -> dict[str, QParams]:
        """qparams of the profile's Q/DQ points (selected and shared), for `insert_qdq`."""
        names = (*self.selection.activations, *self.selection.shared)
        return {n: self.activations[n].qparams for n in names if n in self.activations}

    def qdq_weights(self) -> dict[str, QParams]:
        """qparams of the calibrated weights, for `insert_qdq`."""
        return {n: c.qparams for n, c in self.weights.items()}

    def tensorrt_scales(self) -> dict[str, float]:
        """TensorRT cache scales ``amax / 127`` of every per-tensor activation."""
        return {
            n: amax_to_scale(float(c.amax))
            for n, c in self.activations.items()
            if c.amax.dim() == 0
        }


def default_activation_spec(profile: Profile) -> QuantSpec:
    """int8 symmetric for ``tensorrt``; uint8 affine for ``onnxruntime`` (its QUInt8 default)."""
    return QuantSpec() if profile == "tensorrt" else QuantSpec(signed=False, symmetric=False)


def load_onnx_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load an ONNX file; a missing or unparsable file is a `FileFormatError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"{p}: no such ONNX model file")
    try:
        return onnx.load(str(p))
    except Exception as e:  # protobuf raises several unrelated types
        raise FileFormatError(f"{p}: not a readable ONNX model ({type(e).__name__}: {e})") from None


def _check_feed(
    feed: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int | None, ...]]
) -> None:
    if set(feed) != set(expected):
        raise ConfigError(f"batch feeds inputs {sorted(feed)}, the model takes {sorted(expected)}")
    for name, arr in feed.items():
        want = expected[name]
        if len(arr.shape) != len(want) or any(
            w is not None and w != s for w, s in zip(want, arr.shape, strict=False)
        ):
            shown = "(" + ", ".join("?" if w is None else str(w) for w in want) + ")"
            raise ConfigError(
                f"input {name!r}: model expects shape {shown}, data has {tuple(arr.shape)}"
            )


def _session(model: onnx.ModelProto, outputs: list[str], num_threads: int) -> ort.InferenceSession:
    """A CPU session whose graph outputs also include ``outputs``."""
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    present = {o.name for o in augmented.graph.output}
    for name in outputs:
        if name not in present:
            augmented.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.log_severity_level = 3
    return ort.InferenceSession(
        augmented.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _finish(name: str, cal: Calibrator) -> TensorCalibration:
    lo, hi = cal.range()
    scale, zero_point = qparams_from_range(lo, hi, cal.spec)
    return TensorCalibration(name, cal.name, cal.spec, scale, zero_point, lo.float(), hi.float())


def calibrate_onnx(
    model: onnx.ModelProto | str | os.PathLike[str],
    data: Iterable[Mapping[str, np.ndarray]],
    *,
    method: str = "entropy",
    profile: Profile = "tensorrt",
    activation_spec: QuantSpec | None = None,
    method_options: Mapping[str, Any] | None = None,
    per_channel_weights: bool = True,
    weight_spec: QuantSpec | None = None,
    overrides: Mapping[str, CalibratorChoice | None] | None = None,
    all_activations: bool = False,
    num_threads: int = 0,
    statistics_threads: int = 1,
    progress: bool = True,
    total_batches: int | None = None,
    check_qdq: bool = True,
) -> CalibrationResult:
    """Calibrate ``model``'s activations on ``data`` and its weights, streaming.

    Args:
        model: an FP32 ONNX model or its path.
        data: batches ``{input name: float32 array}`` (e.g. `load_calibration_data`).
        method: calibrator for activations (`torchquant.list_calibrators()`).
        profile: QDQ placement that decides which tensors are calibrated.
        activation_spec: activation grid; `default_activation_spec(profile)` if None.
        method_options: keyword options of the activation calibrator.
        per_channel_weights: one weight scale per output channel (else per tensor).
        weight_spec: weight grid (axis set per layer); int8 symmetric narrow [-127, 127]
            if None.
        overrides: tensor or weight name -> its own `CalibratorChoice`, or None to leave it
            unquantized (AMCT per-layer configs, skipped layers).
        all_activations: also calibrate every other float tensor, for a TensorRT cache.
        num_threads: ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose.
        statistics_threads: torch threads while the calibrators observe (restored after):
            their histograms are memory-bound passes that gain nothing from more threads,
            and extra torch threads contend with ONNX Runtime's pool (measured on 2 cores:
            entropy observe 4.9 ms on 1 thread, 64 ms on 2 while ONNX Runtime was busy).
        progress: show a tqdm progress bar on stderr.
        total_batches: batch count for the progress bar (``data.num_batches`` if defined).
        check_qdq: fail before running if a spec cannot be exported with ``profile``
            (`check_profile_spec`); off when only a cache or a record is wanted.

    Raises:
        FileFormatError: missing or unreadable model file.
        ConfigError: a batch whose inputs or shapes do not match the model (naming both).
        NonFiniteError: NaN/Inf in an activation (naming the ONNX tensor).
        EmptyCalibrationError: no batch at all.
    """
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx_model(model)
    selection = select_tensors(model, profile, all_activations=all_activations)
    overrides = overrides or {}
    act = CalibratorChoice(
        method, activation_spec or default_activation_spec(profile), method_options or {}
    )
    choices = {t: overrides.get(t, act) for t in selection.calibrated}
    active = {t: c for t, c in choices.items() if c is not None}
    for t in selection.activations if check_qdq else ():
        if t in active:
            check_profile_spec(active[t].spec, profile, t)
    calibrators = {t: c.create(t) for t, c in active.items()}
    expected = {i.name: i.shape for i in model_inputs(model)}
    fetched = [t for t in calibrators if t not in expected]
    session = _session(model, fetched, num_threads)
    timings = dict.fromkeys(("inference", "statistics", "compute", "weights"), 0.0)
    num_samples = 0
    total = total_batches if total_batches is not None else getattr(data, "num_batches", None)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(max(statistics_threads, 1))
    try:
        for feed in tqdm(data, total=total, desc="calibrating", unit="batch", disable=not progress):
            _check_feed(feed, expected)
            t0 = time.perf_counter()
            # run() with no names returns the graph outputs, which are not wanted here.
            outputs = session.run(fetched, dict(feed)) if fetched else []
            t1 = time.perf_counter()
            # Inputs first: a bad input is the culprit.
            for name in calibrators.keys() & feed.keys():
                calibrators[name].observe(
                    torch.from_numpy(np.require(feed[name], np.float32, ["W"]))
                )
            for name, arr in zip(fetched, outputs, strict=True):
                calibrators[name].observe(torch.from_numpy(arr))
            del outputs  # the batch's activations are released before the next one runs
            timings["inference"] += t1 - t0
            timings["statistics"] += time.perf_counter() - t1
            num_samples += next(iter(feed.values())).shape[0]
    finally:
        torch.set_num_threads(torch_threads)
    if num_samples == 0:
        raise EmptyCalibrationError("calibration data yielded no batch")
    t0 = time.perf_counter()
    activations = {t: _finish(t, cal) for t, cal in calibrators.items()}
    for out, src in selection.shared.items():
        if src in activations:
            activations[out] = replace(activations[src], name=out)
    timings["compute"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    weights = _calibrate_weights(
        model, selection, per_channel_weights, weight_spec, overrides, check_qdq
    )
    timings["weights"] = time.perf_counter() - t0
    return CalibrationResult(selection, activations, weights, num_samples, timings)


def _calibrate_weights(
    model: onnx.ModelProto,
    selection: TensorSelection,
    per_channel: bool,
    weight_spec: QuantSpec | None,
    overrides: Mapping[str, CalibratorChoice | None],
    check_qdq: bool,
) -> dict[str, TensorCalibration]:
    base = weight_spec or QuantSpec(narrow_range=True)
    initializers = {t.name: t for t in model.graph.initializer}
    found: dict[str, TensorCalibration] = {}
    for name, axis in selection.weights.items():
        default = CalibratorChoice("minmax", base.with_(axis=axis if per_channel else None))
        choice = overrides.get(name, default)
        if choice is None:
            continue
        if check_qdq:
            check_profile_spec(choice.spec, selection.profile, name, weight=True)
        cal = choice.create(name)
        cal.observe(torch.from_numpy(numpy_helper.to_array(initializers[name]).astype(np.float32)))
        found[name] = _finish(name, cal)
    return found

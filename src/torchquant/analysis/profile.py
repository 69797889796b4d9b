"""Per-tensor profiling: every calibrator's clipping range, a histogram, and the SQNR each
range gives on the data.

`TensorProfiler` watches one tensor in two streaming stages:

1. `observe`: feeds every candidate calibrator and a signed histogram (bounded memory);
2. `evaluate`: fake-quantizes each batch with every candidate's ``(scale, zero_point)`` and
   accumulates the signal and noise energies, ``SQNR = 10 log10(sum x^2 / sum (x - x')^2)``
   in dB, the signal-to-quantization-noise ratio of PyTorch Numeric Suite's
   ``torch.ao.ns.fx.utils.compute_sqnr`` (``20 log10(||x|| / ||x - x'||)``) summed over
   batches. An optional user loss ``loss(x, x') -> scalar`` is averaged over batches.

Its `TensorProfile` is plain data (JSON via `to_dict`), read by the fixes (best calibrator
per tensor, as AIMET's QuantAnalyzer compares encodings per quantizer) and by the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from torchquant.calib import Calibrator, create_calibrator, list_calibrators
from torchquant.calib._range_histogram import RangeHistogram
from torchquant.errors import ConfigError, EmptyCalibrationError
from torchquant.quant.affine import qparams_from_range
from torchquant.quant.fake import fake_quantize
from torchquant.quant.spec import QuantSpec

__all__ = [
    "TensorLoss",
    "TensorProfile",
    "TensorProfiler",
    "default_candidates",
    "sqnr_db",
]

TensorLoss = Callable[[Tensor, Tensor], Tensor]

# ``ema_minmax`` is a moving average for QAT, not a post-training choice.
_NOT_PTQ = frozenset({"ema_minmax"})


def default_candidates() -> list[str]:
    """Registered calibrators that make sense after training (all but ``ema_minmax``)."""
    return [name for name in list_calibrators() if name not in _NOT_PTQ]


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """``10 log10(signal / noise)`` in dB; ``inf`` when the noise is 0 (lossless)."""
    if noise_energy <= 0.0:
        return math.inf
    if signal_energy <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / noise_energy)


@dataclass(frozen=True)
class TensorProfile:
    """What the profiler learned about one tensor.

    Attributes:
        name: the tensor (quantizer) name.
        spec: its integer grid.
        counts, hist_lo, hist_hi: histogram of the observed values, equal bins over
            ``[hist_lo, hist_hi]`` (the tensor's units).
        ranges: per candidate calibrator, its clipping range ``(lo, hi)``; for per-channel
            specs the envelope ``(min lo, max hi)`` over channels.
        sqnr_db: per candidate, SQNR in dB of the data fake-quantized with its range.
        loss: per candidate, the mean of the user's loss (empty without one).
        current: the calibrator the quantizer uses now (``None`` outside a model).
        current_sqnr_db: SQNR of the quantizer's own output, ``None`` when not measured.
        group: the layer (quantizer group) the tensor belongs to, ``None`` outside a model.
    """

    name: str
    spec: QuantSpec
    counts: tuple[float, ...]
    hist_lo: float
    hist_hi: float
    ranges: Mapping[str, tuple[float, float]]
    sqnr_db: Mapping[str, float] = field(default_factory=dict)
    loss: Mapping[str, float] = field(default_factory=dict)
    current: str | None = None
    current_sqnr_db: float | None = None
    group: str | None = None

    def best(self, criterion: str = "sqnr") -> str:
        """The candidate with the highest SQNR (``"sqnr"``) or lowest loss (``"loss"``);
        ties go to the first in name order, so the choice is deterministic."""
        if criterion == "sqnr":
            scores = {k: -v for k, v in self.sqnr_db.items()}
        elif criterion == "loss":
            scores = dict(self.loss)
        else:
            raise ConfigError(f"criterion must be 'sqnr' or 'loss', got {criterion!r}")
        if not scores:
            raise EmptyCalibrationError(
                f"tensor {self.name!r}: no {criterion} measured; run the evaluate stage"
            )
        return min(sorted(scores), key=lambda k: scores[k])

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON."""
        return {
            "name": self.name,
            "spec": self.spec.to_dict(),
            "counts": list(self.counts),
            "hist_lo": self.hist_lo,
            "hist_hi": self.hist_hi,
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "sqnr_db": dict(self.sqnr_db),
            "loss": dict(self.loss),
            "current": self.current,
            "current_sqnr_db": self.current_sqnr_db,
            "group": self.group,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorProfile:
        """Inverse of `to_dict`."""
        d = dict(data)
        d["spec"] = QuantSpec.from_dict(dict(d["spec"]))
        d["counts"] = tuple(float(c) for c in d["counts"])
        d["ranges"] = {k: (float(v[0]), float(v[1])) for k, v in d["ranges"].items()}
        return cls(**d)


class TensorProfiler:
    """Streams one tensor through every candidate calibrator, then measures their SQNR.

    Args:
        name: the tensor's name (used in errors).
        spec: the grid it is quantized to.
        calibrators: candidate names; default `default_candidates`. Calibrators that are
            per-tensor only are skipped for a per-channel spec.
        options: per calibrator name, keyword options for it.
        bins: histogram bins.
        loss: optional ``loss(x, x_fake_quantized) -> scalar`` (lower is better).
    """

    def __init__(
        self,
        name: str,
        spec: QuantSpec,
        *,
        calibrators: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        bins: int = 128,
        loss: TensorLoss | None = None,
    ) -> None:
        names = default_candidates() if calibrators is None else list(calibrators)
        unknown = sorted(set(names) - set(list_calibrators()))
        if unknown:
            raise ConfigError(f"tensor {name!r}: unknown calibrator(s) {unknown}")
        self.name = name
        self.spec = spec
        self.loss_fn = loss
        self.calibrators: dict[str, Calibrator] = {}
        for cal in names:
            try:
                self.calibrators[cal] = create_calibrator(
                    cal, spec, tensor_name=name, **dict((options or {}).get(cal, {}))
                )
            except ConfigError:
                if not spec.per_channel:
                    raise
                # A per-tensor-only algorithm cannot serve a per-channel grid: not a candidate.
        if not self.calibrators:
            raise ConfigError(f"tensor {name!r}: no candidate calibrator supports {spec}")
        self.histogram = RangeHistogram(bins)
        self._ranges: dict[str, tuple[Tensor, Tensor]] = {}
        self._qparams: dict[str, tuple[Tensor, Tensor]] | None = None
        self._signal = 0.0
        self._noise: dict[str, float] = dict.fromkeys(self.calibrators, 0.0)
        self._loss: dict[str, float] = dict.fromkeys(self.calibrators, 0.0)
        self._current: tuple[float, float] | None = None  # (signal, noise) of the output
        self._evaluated = 0

    def observe(self, x: Tensor) -> None:
        """Stage 1: record one batch in every candidate and the histogram."""
        if self._qparams is not None:
            raise ConfigError(f"tensor {self.name!r}: observe() after evaluate()")
        for cal in self.calibrators.values():
            cal.observe(x)  # validates (finite, non-empty) before the histogram sees x
        self.histogram.add(x.detach().to(torch.float32))

    def evaluate(self, x: Tensor, quantized: Tensor | None = None) -> None:
        """Stage 2: accumulate each candidate's quantization noise on batch ``x``;
        ``quantized`` is the quantizer's own output for ``x``, if there is one."""
        x = x.detach().to(torch.float32)
        qparams = self._frozen_qparams()
        signal = float(x.double().square().sum())
        self._signal += signal
        for cal, (scale, zero_point) in qparams.items():
            xq = fake_quantize(x, scale.to(x.device), zero_point.to(x.device), self.spec)
            self._noise[cal] += float((x - xq).double().square().sum())
            if self.loss_fn is not None:
                self._loss[cal] += float(self.loss_fn(x, xq))
        if quantized is not None:
            noise = float((x - quantized.detach()).double().square().sum())
            old_signal, old_noise = self._current or (0.0, 0.0)
            self._current = (old_signal + signal, old_noise + noise)
        self._evaluated += 1

    def result(self, *, current: str | None = None, group: str | None = None) -> TensorProfile:
        """The profile so far (SQNR fields empty until `evaluate` has run)."""
        h = self.histogram
        if h.counts is None or h.lo is None or h.hi is None:
            raise EmptyCalibrationError(f"tensor {self.name!r}: result() before any observe()")
        qparams = self._frozen_qparams()
        ranges = {c: (float(lo.min()), float(hi.max())) for c, (lo, hi) in self._ranges.items()}
        evaluated = self._evaluated > 0
        return TensorProfile(
            name=self.name,
            spec=self.spec,
            counts=tuple(h.counts.tolist()),
            hist_lo=h.lo,
            hist_hi=h.hi,
            ranges=ranges,
            sqnr_db={c: sqnr_db(self._signal, self._noise[c]) for c in qparams}
            if evaluated
            else {},
            loss={c: self._loss[c] / self._evaluated for c in qparams}
            if evaluated and self.loss_fn is not None
            else {},
            current=current,
            current_sqnr_db=None if self._current is None else sqnr_db(*self._current),
            group=group,
        )

    def _frozen_qparams(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Each candidate's ``(scale, zero_point)``, computed once after stage 1 (range
        searches are the expensive part of calibration: each runs once)."""
        if self._qparams is None:
            self._ranges = {c: cal.range() for c, cal in self.calibrators.items()}
            self._qparams = {
                c: qparams_from_range(lo, hi, self.spec) for c, (lo, hi) in self._ranges.items()
            }
        return self._qparams

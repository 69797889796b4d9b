"""IFMR (Input Feature Map Reconstruction): Ascend AMCT's default activation calibration.

Algorithm (../shared/specs/algorithms.md section 5, AMCT ``ifmr.cpp``), N values observed:

1. ``k = N - int(pct * N)`` (``k = 1`` when ``1 - pct < FLT_EPSILON``), computed in float64;
   ``max0 = max(0, k-th largest)`` with ``pct = max_percentile``, ``min0 = min(0, k-th
   smallest)`` with ``pct = min_percentile``.
2. For each ratio ``r`` in ``arange(start, end, step)`` (end excluded; defaults 0.7, 1.3,
   0.01: 60 candidates) the candidate range is ``[min0, r * max0]`` (``scale_min=True``:
   ``[r * min0, r * max0]``, the variant the AMCT documentation describes); symmetric specs
   always scale both sides and clip to ``[-T, T]`` with ``T = r * max(|min0|, |max0|)``.
   The candidate's scale is the spec's (`qparams_from_range`; use ``scale_rule="amct"`` for
   AMCT's /127-or-/128 symmetric rule) and its loss is
   ``mean((round(clamp(x, lo, hi) / s) * s - x)^2)``.
3. The range of the first candidate with the smallest loss is returned.

Modes:
- ``"exact"`` holds every observed value (flattened float32), as AMCT does, up to
  ``max_samples`` values. Past the cap it warns (`TorchQuantWarning`) and falls back to the
  histogram mode, re-binning what it held batch by batch, so the result is what the histogram
  mode gives on the same stream.
- ``"histogram"`` keeps a `RangeHistogram` of ``num_bins`` bins (bounded memory):
  percentiles from the linearly interpolated CDF (the 1st smallest and largest are the range
  ends), loss from bin centres weighted by counts.

``batch_num`` (AMCT): only the first ``batch_num`` observed batches are used, later ones are
ignored. `merge` combines everything both calibrators used. Losses are evaluated for all
candidates at once (data chunked to bound memory), sums in float64. The exact mode sorts the
held values once (int32 keys; temporaries of about 16 bytes per value) and takes the
percentiles and every candidate's loss from the sorted values (`_cell_losses`, prefix sums
per quantization cell); the few candidates within 1e-5 of the best loss are re-scored
element-wise. Measured (benchmarks/calibrators.py tensors 0-11, 0.8M to 3.1M values, one
thread, int8, before and after in the same run, two runs): 0.60-0.69 s per tensor with the
O(60 N) loss and two ``kthvalue`` passes, 35-46 ms now (14-17x), same qparams on all 24
tensor/spec pairs.

Exact vs histogram mode, measured (torch 2.13 CPU; int8; 2**20 values in 8 batches; defaults,
8192 bins; ``scale_rule="amct"``): largest relative difference of the scale, histogram vs
exact, over seeds 0, 1, 2,

    ==================  ==========  ==========
    data                asymmetric  symmetric
    ==================  ==========  ==========
    Gaussian            3.5e-4      1.8e-4
    Laplace             3.5e-4      4.4e-4
    ReLU(Gaussian)      6.0e-5      6.0e-5
    Student-t, df=2     4.7e-4      5.7e-4
    ==================  ==========  ==========

but on Student-t (df=2), asymmetric, seeds 3 to 14: 5 of 12 seeds differ by 0.9e-2 to
4.1e-2 (the others by at most 6.9e-4). Likely cause (not measured further): the heavy tail
stretches the histogram (ranges of 1500 to 4200 there, bins 0.2 to 0.5 wide), so the bulk of
the data sits in a few bins and the loss from bin centres picks another candidate. Prefer the
exact mode for heavy-tailed tensors.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import torch
from torch import Tensor

from torchquant.calib._base import Calibrator, register_calibrator
from torchquant.calib._range_histogram import RangeHistogram
from torchquant.errors import ConfigError, TorchQuantWarning
from torchquant.quant.affine import FLT_EPSILON, qparams_from_range
from torchquant.quant.spec import QuantSpec

__all__ = ["IfmrCalibrator"]

# Values times candidates evaluated per step of the loss: bounds temporaries to ~64 MiB.
_LOSS_BLOCK = 1 << 24
# Sorted values summed per step of `_prefix_sums_at`: bounds its temporaries to 8 MiB each.
_CHUNK = 1 << 20
# Cell-sum losses within this of the minimum are re-scored element-wise (they differ from
# the float32 element-wise form by its rounding: measured up to 6.5e-6 relative).
_REL_TOL = 1e-5
_ABS_TOL = 1e-30


@register_calibrator("ifmr")
class IfmrCalibrator(Calibrator):
    """AMCT IFMR: percentile start, then a grid search of the max that minimises the MSE.

    Args:
        mode: ``"exact"`` (raw values, AMCT) or ``"histogram"`` (bounded memory).
        max_percentile, min_percentile: in (0, 1]; AMCT default 0.999999.
        search_range: ratios ``(start, end)``, end excluded; AMCT default (0.7, 1.3).
        search_step: ratio step; AMCT default 0.01.
        scale_min: also scale the min by the ratio (AMCT documentation); default False
            (AMCT code).
        batch_num: use only the first ``batch_num`` batches; None uses all.
        max_samples: cap on values held by the exact mode before it falls back.
        num_bins: histogram bins of the histogram mode.
    """

    def __init__(
        self,
        spec: QuantSpec,
        *,
        tensor_name: str = "tensor",
        mode: Literal["exact", "histogram"] = "exact",
        max_percentile: float = 0.999999,
        min_percentile: float = 0.999999,
        search_range: tuple[float, float] = (0.7, 1.3),
        search_step: float = 0.01,
        scale_min: bool = False,
        batch_num: int | None = None,
        max_samples: int = 1 << 24,
        num_bins: int = 8192,
    ) -> None:
        super().__init__(spec, tensor_name=tensor_name)
        if mode not in ("exact", "histogram"):
            raise ConfigError(f"ifmr mode must be 'exact' or 'histogram', got {mode!r}")
        for name, pct in (("max_percentile", max_percentile), ("min_percentile", min_percentile)):
            if not 0.0 < pct <= 1.0:
                raise ConfigError(f"ifmr {name} must be in (0, 1], got {pct}")
        start, end = (float(v) for v in search_range)
        if not (0.0 < start < end and search_step > 0.0):
            raise ConfigError(
                f"ifmr needs 0 < start < end and step > 0, got {search_range}, {search_step}"
            )
        if batch_num is not None and batch_num < 1:
            raise ConfigError(f"ifmr batch_num must be >= 1 or None, got {batch_num}")
        if max_samples < 1:
            raise ConfigError(f"ifmr max_samples must be >= 1, got {max_samples}")
        self._requested_mode: Literal["exact", "histogram"] = mode
        self.max_percentile = max_percentile
        self.min_percentile = min_percentile
        self.search_range = (start, end)
        self.search_step = float(search_step)
        self.scale_min = scale_min
        self.batch_num = batch_num
        self.max_samples = max_samples
        self.num_bins = num_bins
        self._reset()

    def _reset(self) -> None:
        self.mode = self._requested_mode  # the exact mode may have fallen back
        self._values: list[Tensor] = []  # exact mode: flattened batches (N_i,)
        self._hist = RangeHistogram(self.num_bins)
        self.count = 0  # values used
        self.batches_used = 0

    @property
    def ratios(self) -> Tensor:
        """Candidate ratios (K,) float64 on the CPU: ``start + i * step``, end excluded."""
        start, end = self.search_range
        num = max(1, math.ceil((end - start) / self.search_step - 1e-9))
        return start + torch.arange(num, dtype=torch.float64) * self.search_step

    # -- streaming ---------------------------------------------------------------------
    def _observe(self, x: Tensor) -> None:
        if self.batch_num is not None and self.batches_used >= self.batch_num:
            return
        flat = x.reshape(-1)  # (N_i,)
        self.batches_used += 1
        self.count += flat.numel()
        if self.mode == "exact":
            if self._held() + flat.numel() <= self.max_samples:
                self._values.append(flat.clone())
                return
            self._fall_back(f"more than max_samples={self.max_samples} values")
        self._hist.add(flat, self._batch_bounds)

    def _held(self) -> int:
        return sum(v.numel() for v in self._values)

    def _fall_back(self, reason: str) -> None:
        warnings.warn(
            f"ifmr for tensor {self.tensor_name!r}: {reason}; switching from the exact to the "
            f"histogram mode ({self.num_bins} bins)",
            TorchQuantWarning,
            stacklevel=4,
        )
        for values in self._values:
            self._hist.add(values)
        self._values = []
        self.mode = "histogram"

    def _merge(self, other: Any) -> None:
        held = self._held() + other._held()
        if self.mode == "exact" and other.mode == "exact" and held <= self.max_samples:
            self._values += [v.to(self._values[0].device) for v in other._values]
        else:
            if self.mode == "exact":
                self._fall_back(
                    f"the merged values exceed max_samples={self.max_samples}"
                    if other.mode == "exact"
                    else "merging a histogram-mode state"
                )
            theirs = RangeHistogram(self.num_bins)
            theirs.load_state_dict(other._hist.state_dict())
            for values in other._values:
                theirs.add(values)
            self._hist.merge(theirs)
        self.count += other.count
        self.batches_used += other.batches_used

    # -- search ------------------------------------------------------------------------
    def compute_range(self) -> tuple[Tensor, Tensor]:
        if self.mode == "exact":
            values = _sorted(self._values)  # (N,) ascending
            lo, hi = self._candidates(*self._exact_bounds(values))  # (K,) each
            fast = self._cell_losses(values, lo, hi)  # (K,)
            # Re-score the candidates near the minimum with the element-wise float32 loss,
            # so the pick does not hang on how either form rounds.
            near = torch.nonzero(fast <= float(fast.min()) * (1 + _REL_TOL) + _ABS_TOL)
            near = near.flatten().cpu()  # (s,)
            best = int(near[0])
            if near.numel() > 1:
                best = int(near[torch.argmin(self._losses(values, None, lo[near], hi[near]))])
        else:
            assert self._hist.counts is not None
            edges = self._hist.edges()  # (n+1,)
            values = (edges[:-1] + edges[1:]) / 2  # (n,) bin centres
            lo, hi = self._candidates(*self._histogram_bounds())  # (K,) each
            best = int(torch.argmin(self._losses(values, self._hist.counts, lo, hi)))
        device = values.device
        return (
            torch.tensor(float(lo[best]), dtype=torch.float32, device=device),
            torch.tensor(float(hi[best]), dtype=torch.float32, device=device),
        )

    def _ks(self) -> tuple[int, int]:
        """Ranks ``(k_min, k_max)`` of the min and max bounds (1 = the extreme value)."""

        def rank(pct: float) -> int:
            if 1.0 - pct < FLT_EPSILON:
                return 1
            return min(max(self.count - int(pct * self.count), 1), self.count)

        return rank(self.min_percentile), rank(self.max_percentile)

    def _exact_bounds(self, ordered: Tensor) -> tuple[float, float]:
        """Percentile bounds from the sorted values ``ordered`` (N,)."""
        k_min, k_max = self._ks()
        small = float(ordered[k_min - 1])
        large = float(ordered[ordered.numel() - k_max])
        return min(0.0, small), max(0.0, large)

    def _histogram_bounds(self) -> tuple[float, float]:
        counts, edges = self._hist.counts, self._hist.edges()
        assert counts is not None
        k_min, k_max = self._ks()
        small = _value_after(counts, edges, k_min - 1)
        large = -_value_after(counts.flip(0), -edges.flip(0), k_max - 1)
        return min(0.0, small), max(0.0, large)

    def _candidates(self, lo0: float, hi0: float) -> tuple[Tensor, Tensor]:
        """Candidate ranges ``(lo, hi)``, (K,) float64 each."""
        r = self.ratios
        hi = r * hi0
        lo = r * lo0 if (self.scale_min or self.spec.symmetric) else torch.full_like(r, lo0)
        return lo, hi

    def _cell_losses(self, ordered: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        """`_losses` of the sorted raw values ``ordered`` (N,) for each candidate range (K,),
        float64, in O(K * 2^b * log N) after the sort instead of O(K * N).

        Per candidate, quantization cell ``j`` (value ``j * s``) holds the values from
        ``(j - 1/2) s`` to ``(j + 1/2) s``, the first and last cells also everything clipped,
        so its error is ``n_j (j s)^2 - 2 j s S1_j + S2_j`` with the count and the sums of
        ``x`` and ``x^2`` in the cell: differences of prefix sums at the cell edges, found
        by `searchsorted`. A value on a cell edge counts in the upper cell (``torch.round``
        goes to the even one); its error is ``s / 2`` either way. Arithmetic in float64 from
        the float32 scale, sums centred on the median. Measured against the float32
        element-wise form (`_losses`): up to 4.3e-7 relative on the benchmark tensors, 6.5e-6
        on 8M values of 100 + N(0, 1), where a float64 element-wise sum agrees with this one
        to 2e-9: the differences are the float32 form's rounding.
        """
        scale, _ = qparams_from_range(lo.to(torch.float32), hi.to(torch.float32), self.spec)
        if self.spec.symmetric:
            hi = torch.maximum(lo.abs(), hi.abs())
            lo = -hi
        device = ordered.device
        s32 = scale.to(device)  # (K,)
        # The cells of the clip bounds, as the element-wise form rounds them (float32).
        j_lo = torch.round(lo.to(device, torch.float32) / s32).to(torch.float64)  # (K,)
        j_hi = torch.round(hi.to(device, torch.float32) / s32).to(torch.float64)  # (K,)
        num_edges = int((j_hi - j_lo).max())
        j = j_lo[:, None] + torch.arange(num_edges + 1, dtype=torch.float64, device=device)
        # Cell j starts at edge (j - 1/2) s; cells past j_hi get an edge at +inf (empty).
        edges = torch.where(
            j[:, 1:] <= j_hi[:, None], (j[:, 1:] - 0.5) * s32.to(torch.float64)[:, None], torch.inf
        )  # (K, E)
        # float32 x < edge exactly when x < the smallest float32 >= edge.
        up = edges.to(torch.float32)
        up = torch.where(
            up.to(torch.float64) < edges, torch.nextafter(up, up.new_tensor(torch.inf)), up
        )
        k = lo.numel()
        pos = torch.searchsorted(ordered, up)  # (K, E) values below each edge
        pos = torch.cat([pos.new_zeros(k, 1), pos, pos.new_full((k, 1), ordered.numel())], 1)
        # Sums of x - median: (q - x)^2 is the same, with far less cancellation when the
        # values sit far from 0 relative to the scale.
        centre = float(ordered[ordered.numel() // 2])
        s1, s2 = _prefix_sums_at(ordered, centre, pos.flatten())  # (K * (E+2),) each
        n0, s1, s2 = (t.reshape(pos.shape).diff(dim=1) for t in (pos.to(torch.float64), s1, s2))
        q = j * s32.to(torch.float64)[:, None] - centre  # (K, E+1) cell values, centred
        return (n0 * q * q - 2 * q * s1 + s2).sum(dim=1) / self.count

    def _losses(self, values: Tensor, weights: Tensor | None, lo: Tensor, hi: Tensor) -> Tensor:
        """Weighted mean squared quantization error (K,) float64 of each candidate range."""
        scale, _ = qparams_from_range(lo.to(torch.float32), hi.to(torch.float32), self.spec)
        if self.spec.symmetric:
            hi = torch.maximum(lo.abs(), hi.abs())
            lo = -hi
        dtype, device = values.dtype, values.device
        lo_c = lo.to(device, dtype)[:, None]  # (K, 1)
        hi_c = hi.to(device, dtype)[:, None]  # (K, 1)
        s = scale.to(device, dtype)[:, None]  # (K, 1)
        total = torch.zeros(lo.numel(), dtype=torch.float64, device=device)  # (K,)
        block = max(1, _LOSS_BLOCK // lo.numel())
        for start in range(0, values.numel(), block):
            v = values[start : start + block][None, :]  # (1, B)
            # In place after the clamp: one (K, B) temporary.
            err = torch.clamp(v, lo_c, hi_c).div_(s).round_().mul_(s).sub_(v).square_()  # (K, B)
            if weights is not None:
                err = err * weights[start : start + block].to(dtype)[None, :]
            total += err.sum(dim=1, dtype=torch.float64)
        return total / self.count

    # -- state ---------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "count": self.count,
            "batches_used": self.batches_used,
            "values": [v.clone() for v in self._values],
            "histogram": self._hist.state_dict(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.mode = state["mode"]
        self.count = int(state["count"])
        self.batches_used = int(state["batches_used"])
        self._values = [v.to(torch.float32).clone() for v in state["values"]]
        self._hist = RangeHistogram(self.num_bins)
        self._hist.load_state_dict(state["histogram"])


def _sorted(batches: list[Tensor]) -> Tensor:
    """The values of ``batches`` (float32, finite) in ascending order (N,).

    Sorts the float32 bit patterns as int32 keys, made monotone by flipping the magnitude bits
    of negative values: torch sorts int32 several times faster than float32 on CPU (measured
    5x at 1.6M values, one thread).
    """
    keys = torch.cat([b.reshape(-1).view(torch.int32) for b in batches])  # (N,)
    keys ^= (keys >> 31) & 0x7FFFFFFF
    keys = torch.sort(keys).values
    keys ^= (keys >> 31) & 0x7FFFFFFF
    return keys.view(torch.float32)


def _prefix_sums_at(ordered: Tensor, centre: float, pos: Tensor) -> tuple[Tensor, Tensor]:
    """``sum(y[:p])`` and ``sum(y[:p] ** 2)`` of ``y = ordered - centre`` for each ``p`` in
    ``pos`` (Q,), float64 (Q,) each, computed in chunks of the values to bound the
    temporaries."""
    s1 = torch.zeros(pos.shape, dtype=torch.float64, device=pos.device)  # (Q,)
    s2 = torch.zeros_like(s1)
    off1 = off2 = ordered.new_zeros((), dtype=torch.float64)
    for start in range(0, ordered.numel(), _CHUNK):
        v = ordered[start : start + _CHUNK].to(torch.float64).sub_(centre)  # (B,)
        c1, c2 = torch.cumsum(v, 0), torch.cumsum(v * v, 0)  # (B,) inclusive
        inside = (pos > start) & (pos <= start + v.numel())  # (Q,) p - 1 in this chunk
        at = pos[inside] - 1 - start
        s1[inside] = off1 + c1[at]
        s2[inside] = off2 + c2[at]
        off1, off2 = off1 + c1[-1], off2 + c2[-1]
    return s1, s2


def _value_after(counts: Tensor, edges: Tensor, target: float) -> float:
    """Where the linearly interpolated CDF of ``counts`` (n,) over increasing ``edges``
    (n+1,) first passes ``target`` values: the (target+1)-th smallest value, estimated."""
    cum = torch.cumsum(counts, 0)  # (n,)
    n = counts.numel()
    i = min(int(torch.searchsorted(cum, cum.new_tensor([target]), right=True)), n - 1)
    before = float(cum[i] - counts[i])
    c = float(counts[i])
    frac = 0.0 if c <= 0.0 else min(max((target - before) / c, 0.0), 1.0)
    return float(edges[i] + frac * (edges[i + 1] - edges[i]))

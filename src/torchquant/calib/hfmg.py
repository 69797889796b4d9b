"""HFMG (Histogram Feature Map Glutton): Ascend AMCT's histogram search for activations.

Algorithm (../shared/specs/algorithms.md section 5, AMCT ``hfmg.cpp``):

1. A `RangeHistogram` of ``num_of_bins`` bins over ``[min, max]`` of everything observed;
   a batch that widens the range re-bins the old counts proportionally into the union.
2. Candidates ``(L, R)`` (bin indices): ``step = max(ceil(total / 1e5), 1)``; from
   ``L = 0, R = n - 1``, while ``R - L > n / 4``: a left cursor walks from ``L`` until it
   has passed at least ``step`` counts, a right cursor likewise from ``R`` (neither crosses
   the other); the side whose cursor skipped more bins is trimmed (ties trim the right) and
   ``(L, R)`` is recorded. The walks use prefix sums and bisection instead of bin-by-bin
   steps (the same cursors, found in O(log n)).
3. Loss of ``(L, R)``: every source bin ``i`` (all ``n``, also those outside ``[L, R]``)
   is mapped into ``2^b`` destination bins of width ``(R - L + 1) w / 2^b`` starting at
   ``L``; the squared distance to the destination bin centre is integrated over the source
   bin with uniform density, ``density * (end^3 - begin^3) / 3`` per piece (PyTorch
   ``HistogramObserver._get_norm``). All candidates are evaluated (vectorized, in chunks)
   in O(candidates * 2^b) from prefix sums of the source bins' moments (`hfmg_losses`);
   those within a tolerance of the minimum are re-scored source bin by source bin, and the
   first argmin is taken.
4. ``clip_min = min + L * w``, ``clip_max = min + (R + 1) * w``; the spec turns the range
   into scale and zero point (``scale_rule="amct"`` for AMCT's symmetric /127-or-/128 rule).

Differences from AMCT's CPU code, on purpose: the loss is computed in float64 in units of the
source bin width (AMCT: float32 sums in data units, and a loss of 0 whenever the destination
bin width is below FLT_EPSILON, which makes tiny-valued tensors pick the first candidate);
source bins left of ``L`` use signed offsets as PyTorch does (AMCT computes ``index - L`` in
unsigned arithmetic); see `RangeHistogram` for the histogram itself. Constant data returns
``(c, c)``. Memory is the histogram: ``num_of_bins`` float64 values whatever the number of
batches.

Measured (benchmarks/calibrators.py tensors 0-11, 0.8M to 3.1M values, 4096 bins, int8, one
thread, before and after in the same run, two runs): observe + compute 416-462 ms per tensor
with the O(candidates * bins) loss and the previous histogram binning, 21-28 ms now
(16-20x), same qparams on all 24 tensor/spec pairs.
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Any

import torch
from torch import Tensor

from torchquant.calib._base import Calibrator, register_calibrator
from torchquant.calib._range_histogram import RangeHistogram
from torchquant.errors import ConfigError
from torchquant.quant.spec import QuantSpec

__all__ = ["HfmgCalibrator", "hfmg_candidates", "hfmg_losses"]

ALLOWED_BINS = (1024, 2048, 4096, 8192)
# AMCT's constants: the candidate step is total / 1e5 counts, the search stops at n / 4 bins.
_STEP_DIVISOR = 100_000
_MIN_BIN_RATIO = 4
# Candidates times bins evaluated per step of the loss: bounds each temporary to 32 MiB.
_LOSS_BLOCK = 1 << 22
# The same for the prefix-sum loss: 512 KiB temporaries stay in cache (measured 2x faster
# than 32 MiB ones on CPU).
_PREFIX_BLOCK = 1 << 16
# Prefix-sum losses within this of the minimum are re-scored bin by bin (measured rounding
# differences are below 2e-11 relative; the margin costs only a few extra rows).
_ABS_TOL = 1e-12
_REL_TOL = 1e-8


@register_calibrator("hfmg")
class HfmgCalibrator(Calibrator):
    """AMCT HFMG: streaming histogram, then an L2 search over trimmed bin ranges.

    Args:
        num_of_bins: histogram bins, one of 1024, 2048, 4096 (AMCT default), 8192.
    """

    def __init__(
        self, spec: QuantSpec, *, tensor_name: str = "tensor", num_of_bins: int = 4096
    ) -> None:
        super().__init__(spec, tensor_name=tensor_name)
        if num_of_bins not in ALLOWED_BINS:
            raise ConfigError(
                f"hfmg num_of_bins must be one of {ALLOWED_BINS}, got {num_of_bins!r}"
            )
        self.num_of_bins = num_of_bins
        self.hist = RangeHistogram(num_of_bins)

    def _observe(self, x: Tensor) -> None:
        self.hist.add(x, self._batch_bounds)

    def _merge(self, other: Any) -> None:
        self.hist.merge(other.hist)

    def compute_range(self) -> tuple[Tensor, Tensor]:
        counts, lo, hi = self.hist.counts, self.hist.lo, self.hist.hi
        assert counts is not None and lo is not None and hi is not None
        device = counts.device
        if lo == hi:
            value = torch.tensor(lo, dtype=torch.float32, device=device)
            return value, value.clone()
        left, right = hfmg_candidates(counts)  # (K,) each
        best = _best_candidate(counts, left, right, 2**self.spec.bits)
        width = (hi - lo) / self.num_of_bins
        clip_min = lo + int(left[best]) * width
        clip_max = lo + (int(right[best]) + 1) * width
        return (
            torch.tensor(clip_min, dtype=torch.float32, device=device),
            torch.tensor(clip_max, dtype=torch.float32, device=device),
        )

    def _state(self) -> dict[str, Any]:
        return {"histogram": self.hist.state_dict()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.hist = RangeHistogram(self.num_of_bins)
        self.hist.load_state_dict(state["histogram"])

    def _reset(self) -> None:
        self.hist = RangeHistogram(self.num_of_bins)


def hfmg_candidates(counts: Tensor) -> tuple[Tensor, Tensor]:
    """HFMG's candidate bin ranges ``(L, R)`` (K,) int64 each, in the order AMCT records them.

    ``counts`` (n,): histogram counts. The cursor walk is sequential, so it runs on CPU
    scalars (at most ``3n/4`` steps, each a bisection of the prefix sums).
    """
    values = counts.detach().to("cpu", torch.float64).tolist()
    n = len(values)
    cum = [0.0, *itertools.accumulate(values)]  # (n+1,) cum[i] = sum(values[:i])
    step = max(math.ceil(round(cum[-1]) / _STEP_DIVISOR), 1)
    min_bins = math.ceil(n / _MIN_BIN_RATIO)
    left, right = 0, n - 1
    lefts: list[int] = []
    rights: list[int] = []
    while right - left > min_bins:
        # Left cursor: first j with sum(values[left:j]) >= step, never past `right`.
        new_left = min(bisect.bisect_left(cum, cum[left] + step), right)
        # Right cursor: stops at t once sum(values[t+1:right+1]) >= step, never below new_left.
        u = bisect.bisect_right(cum, cum[right + 1] - step) - 1
        new_right = max(u - 1, new_left)
        if right - new_right >= new_left - left:
            right = new_right
        else:
            left = new_left
        lefts.append(left)
        rights.append(right)
    device = counts.device
    return (
        torch.tensor(lefts, dtype=torch.int64, device=device),
        torch.tensor(rights, dtype=torch.int64, device=device),
    )


def hfmg_losses(counts: Tensor, left: Tensor, right: Tensor, dst_bins: int) -> Tensor:
    """L2 error (K,) float64 of mapping the histogram into ``dst_bins`` bins over each
    candidate ``[left, right]`` (K,), in units of the squared source bin width.

    Work O(K * dst_bins), not O(K * n): in source-bin units (bin ``i`` covers ``[i, i+1)``
    with density ``counts[i]``) the error is the integral of ``density * (x - centre)^2``
    where ``centre`` is the centre of the destination bin holding ``x`` (the first one for
    ``x < left``, the last one for ``x > right + 1``). Destination bin ``k`` spans the edges
    ``[t_k, t_{k+1}]`` (``t_0 = 0``, ``t_D = n``): the source bins lying entirely inside
    contribute ``sum c ((i + 1/2 - centre)^2 + 1/12)`` from prefix sums of ``c``, ``c m``,
    ``c m^2`` (``m``: bin centres, origin at ``n / 2`` to limit cancellation); the at most
    two source bins cut by ``t_k`` or ``t_{k+1}`` contribute their pieces explicitly,
    ``c ((b - centre)^3 - (a - centre)^3) / 3``. Measured against the per-source-bin formula
    (`_per_bin_losses`): relative differences below 2e-11.
    """
    n = counts.numel()
    c = counts.to(torch.float64)  # (n,)
    device = c.device
    mid = torch.arange(n, dtype=torch.float64, device=device) + (0.5 - n / 2)  # (n,)
    zero = c.new_zeros(1)
    p0 = torch.cat([zero, torch.cumsum(c, 0)])  # (n+1,) p0[i] = sum(c[:i])
    p1 = torch.cat([zero, torch.cumsum(c * mid, 0)])  # (n+1,)
    p2 = torch.cat([zero, torch.cumsum(c * mid * mid, 0)])  # (n+1,)
    c_pad = torch.cat([c, zero])  # (n+1,) a zero-width piece at t_D = n reads bin n
    k = torch.arange(dst_bins + 1, dtype=torch.float64, device=device)  # (D+1,)
    losses = []
    block = max(1, _PREFIX_BLOCK // (dst_bins + 1))
    for start in range(0, left.numel(), block):
        lo = left[start : start + block].to(torch.float64)[:, None]  # (Kc, 1)
        hi = right[start : start + block].to(torch.float64)[:, None]  # (Kc, 1)
        dst_w = (hi - lo + 1) / dst_bins  # (Kc, 1), exact: dst_bins is a power of two
        edges = lo + k * dst_w  # (Kc, D+1)
        edges[:, 0] = 0.0
        edges[:, -1] = float(n)
        centre = lo + (k[:-1] + 0.5) * dst_w  # (Kc, D)
        first = torch.ceil(edges[:, :-1])  # (Kc, D) first source bin wholly inside
        stop = torch.floor(edges[:, 1:])  # (Kc, D) one past the last one
        u_lo, u_hi = edges[:, :-1] - centre, edges[:, 1:] - centre  # (Kc, D)
        u_first, u_stop = first - centre, stop - centre  # (Kc, D)
        i_first, i_stop = first.long(), stop.long()  # (Kc, D)
        c_cut_lo = c_pad[(i_first - 1).clamp_(min=0)]  # (Kc, D) bin cut by t_k
        c_cut_hi = c_pad[i_stop]  # (Kc, D) bin cut by t_{k+1}
        a = centre - n / 2  # (Kc, D) centre in the prefix sums' origin
        m0 = p0[i_stop] - p0[i_first]
        m1 = p1[i_stop] - p1[i_first]
        m2 = p2[i_stop] - p2[i_first]
        split = (
            m2
            - 2 * a * m1
            + (a * a + 1 / 12) * m0
            + c_cut_lo * (u_first**3 - u_lo**3) / 3
            + c_cut_hi * (u_hi**3 - u_stop**3) / 3
        )
        # Both edges inside one source bin (narrow destination bins): one piece.
        within = c_cut_hi * (u_hi**3 - u_lo**3) / 3
        losses.append(torch.where(i_first > i_stop, within, split).sum(dim=1))
    return torch.cat(losses)


def _best_candidate(counts: Tensor, left: Tensor, right: Tensor, dst_bins: int) -> int:
    """Index of the first candidate with the smallest loss: `hfmg_losses` for all, then the
    candidates within a tolerance of the minimum re-scored by `_per_bin_losses`, so the pick
    does not hang on the prefix sums' rounding."""
    losses = hfmg_losses(counts, left, right, dst_bins)  # (K,)
    best = float(losses.min())
    near = torch.nonzero(losses <= best + _ABS_TOL + _REL_TOL * abs(best)).flatten()  # (s,)
    if near.numel() == 1:
        return int(near[0])
    exact = _per_bin_losses(counts, left[near], right[near], dst_bins)  # (s,)
    return int(near[torch.argmin(exact)])


def _per_bin_losses(counts: Tensor, left: Tensor, right: Tensor, dst_bins: int) -> Tensor:
    """`hfmg_losses` term by term over all source bins, O(K * n): PyTorch
    ``HistogramObserver._get_norm``'s form, used to re-score the near-best candidates."""
    n = counts.numel()
    density = counts.to(torch.float64)[None, :]  # (1, n) per unit bin width
    src = torch.arange(n, dtype=torch.float64, device=counts.device)[None, :]  # (1, n)
    losses = []
    block = max(1, _LOSS_BLOCK // n)
    for start in range(0, left.numel(), block):
        lo = left[start : start + block].to(torch.float64)[:, None]  # (Kc, 1)
        hi = right[start : start + block].to(torch.float64)[:, None]  # (Kc, 1)
        dst_w = (hi - lo + 1) / dst_bins  # (Kc, 1)
        begin = src - lo  # (Kc, n) source bin start, from the first destination bin
        end = begin + 1
        first = torch.floor(begin / dst_w).clamp_(0, dst_bins - 1)  # (Kc, n)
        last = torch.floor(end / dst_w).clamp_(0, dst_bins - 1)  # (Kc, n)
        # Three pieces (exact also when first == last): from `begin` to the right edge of
        # the first destination bin, the full bins between, and from the left edge of the
        # last destination bin to `end`; each integrates (x - centre)^2.
        half = dst_w / 2
        to_first = half**3 - (begin - (first + 0.5) * dst_w) ** 3
        middle = (last - first - 1) * (2 * half**3)
        from_last = (end - (last + 0.5) * dst_w) ** 3 + half**3
        losses.append((density * (to_first + middle + from_last) / 3).sum(dim=1))
    return torch.cat(losses)

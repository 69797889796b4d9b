"""TensorRT entropy (KL-divergence) calibration, per tensor, symmetric.

A histogram of ``|x|`` (`AbsHistogram`) is accumulated over all batches. For each candidate
``i`` (the number of bins kept), ``P`` is ``bins[:i]`` with the mass of ``bins[i:]`` folded
into ``P[i-1]``, and ``Q`` is ``bins[:i]`` merged into ``L`` levels and expanded back to ``i``
bins, each level's count shared evenly over its non-empty bins (empty bins stay empty). The
candidate with the smallest ``KL(P || Q)`` gives the threshold ``T``, the range is
``(-T, T)``, or ``(0, T)`` when no negative value was observed and the grid can use that
(unsigned or affine specs), e.g. after a ReLU.

Variants (``variant=``):

- ``"tensorrt"`` (default), as published: GTC 2017, Szymon Migacz, "8-bit Inference with
  TensorRT" (slides s7310). Levels are ``i // L`` bins each, the last level takes the
  remainder; candidates ``start_bin..n``; ties go to the first minimum; ``T = (i + 0.5) * w``
  as the slides write it. NVIDIA's MLPerf calibration.md details are options:
  ``num_bins=1024, growth="double", discard_first_bin=True``.
- ``"modelopt"``: NVIDIA pytorch-quantization / TensorRT Model Optimizer
  ``calib/histogram.py`` (``_compute_amax_entropy``): ``bins[0] = bins[1]``; levels from
  ``digitize(range(i), linspace(0, i, L + 1))`` (uneven); no smoothing, so KL is infinite where
  ``P > 0 = Q`` and NaN where ``Q`` is all zero, NaN counting as the minimum as in
  ``np.argmin``; ties go to the last minimum; ``T = i * w``, the right edge of bin ``i - 1``.
  Given the same histogram the chosen bin is the same; ``T`` is computed in float64 from the
  width, where modelopt reads a float32 ``linspace`` edge (at most 1 float32 ulp apart).

The search is vectorized over all candidates: every term of the KL sum is a difference of
prefix sums (counts, non-empty bins, ``h log h``) gathered at the level boundaries of each
candidate, in chunks of bounded size. Prefix sums of ``h log h`` round, so the candidates
within a small tolerance of the minimum are re-scored with the explicit per-bin formula
(``p log(p / q)`` on normalized ``P`` and ``Q``, as ``scipy.stats.entropy``) before the final
pick. Runs on the histogram's device, deterministic.
Source: ../shared/specs/algorithms.md section 2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchquant.calib._base import Calibrator, register_calibrator
from torchquant.calib._histogram import AbsHistogram
from torchquant.errors import ConfigError
from torchquant.quant.spec import QuantSpec

__all__ = ["EntropyCalibrator"]

_VARIANTS = ("tensorrt", "modelopt")
# Elements per chunk of the (candidates, levels) and (candidates, bins) work arrays.
_CHUNK_ELEMS = 1 << 21
# Stage-1 KL values within this of the minimum are re-scored exactly (rounding of the
# prefix sums is ~1e-13; a wide margin costs only a few extra rows).
_ABS_TOL = 1e-9
_REL_TOL = 1e-7


@register_calibrator("entropy")
class EntropyCalibrator(Calibrator):
    """KL-divergence calibration of a symmetric threshold (TensorRT ``EntropyCalibration2``).

    Args:
        variant: ``"tensorrt"`` (published algorithm) or ``"modelopt"`` (bit-compatible amax
            with NVIDIA pytorch-quantization / Model Optimizer).
        num_bins: histogram bins over the first batch's ``[0, amax]``; default 2048.
        start_bin: smallest candidate ``i``; default ``num_quantized_bins`` for
            ``"tensorrt"`` and 128 for ``"modelopt"``. At most ``num_bins``.
        num_quantized_bins: levels ``L`` of ``Q``; default ``2^(b-1)`` for a signed spec and
            ``2^b`` for an unsigned one (128 / 256 for 8 bits, as modelopt).
        growth: histogram growth, ``"append"`` (default) or ``"double"`` (MLPerf;
            ``"tensorrt"`` only).
        discard_first_bin: zero bin 0 before the search (MLPerf; ``"tensorrt"`` only).
    """

    def __init__(
        self,
        spec: QuantSpec,
        *,
        tensor_name: str = "tensor",
        variant: str = "tensorrt",
        num_bins: int = 2048,
        start_bin: int | None = None,
        num_quantized_bins: int | None = None,
        growth: str = "append",
        discard_first_bin: bool = False,
    ) -> None:
        super().__init__(spec, tensor_name=tensor_name)
        where = f"entropy calibrator for tensor {tensor_name!r}"
        if variant not in _VARIANTS:
            raise ConfigError(f"{where}: variant must be one of {_VARIANTS}, got {variant!r}")
        if not _is_int(num_bins) or num_bins < 2:
            raise ConfigError(f"{where}: num_bins must be an int >= 2, got {num_bins!r}")
        levels = num_quantized_bins
        if levels is None:
            levels = 2 ** (spec.bits - 1) if spec.signed else 2**spec.bits
        if not _is_int(levels) or levels < 2:
            raise ConfigError(f"{where}: num_quantized_bins must be an int >= 2, got {levels!r}")
        start = start_bin if start_bin is not None else (128 if variant == "modelopt" else levels)
        if not _is_int(start) or not 1 <= start <= num_bins:
            raise ConfigError(
                f"{where}: start_bin must be an int in 1..num_bins={num_bins}, got {start!r}"
            )
        if variant == "tensorrt" and start < levels:
            raise ConfigError(
                f"{where}: start_bin ({start}) must be >= num_quantized_bins ({levels}) so that "
                "every level holds at least one bin"
            )
        if variant == "modelopt" and (growth != "append" or discard_first_bin):
            raise ConfigError(
                f"{where}: variant 'modelopt' grows by 'append' and keeps the first bin"
            )
        if not isinstance(discard_first_bin, bool):
            raise ConfigError(
                f"{where}: discard_first_bin must be a bool, got {discard_first_bin!r}"
            )
        self.variant = variant
        self.start_bin = start
        self.num_quantized_bins = levels
        self.discard_first_bin = discard_first_bin
        self.histogram = AbsHistogram(num_bins, growth)
        self.saw_negative = False  # any x < 0 observed: decides whether lo = 0 is allowed

    def _observe(self, x: Tensor) -> None:
        bounds = self._batch_bounds
        self.histogram.add(x, bounds)
        if not self.saw_negative:
            low = bounds[0] if bounds is not None else x.min()
            self.saw_negative = bool(low < 0)

    def _merge(self, other: Any) -> None:
        self.histogram.merge(other.histogram)
        self.saw_negative = self.saw_negative or other.saw_negative

    def compute_range(self) -> tuple[Tensor, Tensor]:
        hist = self.histogram
        if hist.counts is None or hist.bin_width is None:
            threshold, device = 0.0, torch.device("cpu")  # only zeros seen: scale becomes 1
        else:
            counts, device = hist.counts.clone(), hist.counts.device  # (n,)
            if self.variant == "modelopt":
                counts[0] = counts[1]
            elif self.discard_first_bin:
                counts[0] = 0.0
            i = best_candidate(counts, self.start_bin, self.num_quantized_bins, self.variant)
            offset = 0.0 if self.variant == "modelopt" else 0.5
            threshold = (i + offset) * hist.bin_width
        hi = torch.tensor(threshold, dtype=torch.float32, device=device)
        # The search is over |x|: the range is symmetric, except that data never seen
        # negative (post-ReLU) keeps lo = 0 on grids that can use it (unsigned or affine).
        one_sided = not self.saw_negative and (not self.spec.signed or not self.spec.symmetric)
        lo = torch.zeros_like(hi) if one_sided else -hi
        return lo, hi

    def _state(self) -> dict[str, Any]:
        return {"histogram": self.histogram.state_dict(), "saw_negative": self.saw_negative}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.histogram.load_state_dict(state["histogram"])
        self.saw_negative = bool(state.get("saw_negative", False))

    def _reset(self) -> None:
        self.histogram = AbsHistogram(self.histogram.num_bins, self.histogram.growth)
        self.saw_negative = False


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def best_candidate(counts: Tensor, start: int, levels: int, variant: str) -> int:
    """The candidate ``i`` in ``start..n`` (bins kept) that minimizes ``KL(P || Q)``.

    ``counts`` (n,) float64 is the histogram after the variant's first-bin rule.
    """
    n = counts.numel()
    cand = torch.arange(start, n + 1, device=counts.device)  # (k,)
    prefix = _Prefix(counts)
    step = max(1, _CHUNK_ELEMS // (levels + 1))
    kl = torch.cat([_kl_fast(prefix, c, levels, variant) for c in cand.split(step)])  # (k,)
    nan = torch.isnan(kl)
    if variant == "modelopt" and bool(nan.any()):
        # np.argmin returns the first NaN of the reversed list: the last NaN candidate.
        return int(cand[nan][-1])
    kl = kl.masked_fill(nan, float("inf"))
    best = float(kl.min())
    if best == float("inf"):
        return n if variant == "tensorrt" else int(cand[-1])
    near = cand[kl <= best + _ABS_TOL + _REL_TOL * abs(best)]  # (s,)
    step = max(1, _CHUNK_ELEMS // n)
    exact = torch.cat([_kl_exact(prefix, c, levels, variant) for c in near.split(step)])  # (s,)
    ties = near[exact == exact.min()]
    return int(ties[-1] if variant == "modelopt" else ties[0])


class _Prefix:
    """Prefix sums of a histogram ``h`` (n,): counts, non-empty bins and ``h log h``."""

    def __init__(self, h: Tensor) -> None:
        zero = h.new_zeros(1)
        self.h = h  # (n,)
        self.count = torch.cat([zero, h.cumsum(0)])  # (n+1,) exact: integer counts
        self.nonzero = torch.cat([zero, (h > 0).to(h.dtype).cumsum(0)])  # (n+1,)
        self.hlogh = torch.cat([zero, torch.xlogy(h, h).cumsum(0)])  # (n+1,)
        self.total = self.count[-1]


def _boundaries(cand: Tensor, levels: int, variant: str) -> Tensor:
    """Level edges (k, L+1): level ``g`` of candidate ``i`` covers bins ``[b[g], b[g+1])``."""
    g = torch.arange(levels + 1, device=cand.device)  # (L+1,)
    if variant == "modelopt":
        # np.linspace(0, i, L+1) is g * (i / L) in float64; digitize puts integer bin j in
        # the level whose left edge is the last one <= j, so levels start at ceil(edge).
        if levels & (levels - 1) == 0:  # i / L is exact: integer ceil gives the same edges
            b = (g[None, :] * cand[:, None] + (levels - 1)) // levels
        else:
            step = cand.to(torch.float64) / levels  # (k,)
            b = torch.ceil(g.to(torch.float64)[None, :] * step[:, None]).long()
    else:
        b = g[None, :] * (cand // levels)[:, None]
    b[:, -1] = cand
    return b  # (k, L+1)


def _level_stats(p: _Prefix, b: Tensor) -> tuple[Tensor, Tensor]:
    """Count and non-empty bins (k, L) of the levels with edges ``b`` (k, L+1)."""
    count = p.count.take(b)  # (k, L+1)
    nonzero = p.nonzero.take(b)  # (k, L+1)
    return count[:, 1:] - count[:, :-1], nonzero[:, 1:] - nonzero[:, :-1]


def _sum_mass_log_q(p: _Prefix, cand: Tensor, levels: int, variant: str) -> tuple[Tensor, Tensor]:
    """``sum_levels mass * log(q)`` (k,) and the value ``q`` (k,) of the level of bin ``i-1``."""
    if variant == "tensorrt":
        # Levels 0..L-2 hold m = i // L bins each and depend on i only through m: sum them
        # once per distinct m (cand is a contiguous range), then add the last level per i.
        m = cand // levels  # (k,)
        m_first = int(m[0])
        ms = torch.arange(m_first, int(m[-1]) + 1, device=cand.device)  # (u,)
        b = torch.arange(levels, device=cand.device)[None, :] * ms[:, None]  # (u, L)
        mass, nonempty = _level_stats(p, b)  # (u, L-1)
        head = torch.xlogy(mass, mass / nonempty.clamp(min=1)).sum(dim=1)  # (u,)
        lo = (levels - 1) * m  # (k,)
        last_mass = p.count[cand] - p.count[lo]
        q_last = last_mass / (p.nonzero[cand] - p.nonzero[lo]).clamp(min=1)
        return head[m - m_first] + torch.xlogy(last_mass, q_last), q_last
    b = _boundaries(cand, levels, variant)  # (k, L+1)
    mass, nonempty = _level_stats(p, b)  # (k, L)
    q_level = mass / nonempty.clamp(min=1)  # (k, L)
    # Bin i-1 is in the last level when i >= L; below, count the edges at or before it.
    last_level = torch.full_like(cand, levels - 1)[:, None]  # (k, 1)
    few = cand < levels
    if bool(few.any()):
        last_level[few] = (b[few, 1:] <= (cand[few] - 1)[:, None]).sum(dim=1, keepdim=True)
    return torch.xlogy(mass, q_level).sum(dim=1), q_level.gather(1, last_level).squeeze(1)


def _kl_fast(p: _Prefix, cand: Tensor, levels: int, variant: str) -> Tensor:
    """KL(P || Q) of every candidate in ``cand`` (k,) from prefix sums; NaN where Q is empty.

    With ``C = sum(Q) = count[i]``, outliers ``O = total - C`` and ``q`` a level's value:
    ``KL = (sum p log p - sum p log q) / total - log(total) + log(C)``, where
    ``sum p log q = sum_levels mass * log(q) + O * log(q[i-1])``.
    """
    kept = p.count[cand]  # (k,)
    outliers = p.total - kept
    last = p.h[cand - 1]  # (k,)
    folded = last + outliers
    plogp = p.hlogh[cand] - torch.xlogy(last, last) + torch.xlogy(folded, folded)
    mass_log_q, q_last = _sum_mass_log_q(p, cand, levels, variant)
    q_last = torch.where(last > 0, q_last, 0.0)  # Q is empty where bins[i-1] is
    plogq = mass_log_q + torch.xlogy(outliers, q_last)
    kl = (plogp - plogq) / p.total - torch.log(p.total) + torch.log(kept)
    return torch.where((kept > 0) & (p.total > 0), kl, torch.nan)


def _kl_exact(p: _Prefix, cand: Tensor, levels: int, variant: str) -> Tensor:
    """KL(P || Q) of candidates (s,) from explicit P and Q (s, n), term by term like
    ``scipy.stats.entropy``: ``sum p log(p / q)`` over normalized P and Q."""
    b = _boundaries(cand, levels, variant)  # (s, L+1)
    mass, nonempty = _level_stats(p, b)  # (s, L)
    n = p.h.numel()
    j = torch.arange(n, device=cand.device)  # (n,)
    inside = j[None, :] < cand[:, None]  # (s, n)
    edges = b[:, 1:].contiguous()  # (s, L)
    level = torch.searchsorted(edges, j.expand(cand.numel(), n).contiguous(), right=True)  # (s, n)
    q_level = mass / nonempty.clamp(min=1)  # (s, L)
    q_level = torch.cat([q_level, q_level.new_zeros(cand.numel(), 1)], dim=1)  # (s, L+1)
    q = torch.where(inside & (p.h > 0), q_level.gather(1, level), 0.0)  # (s, n)
    outliers = (p.total - p.count[cand])[:, None]  # (s, 1)
    pk = torch.where(inside, p.h, 0.0) + torch.where(
        j == (cand - 1)[:, None], outliers, 0.0
    )  # (s, n)
    pk = pk / pk.sum(dim=1, keepdim=True)
    q_sum = q.sum(dim=1, keepdim=True)  # (s, 1)
    qk = q / q_sum
    inf = torch.full_like(pk, torch.inf)
    terms = torch.where(pk > 0, torch.where(qk > 0, pk * torch.log(pk / qk), inf), 0.0)
    return terms.sum(dim=1)

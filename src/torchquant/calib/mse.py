"""MSE calibration: the clipping range that minimises the expected quantization error.

The observed values are summarised by a streaming histogram; each bin stands for its count
of values at the bin centre (NVIDIA pytorch-quantization / TensorRT Model Optimizer
"modelopt" ``calib/histogram.py`` ``_compute_amax_mse``). For a candidate range the error is
``sum_j counts_j * (fq(centre_j) - centre_j)^2 / sum_j counts_j``, where ``fq`` is the
fake quantization on the spec's grid with ``qparams_from_range(candidate)`` (so clipping
error and rounding error are both counted, ``round(x / s)`` half to even). Every candidate
is evaluated at once (vectorized, in chunks of bounded size) and the first minimum wins.

Candidates:

- symmetric specs: ``T`` = the centre of bin ``i`` of the ``|x|`` histogram for
  ``i = start_bin, start_bin + stride, ... < n`` (modelopt's candidates, default
  ``start_bin=128``, ``stride=1``); the error is measured on the grid's positive side
  (``|x|`` has no sign), which is exact for narrow ranges and counts the negative tail's
  clipping at ``T`` rather than at ``T * 2^(b-1) / (2^(b-1) - 1)`` otherwise.
- affine specs: on the signed histogram over ``[lo, hi]``, with ``L = min(lo, 0)`` and
  ``H = max(hi, 0)``: ``search="scale"`` (default) tries ``[a L, a H]`` for
  ``a = (i + 1) / n``, ``i`` as above (a 1-D family that ends at the full range);
  ``search="grid"`` tries every pair ``(a_i L, a_k H)`` of ``grid_points`` fractions
  spread evenly over the same ``a`` values (both bounds chosen independently).

Source: ../shared/specs/algorithms.md sections 1 and 2.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from torchquant.calib._base import register_calibrator
from torchquant.calib._hist_base import HistogramCalibrator
from torchquant.errors import ConfigError
from torchquant.quant.affine import qparams_from_range
from torchquant.quant.spec import QuantSpec

__all__ = ["MseCalibrator", "histogram_mse"]

Search = Literal["scale", "grid"]

# Largest (candidates x bins) block evaluated at once: bounds the search's memory
# (2^22 float64 = 32 MiB) whatever the number of candidates.
_BLOCK = 1 << 22


def histogram_mse(
    centres: Tensor, counts: Tensor, lo: Tensor, hi: Tensor, spec: QuantSpec
) -> Tensor:
    """Expected squared quantization error of a histogram for each candidate range.

    Args:
        centres: (n,) bin centres, in the data's units.
        counts: (n,) bin counts (any non-negative weights).
        lo, hi: (K,) candidate ranges, turned into grids by `qparams_from_range`.
        spec: the grid (per-tensor; ``spec.axis`` is ignored).

    Returns:
        (K,) float64 mean squared error in squared data units, weighted by ``counts``.
    """
    scale, zero_point = qparams_from_range(lo, hi, spec.with_(axis=None))  # (K,), (K,)
    centres = centres.to(torch.float64)
    weights = counts.to(torch.float64) / counts.to(torch.float64).sum()  # (n,)
    scale = scale.to(centres.device, torch.float64)
    zero_point = zero_point.to(centres.device, torch.float64)
    # clamp(round(c / s) + z, qmin, qmax) - z == clamp(round(c / s), qmin - z, qmax - z)
    # for integer z: the shift is folded into the bounds to save two passes.
    low = spec.qmin - zero_point  # (K,)
    high = spec.qmax - zero_point  # (K,)
    chunk = max(1, _BLOCK // max(centres.numel(), 1))
    out = []
    for start in range(0, scale.numel(), chunk):
        s = scale[start : start + chunk, None]  # (k, 1)
        err = torch.div(centres, s).round_()  # (k, n) levels
        err.clamp_(low[start : start + chunk, None], high[start : start + chunk, None])
        err.mul_(s).sub_(centres).square_()  # (k, n) squared error
        out.append(err @ weights)  # (k,)
    return torch.cat(out)


@register_calibrator("mse")
class MseCalibrator(HistogramCalibrator):
    """Range with the least expected quantization MSE over a histogram (per tensor).

    Args:
        spec: the target grid.
        num_bins: histogram bins (initial count for the growing ``|x|`` histogram).
        start_bin: first candidate bin (clamped to the histogram's last bin); default 128.
        stride: step between candidate bins, >= 1.
        search: affine specs only: ``"scale"`` (1-D) or ``"grid"`` (2-D); see the module doc.
        grid_points: fractions per bound for ``search="grid"`` (``grid_points^2`` pairs).
    """

    supports_per_channel = False

    def __init__(
        self,
        spec: QuantSpec,
        *,
        tensor_name: str = "tensor",
        num_bins: int = 2048,
        start_bin: int = 128,
        stride: int = 1,
        search: Search = "scale",
        grid_points: int = 64,
    ) -> None:
        super().__init__(spec, tensor_name=tensor_name, num_bins=num_bins)
        for key, value, least in (
            ("start_bin", start_bin, 0),
            ("stride", stride, 1),
            ("grid_points", grid_points, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(
                    f"tensor {tensor_name!r}: {key} must be an int >= {least}, got {value!r}"
                )
        if search not in ("scale", "grid"):
            raise ConfigError(
                f"tensor {tensor_name!r}: search must be 'scale' or 'grid', got {search!r}"
            )
        self.start_bin = start_bin
        self.stride = stride
        self.search: Search = search
        self.grid_points = grid_points

    def candidate_bins(self, n: int, device: torch.device) -> Tensor:
        """Indices (K,) of the candidate bins of an ``n``-bin histogram."""
        start = min(self.start_bin, n - 1)
        return torch.arange(start, n, self.stride, device=device)

    def candidates(self) -> tuple[Tensor, Tensor]:
        """Every candidate range ``(lo, hi)``, (K,) float64 each, in search order.

        Only zeros seen (the ``|x|`` histogram has no bins yet): the one candidate ``(0, 0)``.
        """
        counts = self.hist.counts
        if counts is None:
            zero = torch.zeros(1, dtype=torch.float64, device=self._device)
            return zero, zero
        edges = self.hist.edges().to(torch.float64)  # (n + 1,)
        n = counts.numel()
        idx = self.candidate_bins(n, counts.device)  # (K,)
        if self.spec.symmetric:
            threshold = (edges[idx] + edges[idx + 1]) / 2
            return -threshold, threshold
        low = edges[0].clamp(max=0.0)
        high = edges[-1].clamp(min=0.0)
        frac = (idx + 1).to(torch.float64) / n  # (K,)
        if self.search == "scale":
            return frac * low, frac * high
        pick = torch.linspace(0, frac.numel() - 1, min(self.grid_points, frac.numel()))
        frac = frac[pick.round().long().unique().to(frac.device)]  # (G,)
        lo_grid, hi_grid = torch.meshgrid(frac * low, frac * high, indexing="ij")  # (G, G)
        return lo_grid.reshape(-1), hi_grid.reshape(-1)

    def errors(self) -> Tensor:
        """Expected squared error (K,) of every range in `candidates`, in data units^2."""
        counts = self.hist.counts
        if counts is None:
            return torch.zeros(1, dtype=torch.float64, device=self._device)
        edges = self.hist.edges().to(torch.float64)
        centres = (edges[:-1] + edges[1:]) / 2  # (n,)
        lo, hi = self.candidates()
        return histogram_mse(centres, counts, lo, hi, self.spec)

    def compute_range(self) -> tuple[Tensor, Tensor]:
        lo, hi = self.candidates()
        best = torch.argmin(self.errors())
        return lo[best].to(torch.float32), hi[best].to(torch.float32)

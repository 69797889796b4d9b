"""Percentile calibration from a streaming histogram.

Symmetric specs clip at ``T``, the ``percentile``-th percentile of ``|x|``, read from an
`AbsHistogram` (fixed bin width, grows by appending bins). Affine specs clip at the
``(100 - percentile)``-th and ``percentile``-th percentiles of ``x``, read from a signed
`RangeHistogram`. Memory is the histogram's, whatever the number of batches.

The bin search follows NVIDIA pytorch-quantization / TensorRT Model Optimizer ("modelopt")
``calib/histogram.py`` ``_compute_amax_percentile``: ``cdf = cumsum(counts / total)``,
``idx = searchsorted(cdf, percentile / 100)`` (the first bin whose cumulative fraction
reaches the target). modelopt then returns that bin's left edge
(``interpolation="edge"``, bit-compatible choice of bin). The default
``interpolation="linear"`` assumes the values are spread evenly inside the bin and moves
from the left edge by the fraction of the bin's count still needed to reach the target, so
the result is within one bin width of the exact (sorted-data) percentile. The lower bound
of affine specs is the same search on the mirrored histogram (``-x``), so ``"edge"`` gives
the right edge of its bin there: both bounds move inwards.
Source: ../shared/specs/algorithms.md sections 1 and 2.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from torchquant.calib._base import register_calibrator
from torchquant.calib._hist_base import HistogramCalibrator
from torchquant.errors import ConfigError
from torchquant.quant.spec import QuantSpec

__all__ = ["PercentileCalibrator", "histogram_percentile"]

Interpolation = Literal["linear", "edge"]


def histogram_percentile(
    counts: Tensor, edges: Tensor, percentile: float, interpolation: Interpolation = "linear"
) -> Tensor:
    """The ``percentile``-th percentile (in (0, 100]) of the data a histogram describes.

    Args:
        counts: (n,) non-negative bin counts with a positive sum.
        edges: (n + 1,) increasing bin edges, in the data's units.
        percentile: in (0, 100].
        interpolation: ``"edge"``: left edge of the bin where the cumulative fraction
            reaches ``percentile / 100`` (modelopt, same arithmetic); ``"linear"``: linear
            inside the bin where the cumulative count reaches ``percentile / 100 * total``.

    Returns:
        float64 scalar on ``counts``' device.
    """
    counts = counts.to(torch.float64)
    edges = edges.to(torch.float64)
    n = counts.numel()
    if interpolation == "edge":
        cdf = torch.cumsum(counts / counts.sum(), dim=0)  # (n,)
        target = torch.tensor([percentile / 100.0], dtype=torch.float64, device=counts.device)
        # cumsum rounding can leave cdf[-1] just below 1: the last bin then holds the target.
        idx = torch.searchsorted(cdf, target).clamp(max=n - 1)  # (1,)
        return edges[idx].reshape(())
    cum = torch.cumsum(counts, dim=0)  # (n,) exact for integer counts below 2^53
    total = cum[-1:]  # (1,)
    # The count to reach, e.g. 99990 of 100000 for 99.99: a relative slack of 1e-12 keeps the
    # rounding of percentile / 100 from pushing an exact count into the next non-empty bin.
    target = torch.clamp(total * (percentile / 100.0) - total * 1e-12, min=0.0)  # (1,)
    idx = torch.searchsorted(cum, target).clamp(max=n - 1)  # (1,)
    before = torch.where(idx > 0, cum[(idx - 1).clamp(min=0)], torch.zeros_like(target))
    in_bin = counts[idx]
    frac = torch.where(in_bin > 0, (target - before) / in_bin, torch.ones_like(target))
    left = edges[idx]
    return (left + frac.clamp(0.0, 1.0) * (edges[idx + 1] - left)).reshape(())


@register_calibrator("percentile")
class PercentileCalibrator(HistogramCalibrator):
    """Clip at a percentile of the observed values (per tensor).

    Args:
        spec: the target grid; symmetric specs use ``[-T, T]`` with ``T`` the percentile of
            ``|x|`` (the sign of the dominant side is not kept, so ``scale_rule="amct"``
            divides by ``2^(b-1) - 1``); affine specs use the two-sided percentiles.
        percentile: in (0, 100]; default 99.99 (modelopt's default).
        num_bins: histogram bins (initial count for the growing ``|x|`` histogram).
        interpolation: ``"linear"`` (default) or ``"edge"`` (modelopt); see the module doc.
    """

    supports_per_channel = False

    def __init__(
        self,
        spec: QuantSpec,
        *,
        tensor_name: str = "tensor",
        percentile: float = 99.99,
        num_bins: int = 2048,
        interpolation: Interpolation = "linear",
    ) -> None:
        super().__init__(spec, tensor_name=tensor_name, num_bins=num_bins)
        if not 0.0 < float(percentile) <= 100.0:
            raise ConfigError(
                f"tensor {tensor_name!r}: percentile must be in (0, 100], got {percentile!r}"
            )
        if interpolation not in ("linear", "edge"):
            raise ConfigError(
                f"tensor {tensor_name!r}: interpolation must be 'linear' or 'edge', "
                f"got {interpolation!r}"
            )
        self.percentile = float(percentile)
        self.interpolation: Interpolation = interpolation

    def _zero_range(self) -> tuple[Tensor, Tensor] | None:
        """``(0, 0)`` when only zeros were seen (the ``|x|`` histogram has no bins yet)."""
        if self.hist.counts is not None:
            return None
        zero = torch.zeros((), dtype=torch.float32, device=self._device)
        return zero, zero

    def compute_range(self) -> tuple[Tensor, Tensor]:
        zero = self._zero_range()
        if zero is not None:
            return zero
        counts = self.hist.counts
        assert counts is not None
        edges = self.hist.edges()
        if self.spec.symmetric:
            threshold = histogram_percentile(counts, edges, self.percentile, self.interpolation)
            threshold = threshold.to(torch.float32)
            return -threshold, threshold
        hi = histogram_percentile(counts, edges, self.percentile, self.interpolation)
        # The lower percentile is the upper one of the mirrored data (-x): same search, and
        # the target stays > 0, so the bin found always holds counts.
        neg_lo = histogram_percentile(
            counts.flip(0), -edges.flip(0), self.percentile, self.interpolation
        )
        return (-neg_lo).to(torch.float32), hi.to(torch.float32)

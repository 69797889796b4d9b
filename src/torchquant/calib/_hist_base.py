"""Shared state of the calibrators that search a histogram of the data (percentile, MSE):
a growing ``|x|`` histogram for symmetric grids, a signed range histogram for affine ones."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchquant.calib._base import Calibrator
from torchquant.calib._histogram import AbsHistogram
from torchquant.calib._range_histogram import RangeHistogram
from torchquant.errors import ConfigError
from torchquant.quant.spec import QuantSpec

__all__ = ["HistogramCalibrator"]


class HistogramCalibrator(Calibrator):
    """A calibrator whose whole state is one histogram of ``num_bins`` bins
    (`AbsHistogram` for symmetric specs, `RangeHistogram` for affine ones)."""

    def __init__(self, spec: QuantSpec, *, tensor_name: str = "tensor", num_bins: int) -> None:
        super().__init__(spec, tensor_name=tensor_name)
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ConfigError(
                f"tensor {tensor_name!r}: num_bins must be a positive int, got {num_bins!r}"
            )
        self.num_bins = num_bins
        self.hist: AbsHistogram | RangeHistogram = self._new_histogram()
        # Where an all-zero |x| histogram (no bins yet) puts its zero results.
        self._device = torch.device("cpu")

    def _new_histogram(self) -> AbsHistogram | RangeHistogram:
        if self.spec.symmetric:
            return AbsHistogram(self.num_bins, growth="append")
        return RangeHistogram(self.num_bins)

    def _observe(self, x: Tensor) -> None:
        self._device = x.device
        self.hist.add(x)

    def _merge(self, other: Any) -> None:
        self.hist.merge(other.hist)

    def _state(self) -> dict[str, Any]:
        return {"hist": self.hist.state_dict()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.hist = self._new_histogram()
        self.hist.load_state_dict(state["hist"])

    def _reset(self) -> None:
        self.hist = self._new_histogram()

"""Min/max calibration, per tensor or per channel, and its moving-average variant for QAT.

``minmax`` is Ascend AMCT's ARQ for weights (plain min/max, no search despite the name;
use ``QuantSpec(scale_rule="amct")`` for AMCT's /127-or-/128 symmetric rule) and PyTorch's
``MinMaxObserver`` / ``PerChannelMinMaxObserver``. ``ema_minmax`` follows PyTorch's
``MovingAverageMinMaxObserver``: ``m <- m + c * (batch_m - m)``, first batch taken as is.
Source: ../shared/specs/algorithms.md sections 1 and 5.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchquant.calib._base import Calibrator, register_calibrator
from torchquant.errors import ConfigError
from torchquant.quant.spec import QuantSpec

__all__ = ["EmaMinMaxCalibrator", "MinMaxCalibrator", "batch_min_max"]


def batch_min_max(x: Tensor, axis: int | None) -> tuple[Tensor, Tensor]:
    """Min and max of ``x`` overall (scalars) or per slice along ``axis`` ((C,) each)."""
    if axis is None:
        lo, hi = torch.aminmax(x)
        return lo, hi
    flat = x.movedim(axis, 0).reshape(x.shape[axis], -1)  # (C, rest)
    lo, hi = torch.aminmax(flat, dim=1)
    return lo, hi


@register_calibrator("minmax")
class MinMaxCalibrator(Calibrator):
    """Running minimum and maximum over all batches (ARQ for weights)."""

    supports_per_channel = True

    def __init__(self, spec: QuantSpec, *, tensor_name: str = "tensor") -> None:
        super().__init__(spec, tensor_name=tensor_name)
        self.min_val: Tensor | None = None
        self.max_val: Tensor | None = None

    def _observe(self, x: Tensor) -> None:
        lo, hi = batch_min_max(x, self.spec.axis)
        self._update(lo, hi)

    def _update(self, lo: Tensor, hi: Tensor) -> None:
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = lo.clone(), hi.clone()
            return
        if lo.shape != self.min_val.shape:
            raise ConfigError(
                f"tensor {self.tensor_name!r}: channel count changed from {tuple(self.min_val.shape)} to {tuple(lo.shape)}"
            )
        self.min_val = torch.minimum(self.min_val, lo)
        self.max_val = torch.maximum(self.max_val, hi)

    def _merge(self, other: Any) -> None:
        self._update(other.min_val.to(self.min_val), other.max_val.to(self.max_val))

    def compute_range(self) -> tuple[Tensor, Tensor]:
        assert self.min_val is not None and self.max_val is not None
        return self.min_val, self.max_val

    def _state(self) -> dict[str, Any]:
        return {"min_val": self.min_val, "max_val": self.max_val}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.min_val, self.max_val = state["min_val"], state["max_val"]

    def _reset(self) -> None:
        self.min_val = self.max_val = None


@register_calibrator("ema_minmax")
class EmaMinMaxCalibrator(MinMaxCalibrator):
    """Exponential moving average of per-batch min and max (for QAT activations).

    Args:
        averaging_constant: weight ``c`` of the newest batch, in (0, 1]; PyTorch's default 0.01.
    """

    def __init__(
        self, spec: QuantSpec, *, tensor_name: str = "tensor", averaging_constant: float = 0.01
    ) -> None:
        if not 0.0 < averaging_constant <= 1.0:
            raise ConfigError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        super().__init__(spec, tensor_name=tensor_name)
        self.averaging_constant = averaging_constant

    def _update(self, lo: Tensor, hi: Tensor) -> None:
        if self.min_val is None or self.max_val is None:
            self.min_val, self.max_val = lo.clone(), hi.clone()
            return
        c = self.averaging_constant
        self.min_val = self.min_val + c * (lo - self.min_val)
        self.max_val = self.max_val + c * (hi - self.max_val)

    def _merge(self, other: Any) -> None:
        # Averages of equal weight: the merged EMA is the mean of the two states,
        # weighted by the number of batches each saw.
        n_self, n_other = self.num_batches, other.num_batches
        w = n_other / (n_self + n_other)
        self.min_val = self.min_val + w * (other.min_val.to(self.min_val) - self.min_val)
        self.max_val = self.max_val + w * (other.max_val.to(self.max_val) - self.max_val)

"""`QuantSpec`: what an integer grid looks like (bits, sign, symmetry, range, granularity).

Source: ../shared/specs/algorithms.md section 1 (affine quantization), TensorRT's narrow
int8 weight range [-127, 127], and AMCT's symmetric rule (section 5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from torchquant.errors import ConfigError

__all__ = ["QuantSpec"]

ScaleRule = Literal["amax", "amct"]


@dataclass(frozen=True)
class QuantSpec:
    """The integer grid a tensor is quantized to.

    Attributes:
        bits: integer width, 2..16.
        signed: grid is ``[-2^(b-1), 2^(b-1)-1]`` when True, ``[0, 2^b-1]`` when False.
        symmetric: zero point fixed at the grid centre (0 for signed grids, ``2^(b-1)`` for
            unsigned ones, as PyTorch does); otherwise an affine zero point is chosen so
            that the range ``[min(lo, 0), max(hi, 0)]`` fits the grid.
        narrow_range: drop the lowest level, e.g. int8 ``[-127, 127]`` (TensorRT weights).
        axis: ``None`` for one scale per tensor, else the channel axis of per-channel
            quantization (0 for Conv/Linear weights, 1 for ConvTranspose weights).
        scale_rule: symmetric scale from the threshold ``T = max(|lo|, |hi|)``.
            ``"amax"``: ``s = T / (2^(b-1) - 1)`` (TensorRT, PyTorch).
            ``"amct"``: Ascend AMCT's rule, divide by ``2^(b-1)`` instead when the negative
            side dominates (``|hi| < |lo|``), so that level ``-2^(b-1)`` is used.
    """

    bits: int = 8
    signed: bool = True
    symmetric: bool = True
    narrow_range: bool = False
    axis: int | None = None
    scale_rule: ScaleRule = "amax"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.bits, int)
            or isinstance(self.bits, bool)
            or not 2 <= self.bits <= 16
        ):
            raise ConfigError(f"QuantSpec.bits must be an int in 2..16, got {self.bits!r}")
        if self.axis is not None and (
            not isinstance(self.axis, int) or isinstance(self.axis, bool)
        ):
            raise ConfigError(f"QuantSpec.axis must be None or an int, got {self.axis!r}")
        if self.scale_rule not in ("amax", "amct"):
            raise ConfigError(
                f"QuantSpec.scale_rule must be 'amax' or 'amct', got {self.scale_rule!r}"
            )
        if self.narrow_range and not self.signed:
            raise ConfigError("QuantSpec.narrow_range applies to signed grids only")

    @property
    def qmin(self) -> int:
        """Lowest integer level."""
        if not self.signed:
            return 0
        low = -(2 ** (self.bits - 1))
        return low + 1 if self.narrow_range else low

    @property
    def qmax(self) -> int:
        """Highest integer level."""
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def per_channel(self) -> bool:
        """True when there is one scale per slice along ``axis``."""
        return self.axis is not None

    def with_(self, **changes: Any) -> QuantSpec:
        """A copy with some fields changed (validated again)."""
        return QuantSpec(**{**asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON recipes."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantSpec:
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown QuantSpec field(s): {sorted(unknown)}")
        return cls(**data)

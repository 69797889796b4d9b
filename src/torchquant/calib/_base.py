"""The streaming interface every calibrator implements, and the name registry.

A calibrator watches one tensor (an activation or a weight) over calibration batches and
turns what it saw into a clipping range ``[lo, hi]`` and then into ``(scale, zero_point)``
for a `QuantSpec`::

    cal = create_calibrator("entropy", QuantSpec(), tensor_name="conv1.input")
    for batch in data:
        cal.observe(activation)          # per batch, bounded memory
    cal.merge(cal_from_other_process)    # optional: combine states exactly
    scale, zero_point = cal.compute()

State lives on the device of the first observed tensor. `state_dict()` holds tensors and
plain Python values only, so it can be saved, sent between processes and loaded again.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from torchquant.errors import ConfigError, EmptyCalibrationError
from torchquant.quant.affine import check_finite, qparams_from_range
from torchquant.quant.spec import QuantSpec

__all__ = ["Calibrator", "create_calibrator", "list_calibrators", "register_calibrator"]

_REGISTRY: dict[str, type[Calibrator]] = {}
_C = TypeVar("_C", bound="type[Calibrator]")


def register_calibrator(name: str) -> Callable[[_C], _C]:
    """Class decorator: make a calibrator creatable by ``name``."""

    def decorate(cls: _C) -> _C:
        if name in _REGISTRY:
            raise ConfigError(f"calibrator name {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_calibrators() -> list[str]:
    """Registered calibrator names, sorted."""
    return sorted(_REGISTRY)


def create_calibrator(
    name: str, spec: QuantSpec, *, tensor_name: str = "tensor", **options: Any
) -> Calibrator:
    """Instantiate the calibrator registered as ``name`` (options go to its constructor)."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown calibrator {name!r}; known: {list_calibrators()}") from None
    return cls(spec, tensor_name=tensor_name, **options)


class Calibrator(abc.ABC):
    """Base of all calibrators: validation, bookkeeping and range -> qparams.

    Subclasses implement `_observe`, `_merge`, `compute_range`, `_state` and `_load_state`.
    """

    name: ClassVar[str] = ""
    supports_per_channel: ClassVar[bool] = False

    def __init__(self, spec: QuantSpec, *, tensor_name: str = "tensor") -> None:
        if spec.per_channel and not self.supports_per_channel:
            raise ConfigError(
                f"calibrator {type(self).__name__} is per-tensor only; got per-channel spec "
                f"(axis={spec.axis}) for tensor {tensor_name!r}"
            )
        self.spec = spec
        self.tensor_name = tensor_name
        self.num_batches = 0
        # (min, max) 0-dim tensors of the batch inside `_observe` (None for integer input).
        self._batch_bounds: tuple[Tensor, Tensor] | None = None

    # -- public streaming API --------------------------------------------------------
    def observe(self, x: Tensor) -> None:
        """Record one batch of ``x`` (any shape; per-channel specs need ``x.dim() > axis``)."""
        if not isinstance(x, Tensor):
            raise ConfigError(
                f"tensor {self.tensor_name!r}: observe() takes a torch.Tensor, got {type(x).__name__}"
            )
        if x.is_floating_point() and x.dtype != torch.float32:
            # Validate what is observed: a float64 1e39 becomes inf in float32.
            x = x.to(torch.float32)
        bounds = check_finite(x, self.tensor_name)
        if self.spec.per_channel:
            axis = self.spec.axis
            assert axis is not None
            if not -x.dim() <= axis < x.dim():
                raise ConfigError(
                    f"tensor {self.tensor_name!r}: channel axis {axis} is out of range for shape {tuple(x.shape)}"
                )
        # The finiteness check's (min, max), for `_observe` to reuse instead of a second pass.
        self._batch_bounds = bounds
        try:
            with torch.no_grad():
                self._observe(x.detach().to(torch.float32))
        finally:
            self._batch_bounds = None
        self.num_batches += 1

    def merge(self, other: Calibrator) -> None:
        """Fold ``other``'s observations into this calibrator (same class and spec)."""
        if type(other) is not type(self):
            raise ConfigError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other.spec != self.spec:
            raise ConfigError(
                f"cannot merge calibrators with different specs: {other.spec} vs {self.spec}"
            )
        if other.num_batches == 0:
            return
        if self.num_batches == 0:
            self.load_state_dict(other.state_dict())
            return
        self._merge(other)
        self.num_batches += other.num_batches

    def compute(self) -> tuple[Tensor, Tensor]:
        """``(scale float32, zero_point int32)``, scalars or (C,) per channel."""
        lo, hi = self.range()
        return qparams_from_range(lo, hi, self.spec)

    def range(self) -> tuple[Tensor, Tensor]:
        """The chosen clipping range ``(lo, hi)`` in the tensor's units."""
        if self.num_batches == 0:
            raise EmptyCalibrationError(
                f"{type(self).__name__} for tensor {self.tensor_name!r}: compute() before any observe()"
            )
        return self.compute_range()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume or merge: tensors and plain values."""
        return {"num_batches": self.num_batches, **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict` output."""
        state = dict(state)
        self.num_batches = int(state.pop("num_batches"))
        self._load_state(state)

    def reset(self) -> None:
        """Forget everything observed."""
        self.num_batches = 0
        self._reset()

    # -- what each algorithm provides ------------------------------------------------
    @abc.abstractmethod
    def _observe(self, x: Tensor) -> None:
        """Update the state with a validated float32 batch; ``self._batch_bounds`` holds its
        ``(min, max)`` when the input was floating point."""

    @abc.abstractmethod
    def _merge(self, other: Any) -> None:
        """Combine with another non-empty calibrator of the same class and spec."""

    @abc.abstractmethod
    def compute_range(self) -> tuple[Tensor, Tensor]:
        """Clip range from the state (called only after at least one batch)."""

    @abc.abstractmethod
    def _state(self) -> dict[str, Any]:
        """Algorithm state for `state_dict`."""

    @abc.abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Inverse of `_state`."""

    @abc.abstractmethod
    def _reset(self) -> None:
        """Clear the algorithm state."""

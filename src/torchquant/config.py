"""Configs: what to quantize and how, as frozen, validated, dict-serialisable dataclasses,
with presets per deployment backend.

- `QuantizerConfig`: one tensor's grid (`QuantSpec`), calibrator and learning mode.
- `QConfig`: a layer's activation and weight quantizers (PyTorch's ``qconfig`` idea).
- `get_default_qconfig(backend)` / `get_default_qat_qconfig(backend)`: presets for
  ``tensorrt``, ``ascend``, ``onnxruntime`` (alias ``x86``), ``fbgemm`` and ``qnnpack``.

Preset sources: TensorRT explicit quantization (symmetric int8, narrow per-channel weights,
entropy calibration); Ascend AMCT defaults (IFMR asymmetric activations, ARQ per-channel
weights with AMCT's symmetric rule, ULQ for QAT); PyTorch's ``get_default_qconfig`` for
fbgemm (activations quint8 with ``reduce_range``, i.e. 7 bits) and qnnpack (per-tensor
weights); ONNX Runtime's ``quantize_static`` defaults (uint8 activations, int8 weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from torchquant.errors import ConfigError
from torchquant.quant.spec import QuantSpec

__all__ = [
    "BACKENDS",
    "QConfig",
    "QuantizerConfig",
    "get_default_qat_qconfig",
    "get_default_qconfig",
]

Learning = Literal["none", "lsq", "ulq"]
BACKENDS = ("tensorrt", "ascend", "onnxruntime", "x86", "fbgemm", "qnnpack")


@dataclass(frozen=True)
class QuantizerConfig:
    """How one tensor is quantized.

    Attributes:
        spec: the integer grid.
        calibrator: registered calibrator name (`torchquant.calib.list_calibrators`).
        calibrator_options: keyword options for that calibrator.
        learning: ``"none"`` (scale from the calibrator), ``"lsq"`` (learnable scale,
            Esser et al. 2020) or ``"ulq"`` (learnable clip range, Ascend AMCT), for QAT.
        freeze_observer_after: in QAT, stop observing after this many training steps and
            keep the qparams (PyTorch's recipe freezes observers after a few epochs);
            ``None`` never freezes.
        refresh_every: in QAT, calibrators without a streaming min/max form (histogram
            ones: entropy, hfmg, percentile, mse, ifmr) observe every step but recompute the
            qparams only every this many steps (and on the first), since each recompute
            runs their range search.
        check_every: in QAT on an accelerator, check the range for NaN/Inf every this many
            steps (each check is a host-device sync); on CPU it is checked every step.
    """

    spec: QuantSpec = field(default_factory=QuantSpec)
    calibrator: str = "minmax"
    calibrator_options: Mapping[str, Any] = field(default_factory=dict)
    learning: Learning = "none"
    freeze_observer_after: int | None = None
    refresh_every: int = 100
    check_every: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.spec, QuantSpec):
            raise ConfigError(
                f"QuantizerConfig.spec must be a QuantSpec, got {type(self.spec).__name__}"
            )
        if self.learning not in ("none", "lsq", "ulq"):
            raise ConfigError(
                f"QuantizerConfig.learning must be none/lsq/ulq, got {self.learning!r}"
            )
        if self.learning == "ulq" and self.spec.per_channel:
            raise ConfigError("ULQ (learnable clip range) is per-tensor only")
        after = self.freeze_observer_after
        if after is not None and (not isinstance(after, int) or after < 1):
            raise ConfigError(
                f"QuantizerConfig.freeze_observer_after must be None or an int >= 1, got {after!r}"
            )
        for knob in ("refresh_every", "check_every"):
            value = getattr(self, knob)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"QuantizerConfig.{knob} must be an int >= 1, got {value!r}")

    def with_(self, **changes: Any) -> QuantizerConfig:
        """A copy with fields changed; ``spec`` may be given as a dict of spec changes."""
        spec = changes.pop("spec", self.spec)
        if isinstance(spec, Mapping):
            spec = self.spec.with_(**spec)
        return replace(self, spec=spec, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON recipes."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["spec"] = self.spec.to_dict()
        data["calibrator_options"] = dict(self.calibrator_options)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantizerConfig:
        """Inverse of `to_dict`."""
        data = dict(data)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown QuantizerConfig field(s): {sorted(unknown)}")
        spec = QuantSpec.from_dict(data.pop("spec", {}))
        return cls(spec=spec, **data)


@dataclass(frozen=True)
class QConfig:
    """A layer's quantizers: its input activation and its weight (``None``: left float)."""

    activation: QuantizerConfig | None = field(default_factory=QuantizerConfig)
    weight: QuantizerConfig | None = field(
        default_factory=lambda: QuantizerConfig(QuantSpec(narrow_range=True, axis=0))
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, for JSON recipes."""
        return {
            "activation": None if self.activation is None else self.activation.to_dict(),
            "weight": None if self.weight is None else self.weight.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QConfig:
        """Inverse of `to_dict`."""
        unknown = set(data) - {"activation", "weight"}
        if unknown:
            raise ConfigError(f"unknown QConfig field(s): {sorted(unknown)}")
        act, wt = data.get("activation"), data.get("weight")
        return cls(
            activation=None if act is None else QuantizerConfig.from_dict(act),
            weight=None if wt is None else QuantizerConfig.from_dict(wt),
        )


def _backend(name: str) -> str:
    key = name.lower()
    if key not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; known: {list(BACKENDS)}")
    return "onnxruntime" if key == "x86" else key


def get_default_qconfig(backend: str = "tensorrt") -> QConfig:
    """Post-training (calibration) preset for a deployment backend."""
    key = _backend(backend)
    if key == "tensorrt":
        return QConfig(
            activation=QuantizerConfig(QuantSpec(), calibrator="entropy"),
            weight=QuantizerConfig(QuantSpec(narrow_range=True, axis=0), calibrator="minmax"),
        )
    if key == "ascend":
        return QConfig(
            activation=QuantizerConfig(QuantSpec(symmetric=False), calibrator="ifmr"),
            weight=QuantizerConfig(QuantSpec(axis=0, scale_rule="amct"), calibrator="minmax"),
        )
    if key == "onnxruntime":
        return QConfig(
            activation=QuantizerConfig(
                QuantSpec(signed=False, symmetric=False), calibrator="minmax"
            ),
            weight=QuantizerConfig(QuantSpec(axis=0), calibrator="minmax"),
        )
    if key == "fbgemm":
        # reduce_range: 7-bit activations avoid the int16 overflow of fbgemm's AVX2 kernels.
        return QConfig(
            activation=QuantizerConfig(
                QuantSpec(bits=7, signed=False, symmetric=False), calibrator="hfmg"
            ),
            weight=QuantizerConfig(QuantSpec(axis=0), calibrator="minmax"),
        )
    return QConfig(  # qnnpack
        activation=QuantizerConfig(QuantSpec(signed=False, symmetric=False), calibrator="hfmg"),
        weight=QuantizerConfig(QuantSpec(), calibrator="minmax"),
    )


def get_default_qat_qconfig(backend: str = "tensorrt") -> QConfig:
    """Quantization-aware-training preset: moving-average activation ranges (or AMCT's
    learnable ULQ range for ``ascend``), weights re-ranged from min/max at every step."""
    base = get_default_qconfig(backend)
    assert base.activation is not None and base.weight is not None
    if _backend(backend) == "ascend":
        activation = base.activation.with_(learning="ulq")
    else:
        activation = base.activation.with_(calibrator="ema_minmax", calibrator_options={})
    return QConfig(activation=activation, weight=base.weight)

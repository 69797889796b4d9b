"""`Quantizer`: the stateful module that observes a tensor and fake-quantizes it.

One `Quantizer` guards one tensor (a weight, a layer input or output). It owns a calibrator
(`torchquant.calib`) and the qparams (``scale``, ``zero_point``) derived from it, and works
in three modes, like PyTorch's eager-mode ``FakeQuantize`` (torch.ao.quantization):

==================  ==========  ============  ===========================================
mode                observer    fake-quant    forward
==================  ==========  ============  ===========================================
calibration (PTQ)   on          off           observe, return ``x`` unchanged
QAT                 on          on            training: observe, refresh qparams,
                                              fake-quantize; eval: fake-quantize only
quantized/frozen    off         on            fake-quantize with the stored qparams
==================  ==========  ============  ===========================================

QAT hot path. For ``minmax`` / ``ema_minmax`` calibrators a training step costs a handful
of kernels: ``aminmax`` of the batch, an in-place moving-average update of the calibrator's
own ``min_val``/``max_val`` (so the calibrator state stays the truth), the qparams rule of
`qparams_from_range` in a sync-free form, and PyTorch's fused fake-quant kernel. In QAT,
``minmax`` follows the current batch (averaging constant 1): for weights that is AMCT's
ARQ_RETRAIN ("min/max recomputed each step"); a running min/max over changing weights would
only grow. ``torch.fused_moving_avg_obs_fake_quant`` is not used: its qparams follow PyTorch's
``ChooseQuantizationParams`` (e.g. ``amax / 127.5`` for symmetric int8), not torchquant's
`QuantSpec` rules, and on CPU (torch 2.13) it was not faster than the separate kernels.
Histogram calibrators observe every step and recompute qparams every
``config.refresh_every`` steps. ``learning="lsq"`` (Esser et al. 2020) and ``"ulq"`` (Ascend
AMCT) initialise their parameters from the calibrator's range on the first batch, AMCT-style,
then learn them by gradient descent.

NaN/Inf: PTQ observation checks every batch (`Calibrator.observe`). QAT checks the new scale
(non-finite data makes it non-finite) every step on CPU, and every ``config.check_every`` steps
on accelerators, where each check is a host-device sync; the moving average keeps a NaN once
it got in, so the periodic check still sees it. The error names the quantizer.

After `convert`, ``exact_rounding`` makes the fake quantization round ``x / s`` through
`quantize`/`dequantize`, bit for bit what ONNX ``QuantizeLinear``/``DequantizeLinear`` do.

state_dict keys (stable): ``scale``, ``zero_point`` (buffers; ``scale`` is a Parameter for
LSQ), ``clip_min``/``clip_max`` (ULQ Parameters) and ``_extra_state`` (the calibrator's
state_dict, ``has_qparams``, the mode flags, ``exact_rounding`` and the QAT step count).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from torchquant.calib import Calibrator, create_calibrator
from torchquant.calib.minmax import MinMaxCalibrator, batch_min_max
from torchquant.config import QuantizerConfig
from torchquant.errors import ConfigError, NonFiniteError
from torchquant.quant.affine import FLT_EPSILON, dequantize, quantize
from torchquant.quant.fake import fake_quantize, fake_quantize_learnable_range, fake_quantize_lsq
from torchquant.quant.spec import QuantSpec

__all__ = [
    "Quantizer",
    "enable_fake_quant",
    "enable_observer",
    "freeze_observers",
    "iter_quantizers",
    "name_quantizers",
    "set_calibration_mode",
    "set_quantized_mode",
]

# Calibrators whose state is a (moving) min/max that the QAT hot path updates in place.
_STREAMING = ("minmax", "ema_minmax")


class Quantizer(nn.Module):
    """Observe and fake-quantize one tensor on ``config.spec``'s grid.

    Args:
        config: grid, calibrator and learning mode.
        name: the tensor's name for error messages (usually the module's qualified name;
            `name_quantizers` sets it for a whole model).
    """

    scale: Tensor
    zero_point: Tensor

    def __init__(self, config: QuantizerConfig, *, name: str = "") -> None:
        super().__init__()
        self.config = config
        self.spec: QuantSpec = config.spec
        self.calibrator: Calibrator = create_calibrator(
            config.calibrator,
            config.spec,
            tensor_name=name or "tensor",
            **config.calibrator_options,
        )
        self._name = name
        self.observer_enabled = True
        self.fake_quant_enabled = True
        self.has_qparams = False
        # Round x / s with quantize/dequantize like ONNX QuantizeLinear (set by convert),
        # instead of PyTorch's faster x * (1/s) kernels that training uses.
        self.exact_rounding = False
        self.steps = 0  # QAT training steps observed
        spec = config.spec
        self._qmin, self._qmax = spec.qmin, spec.qmax
        # Symmetric zero point: the grid centre (0 signed, 2^(b-1) unsigned); affine: computed.
        self._zp0 = 0 if spec.signed or not spec.symmetric else 2 ** (spec.bits - 1)
        # Divisor of the scale rule (`qparams_from_range`): T / divisor or range / divisor.
        if not spec.symmetric:
            self._divisor = float(spec.qmax - spec.qmin)
        else:
            self._divisor = (
                float(2 ** (spec.bits - 1) - 1) if spec.signed else (spec.qmax - spec.qmin) / 2
            )
        # Per-tensor qparams are 0-dim; per-channel ones start empty and take their size
        # (C,) from the first data (or from a loaded state_dict).
        shape: tuple[int, ...] = (0,) if spec.per_channel else ()
        self.register_buffer("zero_point", torch.full(shape, self._zp0, dtype=torch.int32))
        ones = torch.ones(shape)
        if config.learning == "lsq":
            self.scale = nn.Parameter(ones)
        else:
            self.register_buffer("scale", ones)
        if config.learning == "ulq":
            self.clip_min = nn.Parameter(torch.zeros(()))
            self.clip_max = nn.Parameter(torch.ones(()))
        self._streaming = config.calibrator in _STREAMING and isinstance(
            self.calibrator, MinMaxCalibrator
        )
        # Moving-average weight of the QAT hot path (1: follow the current batch).
        self._momentum = float(getattr(self.calibrator, "averaging_constant", 1.0))

    # -- naming ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The guarded tensor's name, used in error messages."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value
        self.calibrator.tensor_name = value or "tensor"

    def extra_repr(self) -> str:
        mode = f"observer={self.observer_enabled}, fake_quant={self.fake_quant_enabled}"
        return (
            f"name={self.name!r}, calibrator={self.config.calibrator!r}, {mode}, spec={self.spec}"
        )

    # -- modes -----------------------------------------------------------------------
    def enable_observer(self, enabled: bool = True) -> Quantizer:
        """Turn observation on or off; returns self."""
        self.observer_enabled = enabled
        return self

    def enable_fake_quant(self, enabled: bool = True) -> Quantizer:
        """Turn fake quantization on or off; returns self."""
        self.fake_quant_enabled = enabled
        return self

    def freeze(self) -> None:
        """Stop observing and keep the qparams (computing them first if data was seen)."""
        if not self.has_qparams and self.calibrator.num_batches > 0:
            self.compute_qparams()
        self.sync_qparams()
        self.observer_enabled = False

    # -- qparams ---------------------------------------------------------------------
    def compute_qparams(self) -> None:
        """Calibrator -> ``scale``/``zero_point`` (after PTQ calibration); for LSQ and ULQ,
        (re)initialise the learned parameters from the calibrator's range.

        Raises `EmptyCalibrationError` naming the tensor if nothing was observed.
        """
        with torch.no_grad():
            if self.config.learning == "ulq":
                lo, hi = self.calibrator.range()
                if self.spec.symmetric:
                    hi = torch.maximum(lo.abs(), hi.abs())
                self.clip_min.copy_(lo.reshape(()))
                self.clip_max.copy_(hi.reshape(()))
                self.sync_qparams()
            else:
                scale, zero_point = self.calibrator.compute()
                self._set_qparams(scale, zero_point)
        self.has_qparams = True

    def sync_qparams(self) -> None:
        """ULQ: write the qparams implied by the learned clip range into ``scale`` and
        ``zero_point`` (what export and `convert` read). Other modes keep them current."""
        if self.config.learning != "ulq":
            return
        with torch.no_grad():
            scale, zero_point = _ulq_qparams(self.clip_min, self.clip_max, self.spec)
            self._set_qparams(scale, zero_point)

    def _set_qparams(self, scale: Tensor, zero_point: Tensor) -> None:
        device = self.zero_point.device
        scale = scale.to(device, torch.float32)
        if scale.shape != self.scale.shape:
            # First data of a per-channel quantizer: take its size (C,).
            if isinstance(self.scale, nn.Parameter):
                self.scale.data = scale.clone()
            else:
                self.scale = scale.clone()
            self.zero_point = zero_point.to(device, torch.int32).clone()
            return
        with torch.no_grad():
            self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    # -- forward ---------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Observe (if enabled), refresh qparams in QAT training, fake-quantize (if enabled
        and qparams are known); otherwise return ``x`` unchanged."""
        if self.observer_enabled:
            if not self.fake_quant_enabled:
                self.calibrator.observe(x)
                return x
            if self.training:
                self._qat_step(x)
        if self.fake_quant_enabled and self.has_qparams:
            return self._fake_quant(x)
        return x

    def _fake_quant(self, x: Tensor) -> Tensor:
        if self.exact_rounding:
            scale = self.scale.detach()
            q = quantize(x, scale, self.zero_point, self.spec)
            return dequantize(q, scale, self.zero_point, self.spec).to(x.dtype)
        learning = self.config.learning
        if learning == "none":
            if x.dtype == torch.float32:
                # PyTorch's kernels directly: `fake_quantize` would add reshapes and casts.
                if self.spec.axis is None:
                    return torch.fake_quantize_per_tensor_affine(
                        x, self.scale, self.zero_point, self._qmin, self._qmax
                    )
                return torch.fake_quantize_per_channel_affine(
                    x, self.scale, self.zero_point, self.spec.axis % x.dim(), self._qmin, self._qmax
                )
            return fake_quantize(x, self.scale, self.zero_point, self.spec)
        if learning == "lsq":
            return fake_quantize_lsq(x, self.scale, self.zero_point, self.spec)
        return fake_quantize_learnable_range(x, self.clip_min, self.clip_max, self.spec)

    def _qat_step(self, x: Tensor) -> None:
        """One QAT observation: update the range and the qparams."""
        if self.config.learning != "none":
            # LSQ/ULQ: the calibrator only initialises the learned parameters.
            if not self.has_qparams:
                self.calibrator.observe(x)
                self.compute_qparams()
        elif self._streaming:
            self._streaming_step(x)
        else:
            self.calibrator.observe(x)
            if self.steps % self.config.refresh_every == 0 or not self.has_qparams:
                self.compute_qparams()
        self.steps += 1
        after = self.config.freeze_observer_after
        if after is not None and self.steps >= after:
            self.freeze()

    def _streaming_step(self, x: Tensor) -> None:
        # The hot path: every dispatcher call here costs microseconds per quantizer and step.
        cal = self.calibrator
        assert isinstance(cal, MinMaxCalibrator)
        axis = self.spec.axis
        with torch.no_grad():
            if axis is None:
                lo, hi = torch.aminmax(x)
            elif axis == 0:
                lo, hi = torch.aminmax(x.reshape(x.shape[0], -1), dim=1)  # (C,) each
            else:
                lo, hi = batch_min_max(x, axis)
            if lo.dtype != torch.float32:
                lo, hi = lo.float(), hi.float()
            if cal.min_val is not None and cal.min_val.shape != lo.shape:
                raise ConfigError(
                    f"quantizer {self.name or '<unnamed>'!r}: channel count changed from "
                    f"{tuple(cal.min_val.shape)} to {tuple(lo.shape)}"
                )
            if cal.min_val is None or cal.max_val is None or self._momentum == 1.0:
                cal.min_val, cal.max_val = lo, hi
            else:
                cal.min_val.lerp_(lo, self._momentum)
                cal.max_val.lerp_(hi, self._momentum)
            cal.num_batches += 1
            self._write_qparams(cal.min_val, cal.max_val)
            if x.device.type == "cpu" or self.steps % self.config.check_every == 0:
                self._check_scale(cal.min_val, cal.max_val)
        self.has_qparams = True

    def _write_qparams(self, lo: Tensor, hi: Tensor) -> None:
        """`qparams_from_range` written in place into the buffers, without its validation
        syncs: the same float32 operations, so bit-identical results (a test checks it)."""
        spec = self.spec
        if self.scale.shape != lo.shape:
            self._set_qparams(
                torch.ones_like(lo), torch.full_like(lo, self._zp0, dtype=torch.int32)
            )
        scale = self.scale
        if spec.symmetric:
            # max(|lo|, |hi|) equals max(-lo, hi) for lo <= hi, with one kernel less.
            threshold = torch.maximum(lo.neg(), hi)
            if spec.scale_rule == "amct" and spec.signed:
                torch.div(threshold, (hi.abs() < lo.abs()).float() + self._divisor, out=scale)
            else:
                torch.div(threshold, self._divisor, out=scale)
            scale.masked_fill_(scale < FLT_EPSILON, 1.0)
            return  # the zero point is the constant grid centre
        lo = torch.clamp(lo, max=0.0)
        torch.div(torch.clamp(hi, min=0.0) - lo, self._divisor, out=scale)
        scale.masked_fill_(scale < FLT_EPSILON, 1.0)
        self.zero_point.copy_(
            torch.clamp(spec.qmin - torch.round(lo / scale), spec.qmin, spec.qmax)
        )

    def _check_scale(self, lo: Tensor, hi: Tensor) -> None:
        # NaN/Inf data makes the scale non-finite; the sum keeps that (one sync per check).
        if not math.isfinite(float(self.scale.sum())):
            raise NonFiniteError(
                f"quantizer {self.name or '<unnamed>'!r}: NaN or Inf in the observed tensor "
                f"(QAT step {self.steps}, range min {lo.tolist()} max {hi.tolist()})"
            )

    # -- state -----------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "calibrator": self.calibrator.state_dict(),
            "has_qparams": self.has_qparams,
            "observer_enabled": self.observer_enabled,
            "fake_quant_enabled": self.fake_quant_enabled,
            "exact_rounding": self.exact_rounding,
            "steps": self.steps,
        }

    def set_extra_state(self, state: Any) -> None:
        device = self.zero_point.device
        self.calibrator.load_state_dict(_to_device(dict(state["calibrator"]), device))
        self.has_qparams = bool(state["has_qparams"])
        self.observer_enabled = bool(state["observer_enabled"])
        self.fake_quant_enabled = bool(state["fake_quant_enabled"])
        self.exact_rounding = bool(state.get("exact_rounding", False))
        self.steps = int(state["steps"])

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Per-channel sizes are data-dependent: adopt the saved shape before the copy.
        for key in ("scale", "zero_point"):
            saved = state_dict.get(prefix + key)
            own = getattr(self, key)
            if isinstance(saved, Tensor) and saved.shape != own.shape:
                fresh = torch.empty(saved.shape, dtype=own.dtype, device=own.device)
                if isinstance(own, nn.Parameter):
                    own.data = fresh
                else:
                    setattr(self, key, fresh)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Quantizer:
        # The calibrator is not a module: move its state along with the buffers (to their
        # device only; its dtypes are its own business).
        super()._apply(fn, recurse)
        device = self.zero_point.device
        state = self.calibrator.state_dict()
        self.calibrator.load_state_dict(_to_device(state, device))
        return self


def _to_device(obj: Any, device: torch.device) -> Any:
    """Tensors inside nested dicts/lists/tuples moved to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _ulq_qparams(clip_min: Tensor, clip_max: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """The qparams `fake_quantize_learnable_range` uses for a clip range (same formula):
    symmetric grids take ``[-|clip_max|, |clip_max|]``; scales are floored at 1e-8."""
    half_levels = 2 ** (spec.bits - 1)
    if spec.symmetric:
        divisor = half_levels - 1 if spec.signed else (spec.qmax - spec.qmin) / 2
        scale = clip_max.abs().clamp_min(1e-8) / divisor
        zp = 0 if spec.signed else half_levels
        return scale, torch.full_like(scale, zp, dtype=torch.int32)
    lo = torch.clamp(clip_min, max=0.0)
    hi = torch.clamp(clip_max, min=0.0)
    scale = ((hi - lo) / float(spec.qmax - spec.qmin)).clamp_min(1e-8)
    zero_point = torch.clamp(spec.qmin - torch.round(lo / scale), spec.qmin, spec.qmax)
    return scale, zero_point.to(torch.int32)


# -- model-level helpers ---------------------------------------------------------------
def iter_quantizers(model: nn.Module) -> Iterator[tuple[str, Quantizer]]:
    """``(qualified name, quantizer)`` for every `Quantizer` in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, Quantizer):
            yield name, module


def name_quantizers(model: nn.Module, prefix: str = "") -> None:
    """Name every quantizer after its qualified module name (for error messages)."""
    for name, q in iter_quantizers(model):
        q.name = f"{prefix}{name}"


def set_calibration_mode(model: nn.Module) -> None:
    """PTQ calibration: every quantizer observes and passes data through unchanged."""
    for _, q in iter_quantizers(model):
        q.enable_observer(True).enable_fake_quant(False)


def set_quantized_mode(model: nn.Module) -> None:
    """Compute qparams where not yet computed, stop observing, fake-quantize.

    Raises `EmptyCalibrationError` naming the first quantizer that saw no data.
    """
    for _, q in iter_quantizers(model):
        if not q.has_qparams:
            q.compute_qparams()
        q.sync_qparams()
        q.enable_observer(False).enable_fake_quant(True)


def freeze_observers(model: nn.Module) -> None:
    """`Quantizer.freeze` every quantizer: qparams kept, no more observation."""
    for _, q in iter_quantizers(model):
        q.freeze()


def enable_observer(model: nn.Module, on: bool = True) -> None:
    """Turn observation on or off in every quantizer."""
    for _, q in iter_quantizers(model):
        q.enable_observer(on)


def enable_fake_quant(model: nn.Module, on: bool = True) -> None:
    """Turn fake quantization on or off in every quantizer."""
    for _, q in iter_quantizers(model):
        q.enable_fake_quant(on)

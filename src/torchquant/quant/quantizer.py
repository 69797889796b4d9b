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
of kernels: ``aminmax`` of the batch, the moving-average update of the calibrator's own
``min_val``/``max_val`` (so the calibrator state stays the truth, bit-identical to feeding it
the batches), the scale rule of `qparams_from_range` without its validation syncs (on CPU,
per tensor, on Python floats rounded to float32), and the fake quantization: on CPU a
straight-through composition of vectorised kernels that rounds ``x / s`` like `quantize`
(PyTorch's CPU fake-quant kernels are several times slower), on accelerators PyTorch's
fused kernels. In QAT, ``minmax`` follows the current batch (averaging constant 1): for
weights that is AMCT's ARQ_RETRAIN ("min/max recomputed each step"); a running min/max over
changing weights would only grow. ``torch.fused_moving_avg_obs_fake_quant`` is not used: its
qparams follow PyTorch's ``ChooseQuantizationParams`` (e.g. ``max(-min/128, max/127)`` for
symmetric int8), not torchquant's `QuantSpec` rules, and on CPU (torch 2.13) it was slower.
Histogram calibrators observe every step and recompute qparams every
``config.refresh_every`` steps (and on the first). ``learning="lsq"`` (Esser et al. 2020)
and ``"ulq"`` (Ascend AMCT) initialise their parameters from the calibrator's range on the
first batch, AMCT-style, then learn them by gradient descent.

Training and eval: in QAT mode the quantizer observes only while ``self.training``; in eval
it fake-quantizes with the qparams it has (identity before the first training step).

NaN/Inf: PTQ observation checks every batch (`Calibrator.observe`). QAT checks the batch
range (per tensor on CPU) or the new scale (non-finite data makes it non-finite) every step
on CPU, and every ``config.check_every`` steps on accelerators, where each check is a
host-device sync; the moving average keeps a NaN once it got in, so the periodic check still
sees it. The error (`NonFiniteError`) names the quantizer.

After `convert`, ``exact_rounding`` makes every device round ``x / s``, bit for bit
``dequantize(quantize(x))`` (ONNX ``QuantizeLinear``/``DequantizeLinear``), instead of the
``x * (1 / s)`` of PyTorch's accelerator kernels.

state_dict keys (stable): ``scale``, ``zero_point`` (buffers; ``scale`` is a Parameter for
LSQ), ``clip_min``/``clip_max`` (ULQ Parameters) and ``_extra_state`` (the calibrator's
state_dict, ``has_qparams``, the mode flags, ``exact_rounding`` and the QAT step count).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
from torch import Tensor, nn

from torchquant.calib import Calibrator, create_calibrator
from torchquant.calib.minmax import MinMaxCalibrator, batch_min_max
from torchquant.config import QuantizerConfig
from torchquant.errors import ConfigError, NonFiniteError
from torchquant.quant._quantizer_math import f32, to_device
from torchquant.quant.affine import FLT_EPSILON, dequantize, reshape_for_axis
from torchquant.quant.fake import (
    FakeQuantizeSTE,
    fake_quantize,
    fake_quantize_learnable_range,
    fake_quantize_lsq,
    learnable_range_qparams,
)
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
        # Set by convert: round x / s like ONNX QuantizeLinear on every device (CPU always
        # does), instead of the x * (1/s) of PyTorch's accelerator kernels used in training.
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
    def dequantize_integer(self, q: Tensor) -> Tensor:
        """``(q - z) * s`` for an integer tensor on this quantizer's grid (a converted
        module's weight); export turns it into an ONNX ``DequantizeLinear``."""
        return dequantize(q, self.scale, self.zero_point, self.spec)

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
            scale, zero_point = learnable_range_qparams(self.clip_min, self.clip_max, self.spec)
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
        if not self.has_qparams and self.zero_point.device != x.device:
            # Made on CPU for a model on an accelerator: follow the first data (PyTorch's
            # prepare moves observers to the model's device likewise).
            self.to(x.device)
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
        learning = self.config.learning
        if learning == "lsq" and not self.exact_rounding:
            return fake_quantize_lsq(x, self.scale, self.zero_point, self.spec)
        if learning == "ulq" and not self.exact_rounding:
            return fake_quantize_learnable_range(x, self.clip_min, self.clip_max, self.spec)
        scale, zero_point = self.scale.detach(), self.zero_point
        if x.dtype != torch.float32:
            return fake_quantize(x, scale, zero_point, self.spec)
        axis = self.spec.axis
        if axis is None and x.device.type == "cpu":
            # Python numbers: reading a CPU scalar costs no sync, and saves kernels.
            z = int(zero_point)
            out: Tensor = FakeQuantizeSTE.apply(x, float(scale), self._qmin - z, self._qmax - z)
            return out
        if self.exact_rounding or x.device.type == "cpu":
            scale = reshape_for_axis(scale, x.dim(), axis)
            if self.spec.symmetric:  # the zero point is the constant grid centre
                low: Any = self._qmin - self._zp0
                high: Any = self._qmax - self._zp0
            else:
                zero_point = reshape_for_axis(zero_point.float(), x.dim(), axis)
                low, high = self._qmin - zero_point, self._qmax - zero_point
            out = FakeQuantizeSTE.apply(x, scale, low, high)
            return out
        # Accelerators: PyTorch's fused kernels (one pass over memory).
        if axis is None:
            return torch.fake_quantize_per_tensor_affine(
                x, scale, zero_point, self._qmin, self._qmax
            )
        return torch.fake_quantize_per_channel_affine(
            x, scale, zero_point, axis % x.dim(), self._qmin, self._qmax
        )

    def _qat_step(self, x: Tensor) -> None:
        """One QAT observation: update the range and the qparams."""
        if self.config.learning != "none":
            # LSQ/ULQ: the calibrator only initialises the learned parameters.
            if not self.has_qparams:
                self.calibrator.observe(x)
                self.compute_qparams()
        elif self._streaming and self.spec.axis is None and x.device.type == "cpu":
            self._streaming_step_cpu(x)
        elif self._streaming:
            self._streaming_step(x)
        else:
            self.calibrator.observe(x)
            if self.steps % self.config.refresh_every == 0 or not self.has_qparams:
                self.compute_qparams()
        # Plain attribute write: nn.Module.__setattr__ costs microseconds per call.
        self.__dict__["steps"] = self.steps + 1
        after = self.config.freeze_observer_after
        if after is not None and self.steps >= after:
            self.freeze()

    def _streaming_step(self, x: Tensor) -> None:
        # The hot path: every dispatcher call here costs microseconds per quantizer and step.
        cal = cast(MinMaxCalibrator, self.calibrator)  # checked in __init__ (_streaming)
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
                # EmaMinMaxCalibrator's m + c * (new - m), in place (lerp_ rounds differently).
                cal.min_val.add_(lo.sub_(cal.min_val).mul_(self._momentum))
                cal.max_val.add_(hi.sub_(cal.max_val).mul_(self._momentum))
            cal.num_batches += 1
            self._write_qparams(cal.min_val, cal.max_val)
            if x.device.type == "cpu" or self.steps % self.config.check_every == 0:
                self._check_scale(cal.min_val, cal.max_val)
        if not self.has_qparams:
            self.has_qparams = True

    def _streaming_step_cpu(self, x: Tensor) -> None:
        # Per-tensor on CPU: reading scalars costs no device sync, so the moving average and
        # the scale rule run on Python floats rounded to float32 after every operation
        # (double has enough bits for that to equal float32 arithmetic exactly), leaving
        # three small kernels per step, and the NaN/Inf check is free.
        cal = cast(MinMaxCalibrator, self.calibrator)  # checked in __init__ (_streaming)
        with torch.no_grad():
            lo_t, hi_t = torch.aminmax(x)
            lo, hi = lo_t.item(), hi_t.item()
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise NonFiniteError(
                    f"quantizer {self.name or '<unnamed>'!r}: NaN or Inf in the observed tensor "
                    f"(QAT step {self.steps}, batch min {lo} max {hi})"
                )
            if cal.min_val is None or cal.max_val is None:
                cal.min_val, cal.max_val = lo_t.float(), hi_t.float()
            else:
                if self._momentum != 1.0:
                    # EmaMinMaxCalibrator's update m + c * (new - m), in float32.
                    c = f32(self._momentum)
                    m_lo, m_hi = cal.min_val.item(), cal.max_val.item()
                    lo = f32(m_lo + f32(c * f32(lo - m_lo)))
                    hi = f32(m_hi + f32(c * f32(hi - m_hi)))
                cal.min_val.fill_(lo)
                cal.max_val.fill_(hi)
            cal.num_batches += 1
            scale, zero_point = self._scalar_qparams(lo, hi)
            self.scale.fill_(scale)
            self.zero_point.fill_(zero_point)
        if not self.has_qparams:
            self.has_qparams = True

    def _scalar_qparams(self, lo: float, hi: float) -> tuple[float, int]:
        """`qparams_from_range` on float32 values held in Python floats (same results)."""
        spec = self.spec
        if spec.symmetric:
            divisor = self._divisor
            if spec.scale_rule == "amct" and spec.signed and abs(hi) < abs(lo):
                divisor += 1.0
            scale = f32(max(-lo, hi) / divisor)
            return (1.0 if scale < FLT_EPSILON else scale), self._zp0
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = f32(f32(hi - lo) / self._divisor)
        scale = 1.0 if scale < FLT_EPSILON else scale
        zero_point = spec.qmin - round(f32(lo / scale))
        return scale, min(max(zero_point, spec.qmin), spec.qmax)

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
        # Copies: the state must not alias the tensors of the module it was saved from.
        self.calibrator.load_state_dict(to_device(dict(state["calibrator"]), device, copy=True))
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
        self.calibrator.load_state_dict(to_device(state, device))
        return self


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

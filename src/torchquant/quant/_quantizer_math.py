"""Helpers of `torchquant.quant.quantizer.Quantizer`: float32 rounding of Python floats
and moving nested state between devices."""

from __future__ import annotations

import struct
from typing import Any

import torch
from torch import Tensor

__all__ = ["f32", "to_device"]


def f32(value: float) -> float:
    """``value`` rounded to the nearest float32 (half to even), as a Python float."""
    return float(_F32.unpack(_F32.pack(value))[0])


_F32 = struct.Struct("f")


def to_device(obj: Any, device: torch.device, copy: bool = False) -> Any:
    """Tensors inside nested dicts/lists/tuples moved (or copied) to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device, copy=copy)
    if isinstance(obj, dict):
        return {k: to_device(v, device, copy) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, copy) for v in obj)
    return obj

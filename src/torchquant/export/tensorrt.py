"""TensorRT calibration cache ("calibration table"): write, read, amax <-> scale.

Format (../shared/specs/algorithms.md section 3; TensorRT ``IInt8Calibrator::
readCalibrationCache`` / ``writeCalibrationCache``, ONNX Runtime's TensorRT execution
provider ``ReadDynamicRange``)::

    TRT-8601-EntropyCalibration2
    input: 3c010a14
    /conv1/Conv_output_0: 3d2f1a0c

The first line must contain ``TRT-``. Each following line is ``<tensor name>: <hex>`` where
``<hex>`` is the IEEE-754 float32 bit pattern of the scale, most significant byte first,
lowercase, without ``0x`` (Python: ``struct.pack('>f', scale).hex()``). The scale is
``amax / 127``; readers take the dynamic range as ``scale * 127``. Tensor names are the ONNX
graph's tensor names and may themselves contain ``:`` (the value follows the last ``": "``).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Mapping

from torchquant.errors import ConfigError, FileFormatError

__all__ = [
    "DEFAULT_CACHE_VERSION",
    "amax_to_scale",
    "read_calibration_cache",
    "scale_to_amax",
    "write_calibration_cache",
]

DEFAULT_CACHE_VERSION = "TRT-8601-EntropyCalibration2"
# int8 levels on each side of zero: TensorRT's symmetric grid maps amax to 127.
_INT8_MAX = 127.0


def _as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (what the cache can hold)."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def amax_to_scale(amax: float) -> float:
    """TensorRT scale (float32) of a symmetric int8 range ``[-amax, amax]``: ``amax / 127``."""
    if not math.isfinite(amax) or amax < 0.0:
        raise ConfigError(f"amax must be finite and >= 0, got {amax!r}")
    return _as_float32(amax / _INT8_MAX)


def scale_to_amax(scale: float) -> float:
    """Dynamic range TensorRT derives from a cache scale: ``scale * 127``."""
    return scale * _INT8_MAX


def write_calibration_cache(
    path: str | os.PathLike[str],
    scales: Mapping[str, float],
    version: str = DEFAULT_CACHE_VERSION,
) -> None:
    """Write ``scales`` (tensor name -> float32 scale = amax/127) as a TensorRT cache.

    Lines keep the mapping's order. Scales are rounded to float32; a non-finite or
    negative scale, or a name with a line break, is a `ConfigError` naming the tensor.
    """
    if "TRT-" not in version or "\n" in version:
        raise ConfigError(f"cache version must be one line containing 'TRT-', got {version!r}")
    lines = [version]
    for name, scale in scales.items():
        if not name or "\n" in name or "\r" in name:
            raise ConfigError(f"tensor name {name!r} cannot be written to a calibration cache")
        value = float(scale)
        if not math.isfinite(value) or value < 0.0:
            raise ConfigError(f"tensor {name!r}: scale must be finite and >= 0, got {value!r}")
        lines.append(f"{name}: {struct.pack('>f', value).hex()}")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def read_calibration_cache(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read a TensorRT cache into ``{tensor name: scale}`` (floats exactly as stored).

    Raises `FileFormatError` naming the file and the 1-based line number for a missing
    ``TRT-`` header, a line without ``": "``, a value that is not 8 hex digits, a
    non-finite scale or a tensor listed twice.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise FileFormatError(f"{os.fspath(path)}: no such calibration cache") from None
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{os.fspath(path)}: not a text file ({e.reason})") from None
    lines = text.splitlines()
    if not lines or "TRT-" not in lines[0]:
        raise FileFormatError(f"{os.fspath(path)}:1: header must contain 'TRT-'")
    scales: dict[str, float] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(": ")
        where = f"{os.fspath(path)}:{lineno}"
        if not sep or not name:
            raise FileFormatError(f"{where}: expected '<tensor name>: <hex>', got {line!r}")
        hex_value = value.strip()
        if len(hex_value) != 8:
            raise FileFormatError(
                f"{where}: tensor {name!r}: value {hex_value!r} is not 8 hex digits"
            )
        try:
            scale = float(struct.unpack(">f", bytes.fromhex(hex_value))[0])
        except ValueError:
            raise FileFormatError(
                f"{where}: tensor {name!r}: value {hex_value!r} is not hex"
            ) from None
        if not math.isfinite(scale):
            raise FileFormatError(f"{where}: tensor {name!r}: scale {scale} is not finite")
        if name in scales:
            raise FileFormatError(f"{where}: tensor {name!r} is listed twice")
        scales[name] = scale
    return scales

"""The errors torchquant raises, in one hierarchy.

Every error names its culprit (tensor, layer, file and line) in its message::

    TorchQuantError                      base of everything below
    ├── ConfigError (ValueError)         a spec, config or argument is invalid
    ├── CalibrationError (RuntimeError)  calibration cannot produce a range
    │   ├── NonFiniteError               NaN or Inf in observed data
    │   └── EmptyCalibrationError        nothing (or an empty tensor) was observed
    ├── UnsupportedModelError            a layer or model cannot be prepared or traced
    ├── ExportError                      an export failed or does not match the simulation
    └── FileFormatError (ValueError)     a cache, record, config or data file is malformed

    TorchQuantWarning (UserWarning)      something was changed to keep going (a cap reached)
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "ConfigError",
    "EmptyCalibrationError",
    "ExportError",
    "FileFormatError",
    "NonFiniteError",
    "TorchQuantError",
    "TorchQuantWarning",
    "UnsupportedModelError",
]


class TorchQuantError(Exception):
    """Base class of every error raised by torchquant."""


class ConfigError(TorchQuantError, ValueError):
    """A quantization spec, config or argument is invalid."""


class CalibrationError(TorchQuantError, RuntimeError):
    """Calibration cannot produce a quantization range."""


class NonFiniteError(CalibrationError):
    """Observed data contains NaN or Inf; the message names the tensor."""


class EmptyCalibrationError(CalibrationError):
    """compute() was called before any data was observed, or a tensor was empty."""


class UnsupportedModelError(TorchQuantError):
    """A layer, pattern or model cannot be quantized; the message names it."""


class ExportError(TorchQuantError):
    """An export failed, or the exported model disagrees with torchquant's simulation."""


class FileFormatError(TorchQuantError, ValueError):
    """A calibration cache, record, config or data file is malformed (names file and line)."""


class TorchQuantWarning(UserWarning):
    """torchquant changed something to keep going, e.g. a memory cap was reached."""

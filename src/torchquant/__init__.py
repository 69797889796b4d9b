"""torchquant: quantization for PyTorch, from QAT and PTQ calibration to ONNX QDQ,
TensorRT calibration caches and Ascend AMCT records."""

from torchquant import calib, errors, quant
from torchquant.calib import Calibrator, create_calibrator, list_calibrators, register_calibrator
from torchquant.errors import (
    CalibrationError,
    ConfigError,
    EmptyCalibrationError,
    ExportError,
    FileFormatError,
    NonFiniteError,
    TorchQuantError,
    TorchQuantWarning,
    UnsupportedModelError,
)
from torchquant.quant import QuantSpec, dequantize, fake_quantize, qparams_from_range, quantize

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "Calibrator",
    "ConfigError",
    "EmptyCalibrationError",
    "ExportError",
    "FileFormatError",
    "NonFiniteError",
    "QuantSpec",
    "TorchQuantError",
    "TorchQuantWarning",
    "UnsupportedModelError",
    "__version__",
    "calib",
    "create_calibrator",
    "dequantize",
    "errors",
    "fake_quantize",
    "list_calibrators",
    "qparams_from_range",
    "quant",
    "quantize",
    "register_calibrator",
]

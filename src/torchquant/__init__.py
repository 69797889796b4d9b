"""torchquant: quantization for PyTorch, from QAT and PTQ calibration to ONNX QDQ,
TensorRT calibration caches and Ascend AMCT records.

The one entry point is `quantize(model, config, example_inputs)`, dispatching on the
config's type: `PrepareConfig` (automatic path, no model edits), `EagerPrepareConfig`
(behind the eager names `prepare` / `prepare_qat`) and `ConvertConfig` (behind `convert`).
"""

from torchquant import analysis, calib, config, distributed, errors, export, nn, quant
from torchquant._api import quantize, register_quantize_handler
from torchquant._auto import FUNCTIONAL_OPS, PrepareConfig
from torchquant._calibrate import calibrate
from torchquant._convert import ConvertConfig, convert
from torchquant._eager import EagerPrepareConfig, prepare, prepare_qat
from torchquant._fuse import fuse_modules, fuse_modules_qat
from torchquant.analysis import QuantPlan, analyze, apply_plan, auto_fallback, write_report
from torchquant.calib import Calibrator, create_calibrator, list_calibrators, register_calibrator
from torchquant.config import (
    BACKENDS,
    QConfig,
    QuantizerConfig,
    get_default_qat_qconfig,
    get_default_qconfig,
)
from torchquant.distributed import sync_calibrators, sync_quantizer_buffers
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
from torchquant.export.torch_onnx import ExportResult, export_onnx
from torchquant.nn import (
    DeQuantStub,
    FloatFunctional,
    QFunctional,
    QuantStub,
    freeze_bn,
    unfreeze_bn,
)
from torchquant.quant import QuantSpec
from torchquant.quant.quantizer import (
    Quantizer,
    enable_fake_quant,
    enable_observer,
    freeze_observers,
    set_calibration_mode,
    set_quantized_mode,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "FUNCTIONAL_OPS",
    "CalibrationError",
    "Calibrator",
    "ConfigError",
    "ConvertConfig",
    "DeQuantStub",
    "EagerPrepareConfig",
    "EmptyCalibrationError",
    "ExportError",
    "ExportResult",
    "FileFormatError",
    "FloatFunctional",
    "NonFiniteError",
    "PrepareConfig",
    "QConfig",
    "QFunctional",
    "QuantPlan",
    "QuantSpec",
    "QuantStub",
    "Quantizer",
    "QuantizerConfig",
    "TorchQuantError",
    "TorchQuantWarning",
    "UnsupportedModelError",
    "__version__",
    "analysis",
    "analyze",
    "apply_plan",
    "auto_fallback",
    "calib",
    "calibrate",
    "config",
    "convert",
    "create_calibrator",
    "distributed",
    "enable_fake_quant",
    "enable_observer",
    "errors",
    "export",
    "export_onnx",
    "freeze_bn",
    "freeze_observers",
    "fuse_modules",
    "fuse_modules_qat",
    "get_default_qat_qconfig",
    "get_default_qconfig",
    "list_calibrators",
    "nn",
    "prepare",
    "prepare_qat",
    "quant",
    "quantize",
    "register_calibrator",
    "register_quantize_handler",
    "set_calibration_mode",
    "set_quantized_mode",
    "sync_calibrators",
    "sync_quantizer_buffers",
    "unfreeze_bn",
    "write_report",
]

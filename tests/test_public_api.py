"""The public API is exactly what `torchquant.__all__` says; changing it is deliberate."""

import torchquant

EXPECTED = {
    "BACKENDS",
    "CalibrationError",
    "Calibrator",
    "ConfigError",
    "ConvertConfig",
    "DeQuantStub",
    "EagerPrepareConfig",
    "EmptyCalibrationError",
    "ExportError",
    "ExportResult",
    "FUNCTIONAL_OPS",
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
}


def test_all_is_locked() -> None:
    assert set(torchquant.__all__) == EXPECTED
    assert len(torchquant.__all__) == len(EXPECTED)


def test_every_name_resolves() -> None:
    for name in torchquant.__all__:
        assert getattr(torchquant, name) is not None, name


def test_error_hierarchy() -> None:
    for name in (
        "CalibrationError",
        "ConfigError",
        "ExportError",
        "FileFormatError",
        "UnsupportedModelError",
    ):
        assert issubclass(getattr(torchquant, name), torchquant.TorchQuantError)
    assert issubclass(torchquant.NonFiniteError, torchquant.CalibrationError)
    assert issubclass(torchquant.EmptyCalibrationError, torchquant.CalibrationError)
    assert issubclass(torchquant.ConfigError, ValueError)


def test_calibrator_registry_is_complete() -> None:
    assert set(torchquant.list_calibrators()) >= {
        "minmax",
        "ema_minmax",
        "percentile",
        "mse",
        "entropy",
        "ifmr",
        "hfmg",
    }

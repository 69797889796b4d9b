"""PLACEHOLDER: being written; replaced by the real mse calibrator."""

from torchquant.calib.minmax import MinMaxCalibrator

__all__ = ["MseCalibrator"]


class MseCalibrator(MinMaxCalibrator):
    """PLACEHOLDER."""

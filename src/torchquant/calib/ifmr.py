"""PLACEHOLDER: being written; replaced by the real ifmr calibrator."""

from torchquant.calib.minmax import MinMaxCalibrator

__all__ = ["IfmrCalibrator"]


class IfmrCalibrator(MinMaxCalibrator):
    """PLACEHOLDER."""

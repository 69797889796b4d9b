"""PLACEHOLDER: being written; replaced by the real percentile calibrator."""

from torchquant.calib.minmax import MinMaxCalibrator

__all__ = ["PercentileCalibrator"]


class PercentileCalibrator(MinMaxCalibrator):
    """PLACEHOLDER."""

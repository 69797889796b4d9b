"""PLACEHOLDER: being written; replaced by the real entropy calibrator."""

from torchquant.calib.minmax import MinMaxCalibrator

__all__ = ["EntropyCalibrator"]


class EntropyCalibrator(MinMaxCalibrator):
    """PLACEHOLDER."""

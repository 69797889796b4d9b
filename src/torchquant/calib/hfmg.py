"""PLACEHOLDER: being written; replaced by the real hfmg calibrator."""

from torchquant.calib.minmax import MinMaxCalibrator

__all__ = ["HfmgCalibrator"]


class HfmgCalibrator(MinMaxCalibrator):
    """PLACEHOLDER."""

"""Calibrators: streaming algorithms that choose a quantization range from observed data.

Importing this package registers every calibrator by name; see `list_calibrators`.
"""

from torchquant.calib import entropy, hfmg, ifmr, minmax, mse, percentile
from torchquant.calib._base import (
    Calibrator,
    create_calibrator,
    list_calibrators,
    register_calibrator,
)
from torchquant.calib.entropy import EntropyCalibrator
from torchquant.calib.hfmg import HfmgCalibrator
from torchquant.calib.ifmr import IfmrCalibrator
from torchquant.calib.minmax import EmaMinMaxCalibrator, MinMaxCalibrator
from torchquant.calib.mse import MseCalibrator
from torchquant.calib.percentile import PercentileCalibrator

__all__ = [
    "Calibrator",
    "EmaMinMaxCalibrator",
    "EntropyCalibrator",
    "HfmgCalibrator",
    "IfmrCalibrator",
    "MinMaxCalibrator",
    "MseCalibrator",
    "PercentileCalibrator",
    "create_calibrator",
    "entropy",
    "hfmg",
    "ifmr",
    "list_calibrators",
    "minmax",
    "mse",
    "percentile",
    "register_calibrator",
]

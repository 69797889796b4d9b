"""Test-wide setup: the example models in ``examples/`` are importable (``import digits_cnn``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

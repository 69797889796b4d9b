"""TensorRT calibration cache: format, bit-exact round trip, corrupt files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from torchquant.errors import ConfigError, FileFormatError
from torchquant.export import (
    amax_to_scale,
    read_calibration_cache,
    scale_to_amax,
    write_calibration_cache,
)


def _float32_values(n: int) -> list[float]:
    rng = np.random.default_rng(0)
    bits = rng.integers(0x00800000, 0x7F000000, size=n, dtype=np.uint32)  # normal, finite
    values = bits.view(np.float32).astype(np.float64).tolist()
    return [*values, 0.0, 1.0, 2.0**-149, float(np.finfo(np.float32).max)]


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    values = _float32_values(200)
    scales = {f"/layer{i}/Conv_output_0": v for i, v in enumerate(values)}
    scales["name:with:colons"] = 0.5
    path = tmp_path / "model.cache"
    write_calibration_cache(path, scales)
    back = read_calibration_cache(path)
    assert list(back) == list(scales)
    for name, value in scales.items():
        assert struct.pack(">f", back[name]) == struct.pack(">f", value), name


def test_line_format(tmp_path: Path) -> None:
    scales = {"input": 0.0078125, "/conv1/Conv_output_0": 0.0123}
    path = tmp_path / "model.cache"
    write_calibration_cache(path, scales, version="TRT-100300-EntropyCalibration2")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert lines[1:] == [f"{k}: {struct.pack('>f', v).hex()}" for k, v in scales.items()]
    assert lines[1] == "input: 3c000000"


def test_amax_scale_helpers() -> None:
    assert amax_to_scale(127.0) == 1.0
    assert amax_to_scale(1.0) == float(np.float32(1.0 / 127.0))
    assert scale_to_amax(amax_to_scale(2.54)) == pytest.approx(2.54, rel=1e-7)
    with pytest.raises(ConfigError):
        amax_to_scale(float("nan"))


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("", 1, "TRT-"),
        ("EntropyCalibration2\na: 3c000000\n", 1, "TRT-"),
        ("TRT-8601-EntropyCalibration2\na: 3c000000\nb 3c000000\n", 3, "expected"),
        ("TRT-8601-EntropyCalibration2\na: 3c00000\n", 2, "8 hex"),
        ("TRT-8601-EntropyCalibration2\na: 3c00000z\n", 2, "not hex"),
        ("TRT-8601-EntropyCalibration2\na: 7f800000\n", 2, "not finite"),
        ("TRT-8601-EntropyCalibration2\na: 3c000000\n\na: 3c000000\n", 4, "twice"),
    ],
)
def test_corrupt_file_names_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = tmp_path / "bad.cache"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=rf"bad\.cache:{line}: .*{what}"):
        read_calibration_cache(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no such"):
        read_calibration_cache(tmp_path / "absent.cache")


def test_write_rejects_bad_scales(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'t'"):
        write_calibration_cache(tmp_path / "x.cache", {"t": float("inf")})
    with pytest.raises(ConfigError, match="TRT-"):
        write_calibration_cache(tmp_path / "x.cache", {"t": 1.0}, version="v1")

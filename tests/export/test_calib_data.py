"""Streaming calibration data (torchquant.export.calib_data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from torchquant.export import calib_data
from torchquant.export.calib_data import ModelInput, load_calibration_data


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 4 * 4 * 4, 2**20])
def test_npy_is_read_in_slices_and_batched_like_the_whole_array(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    monkeypatch.setattr(calib_data, "_NPY_CHUNK_BYTES", chunk_bytes)
    data = np.random.default_rng(0).standard_normal((11, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    inp = ModelInput("x", (None, 3, 4, 4))
    batches = list(load_calibration_data(tmp_path / "x.npy", [inp], batch_size=4))
    assert [b["x"].shape[0] for b in batches] == [4, 4, 3]
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), data)

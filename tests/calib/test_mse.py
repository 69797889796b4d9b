"""MSE calibrator vs plain loops over the candidate ranges.

Two references: the histogram objective written as a loop that fake-quantizes the bin
centres one candidate at a time (the calibrator must pick its argmin), and the MSE of the
raw data actually fake-quantized with each candidate (the pick must be close to the best).
"""

from __future__ import annotations

import math

import pytest
import torch
from calib_samples import KINDS, sample

from torchquant.calib import create_calibrator
from torchquant.calib.mse import MseCalibrator, histogram_mse
from torchquant.errors import ConfigError
from torchquant.quant.affine import qparams_from_range
from torchquant.quant.fake import fake_quantize, fake_quantize_reference
from torchquant.quant.spec import QuantSpec

# A smaller search than the default keeps the reference loops fast.
SMALL = {"num_bins": 256, "start_bin": 16, "stride": 3}


def reference_candidates(cal: MseCalibrator) -> list[tuple[float, float]]:
    """The candidate ranges, written out from the documented rule."""
    hist = cal.hist
    if hist.counts is None:
        return [(0.0, 0.0)]
    edges = hist.edges().tolist()
    n = len(edges) - 1
    out = []
    for i in range(min(cal.start_bin, n - 1), n, cal.stride):
        if cal.spec.symmetric:
            t = (edges[i] + edges[i + 1]) / 2
            out.append((-t, t))
        else:
            a = (i + 1) / n
            out.append((a * min(edges[0], 0.0), a * max(edges[-1], 0.0)))
    return out


def centre_mse(cal: MseCalibrator, lo: float, hi: float) -> float:
    """Histogram objective of one candidate: fake-quantize the centres, weight by counts."""
    hist = cal.hist
    if hist.counts is None:
        return 0.0
    edges = hist.edges()
    centres = (edges[:-1] + edges[1:]) / 2
    scale, zero_point = qparams_from_range(torch.tensor(lo), torch.tensor(hi), cal.spec)
    fq = fake_quantize_reference(centres, scale.double(), zero_point, cal.spec)
    return float(((fq - centres) ** 2 * hist.counts).sum() / hist.counts.sum())


def raw_mse(data: torch.Tensor, lo: float, hi: float, spec: QuantSpec) -> float:
    """MSE of the raw data fake-quantized with the grid of one candidate range."""
    scale, zero_point = qparams_from_range(torch.tensor(lo), torch.tensor(hi), spec)
    return float(((fake_quantize(data, scale, zero_point, spec) - data) ** 2).mean())


def calibrate(
    spec: QuantSpec, data: torch.Tensor, batches: int, **options: object
) -> MseCalibrator:
    cal = MseCalibrator(spec, **options)  # type: ignore[arg-type]
    for part in data.chunk(batches):
        cal.observe(part)
    return cal


SPECS = [
    QuantSpec(),
    QuantSpec(bits=4, narrow_range=True),
    QuantSpec(symmetric=False),
    QuantSpec(signed=False, symmetric=False),
]


@pytest.mark.parametrize("spec", SPECS, ids=["int8", "int4n", "int8a", "uint8a"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batches", [1, 5])
def test_picks_the_argmin_of_the_reference_loop(spec: QuantSpec, kind: str, batches: int) -> None:
    data = sample(kind, 8000, seed=batches)
    cal = calibrate(spec, data, batches, **SMALL)
    lo, hi = cal.range()
    candidates = reference_candidates(cal)
    losses = [centre_mse(cal, a, b) for a, b in candidates]
    best = min(losses)
    # The pick is one of the candidates, and its loss is the minimum up to float rounding.
    picked = min(
        range(len(candidates)),
        key=lambda k: abs(candidates[k][1] - float(hi)) + abs(candidates[k][0] - float(lo)),
    )
    assert candidates[picked] == pytest.approx((float(lo), float(hi)), rel=1e-6, abs=1e-7)
    assert losses[picked] <= best * (1 + 1e-9) + 1e-15
    vector = cal.errors()
    torch.testing.assert_close(
        vector, torch.tensor(losses, dtype=torch.float64), rtol=1e-9, atol=1e-15
    )
    scale, zero_point = cal.compute()
    assert 0 < float(scale) < math.inf
    assert spec.qmin <= int(zero_point) <= spec.qmax


@pytest.mark.parametrize("spec", [QuantSpec(), QuantSpec(symmetric=False)], ids=["sym", "affine"])
@pytest.mark.parametrize("kind", ["gaussian", "laplace", "relu", "student_t2"])
def test_close_to_the_best_range_for_the_raw_data(spec: QuantSpec, kind: str) -> None:
    data = sample(kind, 20_000, seed=7)
    cal = calibrate(spec, data, 4)  # default search: 2048 bins from bin 128
    lo, hi = (float(v) for v in cal.range())
    candidates = reference_candidates(cal)[::8]
    best = min(raw_mse(data, a, b, spec) for a, b in candidates)
    # The histogram stands each bin's values at its centre: a small excess is expected.
    assert raw_mse(data, lo, hi, spec) <= best * 1.03


@pytest.mark.parametrize(("kind", "alpha"), [("gaussian", 2.55), ("laplace", 5.03)])
def test_4bit_clipping_near_the_analytic_optimum(kind: str, alpha: float) -> None:
    # Banner et al. 2019 ("Post training 4-bit quantization of convolutional networks",
    # ACIQ): the 4-bit MSE-optimal clip is 2.55 sigma (Gaussian) and 5.03 b (Laplace), for
    # a 16-level grid; ours has 15 levels (T / 7 steps), so allow +-10%.
    cal = calibrate(QuantSpec(bits=4), sample(kind, 50_000, seed=0), 2)
    assert float(cal.range()[1]) == pytest.approx(alpha, rel=0.1)


def test_heavy_tail_keeps_outliers_and_constant_is_exact() -> None:
    # Student-t df=2 has infinite variance: clipping even a few outliers costs more squared
    # error than the coarser grid, so the MSE range stays near the maximum.
    data = sample("student_t2", 20_000, seed=2)
    cal = calibrate(QuantSpec(), data, 1)
    assert float(cal.range()[1]) > 0.5 * float(data.abs().max())
    const = calibrate(QuantSpec(symmetric=False), sample("constant", 100, seed=0), 1)
    assert (float(const.range()[0]), float(const.range()[1])) == (-1.75, 0.0)


def test_zeros_and_single_element() -> None:
    for spec in SPECS:
        cal = calibrate(spec, torch.zeros(10), 2)
        assert float(cal.compute()[0]) == 1.0
        one = calibrate(spec, torch.tensor([0.8]), 1)
        lo, hi = one.range()
        assert max(abs(float(lo)), abs(float(hi))) == pytest.approx(0.8, rel=0.01)
        assert 0 < float(one.compute()[0]) < math.inf


def test_histogram_mse_by_hand() -> None:
    # 2-bit signed grid [-2, 1], T = 2: s = 2. Centres 0.5, 1.5, 2.5 -> 0, 2, 2: each error
    # 0.25^2 ... (0.5)^2 = 0.25, weighted 1, 1, 2.
    centres = torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64)
    counts = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)
    lo, hi = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 1.0])
    got = histogram_mse(centres, counts, lo, hi, QuantSpec(bits=2))
    # T = 1: s = 1, levels up to 1: errors 0.5^2 (0.5 -> 0, tie to even), 0.5^2, 1.5^2 twice.
    want = torch.tensor([0.25, (0.25 + 0.25 + 2 * 2.25) / 4], dtype=torch.float64)
    torch.testing.assert_close(got, want)


def test_grid_search_is_no_worse_than_scale_search() -> None:
    # Skewed data: a long right tail and a short left one, where scaling both bounds together
    # cannot fit both.
    data = torch.cat([sample("relu", 15_000, seed=1) * 2, -0.3 * sample("relu", 5000, seed=2)])
    spec = QuantSpec(symmetric=False)
    scale_cal = calibrate(spec, data, 3)
    grid_cal = calibrate(spec, data, 3, search="grid", grid_points=32)
    assert grid_cal.candidates()[0].numel() == 32 * 32
    assert float(grid_cal.errors().min()) <= float(scale_cal.errors().min()) * 1.05
    lo, hi = grid_cal.range()
    losses = [
        centre_mse(grid_cal, float(a), float(b))
        for a, b in zip(*grid_cal.candidates(), strict=True)
    ]
    assert centre_mse(grid_cal, float(lo), float(hi)) <= min(losses) * (1 + 1e-9)


def test_merge_state_determinism() -> None:
    data = sample("laplace", 10_000, seed=9)
    for spec in (QuantSpec(), QuantSpec(symmetric=False)):
        left, right = (
            calibrate(spec, data[:5000], 1, **SMALL),
            calibrate(spec, data[5000:], 2, **SMALL),
        )
        left.merge(right)
        assert left.num_batches == 3
        again = calibrate(spec, data[:5000], 1, **SMALL)
        again.merge(calibrate(spec, data[5000:], 2, **SMALL))
        assert torch.equal(left.compute()[0], again.compute()[0])
        fresh = MseCalibrator(spec, **SMALL)  # type: ignore[arg-type]
        fresh.load_state_dict(left.state_dict())
        assert torch.equal(fresh.compute()[0], left.compute()[0])
        left.reset()
        assert left.num_batches == 0 and left.hist.counts is None


@pytest.mark.parametrize(
    "options",
    [{"num_bins": 0}, {"stride": 0}, {"start_bin": -1}, {"search": "bisect"}, {"grid_points": 0}],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        create_calibrator("mse", QuantSpec(), **options)
    with pytest.raises(ConfigError, match="per-tensor only"):
        MseCalibrator(QuantSpec(axis=0))

"""Percentile calibrator vs a sort-based percentile of the raw data (within one bin)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from calib_samples import KINDS, sample

from torchquant.calib import create_calibrator
from torchquant.calib.percentile import PercentileCalibrator, histogram_percentile
from torchquant.errors import ConfigError
from torchquant.quant.affine import qparams_from_range
from torchquant.quant.spec import QuantSpec


def nearest_rank(values: torch.Tensor, percentile: float) -> float:
    """Smallest value with at least ``percentile`` % of the data at or below it."""
    ordered = torch.sort(values.reshape(-1)).values
    k = math.ceil(Fraction(str(percentile)) * ordered.numel() / 100)
    return float(ordered[max(k, 1) - 1])


def observe_all(cal: PercentileCalibrator, data: torch.Tensor, batches: int) -> None:
    for part in data.chunk(batches):
        cal.observe(part.reshape(2, -1) if part.numel() % 2 == 0 else part)


def bin_width(cal: PercentileCalibrator) -> float:
    edges = cal.hist.edges()
    return float(edges[1] - edges[0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batches", [1, 7])
@pytest.mark.parametrize("percentile", [99.99, 99.0, 50.0, 100.0])
def test_symmetric_threshold_within_one_bin(kind: str, batches: int, percentile: float) -> None:
    data = sample(kind, 20_000, seed=batches)
    cal = PercentileCalibrator(QuantSpec(), percentile=percentile)
    observe_all(cal, data, batches)
    lo, hi = cal.range()
    assert lo.dtype == hi.dtype == torch.float32
    assert float(lo) == -float(hi)
    want = nearest_rank(data.abs(), percentile)
    if kind == "zeros":
        assert float(hi) == 0.0
        scale, _ = cal.compute()
        assert float(scale) == 1.0
        return
    width = bin_width(cal)
    assert abs(float(hi) - want) <= width * 1.001 + 1e-6, (float(hi), want, width)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batches", [1, 7])
@pytest.mark.parametrize("percentile", [99.99, 99.0, 90.0])
def test_affine_bounds_within_one_bin(kind: str, batches: int, percentile: float) -> None:
    data = sample(kind, 20_000, seed=10 + batches)
    cal = PercentileCalibrator(QuantSpec(symmetric=False), percentile=percentile)
    observe_all(cal, data, batches)
    lo, hi = cal.range()
    want_hi = nearest_rank(data, percentile)
    want_lo = -nearest_rank(-data, percentile)
    width = bin_width(cal)
    # Widening the range re-bins old counts proportionally, which can move mass by up to one
    # old bin (narrower than a new one): allow a second bin after several batches.
    tol = width * (1.001 if batches == 1 else 2.001) + 1e-6
    assert abs(float(hi) - want_hi) <= tol, (float(hi), want_hi, width)
    assert abs(float(lo) - want_lo) <= tol, (float(lo), want_lo, width)
    scale, zero_point = cal.compute()
    assert 0 < float(scale) < math.inf
    assert -128 <= int(zero_point) <= 127


def test_single_element() -> None:
    for spec in (QuantSpec(), QuantSpec(symmetric=False)):
        cal = PercentileCalibrator(spec)
        cal.observe(torch.tensor([-0.6]))
        lo, hi = cal.range()
        assert float(lo) == pytest.approx(-0.6, abs=1e-6)
        assert float(hi) == pytest.approx(0.6 if spec.symmetric else -0.6, abs=1e-6)
        assert 0 < float(cal.compute()[0]) < math.inf


def test_heavy_tail_clips_far_below_max() -> None:
    data = sample("student_t2", 50_000, seed=3)
    cal = create_calibrator("percentile", QuantSpec(), percentile=99.9)
    cal.observe(data)
    assert float(cal.range()[1]) < 0.2 * float(data.abs().max())


def test_edge_interpolation_is_modelopt_left_edge() -> None:
    # modelopt: cdf = cumsum(hist / total); idx = searchsorted(cdf, p / 100); edges[idx].
    counts = torch.tensor([5.0, 0.0, 3.0, 2.0], dtype=torch.float64)
    edges = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert float(histogram_percentile(counts, edges, 50.0, "edge")) == 0.0
    assert float(histogram_percentile(counts, edges, 60.0, "edge")) == 2.0
    assert float(histogram_percentile(counts, edges, 100.0, "edge")) == 3.0
    # Linear: 6 of 10 is 1/3 of the way into bin 2's 3 counts.
    assert float(histogram_percentile(counts, edges, 60.0)) == pytest.approx(2 + 1 / 3)
    assert float(histogram_percentile(counts, edges, 50.0)) == pytest.approx(1.0)
    assert float(histogram_percentile(counts, edges, 100.0)) == pytest.approx(4.0)
    cal = PercentileCalibrator(QuantSpec(), interpolation="edge", percentile=99.0)
    data = sample("laplace", 10_000, seed=4)
    cal.observe(data)
    hist = cal.hist
    assert hist.counts is not None
    cdf = torch.cumsum(hist.counts / hist.counts.sum(), 0)
    idx = int(torch.searchsorted(cdf, torch.tensor([0.99], dtype=torch.float64)))
    assert float(cal.range()[1]) == pytest.approx(float(hist.edges()[idx]), rel=1e-6)


def test_merge_state_and_reset() -> None:
    data = sample("gaussian", 12_000, seed=5)
    for spec in (QuantSpec(), QuantSpec(symmetric=False)):
        whole = PercentileCalibrator(spec, percentile=99.9)
        whole.observe(data)
        left, right = (
            PercentileCalibrator(spec, percentile=99.9),
            PercentileCalibrator(spec, percentile=99.9),
        )
        left.observe(data[:6000])
        right.observe(data[6000:])
        left.merge(right)
        assert left.num_batches == 2
        width = bin_width(left)
        assert float(left.range()[1]) == pytest.approx(float(whole.range()[1]), abs=2 * width)
        fresh = PercentileCalibrator(spec, percentile=99.9)
        fresh.load_state_dict(left.state_dict())
        assert torch.equal(fresh.compute()[0], left.compute()[0])
        left.reset()
        assert left.num_batches == 0 and left.hist.counts is None


def test_qparams_follow_the_range() -> None:
    cal = PercentileCalibrator(QuantSpec(bits=4, narrow_range=True))
    cal.observe(sample("laplace", 5000, seed=6))
    lo, hi = cal.range()
    scale, zero_point = cal.compute()
    want_scale, want_zero = qparams_from_range(lo, hi, cal.spec)
    assert torch.equal(scale, want_scale) and torch.equal(zero_point, want_zero)


@pytest.mark.parametrize(
    "options",
    [{"percentile": 0.0}, {"percentile": 100.5}, {"num_bins": 0}, {"interpolation": "nearest"}],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PercentileCalibrator(QuantSpec(), **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="per-tensor only"):
        PercentileCalibrator(QuantSpec(axis=0))

"""RangeHistogram against a slow reference: numpy binning and bin-by-bin overlap re-binning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchquant.calib._range_histogram import RangeHistogram
from torchquant.errors import ConfigError


def ref_bin(x: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """Counts of x over [lo, hi]: floor((x - lo) / w), x == hi in the last bin (float64)."""
    counts = np.zeros(n)
    if hi == lo:
        counts[n // 2] = x.size
        return counts
    w = (hi - lo) / n
    for v in x.astype(np.float64):
        counts[min(int(np.floor((v - lo) / w)), n - 1)] += 1
    return counts


def ref_rebin(counts: np.ndarray, lo: float, hi: float, new_lo: float, new_hi: float) -> np.ndarray:
    """Each old bin's count split over the new bins in proportion to the overlap length."""
    n = counts.size
    new = np.zeros(n)
    if lo == hi:
        new[min(int((lo - new_lo) / ((new_hi - new_lo) / n)), n - 1)] = counts.sum()
        return new
    old_edges = np.linspace(lo, hi, n + 1)
    new_edges = np.linspace(new_lo, new_hi, n + 1)
    for i in range(n):
        a, b = old_edges[i], old_edges[i + 1]
        for j in range(n):
            overlap = min(b, new_edges[j + 1]) - max(a, new_edges[j])
            if overlap > 0:
                new[j] += counts[i] * overlap / (b - a)
    return new


def ref_stream(batches: list[np.ndarray], n: int) -> tuple[np.ndarray, float, float]:
    lo, hi = float(batches[0].min()), float(batches[0].max())
    counts = ref_bin(batches[0], lo, hi, n)
    for x in batches[1:]:
        new_lo, new_hi = min(lo, float(x.min())), max(hi, float(x.max()))
        if (new_lo, new_hi) != (lo, hi):
            counts = ref_rebin(counts, lo, hi, new_lo, new_hi)
        lo, hi = new_lo, new_hi
        counts = counts + ref_bin(x, lo, hi, n)
    return counts, lo, hi


def test_hand_computed_rebinning() -> None:
    # Old [0, 3] in 3 bins [3, 6, 9]; new range [0, 4] (edges 0, 4/3, 8/3, 4):
    # bin 0 gets 3 + 6/3, bin 1 gets 2*6/3 + 2*9/3, bin 2 gets 9/3, plus the new value 4.0.
    h = RangeHistogram(3)
    h.load_state_dict(
        {"num_bins": 3, "lo": 0.0, "hi": 3.0, "counts": torch.tensor([3.0, 6.0, 9.0])}
    )
    h.add(torch.tensor([4.0]))
    assert (h.lo, h.hi) == (0.0, 4.0)
    assert h.counts is not None
    torch.testing.assert_close(h.counts, torch.tensor([5.0, 10.0, 4.0], dtype=torch.float64))


def test_one_batch_matches_reference() -> None:
    x = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    h = RangeHistogram(64)
    h.add(x)
    expected = ref_bin(x.numpy(), float(x.min()), float(x.max()), 64)
    assert h.counts is not None and h.counts.dtype == torch.float64
    assert np.array_equal(h.counts.numpy(), expected)
    assert h.edges().shape == (65,)
    assert (float(h.edges()[0]), float(h.edges()[-1])) == (h.lo, h.hi)


def test_many_widening_batches_match_reference() -> None:
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(400, generator=g) * (1 + i) + 0.3 * i for i in range(6)]
    h = RangeHistogram(32)
    for b in batches:
        h.add(b)
    counts, lo, hi = ref_stream([b.numpy() for b in batches], 32)
    assert (h.lo, h.hi) == (lo, hi)
    assert h.counts is not None
    np.testing.assert_allclose(h.counts.numpy(), counts, rtol=1e-10, atol=1e-9)
    assert h.total == pytest.approx(2400.0, rel=1e-12)


def test_constant_then_wider() -> None:
    h = RangeHistogram(8)
    h.add(torch.full((10,), 1.5))
    assert h.counts is not None
    assert h.lo == h.hi == 1.5
    assert float(h.counts[4]) == 10.0 and float(h.counts.sum()) == 10.0
    assert bool((h.edges() == 1.5).all())
    h.add(torch.tensor([-0.5, 3.5]))  # range [-0.5, 3.5], width 0.5: 1.5 is in bin 4
    expected = torch.zeros(8, dtype=torch.float64)
    expected[0], expected[4], expected[7] = 1.0, 10.0, 1.0
    torch.testing.assert_close(h.counts, expected)


def test_merge_matches_reference_rebinning() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(800, generator=g), torch.rand(700, generator=g) * 5
    ha, hb = RangeHistogram(16), RangeHistogram(16)
    ha.add(a)
    hb.add(b)
    ha.merge(hb)
    lo, hi = min(float(a.min()), float(b.min())), max(float(a.max()), float(b.max()))
    ca = ref_rebin(ref_bin(a.numpy(), float(a.min()), float(a.max()), 16), *_r(a), lo, hi)
    cb = ref_rebin(ref_bin(b.numpy(), float(b.min()), float(b.max()), 16), *_r(b), lo, hi)
    assert (ha.lo, ha.hi) == (lo, hi)
    assert ha.counts is not None
    np.testing.assert_allclose(ha.counts.numpy(), ca + cb, rtol=1e-10, atol=1e-9)


def _r(x: torch.Tensor) -> tuple[float, float]:
    return float(x.min()), float(x.max())


def test_merge_equals_single_stream_on_a_shared_range() -> None:
    # Exact when no re-binning happens: every batch spans the same [min, max].
    g = torch.Generator().manual_seed(3)
    batches = [
        torch.cat([torch.tensor([-4.0, 4.0]), torch.randn(300, generator=g)]) for _ in range(4)
    ]
    single, left, right = RangeHistogram(128), RangeHistogram(128), RangeHistogram(128)
    for b in batches:
        single.add(b)
    for b in batches[:2]:
        left.add(b)
    for b in batches[2:]:
        right.add(b)
    left.merge(right)
    assert left.counts is not None and single.counts is not None
    assert torch.equal(left.counts, single.counts)


def test_merge_with_empty_and_state_round_trip() -> None:
    h, empty = RangeHistogram(16), RangeHistogram(16)
    h.add(torch.linspace(-1, 2, 100))
    h.merge(empty)
    empty.merge(h)
    restored = RangeHistogram(16)
    restored.load_state_dict(h.state_dict())
    for other in (empty, restored):
        assert (other.lo, other.hi) == (h.lo, h.hi)
        assert other.counts is not None and h.counts is not None
        assert torch.equal(other.counts, h.counts)
    with pytest.raises(ConfigError):
        RangeHistogram(8).load_state_dict(h.state_dict())
    with pytest.raises(ConfigError):
        RangeHistogram(0)


@pytest.mark.parametrize("threads", [1, 2])
def test_many_steps_and_given_bounds_match_reference(threads: int) -> None:
    # More values than one binning step on one thread (several steps and a partial one).
    x = (np.random.default_rng(5).standard_normal(150_001) * 3).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        plain, given = RangeHistogram(1024), RangeHistogram(1024)
        plain.add(torch.from_numpy(x))
        given.add(torch.from_numpy(x), torch.aminmax(torch.from_numpy(x)))
    finally:
        torch.set_num_threads(before)
    expected = ref_bin(x, float(x.min()), float(x.max()), 1024)
    assert plain.counts is not None and given.counts is not None
    np.testing.assert_array_equal(plain.counts.numpy(), expected)
    np.testing.assert_array_equal(given.counts.numpy(), expected)

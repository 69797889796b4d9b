"""AbsHistogram against a slow numpy reference written from its docstring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchquant.calib._histogram import AbsHistogram
from torchquant.errors import ConfigError


def reference_histogram(
    batches: list[np.ndarray], num_bins: int, growth: str
) -> tuple[np.ndarray | None, float | None, float]:
    """Counts, width and pending zeros, one value at a time (bin = floor(|x| * f32(1/w)))."""
    counts: np.ndarray | None = None
    width: float | None = None
    pending = 0.0
    for batch in batches:
        a = np.abs(batch.astype(np.float32)).ravel()
        amax = float(a.max())
        if width is None:
            if amax == 0.0:
                pending += a.size
                continue
            width = amax / num_bins
            counts = np.zeros(num_bins)
            counts[0] += pending
            pending = 0.0
        assert counts is not None
        n = len(counts)
        while amax > n * width:
            n = n * 2 if growth == "double" else math.ceil(amax / width)
        counts = np.concatenate([counts, np.zeros(n - len(counts))])
        inv = np.float32(1.0 / width)
        for v in a:
            counts[min(int(np.float32(v) * inv), n - 1)] += 1
    return counts, width, pending


def _batches(seed: int, scales: list[float], size: int = 3000) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(size) * s).astype(np.float32) for s in scales]


@pytest.mark.parametrize("growth", ["append", "double"])
@pytest.mark.parametrize(
    "scales",
    [[1.0], [1.0, 0.5, 3.0, 1.0, 10.0], [0.0, 0.0, 2.0, 1.0], [0.0]],
    ids=["one", "growing", "zeros-first", "zeros-only"],
)
def test_matches_reference(growth: str, scales: list[float]) -> None:
    batches = _batches(0, scales)
    hist = AbsHistogram(256, growth)
    for b in batches:
        hist.add(torch.from_numpy(b))
    counts, width, pending = reference_histogram(batches, 256, growth)
    assert hist.bin_width == width
    assert hist.pending_zeros == pending
    if counts is None:
        assert hist.counts is None
    else:
        assert hist.counts is not None and hist.counts.dtype == torch.float64
        np.testing.assert_array_equal(hist.counts.numpy(), counts)
        assert hist.total == sum(b.size for b in batches)
        edges = hist.edges()
        assert edges.shape == (len(counts) + 1,) and float(edges[-1]) == len(counts) * width


def test_growth_rules() -> None:
    a, d = AbsHistogram(100, "append"), AbsHistogram(100, "double")
    for h in (a, d):
        h.add(torch.tensor([1.0]))
        h.add(torch.tensor([2.505]))
    assert a.counts is not None and d.counts is not None
    assert a.counts.numel() == 251 and d.counts.numel() == 400


def test_constant_and_single_element() -> None:
    h = AbsHistogram(2048)
    h.add(torch.full((10, 10), -3.0))
    h.add(torch.tensor([3.0]))
    assert h.counts is not None and h.bin_width == 3.0 / 2048
    assert h.counts.numel() == 2048 and h.counts[-1] == 101 and h.counts.sum() == 101


def test_memory_bounded_when_range_fixed() -> None:
    h = AbsHistogram(512)
    gen = torch.Generator().manual_seed(0)
    h.add(torch.tensor([4.0]))
    for _ in range(50):
        h.add(torch.randn(1000, generator=gen).clamp(-4, 4))
    assert h.counts is not None and h.counts.numel() == 512


@pytest.mark.parametrize("split", [1, 3])
def test_merge_equal_widths_is_exact(split: int) -> None:
    # The first batch holds the largest value until `big` (added last everywhere), so no
    # value falls on a bin edge that was the clamped right end in one stream only.
    batches = [torch.from_numpy(b) for b in _batches(1, [5.0, 2.0, 1.0, 0.5])]
    anchor = batches[0].abs().max().reshape(1)  # gives `other` the same width as `first`
    big = batches[1] * 4  # grows `other`: `first` is padded when merging
    whole, first, other, zeros = (
        AbsHistogram(300),
        AbsHistogram(300),
        AbsHistogram(300),
        AbsHistogram(300),
    )
    for b in [*batches, anchor, big, torch.zeros(7)]:
        whole.add(b)
    for b in batches[:split]:
        first.add(b)
    for b in [anchor, *batches[split:], big]:
        other.add(b)
    zeros.add(torch.zeros(7))
    first.merge(other)
    first.merge(zeros)
    assert first.counts is not None and whole.counts is not None
    np.testing.assert_array_equal(first.counts.numpy(), whole.counts.numpy())


def test_merge_different_widths_rebins_onto_coarser() -> None:
    fine, coarse = AbsHistogram(100), AbsHistogram(100)
    fine.add(torch.linspace(0, 1, 1001))
    coarse.add(torch.linspace(0, 4, 1001))
    total = fine.total + coarse.total
    for a, b in ((fine, coarse), (coarse, fine)):
        merged = AbsHistogram(100)
        merged.load_state_dict(a.state_dict())
        merged.merge(b)
        assert merged.bin_width == coarse.bin_width
        assert merged.counts is not None and merged.counts.numel() == 100
        assert math.isclose(merged.total, total, rel_tol=1e-12)
        # Mass of [0, 1] lands in the first 25 bins of width 0.04.
        assert math.isclose(float(merged.counts[:25].sum()), 1001 + 250, abs_tol=1.5)


def test_state_dict_round_trip() -> None:
    h = AbsHistogram(64, "double")
    h.add(torch.randn(100))
    h.add(torch.randn(100) * 9)
    g = AbsHistogram()
    g.load_state_dict(h.state_dict())
    assert (g.num_bins, g.growth, g.bin_width) == (64, "double", h.bin_width)
    assert g.counts is not None and h.counts is not None and torch.equal(g.counts, h.counts)


@pytest.mark.parametrize("kwargs", [{"num_bins": 0}, {"num_bins": 2.5}, {"growth": "triple"}])
def test_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        AbsHistogram(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("threads", [1, 2])
def test_many_steps_and_given_bounds_match_reference(threads: int) -> None:
    # More values than one binning step (several steps and a partial one on one thread,
    # one step with several threads), with and without the caller's (min, max).
    batches = _batches(3, [1.0, 4.0], size=150_001)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        plain, given = AbsHistogram(2048), AbsHistogram(2048)
        for b in batches:
            x = torch.from_numpy(b)
            plain.add(x)
            given.add(x, torch.aminmax(x))
    finally:
        torch.set_num_threads(before)
    counts, width, _ = reference_histogram(batches, 2048, "append")
    assert counts is not None and plain.counts is not None and given.counts is not None
    assert plain.bin_width == given.bin_width == width
    np.testing.assert_array_equal(plain.counts.numpy(), counts)
    np.testing.assert_array_equal(given.counts.numpy(), counts)

"""HFMG against a slow reference written from the spec (algorithms.md section 5)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from calib_samples import make

from torchquant.calib import HfmgCalibrator, create_calibrator
from torchquant.calib.hfmg import hfmg_candidates, hfmg_losses
from torchquant.errors import ConfigError, EmptyCalibrationError, NonFiniteError
from torchquant.quant.affine import qparams_from_range
from torchquant.quant.spec import QuantSpec

ASYM = QuantSpec(symmetric=False)
SYM = QuantSpec(symmetric=True, scale_rule="amct")
NBINS = 1024


def reference_histogram(x: torch.Tensor, n: int) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    w = (hi - lo) / n
    counts = np.zeros(n)
    idx = np.minimum(np.floor((x.double().numpy() - lo) / w), n - 1).astype(np.int64)
    np.add.at(counts, idx, 1.0)
    return counts


def reference_candidates(counts: np.ndarray) -> list[tuple[int, int]]:
    """The cursor walk, bin by bin, as the spec describes it."""
    n = counts.size
    step = max(math.ceil(round(counts.sum()) / 1e5), 1)
    left, right, out = 0, n - 1, []
    while right - left > n / 4:
        tl, tr, ls, rs = left, right, 0.0, 0.0
        while tl < tr and ls < step:
            ls += counts[tl]
            tl += 1
        while tl < tr and rs < step:
            rs += counts[tr]
            tr -= 1
        if right - tr >= tl - left:
            right = tr
        else:
            left = tl
        out.append((left, right))
    return out


def reference_loss(counts: np.ndarray, left: int, right: int, w: float, dst: int) -> float:
    """AMCT's per-source-bin L2 loss in data units, with its two cases written out."""
    n = counts.size
    dst_w = w * (right - left + 1) / dst
    begin = (np.arange(n) - left) * w
    end = begin + w
    first = np.clip(np.floor(begin / dst_w), 0, dst - 1)
    last = np.clip(np.floor(end / dst_w), 0, dst - 1)
    density = counts / w

    def norm(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
        return density * (np.power(b, 3) - np.power(a, 3)) / 3

    c_first = first * dst_w + dst_w / 2
    c_last = last * dst_w + dst_w / 2
    inside = norm(begin - c_first, end - c_first)
    across = (
        norm(begin - c_first, dst_w / 2)
        + (last - first - 1) * norm(-dst_w / 2, dst_w / 2)
        + norm(-dst_w / 2, end - c_last)
    )
    return float(np.where(first == last, inside, across).sum())


def reference_search(
    counts: np.ndarray, lo: float, hi: float, bits: int = 8
) -> tuple[list[tuple[float, float]], list[float]]:
    """Every candidate's clip range and loss."""
    w = (hi - lo) / counts.size
    cands = reference_candidates(counts)
    ranges = [(lo + left * w, lo + (right + 1) * w) for left, right in cands]
    losses = [reference_loss(counts, left, right, w, 2**bits) for left, right in cands]
    return ranges, losses


def assert_best(
    cal: HfmgCalibrator, ranges: list[tuple[float, float]], losses: list[float]
) -> None:
    """The chosen range is the reference argmin, or a candidate with an equal loss."""
    got_lo, got_hi = (float(v) for v in cal.range())
    i = min(
        range(len(ranges)), key=lambda j: abs(ranges[j][0] - got_lo) + abs(ranges[j][1] - got_hi)
    )
    assert got_lo == pytest.approx(ranges[i][0], rel=1e-6, abs=1e-6)
    assert got_hi == pytest.approx(ranges[i][1], rel=1e-6, abs=1e-6)
    assert losses[i] <= min(losses) * (1 + 1e-9), (i, int(np.argmin(losses)))


@pytest.mark.parametrize("kind", ["gaussian", "laplace", "relu", "student_t2"])
@pytest.mark.parametrize("spec", [ASYM, SYM], ids=["asym", "sym"])
def test_one_batch_matches_reference(kind: str, spec: QuantSpec) -> None:
    x = make(kind)
    cal = create_calibrator("hfmg", spec, num_of_bins=NBINS)
    cal.observe(x.reshape(100, -1))
    assert isinstance(cal, HfmgCalibrator)
    ranges, losses = reference_search(reference_histogram(x, NBINS), float(x.min()), float(x.max()))
    assert_best(cal, ranges, losses)
    lo, hi = cal.range()
    torch.testing.assert_close(cal.compute(), qparams_from_range(lo, hi, spec))


def test_step_above_one_matches_reference() -> None:
    x = make("laplace", n=250_000)  # step = ceil(250000 / 1e5) = 3
    cal = HfmgCalibrator(ASYM, num_of_bins=NBINS)
    cal.observe(x)
    ranges, losses = reference_search(reference_histogram(x, NBINS), float(x.min()), float(x.max()))
    assert_best(cal, ranges, losses)


@pytest.mark.parametrize("kind", ["gaussian", "student_t2"])
def test_many_batches_match_reference_on_the_merged_histogram(kind: str) -> None:
    # The streamed histogram itself is checked in test_range_histogram.py; here the search
    # runs on it, with 4 bits so that destination bins are wider than source bins.
    x = make(kind)
    cal = HfmgCalibrator(QuantSpec(bits=4, symmetric=False), num_of_bins=NBINS)
    for batch in x.chunk(7):
        cal.observe(batch)
    assert cal.hist.counts is not None and cal.hist.lo is not None and cal.hist.hi is not None
    assert cal.hist.total == pytest.approx(x.numel(), rel=1e-12)
    ranges, losses = reference_search(cal.hist.counts.numpy(), cal.hist.lo, cal.hist.hi, bits=4)
    assert_best(cal, ranges, losses)


def test_vectorized_pieces_against_reference() -> None:
    counts = torch.from_numpy(reference_histogram(make("relu"), NBINS))
    left, right = hfmg_candidates(counts)
    assert list(zip(left.tolist(), right.tolist(), strict=True)) == reference_candidates(
        counts.numpy()
    )
    w = 0.37
    expected = [
        reference_loss(counts.numpy(), a, b, w, 256)
        for a, b in zip(left.tolist(), right.tolist(), strict=True)
    ]
    np.testing.assert_allclose(
        hfmg_losses(counts, left, right, 256).numpy() * w**2, expected, rtol=1e-9
    )


@pytest.mark.parametrize("value", [3.5, -2.0, 0.0])
@pytest.mark.parametrize("n", [1, 1000])
def test_constant_zero_and_single_element(value: float, n: int) -> None:
    for spec in (ASYM, SYM):
        cal = HfmgCalibrator(spec)
        cal.observe(torch.full((n,), value))
        lo, hi = cal.range()
        assert float(lo) == float(hi) == value
        scale, _ = cal.compute()
        assert math.isfinite(float(scale)) and float(scale) > 0


def test_memory_does_not_grow() -> None:
    cal = HfmgCalibrator(ASYM, num_of_bins=2048)
    g = torch.Generator().manual_seed(7)
    sizes = []
    for i in range(30):
        cal.observe(torch.randn(1000, generator=g) * (1 + i / 10))
        state = cal.state_dict()["histogram"]
        sizes.append(state["counts"].numel())
    assert set(sizes) == {2048}


def test_merge_equals_single_stream_on_a_shared_range_and_state_dict() -> None:
    # Exact when no re-binning happens (every batch spans [-5, 5]); otherwise the merge
    # re-bins the other histogram proportionally, an approximation of the single stream.
    g = torch.Generator().manual_seed(8)
    batches = [
        torch.cat([torch.tensor([-5.0, 5.0]), torch.randn(2000, generator=g)]) for _ in range(4)
    ]
    single, left, right = (HfmgCalibrator(SYM, num_of_bins=NBINS) for _ in range(3))
    for b in batches:
        single.observe(b)
    for b in batches[:2]:
        left.observe(b)
    for b in batches[2:]:
        right.observe(b)
    left.merge(right)
    assert torch.equal(left.range()[1], single.range()[1])
    assert torch.equal(left.compute()[0], single.compute()[0])
    restored = HfmgCalibrator(SYM, num_of_bins=NBINS)
    restored.load_state_dict(left.state_dict())
    assert torch.equal(restored.compute()[0], left.compute()[0])
    restored.reset()
    with pytest.raises(EmptyCalibrationError):
        restored.compute()


def test_errors_name_the_tensor() -> None:
    cal = HfmgCalibrator(ASYM, tensor_name="block2.act")
    with pytest.raises(EmptyCalibrationError, match=re.escape("block2.act")):
        cal.compute()
    for bad in (float("nan"), float("-inf")):
        with pytest.raises(NonFiniteError, match=re.escape("block2.act")):
            cal.observe(torch.tensor([0.0, bad]))
    with pytest.raises(ConfigError):
        HfmgCalibrator(ASYM, num_of_bins=1000)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_prefix_sum_losses_on_arbitrary_ranges(bits: int) -> None:
    # Ranges of any width, also narrower than 2^bits source bins (destination bins inside
    # one source bin), at both ends of the histogram and over empty bins.
    g = torch.Generator().manual_seed(11)
    counts = torch.randint(0, 50, (NBINS,), generator=g).to(torch.float64)
    counts[300:500] = 0.0
    counts[100] = 1e6
    left = torch.tensor([0, 0, 5, 99, 100, 250, 700, 1023, 0, 400], dtype=torch.int64)
    right = torch.tensor([1023, 0, 7, 101, 100, 900, 1023, 1023, 511, 450], dtype=torch.int64)
    expected = [
        reference_loss(counts.numpy(), a, b, 1.0, 2**bits)
        for a, b in zip(left.tolist(), right.tolist(), strict=True)
    ]
    np.testing.assert_allclose(
        hfmg_losses(counts, left, right, 2**bits).numpy(), expected, rtol=1e-9
    )

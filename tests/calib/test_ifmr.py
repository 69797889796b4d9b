"""IFMR against a slow reference written from the spec (algorithms.md section 5)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from calib_samples import make

from torchquant.calib import IfmrCalibrator, create_calibrator
from torchquant.errors import (
    ConfigError,
    EmptyCalibrationError,
    NonFiniteError,
    TorchQuantWarning,
)
from torchquant.quant.spec import QuantSpec

FLT_EPSILON = 1.1920928955078125e-07
ASYM = QuantSpec(symmetric=False)
SYM = QuantSpec(symmetric=True, scale_rule="amct")


def candidate_loss(x: torch.Tensor, lo: float, hi: float, s: float) -> float:
    """mean((round(clamp(x, lo, hi) / s) * s - x)^2), float32 arithmetic as AMCT's."""
    q = torch.round(torch.clamp(x, lo, hi) / s) * s
    return float(((q - x) ** 2).sum(dtype=torch.float64)) / x.numel()


def reference_candidates(
    lo0: float, hi0: float, symmetric: bool, scale_min: bool
) -> list[tuple[float, float, float, int]]:
    """(clip lo, clip hi, scale, offset) of every r in arange(0.7, 1.3, 0.01), int8."""
    out = []
    for i in range(60):
        r = 0.7 + i * 0.01
        if symmetric:
            t = r * max(abs(hi0), abs(lo0))
            s = t / (127 + (1 if abs(hi0) < abs(lo0) else 0))
            s = 1.0 if s < FLT_EPSILON else s
            out.append((-t, t, s, 0))
        else:
            c, lo = r * hi0, (r * lo0 if scale_min else lo0)
            s = (max(c, 0.0) - min(lo, 0.0)) / 255
            s = 1.0 if s < FLT_EPSILON else s
            out.append((lo, c, s, -128 - round(lo / s)))
    return out


def reference_exact(
    x: torch.Tensor, symmetric: bool, pct: float = 0.999999, scale_min: bool = False
) -> tuple[list[float], list[float]]:
    """Losses and scales of all candidates, straight from the spec text."""
    n = x.numel()
    k = 1 if 1 - pct < FLT_EPSILON else n - int(pct * n)
    ordered = torch.sort(x).values
    hi0, lo0 = max(0.0, float(ordered[n - k])), min(0.0, float(ordered[k - 1]))
    cands = reference_candidates(lo0, hi0, symmetric, scale_min)
    return [candidate_loss(x, lo, hi, s) for lo, hi, s, _ in cands], [c[2] for c in cands]


def assert_best(scale: float, losses: list[float], scales: list[float]) -> None:
    """The calibrator's scale is the reference's best candidate, or one with an equal loss."""
    i = int(np.argmin(np.abs(np.array(scales) - scale)))
    assert scale == pytest.approx(scales[i], rel=1e-6)
    best = min(losses)
    assert losses[i] <= best * (1 + 1e-6) + 1e-30, (i, losses.index(best))


KINDS = [
    "gaussian",
    "laplace",
    "relu",
    "student_t2",
    "constant",
    "negative_constant",
    "zeros",
    "single",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("spec", [ASYM, SYM], ids=["asym", "sym"])
@pytest.mark.parametrize("num_batches", [1, 5])
def test_exact_matches_reference(kind: str, spec: QuantSpec, num_batches: int) -> None:
    x = make(kind)
    cal = create_calibrator("ifmr", spec, tensor_name="act")
    for batch in x.chunk(num_batches):
        cal.observe(batch.reshape(-1, 4) if batch.numel() % 4 == 0 else batch)
    scale, zero_point = cal.compute()
    losses, scales = reference_exact(x, spec.symmetric)
    assert_best(float(scale), losses, scales)
    if spec.symmetric:
        assert int(zero_point) == 0
    else:
        s = float(scale)
        lo = float(cal.range()[0])
        assert int(zero_point) == max(-128, min(127, -128 - round(lo / s)))


@pytest.mark.parametrize("spec", [ASYM, SYM], ids=["asym", "sym"])
def test_percentile_and_scale_min_options(spec: QuantSpec) -> None:
    x = make("laplace")
    for scale_min in (False, True):
        cal = IfmrCalibrator(spec, max_percentile=0.999, min_percentile=0.999, scale_min=scale_min)
        cal.observe(x)
        losses, scales = reference_exact(x, spec.symmetric, pct=0.999, scale_min=scale_min)
        assert_best(float(cal.compute()[0]), losses, scales)


def reference_histogram(
    x: torch.Tensor, n: int, symmetric: bool
) -> tuple[list[float], list[float]]:
    """Histogram mode, one batch: percentiles by walking the CDF, loss over bin centres."""
    lo, hi = float(x.min()), float(x.max())
    w = (hi - lo) / n
    counts = np.zeros(n)
    for v in x.double().numpy():
        counts[min(int(np.floor((v - lo) / w)), n - 1)] += 1
    edges = lo + np.arange(n + 1) * w
    edges[-1] = hi
    k = 1  # 20_000 values at 0.999999
    below = 0.0
    for i in range(n):  # the k-th smallest: where the CDF passes k - 1
        if below + counts[i] > k - 1:
            small = edges[i] + (k - 1 - below) / counts[i] * (edges[i + 1] - edges[i])
            break
        below += counts[i]
    above = 0.0
    for i in reversed(range(n)):
        if above + counts[i] > k - 1:
            large = edges[i + 1] - (k - 1 - above) / counts[i] * (edges[i + 1] - edges[i])
            break
        above += counts[i]
    centres, weights = (edges[:-1] + edges[1:]) / 2, counts
    losses, scales = [], []
    for clo, chi, s, _ in reference_candidates(min(0.0, small), max(0.0, large), symmetric, False):
        q = np.round(np.clip(centres, clo, chi) / s) * s
        losses.append(float((weights * (q - centres) ** 2).sum() / x.numel()))
        scales.append(s)
    return losses, scales


@pytest.mark.parametrize("kind", ["gaussian", "relu", "student_t2"])
@pytest.mark.parametrize("spec", [ASYM, SYM], ids=["asym", "sym"])
def test_histogram_mode_matches_reference(kind: str, spec: QuantSpec) -> None:
    x = make(kind)
    cal = IfmrCalibrator(spec, mode="histogram", num_bins=1024)
    cal.observe(x)
    losses, scales = reference_histogram(x, 1024, spec.symmetric)
    assert_best(float(cal.compute()[0]), losses, scales)


@pytest.mark.parametrize("kind", ["constant", "zeros", "single"])
def test_histogram_mode_degenerate(kind: str) -> None:
    x = make(kind)
    exact, hist = IfmrCalibrator(ASYM), IfmrCalibrator(ASYM, mode="histogram", num_bins=1024)
    exact.observe(x)
    hist.observe(x)
    scale, zero_point = hist.compute()
    torch.testing.assert_close((scale, zero_point), exact.compute())
    assert math.isfinite(float(scale)) and float(scale) > 0


def test_exact_cap_warns_and_falls_back() -> None:
    g = torch.Generator().manual_seed(4)
    batches = [torch.randn(600, generator=g) for _ in range(3)]
    capped = IfmrCalibrator(ASYM, max_samples=1000, num_bins=1024, tensor_name="conv1.input")
    hist = IfmrCalibrator(ASYM, mode="histogram", num_bins=1024)
    capped.observe(batches[0])
    assert capped.mode == "exact"
    with pytest.warns(TorchQuantWarning, match=re.escape("conv1.input")):
        capped.observe(batches[1])
    assert capped.mode == "histogram"
    capped.observe(batches[2])
    for b in batches:
        hist.observe(b)
    assert torch.equal(capped.range()[1], hist.range()[1])
    assert torch.equal(capped.compute()[0], hist.compute()[0])
    capped.reset()
    assert capped.mode == "exact" and capped.count == 0


def test_merging_a_histogram_state_into_exact_falls_back() -> None:
    g = torch.Generator().manual_seed(9)
    batches = [torch.randn(700, generator=g) for _ in range(2)]
    exact, hist = (
        IfmrCalibrator(SYM, num_bins=1024),
        IfmrCalibrator(SYM, mode="histogram", num_bins=1024),
    )
    exact.observe(batches[0])
    hist.observe(batches[1])
    with pytest.warns(TorchQuantWarning, match="histogram-mode"):
        exact.merge(hist)
    single = IfmrCalibrator(SYM, mode="histogram", num_bins=1024)
    for b in batches:
        single.observe(b)
    assert exact.mode == "histogram" and exact.count == 1400
    torch.testing.assert_close(exact.compute(), single.compute())


def test_batch_num_ignores_later_batches() -> None:
    g = torch.Generator().manual_seed(5)
    batches = [torch.randn(500, generator=g) * (1 + i) for i in range(4)]
    limited, first_two = IfmrCalibrator(SYM, batch_num=2), IfmrCalibrator(SYM)
    for b in batches:
        limited.observe(b)
    for b in batches[:2]:
        first_two.observe(b)
    assert limited.batches_used == 2 and limited.num_batches == 4
    assert torch.equal(limited.compute()[0], first_two.compute()[0])


@pytest.mark.parametrize("mode", ["exact", "histogram"])
def test_merge_and_state_dict(mode: str) -> None:
    g = torch.Generator().manual_seed(6)
    # Every batch spans [-6, 6], so the histogram mode merges without re-binning (exact).
    batches = [
        torch.cat([torch.tensor([-6.0, 6.0]), torch.randn(800, generator=g)]) for _ in range(4)
    ]
    single, left, right = (IfmrCalibrator(ASYM, mode=mode, num_bins=1024) for _ in range(3))  # type: ignore[arg-type]
    for b in batches:
        single.observe(b)
    for b in batches[:2]:
        left.observe(b)
    for b in batches[2:]:
        right.observe(b)
    left.merge(right)
    assert left.num_batches == 4 and left.count == single.count
    assert torch.equal(left.compute()[0], single.compute()[0])
    restored = IfmrCalibrator(ASYM, mode=mode, num_bins=1024)  # type: ignore[arg-type]
    restored.load_state_dict(left.state_dict())
    assert torch.equal(restored.compute()[0], left.compute()[0])
    assert restored.mode == mode


def test_errors_name_the_tensor() -> None:
    cal = IfmrCalibrator(ASYM, tensor_name="layer3.relu")
    with pytest.raises(EmptyCalibrationError, match=re.escape("layer3.relu")):
        cal.compute()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(NonFiniteError, match=re.escape("layer3.relu")):
            cal.observe(torch.tensor([1.0, bad]))
    with pytest.raises(ConfigError):
        IfmrCalibrator(ASYM, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        IfmrCalibrator(ASYM, search_range=(1.3, 0.7))


def test_default_candidates() -> None:
    r = IfmrCalibrator(ASYM).ratios
    assert r.numel() == 60
    assert float(r[0]) == pytest.approx(0.7) and float(r[-1]) == pytest.approx(1.29)


@pytest.mark.parametrize("spec", [ASYM, SYM], ids=["asym", "sym"])
@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_exact_prefix_sums_over_many_chunks(
    spec: QuantSpec, offset: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sorted values are summed in chunks (a small one here, with a partial last chunk);
    # an offset far from 0 relative to the scale stresses the cancellation in the cell sums.
    monkeypatch.setattr("torchquant.calib.ifmr._CHUNK", 777)
    x = make("laplace") + offset
    cal = IfmrCalibrator(spec)
    for batch in x.chunk(3):
        cal.observe(batch)
    losses, scales = reference_exact(x, spec.symmetric)
    assert_best(float(cal.compute()[0]), losses, scales)

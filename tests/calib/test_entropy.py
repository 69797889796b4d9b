"""EntropyCalibrator against slow references: one loop per candidate, from the spec text
(../shared/specs/algorithms.md section 2) and from modelopt's documented quirks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.stats
import torch

from torchquant.calib import EntropyCalibrator, create_calibrator
from torchquant.errors import ConfigError, EmptyCalibrationError, NonFiniteError
from torchquant.quant.spec import QuantSpec

# -- references ----------------------------------------------------------------------------


def expand_levels(src: np.ndarray, levels: int) -> np.ndarray:
    """Published Q: ``src`` merged into ``levels`` groups of ``len // levels`` bins (the last
    takes the rest), each group's count shared evenly over its non-empty bins."""
    level = np.minimum(np.arange(len(src)) // (len(src) // levels), levels - 1)
    level_count = np.bincount(level, weights=src, minlength=levels)
    level_bins = np.bincount(level, weights=src != 0, minlength=levels)
    return np.where(src != 0, level_count[level] / np.maximum(level_bins[level], 1), 0.0)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(P || Q) of normalized histograms; infinite where P > 0 = Q, NaN if Q is empty."""
    if q.sum() == 0:
        return float("nan")
    pk, qk = p / p.sum(), q / q.sum()
    if np.any((pk > 0) & (qk == 0)):
        return float("inf")
    used = pk > 0
    return float(np.sum(pk[used] * np.log(pk[used] / qk[used])))


def reference_tensorrt(bins: np.ndarray, start: int, levels: int) -> int:
    """Slides s7310: P folds the outliers into its last bin, Q from bins[:i]; first minimum."""
    best_i, best = len(bins), float("inf")
    for i in range(start, len(bins) + 1):
        p = bins[:i].copy()
        p[i - 1] += bins[i:].sum()
        kl = kl_divergence(p, expand_levels(bins[:i], levels))
        if kl < best:  # NaN never wins
            best_i, best = i, kl
    return best_i


def reference_modelopt(bins: np.ndarray, start: int, levels: int) -> int:
    """modelopt _compute_amax_entropy: bins[0] = bins[1], digitize/linspace levels, scipy
    entropy, last minimum with NaN as the minimum (np.argmin)."""
    bins = bins.copy()
    bins[0] = bins[1]
    divergences = []
    for i in range(start, len(bins) + 1):
        level = np.digitize(range(i), np.linspace(0, i, num=levels + 1)) - 1
        level[bins[:i] == 0] = -1
        used = level >= 0
        level_count = np.bincount(level[used], weights=bins[:i][used], minlength=levels)
        level_bins = np.bincount(level[used], minlength=levels)
        q = np.zeros(i)
        q[used] = level_count[level[used]] / level_bins[level[used]]
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            divergences.append(scipy.stats.entropy(p, q))
    d = np.array(divergences)
    return start + len(d) - 1 - int(np.argmin(d[::-1]))


# -- data ----------------------------------------------------------------------------------


def _data(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    makers: dict[str, Callable[[], np.ndarray]] = {
        "gaussian": lambda: rng.standard_normal(size),
        "laplace": lambda: rng.laplace(size=size),
        "relu": lambda: np.maximum(rng.standard_normal(size) + 0.3, 0),
        "student_t2": lambda: rng.standard_t(2, size=size),
        "constant": lambda: np.full(size, 0.75),
        "zeros": lambda: np.zeros(size),
        "single": lambda: np.array([-1.25]),
    }
    return makers[kind]().astype(np.float32)


KINDS = ["gaussian", "laplace", "relu", "student_t2", "constant", "zeros", "single"]
SMOOTH = ["gaussian", "laplace", "relu", "student_t2"]


def _run(variant: str, batches: list[np.ndarray], num_bins: int) -> tuple[float, float, float]:
    """(lo, hi) of the calibrator and the reference's hi on the same histogram (the histogram
    itself is checked against its own reference in test_histogram.py)."""
    cal = create_calibrator(
        "entropy", QuantSpec(), tensor_name="act", variant=variant, num_bins=num_bins
    )
    assert isinstance(cal, EntropyCalibrator)
    for b in batches:
        cal.observe(torch.from_numpy(b))
    lo, hi = cal.range()
    counts, width = cal.histogram.counts, cal.histogram.bin_width
    if counts is None or width is None:
        return float(lo), float(hi), 0.0
    bins = counts.numpy().copy()
    if variant == "modelopt":
        expected = reference_modelopt(bins, 128, 128) * width
    else:
        expected = (reference_tensorrt(bins, 128, 128) + 0.5) * width
    return float(lo), float(hi), float(np.float32(expected))


# -- tests ---------------------------------------------------------------------------------


def test_expansion_example_from_spec() -> None:
    src = np.array([1, 0, 2, 3, 5, 3, 1, 7], dtype=float)
    np.testing.assert_array_equal(expand_levels(src, 2), [2, 0, 2, 2, 4, 4, 4, 4])


@pytest.mark.parametrize("variant", ["tensorrt", "modelopt"])
@pytest.mark.parametrize("kind", KINDS)
def test_one_batch_matches_reference(variant: str, kind: str) -> None:
    batches = [_data(kind, np.random.default_rng(1), 20000)]
    num_bins = 2048 if kind == "gaussian" else 512
    lo, hi, expected = _run(variant, batches, num_bins)
    assert hi == expected
    assert lo == -hi


@pytest.mark.parametrize("variant", ["tensorrt", "modelopt"])
@pytest.mark.parametrize("kind", SMOOTH)
def test_many_batches_with_growth_match_reference(variant: str, kind: str) -> None:
    rng = np.random.default_rng(2)
    batches = [_data(kind, rng, 4000) * s for s in (0.5, 1.0, 0.8, 1.5, 1.0)]
    _, hi, expected = _run(variant, batches, 256)
    assert hi == expected


def test_unsigned_spec_and_levels() -> None:
    x = torch.from_numpy(_data("relu", np.random.default_rng(3), 20000))
    cal = EntropyCalibrator(QuantSpec(signed=False), variant="modelopt", num_bins=512)
    cal.observe(x)
    lo, hi = cal.range()
    counts, width = cal.histogram.counts, cal.histogram.bin_width
    assert counts is not None and width is not None
    assert float(lo) == 0.0
    assert float(hi) == float(np.float32(reference_modelopt(counts.numpy(), 128, 256) * width))
    scale, zero_point = cal.compute()
    assert float(scale) > 0 and int(zero_point) == 128


def test_mlperf_options_discard_first_bin() -> None:
    x = torch.from_numpy(_data("relu", np.random.default_rng(4), 20000))
    cal = EntropyCalibrator(QuantSpec(), num_bins=1024, growth="double", discard_first_bin=True)
    cal.observe(x)
    cal.observe(x * 1.7)  # doubles to 2048 bins
    hist = cal.histogram
    assert hist.counts is not None and hist.bin_width is not None and hist.counts.numel() == 2048
    counts, width = hist.counts.numpy().copy(), hist.bin_width
    counts[0] = 0
    assert float(cal.range()[1]) == float(
        np.float32((reference_tensorrt(counts, 128, 128) + 0.5) * width)
    )


def test_all_zero_gives_unit_scale() -> None:
    cal = EntropyCalibrator(QuantSpec())
    cal.observe(torch.zeros(3, 4))
    scale, zero_point = cal.compute()
    assert float(scale) == 1.0 and int(zero_point) == 0


def test_merge_equals_single_stream() -> None:
    rng = np.random.default_rng(5)
    batches = [torch.from_numpy(_data("laplace", rng, 5000)) for _ in range(4)]
    single, a, b = (EntropyCalibrator(QuantSpec(), num_bins=512) for _ in range(3))
    for x in batches:
        single.observe(x)
    a.observe(batches[0])
    b.observe(batches[0].abs().max().reshape(1))  # same first max -> same bin width
    single.observe(batches[0].abs().max().reshape(1))
    for x in batches[1:]:
        b.observe(x)
    a.merge(b)
    assert torch.equal(a.histogram.counts, single.histogram.counts)  # type: ignore[arg-type]
    assert a.range()[1] == single.range()[1]


def test_state_dict_round_trip_and_reset() -> None:
    cal = EntropyCalibrator(QuantSpec(), variant="modelopt", num_bins=512)
    cal.observe(torch.randn(1000, generator=torch.Generator().manual_seed(0)))
    other = EntropyCalibrator(QuantSpec(), variant="modelopt", num_bins=512)
    other.load_state_dict(cal.state_dict())
    assert other.num_batches == 1 and other.range()[1] == cal.range()[1]
    cal.reset()
    with pytest.raises(EmptyCalibrationError, match="'tensor'"):
        cal.compute()


def test_memory_bounded_over_batches() -> None:
    cal = EntropyCalibrator(QuantSpec(), num_bins=512)
    gen = torch.Generator().manual_seed(0)
    cal.observe(torch.tensor([6.0]))
    for _ in range(100):
        cal.observe(torch.randn(500, generator=gen).clamp(-6, 6))
    assert cal.histogram.counts is not None and cal.histogram.counts.numel() == 512


def test_errors_name_the_tensor() -> None:
    cal = create_calibrator("entropy", QuantSpec(), tensor_name="blk.3.out")
    with pytest.raises(EmptyCalibrationError, match=r"blk\.3\.out"):
        cal.compute()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(NonFiniteError, match=r"blk\.3\.out"):
            cal.observe(torch.tensor([1.0, bad]))
    with pytest.raises(ConfigError, match="per-tensor"):
        EntropyCalibrator(QuantSpec(axis=0))


@pytest.mark.parametrize(
    "options",
    [
        {"variant": "mxnet"},
        {"num_bins": 1},
        {"start_bin": 0},
        {"start_bin": 4096},
        {"start_bin": 64},  # below the 128 levels of the published variant
        {"num_quantized_bins": 1},
        {"variant": "modelopt", "growth": "double"},
        {"variant": "modelopt", "discard_first_bin": True},
        {"growth": "sideways"},
    ],
)
def test_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        EntropyCalibrator(QuantSpec(), tensor_name="t", **options)


def test_deterministic() -> None:
    x = torch.randn(50000, generator=torch.Generator().manual_seed(7))
    results = set()
    for _ in range(3):
        cal = EntropyCalibrator(QuantSpec())
        cal.observe(x)
        results.add(float(cal.range()[1]))
    assert len(results) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["tensorrt", "modelopt"])
def test_cuda_matches_cpu(variant: str) -> None:
    x = torch.randn(200000, generator=torch.Generator().manual_seed(8))
    results = []
    for device in ("cpu", "cuda"):
        cal = EntropyCalibrator(QuantSpec(), variant=variant)
        cal.observe(x.to(device))
        cal.observe(x.to(device) * 1.3)
        _, hi = cal.range()
        assert hi.device.type == device
        results.append(float(hi))
    assert results[0] == results[1]


@pytest.mark.parametrize("levels", [100, 128, 200])
def test_modelopt_uneven_levels(levels: int) -> None:
    x = torch.from_numpy(_data("laplace", np.random.default_rng(9), 20000))
    cal = EntropyCalibrator(
        QuantSpec(), variant="modelopt", num_bins=512, num_quantized_bins=levels, start_bin=64
    )
    cal.observe(x)
    counts, width = cal.histogram.counts, cal.histogram.bin_width
    assert counts is not None and width is not None
    expected = reference_modelopt(counts.numpy(), 64, levels) * width
    assert float(cal.range()[1]) == float(np.float32(expected))


@pytest.mark.parametrize(
    "spec", [QuantSpec(signed=False, symmetric=False), QuantSpec(symmetric=False)]
)
def test_one_sided_range_only_for_data_never_negative(spec: QuantSpec) -> None:
    """|x| search: (-T, T) once a negative value was seen, (0, T) for post-ReLU data."""
    gen = torch.Generator().manual_seed(0)
    signed = create_calibrator("entropy", spec, tensor_name="t")
    relu = create_calibrator("entropy", spec, tensor_name="t")
    for _ in range(3):
        x = torch.randn(4096, generator=gen)
        signed.observe(x)
        relu.observe(torch.relu(x))
    lo, hi = signed.range()
    assert float(lo) == -float(hi) and float(hi) > 0
    lo, hi = relu.range()
    assert float(lo) == 0.0 and float(hi) > 0
    clone = create_calibrator("entropy", spec, tensor_name="t")
    clone.load_state_dict(signed.state_dict())
    assert float(clone.range()[0]) < 0

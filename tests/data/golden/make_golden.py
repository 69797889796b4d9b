"""Golden vectors for qlib's calibrators, computed by the Python package torchquant.

PROVENANCE ONLY: this script does not run in CI. It needs torchquant (the Python package
that was in this repository under src/torchquant before the C++ port replaced it) and its
test references (tests/calib/test_*.py), both of which are deleted after the port. It is
kept to document exactly how tests/data/golden/ was produced.

How it was run (from the repository root, torchquant installed editable):

    OMP_NUM_THREADS=1 python tests/data/golden/make_golden.py

What it writes, next to itself:

- ``<input>.<batch>.npy``: the seeded input batches (float32, C order, 1-D), generated with
  numpy's ``default_rng`` (the seed of each input is in golden.json);
- ``weight_oihw.npy``: a seeded 4-D weight (16, 8, 3, 3) for per-channel min/max (ARQ);
- ``golden.json``: for each input and each calibrator configuration, what torchquant
  computes after observing the batches in order (range, scale, zero point and the
  histogram-level choice), plus a few hand-checkable cases. The schema is in README.md.

Every search result written here is first checked against the slow reference loops of
torchquant's own tests (tests/calib/test_entropy.py, test_hfmg.py, test_ifmr.py,
test_mse.py, test_percentile.py); the script stops on any disagreement.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests" / "calib"))  # torchquant's test references

import test_entropy as ref_entropy  # noqa: E402
import test_hfmg as ref_hfmg  # noqa: E402
import test_ifmr as ref_ifmr  # noqa: E402
import test_mse as ref_mse  # noqa: E402
import test_percentile as ref_percentile  # noqa: E402

import torchquant  # noqa: E402
from torchquant.calib import create_calibrator  # noqa: E402
from torchquant.calib.entropy import best_candidate  # noqa: E402
from torchquant.calib.hfmg import _best_candidate, hfmg_candidates, hfmg_losses  # noqa: E402
from torchquant.calib.ifmr import _sorted  # noqa: E402
from torchquant.calib.mse import histogram_mse  # noqa: E402
from torchquant.calib.percentile import histogram_percentile  # noqa: E402
from torchquant.calib._histogram import AbsHistogram  # noqa: E402
from torchquant.calib._range_histogram import RangeHistogram  # noqa: E402
from torchquant.quant.affine import qparams_from_range  # noqa: E402
from torchquant.quant.spec import QuantSpec  # noqa: E402

BATCH = 50_000
TINY = 64

# -- inputs --------------------------------------------------------------------------------


def _gaussian_outliers(rng: np.random.Generator, n: int) -> np.ndarray:
    """N(0, 1) with 0.1% of the values replaced by +-U(20, 60) (random positions)."""
    x = rng.standard_normal(n)
    k = n // 1000
    pos = rng.choice(n, size=k, replace=False)
    x[pos] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(20.0, 60.0, size=k)
    return x


def _bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mixture 40% N(-2, 0.5^2), 60% N(3, 0.8^2): asymmetric, empty near 0."""
    left = rng.random(n) < 0.4
    return np.where(left, rng.normal(-2.0, 0.5, n), rng.normal(3.0, 0.8, n))


INPUTS: list[dict[str, Any]] = [
    {"name": "gaussian", "seed": 101, "description": "N(0, 1)",
     "make": lambda r, n: r.standard_normal(n)},
    {"name": "relu_gaussian", "seed": 102, "description": "max(N(0, 1), 0): half exact zeros",
     "make": lambda r, n: np.maximum(r.standard_normal(n), 0.0)},
    {"name": "laplace", "seed": 103, "description": "Laplace(0, 1)",
     "make": lambda r, n: r.laplace(0.0, 1.0, n)},
    {"name": "student_t2", "seed": 104, "description": "Student-t, df = 2 (heavy tail)",
     "make": lambda r, n: r.standard_t(2.0, n)},
    {"name": "bimodal", "seed": 105, "description": "40% N(-2, 0.5^2) + 60% N(3, 0.8^2)",
     "make": _bimodal},
    {"name": "gaussian_outliers", "seed": 106,
     "description": "N(0, 1) with 0.1% of values replaced by +-U(20, 60)",
     "make": _gaussian_outliers},
    {"name": "uniform", "seed": 107, "description": "U(-1, 2)",
     "make": lambda r, n: r.uniform(-1.0, 2.0, n)},
    {"name": "constant", "seed": None, "description": "every value -1.75 (2 batches of 64)",
     "make": lambda r, n: np.full(n, -1.75)},
    {"name": "zeros", "seed": None, "description": "every value 0 (2 batches of 64)",
     "make": lambda r, n: np.zeros(n)},
]

# -- grids and calibrator configurations ---------------------------------------------------

SPECS: dict[str, QuantSpec] = {
    "int8_sym": QuantSpec(),  # TensorRT activations: s = amax / 127
    "int8_sym_amct": QuantSpec(scale_rule="amct"),  # AMCT symmetric: /127, or /128 if |lo|>|hi|
    "int8_affine": QuantSpec(symmetric=False),  # [-128, 127], z = -128 - round(lo / s)
    "uint8_affine": QuantSpec(signed=False, symmetric=False),  # [0, 255], z = -round(lo / s)
}

CONFIGS: dict[str, dict[str, Any]] = {
    "entropy_tensorrt": {
        "calibrator": "entropy", "spec": "int8_sym",
        "options": {"variant": "tensorrt", "num_bins": 2048, "start_bin": 128,
                    "num_quantized_bins": 128, "growth": "append", "discard_first_bin": False},
    },
    "entropy_tensorrt_mlperf": {
        "calibrator": "entropy", "spec": "int8_sym",
        "options": {"variant": "tensorrt", "num_bins": 1024, "start_bin": 128,
                    "num_quantized_bins": 128, "growth": "double", "discard_first_bin": True},
    },
    "entropy_modelopt": {
        "calibrator": "entropy", "spec": "int8_sym",
        "options": {"variant": "modelopt", "num_bins": 2048, "start_bin": 128,
                    "num_quantized_bins": 128, "growth": "append", "discard_first_bin": False},
    },
    "entropy_tensorrt_uint8_affine": {
        "calibrator": "entropy", "spec": "uint8_affine",
        "options": {"variant": "tensorrt", "num_bins": 2048, "start_bin": 256,
                    "num_quantized_bins": 256, "growth": "append", "discard_first_bin": False},
    },
    "percentile_99.99_sym": {
        "calibrator": "percentile", "spec": "int8_sym",
        "options": {"percentile": 99.99, "num_bins": 2048, "interpolation": "linear"},
    },
    "percentile_99.999_sym": {
        "calibrator": "percentile", "spec": "int8_sym",
        "options": {"percentile": 99.999, "num_bins": 2048, "interpolation": "linear"},
    },
    "percentile_99.99_sym_edge": {
        "calibrator": "percentile", "spec": "int8_sym",
        "options": {"percentile": 99.99, "num_bins": 2048, "interpolation": "edge"},
    },
    "percentile_99.99_affine": {
        "calibrator": "percentile", "spec": "int8_affine",
        "options": {"percentile": 99.99, "num_bins": 2048, "interpolation": "linear"},
    },
    "percentile_99.999_affine": {
        "calibrator": "percentile", "spec": "int8_affine",
        "options": {"percentile": 99.999, "num_bins": 2048, "interpolation": "linear"},
    },
    "mse_sym": {
        "calibrator": "mse", "spec": "int8_sym",
        "options": {"num_bins": 2048, "start_bin": 128, "stride": 1},
    },
    "mse_affine": {
        "calibrator": "mse", "spec": "int8_affine",
        "options": {"num_bins": 2048, "start_bin": 128, "stride": 1, "search": "scale"},
    },
    "minmax_sym": {"calibrator": "minmax", "spec": "int8_sym", "options": {}},
    "minmax_affine": {"calibrator": "minmax", "spec": "int8_affine", "options": {}},
    "ifmr_exact_affine": {
        "calibrator": "ifmr", "spec": "int8_affine",
        "options": {"mode": "exact", "max_percentile": 0.999999, "min_percentile": 0.999999,
                    "search_range": [0.7, 1.3], "search_step": 0.01, "scale_min": False},
    },
    "ifmr_exact_sym_amct": {
        "calibrator": "ifmr", "spec": "int8_sym_amct",
        "options": {"mode": "exact", "max_percentile": 0.999999, "min_percentile": 0.999999,
                    "search_range": [0.7, 1.3], "search_step": 0.01, "scale_min": False},
    },
    "hfmg_4096_affine": {"calibrator": "hfmg", "spec": "int8_affine",
                         "options": {"num_of_bins": 4096}},
    "hfmg_4096_sym_amct": {"calibrator": "hfmg", "spec": "int8_sym_amct",
                           "options": {"num_of_bins": 4096}},
    "hfmg_2048_affine": {"calibrator": "hfmg", "spec": "int8_affine",
                         "options": {"num_of_bins": 2048}},
    "hfmg_2048_sym_amct": {"calibrator": "hfmg", "spec": "int8_sym_amct",
                           "options": {"num_of_bins": 2048}},
}

# Per-channel min/max (ARQ for weights; TensorRT weights): spec and channel axis.
PER_CHANNEL: dict[str, QuantSpec] = {
    "arq_int8_axis0": QuantSpec(axis=0, scale_rule="amct"),
    "arq_int4_axis0": QuantSpec(bits=4, axis=0, scale_rule="amct"),
    "arq_int8_axis1": QuantSpec(axis=1, scale_rule="amct"),
    "tensorrt_weight_int8_axis0": QuantSpec(axis=0, narrow_range=True),
    "arq_int8_per_tensor": QuantSpec(scale_rule="amct"),
}


# -- helpers -------------------------------------------------------------------------------


def spec_json(spec: QuantSpec) -> dict[str, Any]:
    return {**spec.to_dict(), "qmin": spec.qmin, "qmax": spec.qmax}


def f32(v: Any) -> float:
    """A float32 value as the exact Python float (JSON prints it so it parses back exactly)."""
    return float(np.float32(float(v)))


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"golden check failed: {what}")


def run_config(cfg: dict[str, Any], batches: list[np.ndarray]) -> Any:
    options = dict(cfg["options"])
    if "search_range" in options:
        options["search_range"] = tuple(options["search_range"])
    cal = create_calibrator(cfg["calibrator"], SPECS[cfg["spec"]], tensor_name="golden",
                            **options)
    for b in batches:
        cal.observe(torch.from_numpy(b))
    return cal


def abs_hist_detail(hist: AbsHistogram) -> dict[str, Any]:
    if hist.counts is None or hist.bin_width is None:
        return {"histogram": "abs", "bins": 0, "bin_width": None, "pending_zeros": hist.pending_zeros}
    return {"histogram": "abs", "bins": int(hist.counts.numel()), "bin_width": hist.bin_width,
            "total": float(hist.counts.sum())}


def range_hist_detail(hist: RangeHistogram) -> dict[str, Any]:
    return {"histogram": "range", "bins": hist.num_bins, "hist_lo": hist.lo, "hist_hi": hist.hi,
            "total": hist.total}


# -- per-calibrator detail and reference checks --------------------------------------------


def detail_entropy(cal: Any, lo: float, hi: float, where: str) -> dict[str, Any]:
    hist = cal.histogram
    out = abs_hist_detail(hist)
    out["saw_negative"] = cal.saw_negative
    if hist.counts is None:
        out["chosen_bin"] = None
        check(hi == 0.0 and lo == 0.0, f"{where}: only zeros gives (0, 0)")
        return out
    counts = hist.counts.clone()
    bins = counts.numpy().copy()
    if cal.variant == "modelopt":
        counts[0] = counts[1]
        want = ref_entropy.reference_modelopt(bins, cal.start_bin, cal.num_quantized_bins)
    else:
        if cal.discard_first_bin:
            counts[0] = 0.0
            bins[0] = 0.0
        want = ref_entropy.reference_tensorrt(bins, cal.start_bin, cal.num_quantized_bins)
    i = best_candidate(counts, cal.start_bin, cal.num_quantized_bins, cal.variant)
    check(i == want, f"{where}: chosen bin {i} vs reference {want}")
    offset = 0.0 if cal.variant == "modelopt" else 0.5
    check(hi == f32((i + offset) * hist.bin_width), f"{where}: threshold from the chosen bin")
    out["chosen_bin"] = i
    out["threshold_rule"] = "i * bin_width" if cal.variant == "modelopt" else "(i + 0.5) * bin_width"
    return out


def detail_percentile(cal: Any, lo: float, hi: float, data: np.ndarray, where: str) -> dict[str, Any]:
    pct = cal.percentile
    if cal.spec.symmetric:
        out = abs_hist_detail(cal.hist)
        if cal.hist.counts is None:
            return out
        counts = cal.hist.counts
        edges = cal.hist.edges()
        out["hi_bin"] = _percentile_bin(counts, pct, cal.interpolation)
        check(hi == f32(histogram_percentile(counts, edges, pct, cal.interpolation)), where)
        if cal.interpolation == "edge":
            # modelopt's arithmetic, in numpy: cdf = cumsum(hist / total), searchsorted.
            h = counts.numpy()
            idx = int(np.searchsorted(np.cumsum(h / h.sum()), pct / 100.0))
            check(idx == out["hi_bin"] and hi == f32(edges[idx]), f"{where}: modelopt edge")
            # The bin an exact count would pick (cum >= pct% of total): the float cdf can
            # fall just short of the target and move to a later non-empty bin.
            exact = int(np.searchsorted(np.cumsum(h), math.ceil(h.sum() * pct / 100 - 1e-9)))
            out["exact_count_bin"] = exact
            return out
        want = ref_percentile.nearest_rank(torch.from_numpy(np.abs(data)), pct)
        width = cal.hist.bin_width
        check(abs(hi - want) <= width * 1.001 + 1e-6, f"{where}: {hi} vs nearest rank {want}")
        return out
    out = range_hist_detail(cal.hist)
    counts = cal.hist.counts
    n = counts.numel()
    out["hi_bin"] = _percentile_bin(counts, pct, cal.interpolation)
    out["lo_bin"] = n - 1 - _percentile_bin(counts.flip(0), pct, cal.interpolation)
    width = (cal.hist.hi - cal.hist.lo) / n
    x = torch.from_numpy(data)
    for got, want in ((hi, ref_percentile.nearest_rank(x, pct)),
                      (lo, -ref_percentile.nearest_rank(-x, pct))):
        # Two batches: re-binning may move mass by one old bin (see test_percentile.py).
        check(abs(got - want) <= width * 2.001 + 1e-6, f"{where}: {got} vs nearest rank {want}")
    return out


def _percentile_bin(counts: torch.Tensor, pct: float, interpolation: str) -> int:
    """The bin `histogram_percentile` reads (same arithmetic)."""
    counts = counts.to(torch.float64)
    n = counts.numel()
    if interpolation == "edge":
        cdf = torch.cumsum(counts / counts.sum(), 0)
        target = torch.tensor([pct / 100.0], dtype=torch.float64)
        return int(torch.searchsorted(cdf, target).clamp(max=n - 1))
    cum = torch.cumsum(counts, 0)
    total = cum[-1:]
    target = torch.clamp(total * (pct / 100.0) - total * 1e-12, min=0.0)
    return int(torch.searchsorted(cum, target).clamp(max=n - 1))


def detail_mse(cal: Any, lo: float, hi: float, where: str) -> dict[str, Any]:
    out = abs_hist_detail(cal.hist) if cal.spec.symmetric else range_hist_detail(cal.hist)
    if cal.hist.counts is None:
        out["chosen_bin"] = None
        return out
    errors = cal.errors()
    best = int(torch.argmin(errors))
    idx = cal.candidate_bins(cal.hist.counts.numel(), torch.device("cpu"))
    cand_lo, cand_hi = cal.candidates()
    check((f32(cand_lo[best]), f32(cand_hi[best])) == (lo, hi), f"{where}: argmin candidate")
    # The reference loop of test_mse.py over every candidate.
    ref = [ref_mse.centre_mse(cal, a, b) for a, b in ref_mse.reference_candidates(cal)]
    check(ref[best] <= min(ref) * (1 + 1e-9) + 1e-15, f"{where}: reference loop minimum")
    out["chosen_bin"] = int(idx[best])
    out["num_candidates"] = int(idx.numel())
    out["best_error"] = float(errors[best])
    return out


def detail_ifmr(cal: Any, lo: float, hi: float, data: np.ndarray, where: str) -> dict[str, Any]:
    values = _sorted(cal._values)
    lo0, hi0 = cal._exact_bounds(values)
    cand_lo, cand_hi = cal._candidates(lo0, hi0)
    k = next(j for j in range(cand_lo.numel())
             if (f32(cand_lo[j]), f32(cand_hi[j])) == (lo, hi))
    loss = float(cal._losses(values, None, cand_lo[k:k + 1], cand_hi[k:k + 1])[0])
    losses, scales = ref_ifmr.reference_exact(torch.from_numpy(data), cal.spec.symmetric)
    scale = float(cal.compute()[0])
    i = int(np.argmin(np.abs(np.array(scales) - scale)))
    check(abs(scale - scales[i]) <= 1e-6 * abs(scales[i]), f"{where}: scale is a candidate's")
    check(losses[i] <= min(losses) * (1 + 1e-6) + 1e-30, f"{where}: reference minimum")
    k_min, k_max = cal._ks()
    return {"count": cal.count, "k_min": k_min, "k_max": k_max, "min0": lo0, "max0": hi0,
            "num_candidates": int(cand_lo.numel()), "ratio_index": k,
            "ratio": float(cal.ratios[k]), "loss": loss}


def detail_hfmg(cal: Any, lo: float, hi: float, where: str) -> dict[str, Any]:
    hist = cal.hist
    out = range_hist_detail(hist)
    if hist.lo == hist.hi:
        out.update({"left_bin": None, "right_bin": None, "num_candidates": 0})
        check(lo == hi == f32(hist.lo), f"{where}: constant gives (c, c)")
        return out
    left, right = hfmg_candidates(hist.counts)
    best = _best_candidate(hist.counts, left, right, 2 ** cal.spec.bits)
    L, R = int(left[best]), int(right[best])
    w = (hist.hi - hist.lo) / hist.num_bins
    check((f32(hist.lo + L * w), f32(hist.lo + (R + 1) * w)) == (lo, hi), f"{where}: (L, R)")
    counts = hist.counts.numpy()
    pairs = list(zip(left.tolist(), right.tolist(), strict=True))
    # The reference loss (test_hfmg.py) of every candidate torchquant walked: the pick is
    # their minimum.
    losses = [ref_hfmg.reference_loss(counts, a, b, w, 2 ** cal.spec.bits) for a, b in pairs]
    check(losses[best] <= min(losses) * (1 + 1e-9), f"{where}: reference minimum")
    # The reference's bin-by-bin cursor walk: on re-binned (fractional) counts, a cursor
    # whose running sum lands exactly on `step` (a value split between two bins) can stop
    # one bin apart from torchquant's prefix-sum bisection. Record whether both walks agree
    # and whether the reference search picks the same (L, R).
    ref_pairs = ref_hfmg.reference_candidates(counts)
    ref_ranges, ref_losses = ref_hfmg.reference_search(counts, hist.lo, hist.hi, cal.spec.bits)
    ref_best = ref_pairs[int(np.argmin(ref_losses))]
    out.update({"left_bin": L, "right_bin": R, "num_candidates": int(left.numel()),
                "candidate_index": best, "step": max(math.ceil(round(hist.total) / 1e5), 1),
                "reference_walk_agrees": ref_pairs == pairs,
                "reference_walk_picks_same": list(ref_best) == [L, R]})
    return out


def detail_minmax(cal: Any, lo: float, hi: float, data: np.ndarray, where: str) -> dict[str, Any]:
    check((lo, hi) == (f32(data.min()), f32(data.max())), f"{where}: min/max")
    return {}


# -- hand-checkable cases ------------------------------------------------------------------


def hand_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    # GTC 2017 slides (s7310), as quoted in shared/specs/algorithms.md section 2.
    src = np.array([1, 0, 2, 3, 5, 3, 1, 7], dtype=float)
    q = ref_entropy.expand_levels(src, 2)
    check(q.tolist() == [2, 0, 2, 2, 4, 4, 4, 4], "published expansion example")
    cases.append({"name": "tensorrt_published_expansion",
                  "source": "GTC 2017, S. Migacz, '8-bit Inference with TensorRT' (s7310)",
                  "bins": src.tolist(), "levels": 2, "expanded_q": q.tolist()})

    # The KL search on that small histogram, both variants (torchquant == reference loop).
    counts = torch.tensor(src, dtype=torch.float64)
    for variant, start in (("tensorrt", 2), ("modelopt", 2)):
        c = counts.clone()
        if variant == "modelopt":
            c[0] = c[1]
            want = ref_entropy.reference_modelopt(src.copy(), start, 2)
        else:
            want = ref_entropy.reference_tensorrt(src.copy(), start, 2)
        got = best_candidate(c, start, 2, variant)
        check(got == want, f"small KL {variant}")
        cases.append({"name": f"entropy_small_{variant}", "bins": src.tolist(),
                      "first_bin_rule": "bins[0] = bins[1]" if variant == "modelopt" else "none",
                      "start_bin": start, "levels": 2, "chosen_bin": got})

    # |x| histogram growth: 100 bins over [0, 1], then a value 2.505.
    sizes = {}
    for growth in ("append", "double"):
        h = AbsHistogram(100, growth)
        h.add(torch.tensor([1.0]))
        h.add(torch.tensor([2.505]))
        sizes[growth] = int(h.counts.numel())
    check(sizes == {"append": 251, "double": 400}, "growth rules")
    cases.append({"name": "abs_histogram_growth", "num_bins": 100, "batches": [[1.0], [2.505]],
                  "bins_after": sizes})

    # Percentile of a 4-bin histogram.
    counts = torch.tensor([5.0, 0.0, 3.0, 2.0], dtype=torch.float64)
    edges = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    results = []
    for pct in (50.0, 60.0, 100.0):
        for interp in ("edge", "linear"):
            results.append({"percentile": pct, "interpolation": interp,
                            "value": float(histogram_percentile(counts, edges, pct, interp))})
    cases.append({"name": "histogram_percentile", "counts": counts.tolist(),
                  "edges": edges.tolist(), "results": results})

    # Histogram MSE by hand (2-bit signed symmetric grid).
    centres = torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64)
    w = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)
    lo, hi = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 1.0])
    mse = histogram_mse(centres, w, lo, hi, QuantSpec(bits=2))
    check(torch.allclose(mse, torch.tensor([0.25, 1.25], dtype=torch.float64)), "hand MSE")
    cases.append({"name": "histogram_mse", "spec": spec_json(QuantSpec(bits=2)),
                  "centres": centres.tolist(), "counts": w.tolist(),
                  "ranges": [[-2.0, 2.0], [-1.0, 1.0]], "mse": mse.tolist()})

    # Range histogram: proportional re-binning when the range grows.
    h = RangeHistogram(3)
    h.load_state_dict({"num_bins": 3, "lo": 0.0, "hi": 3.0,
                       "counts": torch.tensor([3.0, 6.0, 9.0])})
    h.add(torch.tensor([4.0]))
    check(np.allclose(h.counts.numpy(), [5.0, 10.0, 4.0], rtol=1e-12), "range re-binning")
    cases.append({"name": "range_histogram_rebin", "num_bins": 3,
                  "before": {"lo": 0.0, "hi": 3.0, "counts": [3.0, 6.0, 9.0]},
                  "add": [4.0], "after": {"lo": h.lo, "hi": h.hi, "counts": h.counts.tolist()}})

    # Range histogram: constant data sits in bin n // 2, then moves as a point mass.
    h = RangeHistogram(8)
    h.add(torch.full((10,), 1.5))
    first = h.counts.tolist()
    h.add(torch.tensor([-0.5, 3.5]))
    cases.append({"name": "range_histogram_constant_then_wider", "num_bins": 8,
                  "batches": [[1.5] * 10, [-0.5, 3.5]], "counts_after_first": first,
                  "after": {"lo": h.lo, "hi": h.hi, "counts": h.counts.tolist()}})

    # IFMR's default candidate ratios.
    cal = create_calibrator("ifmr", SPECS["int8_affine"])
    ratios = cal.ratios.tolist()
    check(len(ratios) == 60, "60 IFMR ratios")
    cases.append({"name": "ifmr_default_ratios", "rule": "0.7 + i * 0.01, i = 0..59 (float64)",
                  "ratios": ratios})

    # HFMG on a 16-bin histogram, 2-bit grid (4 destination bins): candidates and losses.
    c = torch.tensor([0, 0, 1, 5, 10, 20, 10, 5, 1, 0, 0, 0, 0, 0, 0, 1], dtype=torch.float64)
    left, right = hfmg_candidates(c)
    pairs = list(zip(left.tolist(), right.tolist(), strict=True))
    check(pairs == ref_hfmg.reference_candidates(c.numpy()), "small HFMG candidates")
    losses = hfmg_losses(c, left, right, 4)
    ref = [ref_hfmg.reference_loss(c.numpy(), a, b, 1.0, 4) for a, b in pairs]
    check(np.allclose(losses.numpy(), ref, rtol=1e-12), "small HFMG losses")
    best = _best_candidate(c, left, right, 4)
    cases.append({"name": "hfmg_small", "counts": c.tolist(), "dst_bins": 4,
                  "candidates": [list(p) for p in pairs],
                  "losses_in_bin_width_units_squared": losses.tolist(), "best_index": best})

    # Scale and zero point from a range, per spec.
    grids = {**SPECS, "int8_sym_narrow": QuantSpec(narrow_range=True),
             "int4_affine": QuantSpec(bits=4, symmetric=False),
             "int4_sym_amct": QuantSpec(bits=4, scale_rule="amct")}
    rows = []
    for lo_v, hi_v in ((-1.0, 2.0), (-3.0, 1.0), (0.0, 0.0), (0.5, 0.5), (-1e-9, 1e-9),
                       (0.2, 6.0), (-6.0, -0.2), (-1.0, 1.0)):
        for name, spec in grids.items():
            if spec.signed is False and spec.symmetric:
                continue
            s, z = qparams_from_range(torch.tensor(lo_v), torch.tensor(hi_v), spec)
            rows.append({"spec": name, "lo": lo_v, "hi": hi_v, "scale": f32(s), "zero_point": int(z)})
    cases.append({"name": "qparams_from_range",
                  "specs": {k: spec_json(v) for k, v in grids.items()}, "rows": rows})
    return cases


# -- per-channel weights -------------------------------------------------------------------


def make_weight() -> np.ndarray:
    """(16, 8, 3, 3) OIHW, channel c ~ N(0, (0.02 (1 + c))^2); channel 3 all zero, channel 5
    constant 0.3, channel 7 shifted negative (|min| > |max|: AMCT divides by 128)."""
    rng = np.random.default_rng(201)
    w = rng.standard_normal((16, 8, 3, 3)) * (0.02 * (1 + np.arange(16)))[:, None, None, None]
    w[3] = 0.0
    w[5] = 0.3
    w[7] = w[7] - 0.1
    return w.astype(np.float32)


def per_channel_results(w: np.ndarray) -> dict[str, Any]:
    out = {}
    for name, spec in PER_CHANNEL.items():
        cal = create_calibrator("minmax", spec, tensor_name="weight")
        cal.observe(torch.from_numpy(w))
        lo, hi = cal.range()
        scale, zp = cal.compute()
        if spec.axis is not None:
            flat = np.moveaxis(w, spec.axis, 0).reshape(w.shape[spec.axis], -1)
            check(lo.tolist() == flat.min(1).tolist() and hi.tolist() == flat.max(1).tolist(),
                  f"{name}: per-channel min/max")
        out[name] = {"calibrator": "minmax", "spec": spec_json(spec),
                     "lo": lo.reshape(-1).tolist(), "hi": hi.reshape(-1).tolist(),
                     "scale": scale.reshape(-1).tolist(),
                     "zero_point": zp.reshape(-1).tolist()}
    return out


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    torch.set_num_threads(1)
    for old in HERE.glob("*.npy"):
        old.unlink()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    changed = subprocess.run(["git", "log", "-1", "--format=%H", "--", "src/torchquant"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "src/torchquant"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    check(dirty == "", "src/torchquant must be unmodified at the recorded commit")

    inputs_json = []
    for inp in INPUTS:
        rng = np.random.default_rng(inp["seed"])
        n = BATCH if inp["seed"] is not None else TINY
        batches = [np.ascontiguousarray(inp["make"](rng, n), dtype=np.float32) for _ in range(2)]
        files = []
        for b, arr in enumerate(batches):
            fname = f"{inp['name']}.{b}.npy"
            np.save(HERE / fname, arr)
            files.append(fname)
        data = np.concatenate(batches)
        results = {}
        for cname, cfg in CONFIGS.items():
            where = f"{inp['name']} / {cname}"
            cal = run_config(cfg, batches)
            lo_t, hi_t = cal.range()
            scale_t, zp_t = cal.compute()
            lo, hi = float(lo_t), float(hi_t)
            kind = cfg["calibrator"]
            if kind == "entropy":
                detail = detail_entropy(cal, lo, hi, where)
            elif kind == "percentile":
                detail = detail_percentile(cal, lo, hi, data, where)
            elif kind == "mse":
                detail = detail_mse(cal, lo, hi, where)
            elif kind == "ifmr":
                detail = detail_ifmr(cal, lo, hi, data, where)
            elif kind == "hfmg":
                detail = detail_hfmg(cal, lo, hi, where)
            else:
                detail = detail_minmax(cal, lo, hi, data, where)
            results[cname] = {"lo": lo, "hi": hi, "amax": max(abs(lo), abs(hi)),
                              "scale": float(scale_t), "zero_point": int(zp_t),
                              "detail": detail}
            print(f"{inp['name']:18s} {cname:30s} lo={lo:+.6g} hi={hi:+.6g} "
                  f"scale={float(scale_t):.6g} zp={int(zp_t)}", flush=True)
        inputs_json.append({
            "name": inp["name"], "description": inp["description"], "numpy_seed": inp["seed"],
            "batches": files, "batch_shape": [n], "dtype": "float32",
            "stats": {"count": int(data.size), "min": f32(data.min()), "max": f32(data.max()),
                      "mean": float(data.astype(np.float64).mean()),
                      "negatives": int((data < 0).sum()), "zeros": int((data == 0).sum())},
            "results": results,
        })

    w = make_weight()
    np.save(HERE / "weight_oihw.npy", w)
    golden = {
        "schema_version": 1,
        "generator": {
            "script": "tests/data/golden/make_golden.py",
            "torchquant_version": torchquant.__version__,
            "repository_commit": commit,
            "torchquant_commit": changed,
            "torchquant_commit_note": "repository_commit: HEAD when the script ran; "
                                      "torchquant_commit: the last commit that changed "
                                      "src/torchquant (unmodified in the working tree)",
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "torch_threads": torch.get_num_threads(),
            "numpy_rng": "numpy.random.default_rng(seed), float64 draws cast to float32",
        },
        "observe_order": "each input's batches are observed in file order (0, 1), one "
                         "observe() call per batch, then range() and compute()",
        "specs": {k: spec_json(v) for k, v in SPECS.items()},
        "configs": CONFIGS,
        "inputs": inputs_json,
        "per_channel": {"file": "weight_oihw.npy", "shape": list(w.shape), "dtype": "float32",
                        "numpy_seed": 201, "description": make_weight.__doc__.split("\n")[0]
                        + " " + " ".join(make_weight.__doc__.split("\n")[1:]).strip(),
                        "results": per_channel_results(w)},
        "hand_cases": hand_cases(),
    }
    with open(HERE / "golden.json", "w") as fh:
        json.dump(golden, fh, indent=1)
        fh.write("\n")
    print("wrote", HERE / "golden.json")


if __name__ == "__main__":
    main()

// KL-divergence ("entropy") threshold search over a histogram: TensorRT's
// EntropyCalibration2 as published, NVIDIA pytorch-quantization / TensorRT Model Optimizer
// ("modelopt"), and ONNX Runtime's HistogramCollector. Pure functions of the histogram; the
// streaming statistics live in observer/entropy.hpp. Source: shared/specs/algorithms.md
// section 2.
//
// |x| histograms (entropy_search): counts h[0..n) of bin width w (bin j covers [j*w, (j+1)*w)).
// A candidate i keeps bins [0, i):
//   P = h[0:i] with the outliers O = sum(h[i:]) added to P[i-1];
//   Q = h[0:i] (without the outliers) merged into L levels with bin boundaries b[0..L]
//       (level g = bins [b[g], b[g+1])), expanded back: each level's mass is shared evenly
//       over its non-empty bins, empty bins stay empty;
//   KL(P || Q) of the normalized histograms; infinite where P > 0 = Q, NaN where Q is empty.
// Options reproduce each published variant (entropy_options's named constructors):
//   - tensorrt (GTC 2017, Szymon Migacz, "8-bit Inference with TensorRT", slides s7310):
//     levels of i / L bins, the last level takes the remainder (`published`); candidates
//     i = 128 .. n-1 (the slides' range(128, 2048): the unclipped i = n is not a candidate;
//     include_unclipped adds it, as the Python predecessor torchquant did); first minimum,
//     KL values within 1e-12 relative counting as equal (tie_tolerance: candidates past the
//     last non-empty bin have the same P and Q, and rounding must not pick among them);
//     T = (i + 0.5) * w; no finite candidate (all data in the last bin) keeps the whole
//     range, i = n (unclipped_if_all_infinite; the slides are silent).
//   - tensorrt_mlperf (NVIDIA's MLPerf closed/NVIDIA/documentation/calibration.md): the first
//     bin is discarded; 127 coarse levels of equal range between 0 and the centre of the last
//     kept bin, the bin holding the folded outliers in the last level (`mlperf_centre`: a bin
//     belongs to the level that contains its centre; TensorRT is closed source, this is our
//     reading of the text); T = the centre of the last kept bin, (i - 0.5) * w. The histogram
//     side (1024 first bins, doubling growth) is the observer's.
//   - modelopt (modelopt/torch/quantization/calib/histogram.py, _compute_amax_entropy):
//     h[0] = h[1]; candidates start_bin, start_bin + stride, ..., up to and including n;
//     levels from numpy's digitize(range(i), linspace(0, i, L + 1)) (`linspace`: uneven);
//     KL as scipy.stats.entropy (no epsilon; numpy's pairwise sums reproduced); np.argmin of
//     the reversed list: the last minimum, and a NaN (empty Q) wins over every number;
//     amax = calib_bin_edges[i], torch's float32 linspace edge (right_edge_float32).
//
// Signed histograms (entropy_search_signed): ONNX Runtime
// onnxruntime/python/tools/quantization/calibrate.py, HistogramCollector.get_entropy_threshold
// with quant_utils.smooth_distribution. n bins over [-t, t] (edges e[0..n]); z = n / 2,
// candidates i = L/2 .. z keep the slice [z - i, min(z + i + 1, n)); P folds the outliers of
// both sides into its end bins; Q merges the slice into L levels of size / L bins (the
// remainder's mass goes to the last level, but the remainder's bins get Q = 0), expands each
// level's mass / (non-zero bins of P in the level) truncated to an integer into EVERY bin of
// the level; both are smoothed (zeros become eps = 1e-4, non-zeros lose eps * zeros /
// non-zeros); first minimum; the result is (e[z - i], e[min(z + i + 1, n)]), which ORT then
// clamps to the data's (min, max) (the observer does). ORT's defaults num_bins = 128,
// num_quantized_bins = 128 leave the single candidate i = 64, the whole histogram
// (onnxruntime issues 9597, 17235).
//
// Speed. Every candidate is scored from prefix sums, never by a pass over all bins:
// with N = sum(h), C = sum(h[0:i]), F = h[i-1] + O and q(g) = mass(g) / nonempty(g),
//   KL = (sum P log P - sum P log Q) / N - log N + log C,
//   sum P log P = hlogh[i] - h[i-1] log h[i-1] + F log F,
//   sum P log Q = sum_g mass(g) log q(g) + O log q(level of bin i-1),
// where hlogh, mass and nonempty are prefix sums. Published levels 0..L-2 depend on i only
// through m = i / L, so their sum is computed once per m and a candidate costs O(1); uneven
// levels cost L look-ups per candidate in a per-band memo of the level terms. ORT's smoothed
// terms use a Taylor expansion of (h - e) log(h - e) in prefix sums of log h and 1/h^k when
// e / h is small (else the slice is summed directly) and cost O(L) per candidate.
// Prefix sums round, so every candidate within a tolerance of the minimum is re-scored
// exactly, bin by bin, in the variant's own arithmetic (scipy.stats.entropy in double with
// numpy's pairwise sums; ORT's in float32), and the variant's tie rule picks among those
// exact values (the Python predecessor src/torchquant/calib/entropy.py did the same).
// Deterministic: no threads, a fixed order of operations. Checked against the real ONNX
// Runtime 1.32.0 (numpy 2.4.6) on 500 random histograms: the same choice every time.
//
// Measured (bench/entropy_bench.cpp, 2048 bins, one shared core, CPU time): tensorrt 44 us,
// modelopt / MLPerf levels 0.83 ms, onnxruntime (2048 signed bins) 0.84 ms; the plain
// published loop 10.7 ms.
#pragma once

#include "../detail/algorithm.hpp"
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../config.hpp"

QLIB_NAMESPACE_BEGIN

/// Which reimplementation a search follows; selects the search function and the presets.
enum class entropy_variant : std::uint8_t { tensorrt, modelopt, onnxruntime };
/// How bins [0, i) merge into levels (see the file comment).
enum class entropy_levels : std::uint8_t { published, linspace, mlperf_centre };
/// Threshold of the chosen candidate i with bin width w.
enum class entropy_threshold : std::uint8_t {
  next_bin_centre,     ///< (i + 0.5) * w: the slides
  last_bin_centre,     ///< (i - 0.5) * w: MLPerf, centre of the last kept bin
  right_edge,          ///< i * w in double
  right_edge_float32,  ///< modelopt's float32 bin edge i (torch.linspace / torch.arange on CPU)
};
/// What happens to bin 0 (near-zero values) before the search.
enum class entropy_first_bin : std::uint8_t { keep, discard, copy_second };
/// Which of several equal minima wins.
enum class entropy_ties : std::uint8_t { first, last };

inline const char* to_string(entropy_variant v) noexcept {
  return v == entropy_variant::tensorrt ? "tensorrt" : v == entropy_variant::modelopt ? "modelopt" : "onnxruntime";
}
inline const char* to_string(entropy_levels v) noexcept {
  return v == entropy_levels::published ? "published" : v == entropy_levels::linspace ? "linspace" : "mlperf_centre";
}

/// Options of the search. The named constructors give each variant; the fields apply to the
/// |x| searches (tensorrt, modelopt) except levels and smoothing_eps, which are all that
/// ORT's signed search reads (it keeps numpy's first minimum, bit for bit).
struct entropy_options {
  entropy_variant variant = entropy_variant::tensorrt;
  std::uint32_t levels = 128;        ///< L: quantized levels (num_quantized_bins)
  std::uint32_t start_bin = 128;     ///< smallest candidate i
  std::uint32_t stride = 1;          ///< candidates start_bin, start_bin + stride, ...
  bool include_unclipped = false;    ///< the candidate i = n (keep every bin)
  entropy_levels level_rule = entropy_levels::published;
  entropy_threshold threshold_rule = entropy_threshold::next_bin_centre;
  entropy_first_bin first_bin = entropy_first_bin::keep;
  entropy_ties ties = entropy_ties::first;
  bool empty_q_wins = false;         ///< a NaN KL (Q all zero) is the minimum (np.argmin, modelopt)
  /// Exact KL values within this relative distance of the minimum count as equal, so that
  /// rounding does not break mathematical ties (e.g. candidates past the last non-empty bin
  /// keep the same P and Q); 0 compares the values bit for bit (modelopt, as numpy does).
  double tie_tolerance = 1e-12;
  /// No candidate has a finite KL (e.g. all data in the last bin): keep the whole range
  /// (i = n, choice.clipped = false) instead of applying the tie rule to the infinities.
  bool unclipped_if_all_infinite = true;
  double smoothing_eps = 0.0;        ///< ORT's smooth_distribution eps (onnxruntime only)
  /// right_edge_float32: the bins of the first batch's linspace (0: the histogram's size,
  /// i.e. it never grew). The observer fills it in.
  std::uint32_t first_bins = 0;

  /// TensorRT as published in the slides (L = 128 for int8).
  static entropy_options tensorrt(std::uint32_t levels = 128) {
    entropy_options o;
    o.levels = levels;
    o.start_bin = levels;
    return o;
  }
  /// TensorRT as NVIDIA's MLPerf calibration.md describes it (127 levels for int8).
  static entropy_options tensorrt_mlperf(std::uint32_t levels = 127) {
    entropy_options o = tensorrt(levels);
    o.start_bin = 128;
    o.level_rule = entropy_levels::mlperf_centre;
    o.threshold_rule = entropy_threshold::last_bin_centre;
    o.first_bin = entropy_first_bin::discard;
    return o;
  }
  /// modelopt: levels = 1 << (bits - 1 + unsigned) (128 for int8), start_bin 128, stride 1.
  static entropy_options modelopt(std::uint32_t levels = 128, std::uint32_t start_bin = 128, std::uint32_t stride = 1) {
    entropy_options o;
    o.variant = entropy_variant::modelopt;
    o.levels = levels;
    o.start_bin = start_bin;
    o.stride = stride;
    o.include_unclipped = true;
    o.level_rule = entropy_levels::linspace;
    o.threshold_rule = entropy_threshold::right_edge_float32;
    o.first_bin = entropy_first_bin::copy_second;
    o.ties = entropy_ties::last;
    o.empty_q_wins = true;
    o.unclipped_if_all_infinite = false;
    o.tie_tolerance = 0.0;
    return o;
  }
  /// ONNX Runtime's HistogramCollector, method "entropy".
  static entropy_options onnxruntime(std::uint32_t num_quantized_bins = 128) {
    entropy_options o;
    o.variant = entropy_variant::onnxruntime;
    o.levels = num_quantized_bins;
    o.start_bin = 0;
    o.smoothing_eps = 1e-4;
    o.unclipped_if_all_infinite = false;
    o.tie_tolerance = 0.0;
    return o;
  }

  status validate() const {
    auto bad = [](const std::string& m) { return status(errc::invalid_argument, "entropy search: " + m); };
    if (static_cast<unsigned>(variant) > 2) return bad("unknown variant");
    if (static_cast<unsigned>(level_rule) > 2 || static_cast<unsigned>(threshold_rule) > 3 ||
        static_cast<unsigned>(first_bin) > 2 || static_cast<unsigned>(ties) > 1)
      return bad("an option holds an unknown enumerator");
    if (levels < 1 || levels > (1u << 24)) return bad("option levels = " + std::to_string(levels) + " is outside [1, 2^24]");
    if (!(tie_tolerance >= 0.0 && tie_tolerance <= 1e-3))
      return bad("option tie_tolerance = " + std::to_string(tie_tolerance) + " is outside [0, 1e-3]");
    if (variant == entropy_variant::onnxruntime) {
      if (levels < 2) return bad("option levels (num_quantized_bins) = " + std::to_string(levels) + " must be >= 2");
      if (!(smoothing_eps > 0.0 && smoothing_eps < 1.0))
        return bad("option smoothing_eps = " + std::to_string(smoothing_eps) + " must be in (0, 1) for onnxruntime");
      return {};
    }
    if (smoothing_eps != 0.0) return bad("option smoothing_eps applies to the onnxruntime variant only");
    if (start_bin < 1) return bad("option start_bin must be >= 1");
    if (stride < 1) return bad("option stride must be >= 1");
    if (level_rule == entropy_levels::published && start_bin < levels)
      return bad("option start_bin = " + std::to_string(start_bin) + " is below levels = " + std::to_string(levels) +
                 ": published levels need at least one bin each");
    return {};
  }
};

/// The result of an |x| search.
struct entropy_choice {
  double threshold = 0.0;      ///< T, in the histogram's units
  std::size_t bin = 0;         ///< the chosen candidate i: bins [0, i) kept
  double kl = 0.0;             ///< its KL(P || Q) (exact re-score; inf or NaN in modelopt's corner cases)
  bool clipped = true;         ///< false: no candidate had a finite KL, the whole range is kept
  std::size_t candidates = 0;  ///< candidates searched
  std::size_t rescored = 0;    ///< candidates re-scored bin by bin (near the minimum)
};

/// The result of ORT's signed search (before ORT's clamp to the data's min / max).
struct signed_entropy_choice {
  double lo = 0.0, hi = 0.0;   ///< edges[start], edges[end]
  std::size_t half = 0;        ///< the chosen i
  std::size_t start = 0, end = 0;  ///< the kept slice [start, end) of bins
  double kl = 0.0;
  std::size_t candidates = 0;
  std::size_t rescored = 0;
};

namespace detail {

/// x log y with 0 log y = 0 (scipy.special.xlogy for x >= 0).
inline double xlogy(double x, double y) noexcept { return x == 0.0 ? 0.0 : x * std::log(y); }

/// numpy's pairwise summation, the order np.sum adds float arrays in
/// (numpy/_core/src/umath/loops_utils.h.src, pairwise_sum: 8 accumulators up to 128
/// elements, halves above). Reproduced so that re-scored KL values equal scipy's bit for bit.
template <class W>
W pairwise_sum(const W* a, std::size_t n) {
  if (n < 8) {
    W r = W(-0.0);
    for (std::size_t i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    W r[8];
    for (std::size_t k = 0; k < 8; ++k) r[k] = a[k];
    std::size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (std::size_t k = 0; k < 8; ++k) r[k] += a[i + k];
    W res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

/// scipy.special.rel_entr, in double (its float32 loop also computes in double).
inline double rel_entr(double x, double y) noexcept {
  if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<double>::quiet_NaN();
  if (x > 0.0 && y > 0.0) return x * std::log(x / y);
  if (x == 0.0 && y >= 0.0) return 0.0;
  return std::numeric_limits<double>::infinity();
}

/// Prefix sums of h: counts, non-empty bins, h log h (index j sums h[0..j)), and the
/// suffix sums of the counts (tail[j] sums h[j..n): exactly 0 past the last non-empty bin,
/// also for fractional counts, where total - count[j] might round to a speck).
struct entropy_prefix {
  std::vector<double> count, nonzero, hlogh, tail;
  explicit entropy_prefix(const std::vector<double>& h)
      : count(h.size() + 1, 0.0), nonzero(h.size() + 1, 0.0), hlogh(h.size() + 1, 0.0), tail(h.size() + 1, 0.0) {
    for (std::size_t j = 0; j < h.size(); ++j) {
      count[j + 1] = count[j] + h[j];
      nonzero[j + 1] = nonzero[j] + (h[j] > 0.0 ? 1.0 : 0.0);
      hlogh[j + 1] = hlogh[j] + xlogy(h[j], h[j]);
    }
    for (std::size_t j = h.size(); j > 0; --j) tail[j - 1] = tail[j] + h[j - 1];
  }
  double mass(std::size_t a, std::size_t b) const noexcept { return count[b] - count[a]; }
  double nonempty(std::size_t a, std::size_t b) const noexcept { return nonzero[b] - nonzero[a]; }
  /// mass * log(mass / nonempty) of bins [a, b): one level's part of sum P log Q.
  double level_term(std::size_t a, std::size_t b) const noexcept {
    const double m = mass(a, b);
    return m > 0.0 ? m * std::log(m / nonempty(a, b)) : 0.0;
  }
  /// Q's value in the non-empty bins of [a, b).
  double level_value(std::size_t a, std::size_t b) const noexcept {
    const double m = mass(a, b);
    return m > 0.0 ? m / nonempty(a, b) : 0.0;
  }
};

/// ceil((g * step + offset) / den) for g = 1 .. L-1 into b[g], clamped to [0, i], without a
/// division per level: the quotient and remainder advance by step's.
inline void ceil_steps(long long step, long long offset, long long den, std::size_t i, std::vector<std::size_t>& b) {
  const std::size_t L = b.size() - 1;
  const long long dq = step / den, dr = step % den;
  long long q = 0, r = 0;
  bool started = false;
  for (std::size_t g = 1; g < L; ++g) {
    if (!started) {
      const long long num = static_cast<long long>(g) * step + offset;  // (g step + offset) / den, ceil
      if (num <= 0) {
        b[g] = 0;
        continue;
      }
      q = (num + den - 1) / den;
      r = q * den - num;  // den * q - num, in [0, den)
      started = true;
    } else {
      // num grows by step: q' = ceil((num + step) / den) with r = den q - num.
      q += dq;
      r -= dr;
      if (r < 0) {
        r += den;
        q += 1;
      }
    }
    b[g] = std::min(i, static_cast<std::size_t>(q));
  }
}

/// Level boundaries b[0..L] of candidate i under rule (b[0] = 0, b[L] = i, non-decreasing).
inline void level_bounds(entropy_levels rule, std::size_t i, std::size_t L, std::vector<std::size_t>& b) {
  b.resize(L + 1);
  b[0] = 0;
  if (rule == entropy_levels::published) {
    const std::size_t m = i / L;
    for (std::size_t g = 1; g < L; ++g) b[g] = g * m;
  } else if (rule == entropy_levels::linspace) {
    // np.linspace(0, i, L + 1) is g * (i / L) in float64; np.digitize puts integer bin j in
    // the last level whose edge is <= j, so level g starts at ceil(edge g). With L a power
    // of two the float64 product is exact and equals the integer ceil(g i / L).
    if ((L & (L - 1)) == 0) {
      ceil_steps(static_cast<long long>(i), 0, static_cast<long long>(L), i, b);
    } else {
      const double step = static_cast<double>(i) / static_cast<double>(L);
      for (std::size_t g = 1; g < L; ++g)
        b[g] = std::min(i, static_cast<std::size_t>(std::ceil(static_cast<double>(g) * step)));
    }
  } else {
    // L equal levels over [0, c], c = i - 0.5 bins (the centre of bin i - 1); bin j joins the
    // level holding its centre j + 0.5, the last bin (centre c) the last level. Level g
    // starts at the first j with (j + 0.5) L / c >= g: j >= (g (2i - 1) - L) / (2L).
    ceil_steps(2 * static_cast<long long>(i) - 1, -static_cast<long long>(L), 2 * static_cast<long long>(L), i, b);
  }
  b[L] = i;
}

/// The level that holds bin i - 1: the last non-empty level.
inline std::size_t last_level(const std::vector<std::size_t>& b, std::size_t i) noexcept {
  std::size_t g = b.size() - 2;
  while (g > 0 && b[g] >= i) --g;
  return g;
}

/// KL of candidate i from prefix sums, given sum_g mass log q (levels) and Q's value at bin
/// i - 1. NaN when Q is empty; +inf when the outliers land where Q is 0.
inline double kl_from_sums(const entropy_prefix& p, const std::vector<double>& h, std::size_t i, double levels_term, double q_last) {
  const double total = p.count.back();
  const double kept = p.count[i];
  if (!(kept > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  const double outliers = p.tail[i];
  const double last = h[i - 1];
  if (outliers > 0.0 && !(last > 0.0)) return std::numeric_limits<double>::infinity();
  const double folded = last + outliers;
  const double plogp = p.hlogh[i] - xlogy(last, last) + xlogy(folded, folded);
  const double plogq = levels_term + xlogy(outliers, q_last);
  return (plogp - plogq) / total - std::log(total) + std::log(kept);
}

/// Work buffers of the exact scorer.
struct exact_buffers {
  std::vector<double> p, q, v;
  std::vector<float> pf, qf, vf;
};

/// KL of candidate i, bin by bin, as modelopt computes it: P and Q built explicitly, then
/// scipy.stats.entropy (pk = P / sum P, qk = Q / sum Q, sum of rel_entr, numpy sums).
inline double kl_exact(const std::vector<double>& h, std::size_t i, const std::vector<std::size_t>& b, exact_buffers& buf) {
  buf.p.assign(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(i));
  buf.p[i - 1] += pairwise_sum(h.data() + i, h.size() - i);
  buf.q.assign(i, 0.0);
  for (std::size_t g = 0; g + 1 < b.size(); ++g) {
    double mass = 0.0, nonempty = 0.0;
    for (std::size_t j = b[g]; j < b[g + 1]; ++j) {
      mass += h[j];
      nonempty += h[j] != 0.0 ? 1.0 : 0.0;
    }
    for (std::size_t j = b[g]; j < b[g + 1]; ++j)
      if (h[j] != 0.0) buf.q[j] = mass / nonempty;
  }
  const double sq = pairwise_sum(buf.q.data(), i), sp = pairwise_sum(buf.p.data(), i);
  buf.v.resize(i);
  for (std::size_t j = 0; j < i; ++j) buf.v[j] = rel_entr(buf.p[j] / sp, buf.q[j] / sq);
  return pairwise_sum(buf.v.data(), i);
}

/// sum over levels of level_term(b[g], b[g+1]), with the terms of lengths base .. base + 3
/// and starts below reach memoized (NaN = not computed yet). Reset per band of candidates
/// that share i / L, whose levels have about i / L bins.
class level_memo {
 public:
  explicit level_memo(const entropy_prefix& p) : p_(p) {}
  void reset(std::size_t base, std::size_t reach, bool enabled) {
    base_ = base;
    reach_ = enabled ? reach : 0;
    slots_.assign(4 * reach_, std::numeric_limits<double>::quiet_NaN());
  }
  double sum(const std::vector<std::size_t>& b) {
    double total = 0.0;
    double* const slots = slots_.data();
    for (std::size_t g = 0; g + 1 < b.size(); ++g) {
      const std::size_t a = b[g], e = b[g + 1], d = e - a - base_;  // wraps (huge) below base
      if (d < 4 && a < reach_) {
        double& slot = slots[d * reach_ + a];
        if (slot != slot) slot = p_.level_term(a, e);
        total += slot;
      } else if (e > a) {
        total += p_.level_term(a, e);
      }
    }
    return total;
  }

 private:
  const entropy_prefix& p_;
  std::size_t base_ = 0, reach_ = 0;
  std::vector<double> slots_;
};

/// torch.linspace(0, x_max, nb + 1) in float32 on CPU (aten/src/ATen/native/cpu/
/// RangeFactoriesKernel.cpp: step = x_max / nb; k < (nb + 1) / 2 ? step * k :
/// x_max - step * (nb - k)), or after growth torch.arange(0, end, step) on CPU (double
/// accumulation: float(double(step) * k)); x_max = float(w * nb) recovers the first
/// batch's float32 maximum exactly.
inline double modelopt_edge(std::size_t k, double width, std::size_t first_bins, std::size_t n) {
  const float x_max = static_cast<float>(width * static_cast<double>(first_bins));
  const float step = x_max / static_cast<float>(first_bins);
  if (n != first_bins) return static_cast<double>(static_cast<float>(static_cast<double>(step) * static_cast<double>(k)));
  const std::size_t halfway = (first_bins + 1) / 2;
  float e;
  if (k < halfway) {
    e = step * static_cast<float>(k);
  } else {
    const float back = step * static_cast<float>(first_bins - k);
    e = x_max - back;
  }
  return static_cast<double>(e);
}

inline double threshold_of(const entropy_options& o, std::size_t i, double w, std::size_t n) {
  const double di = static_cast<double>(i);
  switch (o.threshold_rule) {
    case entropy_threshold::next_bin_centre: return (di + 0.5) * w;
    case entropy_threshold::last_bin_centre: return (di - 0.5) * w;
    case entropy_threshold::right_edge: return di * w;
    case entropy_threshold::right_edge_float32: return modelopt_edge(i, w, o.first_bins ? o.first_bins : n, n);
  }
  return di * w;
}

inline void check_counts(const std::vector<double>& counts, const char* who) {
  for (std::size_t j = 0; j < counts.size(); ++j)
    if (!(counts[j] >= 0.0) || !std::isfinite(counts[j]))
      fail(errc::invalid_argument, std::string(who) + ": histogram count " + std::to_string(counts[j]) + " at bin " +
                                       std::to_string(j) + " is negative or not finite");
}

// Stage-1 KL values within this of the minimum are re-scored exactly. Prefix-sum rounding is
// ~1e-13 here; ORT's float32 arithmetic moves KL by ~1e-6, hence its wider margin.
inline constexpr double entropy_abs_tol = 1e-9, entropy_rel_tol = 1e-7;
inline constexpr double ort_abs_tol = 2e-5, ort_rel_tol = 1e-4;

}  // namespace detail

/// The KL-optimal threshold of an |x| histogram (counts per bin of width bin_width); see the
/// file comment for the variants. Fails (invalid_argument) on bad options, negative or
/// non-finite counts, a bad width, an empty histogram or an empty candidate range.
inline entropy_choice entropy_search(const std::vector<double>& counts, double bin_width, const entropy_options& opt) {
  detail::throw_if(opt.validate());
  if (opt.variant == entropy_variant::onnxruntime)
    detail::fail(errc::invalid_argument, "entropy_search: the onnxruntime variant searches a signed histogram; "
                                         "call entropy_search_signed");
  const std::size_t n = counts.size();
  if (n < 2) detail::fail(errc::invalid_argument, "entropy_search: histogram of " + std::to_string(n) + " bins (needs >= 2)");
  if (!(bin_width > 0.0) || !std::isfinite(bin_width))
    detail::fail(errc::invalid_argument, "entropy_search: bin width " + std::to_string(bin_width) + " is not positive and finite");
  detail::check_counts(counts, "entropy_search");
  const std::size_t last = opt.include_unclipped ? n : n - 1;
  if (opt.start_bin > last)
    detail::fail(errc::invalid_argument, "entropy_search: option start_bin = " + std::to_string(opt.start_bin) +
                                             " leaves no candidate in a histogram of " + std::to_string(n) + " bins");
  if (opt.first_bins > n)
    detail::fail(errc::invalid_argument, "entropy_search: option first_bins = " + std::to_string(opt.first_bins) +
                                             " exceeds the histogram's " + std::to_string(n) + " bins");

  std::vector<double> h = counts;
  if (opt.first_bin == entropy_first_bin::discard) h[0] = 0.0;
  if (opt.first_bin == entropy_first_bin::copy_second) h[0] = h[1];
  const detail::entropy_prefix pre(h);
  const std::size_t L = opt.levels;

  std::vector<std::size_t> cand;
  for (std::size_t i = opt.start_bin; i <= last; i += opt.stride) cand.push_back(i);
  std::vector<double> kl(cand.size());

  // Stage 1: every candidate from prefix sums.
  if (opt.level_rule == entropy_levels::published) {
    std::size_t head_m = 0;
    double head = 0.0;  // sum of level terms 0..L-2, which hold m = i / L bins each
    for (std::size_t k = 0; k < cand.size(); ++k) {
      const std::size_t i = cand[k], m = i / L;
      if (k == 0 || m != head_m) {
        head = 0.0;
        for (std::size_t g = 0; g + 1 < L; ++g) head += pre.level_term(g * m, (g + 1) * m);
        head_m = m;
      }
      const std::size_t lo = (L - 1) * m;
      kl[k] = detail::kl_from_sums(pre, h, i, head + pre.level_term(lo, i), pre.level_value(lo, i));
    }
  } else {
    detail::level_memo memo(pre);
    std::vector<std::size_t> b;
    std::size_t band = std::numeric_limits<std::size_t>::max();
    for (std::size_t k = 0; k < cand.size(); ++k) {
      const std::size_t i = cand[k];
      if (i / L != band) {
        band = i / L;
        std::size_t in_band = 0, reach = i;
        for (std::size_t k2 = k; k2 < cand.size() && cand[k2] / L == band; ++k2, ++in_band) reach = cand[k2];
        // Memoize when filling the rows costs less than computing every level directly.
        memo.reset(band == 0 ? 0 : band - 1, reach + 1, 4 * (reach + 1) < in_band * L);
      }
      detail::level_bounds(opt.level_rule, i, L, b);
      const double sum = memo.sum(b);
      const std::size_t g = detail::last_level(b, i);
      kl[k] = detail::kl_from_sums(pre, h, i, sum, pre.level_value(b[g], b[g + 1]));
    }
  }

  entropy_choice out;
  out.candidates = cand.size();
  auto finish = [&](std::size_t i, double value, bool clipped) {
    out.bin = i;
    out.kl = value;
    out.clipped = clipped;
    out.threshold = detail::threshold_of(opt, i, bin_width, n);
    return out;
  };
  const bool last_wins = opt.ties == entropy_ties::last;
  if (opt.empty_q_wins) {
    for (std::size_t k = 0; k < cand.size(); ++k) {
      const std::size_t kk = last_wins ? cand.size() - 1 - k : k;
      if (std::isnan(kl[kk])) return finish(cand[kk], kl[kk], true);
    }
  }
  double best = std::numeric_limits<double>::infinity();
  for (double v : kl)
    if (v < best) best = v;
  if (!(best < std::numeric_limits<double>::infinity())) {
    if (opt.unclipped_if_all_infinite) return finish(n, std::numeric_limits<double>::infinity(), false);
    std::size_t pick = last_wins ? cand.size() - 1 : 0;  // np.argmin over equal infinities
    bool any = false;
    for (std::size_t k = 0; k < cand.size(); ++k)
      if (!std::isnan(kl[k]) && (!any || last_wins)) {
        pick = k;
        any = true;
      }
    return finish(cand[pick], kl[pick], true);
  }

  // Stage 2: the candidates near the minimum, exactly; the tie rule on the exact values.
  const double tol = detail::entropy_abs_tol + detail::entropy_rel_tol * std::fabs(best);
  detail::exact_buffers buf;
  std::vector<std::size_t> b;
  std::vector<std::pair<std::size_t, double>> near;
  double least = std::numeric_limits<double>::infinity();
  for (std::size_t k = 0; k < cand.size(); ++k) {
    if (!(kl[k] <= best + tol)) continue;
    detail::level_bounds(opt.level_rule, cand[k], L, b);
    near.emplace_back(cand[k], detail::kl_exact(h, cand[k], b, buf));
    least = std::min(least, near.back().second);
  }
  out.rescored = near.size();
  const double tie = least + opt.tie_tolerance * std::fabs(least);
  std::size_t pick = 0;
  double pick_kl = least;
  for (std::size_t k = 0; k < near.size(); ++k) {
    const auto& c = near[last_wins ? near.size() - 1 - k : k];
    if (c.second <= tie) {
      pick = c.first;
      pick_kl = c.second;
      break;
    }
  }
  return finish(pick, pick_kl, true);
}

namespace detail {

/// ORT's smooth_distribution followed by its entropy() (calibrate.py, a float32 copy of
/// scipy.stats.entropy), in ORT's float32 arithmetic: p and q (integer-valued doubles) are
/// cast to float32, zeros become float32(eps), non-zeros add float32(-eps1) with
/// eps1 = eps * zeros / non-zeros in double; pk = p / sum(p) and qk likewise with float32
/// pairwise sums; each term pk * log(pk / qk) in float32; a float32 pairwise sum. +inf where
/// ORT returns None (all zero) or would assert (a smoothed value <= 0, only possible with
/// fractional counts). ORT's log is numpy's float32 SIMD log, which differs from the C
/// library's logf by an ulp for some inputs, so candidates whose KL differ by a float32 ulp
/// or two may be ordered differently than in ORT. (ORT releases that called scipy's entropy
/// computed each term in double; the difference is of the same size.)
inline double ort_kl_exact(const std::vector<double>& p, const std::vector<double>& q, double eps, exact_buffers& buf) {
  const std::size_t n = p.size();
  auto smooth = [&](const std::vector<double>& in, std::vector<float>& out) {
    std::size_t zeros = 0;
    for (double v : in) zeros += v == 0.0 ? 1 : 0;
    if (zeros == n) return false;
    const double eps1 = eps * static_cast<double>(zeros) / static_cast<double>(n - zeros);
    const float add_zero = static_cast<float>(eps), add_nonzero = static_cast<float>(-eps1);
    out.resize(n);
    for (std::size_t j = 0; j < n; ++j) {
      const float v = static_cast<float>(in[j]);
      out[j] = v + (in[j] == 0.0 ? add_zero : add_nonzero);
      if (!(out[j] > 0.0f)) return false;
    }
    return true;
  };
  if (!smooth(p, buf.pf) || !smooth(q, buf.qf)) return std::numeric_limits<double>::infinity();
  const float sp = pairwise_sum(buf.pf.data(), n), sq = pairwise_sum(buf.qf.data(), n);
  buf.vf.resize(n);
  for (std::size_t j = 0; j < n; ++j) {
    const float pk = buf.pf[j] / sp, qk = buf.qf[j] / sq;
    const float ratio = pk / qk;
    const float term = pk * std::log(ratio);
    buf.vf[j] = pk > 0.0f && qk > 0.0f ? term : std::numeric_limits<float>::infinity();
  }
  return static_cast<double>(pairwise_sum(buf.vf.data(), n));
}

/// ORT's P and Q of the slice [s, e) of h (see the file comment), explicitly.
inline void ort_distributions(const std::vector<double>& h, std::size_t s, std::size_t e, std::size_t L, std::vector<double>& p,
                              std::vector<double>& q) {
  const std::size_t size = e - s, m = size / L;
  p.assign(h.begin() + static_cast<std::ptrdiff_t>(s), h.begin() + static_cast<std::ptrdiff_t>(e));
  double left = 0.0, right = 0.0;
  for (std::size_t j = 0; j < s; ++j) left += h[j];
  for (std::size_t j = e; j < h.size(); ++j) right += h[j];
  p[0] += left;
  p[size - 1] += right;
  q.assign(size, 0.0);
  for (std::size_t g = 0; g < L; ++g) {
    double mass = 0.0, norm = 0.0;
    for (std::size_t j = g * m; j < (g + 1) * m; ++j) {
      mass += h[s + j];
      norm += p[j] != 0.0 ? 1.0 : 0.0;
    }
    if (g + 1 == L)
      for (std::size_t j = L * m; j < size; ++j) mass += h[s + j];
    if (norm != 0.0)
      for (std::size_t j = g * m; j < (g + 1) * m; ++j) q[j] = std::trunc(mass / norm);
  }
}

}  // namespace detail

/// ONNX Runtime's entropy threshold of a signed histogram: counts of n bins with edges[0..n]
/// (n + 1 increasing values, [-t, t] in ORT). Returns the chosen slice and its edges; ORT
/// then clamps lo to the data's minimum and hi to its maximum (entropy_observer does).
/// Needs n / 2 >= levels / 2 (at least one candidate).
inline signed_entropy_choice entropy_search_signed(const std::vector<double>& counts, const std::vector<double>& edges,
                                                   const entropy_options& opt) {
  detail::throw_if(opt.validate());
  if (opt.variant != entropy_variant::onnxruntime)
    detail::fail(errc::invalid_argument, std::string("entropy_search_signed: variant '") + to_string(opt.variant) +
                                             "' searches an |x| histogram; call entropy_search");
  const std::size_t n = counts.size(), L = opt.levels, z = n / 2, first = L / 2;
  if (z < first)
    detail::fail(errc::invalid_argument, "entropy_search_signed: " + std::to_string(n) + " bins leave no candidate for " +
                                             std::to_string(L) + " quantized bins (needs bins >= levels)");
  if (edges.size() != n + 1)
    detail::fail(errc::invalid_argument, "entropy_search_signed: " + std::to_string(edges.size()) + " edges for " +
                                             std::to_string(n) + " bins");
  for (std::size_t j = 0; j <= n; ++j)
    if (!std::isfinite(edges[j]) || (j > 0 && !(edges[j] > edges[j - 1])))
      detail::fail(errc::invalid_argument, "entropy_search_signed: edge " + std::to_string(j) + " = " +
                                               std::to_string(edges[j]) + " is not finite and increasing");
  detail::check_counts(counts, "entropy_search_signed");
  const std::vector<double>& h = counts;
  const double eps = opt.smoothing_eps, log_eps = std::log(eps);

  // Prefix sums: counts, non-zero bins, and for the Taylor form of (h - e) log(h - e) =
  // h log h - e (log h + 1) + e^2 / (2h) + e^3 / (6h^2) + e^4 / (12h^3) + e^5 / (20h^4) + ...
  // the sums of h log h, log h, 1/h .. 1/h^4 over non-zero bins.
  const detail::entropy_prefix pre(h);
  std::vector<double> lg(n + 1, 0.0), r1(n + 1, 0.0), r2(n + 1, 0.0), r3(n + 1, 0.0), r4(n + 1, 0.0);
  double h_min = std::numeric_limits<double>::infinity();
  for (std::size_t j = 0; j < n; ++j) {
    const double v = h[j];
    const bool nz = v > 0.0;
    if (nz) h_min = std::min(h_min, v);
    const double inv = nz ? 1.0 / v : 0.0;
    lg[j + 1] = lg[j] + (nz ? std::log(v) : 0.0);
    r1[j + 1] = r1[j] + inv;
    r2[j + 1] = r2[j] + inv * inv;
    r3[j + 1] = r3[j] + inv * inv * inv;
    r4[j + 1] = r4[j] + (inv * inv) * (inv * inv);
  }
  const double total = pre.count[n];
  auto plogp = [](double v) { return v * std::log(v); };

  std::vector<double> kl;
  for (std::size_t i = first; i <= z; ++i) {
    const std::size_t s = z - i, e = std::min(z + i + 1, n), size = e - s, m = size / L;
    const double left = pre.count[s], right = pre.tail[e];
    const double p0 = h[s] + left, pl = h[e - 1] + right;  // P's end bins (the same bin if size == 1)
    // Sum and non-zero count of P over slice positions [a, b).
    auto psum = [&](std::size_t a, std::size_t b) {
      double v = pre.mass(s + a, s + b);
      if (a == 0 && b > 0) v += left;
      if (b == size && a < b) v += right;
      return v;
    };
    auto pnz = [&](std::size_t a, std::size_t b) {
      double c = pre.nonempty(s + a, s + b);
      if (a == 0 && b > 0) c += (p0 != 0.0 ? 1.0 : 0.0) - (h[s] > 0.0 ? 1.0 : 0.0);
      if (b == size && a < b && size > 1) c += (pl != 0.0 ? 1.0 : 0.0) - (h[e - 1] > 0.0 ? 1.0 : 0.0);
      return c;
    };
    const double nnz_p = pnz(0, size);
    if (!(nnz_p > 0.0) || !(total > 0.0)) {
      kl.push_back(std::numeric_limits<double>::infinity());
      continue;
    }
    const double e1p = eps * (static_cast<double>(size) - nnz_p) / nnz_p;
    // Q: level values and the smoothing of q.
    double nnz_q = 0.0, sum_q = 0.0;
    std::vector<double> qv(L, 0.0);
    for (std::size_t g = 0; g < L; ++g) {
      double mass = pre.mass(s + g * m, s + (g + 1) * m);
      if (g + 1 == L) mass += pre.mass(s + L * m, e);
      const double norm = pnz(g * m, (g + 1) * m);
      qv[g] = norm != 0.0 ? std::trunc(mass / norm) : 0.0;
      if (qv[g] != 0.0) {
        nnz_q += static_cast<double>(m);
        sum_q += static_cast<double>(m) * qv[g];
      }
    }
    if (!(nnz_q > 0.0)) {
      kl.push_back(std::numeric_limits<double>::infinity());
      continue;
    }
    const double e1q = eps * (static_cast<double>(size) - nnz_q) / nnz_q;
    // sum p~ log p~: the end bins, then the interior (Taylor when e / h_min is small).
    double a_sum = (static_cast<double>(size) - nnz_p) * eps * log_eps;
    auto smoothed_plogp = [&](double v) { return v != 0.0 ? plogp(v - e1p) : 0.0; };
    a_sum += smoothed_plogp(p0);
    if (size > 1) a_sum += smoothed_plogp(pl);
    if (size > 2) {
      const std::size_t a = s + 1, b = e - 1;
      const double cnt = pre.nonempty(a, b), r = e1p / h_min;
      const double bound = cnt * e1p * std::pow(r, 5) / (30.0 * (1.0 - std::min(r, 0.5)));
      if (cnt == 0.0) {
      } else if (e1p == 0.0) {
        a_sum += pre.hlogh[b] - pre.hlogh[a];
      } else if (r <= 0.1 && bound <= 1e-9 * total) {
        const double e2 = e1p * e1p;
        a_sum += (pre.hlogh[b] - pre.hlogh[a]) - e1p * ((lg[b] - lg[a]) + cnt) + e2 / 2.0 * (r1[b] - r1[a]) +
                 e2 * e1p / 6.0 * (r2[b] - r2[a]) + e2 * e2 / 12.0 * (r3[b] - r3[a]) + e2 * e2 * e1p / 20.0 * (r4[b] - r4[a]);
      } else {
        for (std::size_t j = a; j < b; ++j)
          if (h[j] > 0.0) a_sum += plogp(h[j] - e1p);
      }
    }
    // sum p~ log q~: q~ is constant over each level, eps over the remainder.
    auto psmooth = [&](std::size_t a, std::size_t b) {
      const double c = pnz(a, b);
      return psum(a, b) - e1p * c + eps * (static_cast<double>(b - a) - c);
    };
    double b_sum = 0.0;
    for (std::size_t g = 0; g < L && m > 0; ++g) {
      const double qs = qv[g] != 0.0 ? qv[g] - e1q : eps;
      b_sum += std::log(qs) * psmooth(g * m, (g + 1) * m);
    }
    if (L * m < size) b_sum += log_eps * psmooth(L * m, size);
    kl.push_back((a_sum - b_sum) / total - std::log(total) + std::log(sum_q));
  }

  signed_entropy_choice out;
  out.candidates = kl.size();
  double best = std::numeric_limits<double>::infinity();
  for (double v : kl)
    if (v < best) best = v;
  std::size_t pick = first;  // np.argmin: the first minimum; all infinite gives the first
  if (best < std::numeric_limits<double>::infinity()) {
    const double tol = detail::ort_abs_tol + detail::ort_rel_tol * std::fabs(best);
    detail::exact_buffers buf;
    std::vector<double> p, q;
    double pick_kl = std::numeric_limits<double>::infinity();
    bool have = false;
    for (std::size_t k = 0; k < kl.size(); ++k) {
      if (!(kl[k] <= best + tol)) continue;
      const std::size_t i = first + k, s = z - i, e = std::min(z + i + 1, n);
      detail::ort_distributions(h, s, e, L, p, q);
      const double v = detail::ort_kl_exact(p, q, eps, buf);
      ++out.rescored;
      if (!have || v < pick_kl) {
        pick = i;
        pick_kl = v;
        have = true;
      }
    }
    out.kl = pick_kl;
  } else {
    out.kl = best;
  }
  out.half = pick;
  out.start = z - pick;
  out.end = std::min(z + pick + 1, n);
  out.lo = edges[out.start];
  out.hi = edges[out.end];
  return out;
}

QLIB_NAMESPACE_END
